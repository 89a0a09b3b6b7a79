from django.apps import AppConfig


class TandemConfig(AppConfig):
    name = "tandem"
    verbose_name = "Tandem tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tandem import checks  # noqa: F401  (registers the system checks)
