from django.apps import AppConfig


class TandemConfig(AppConfig):
    name = "tandem"
    verbose_name = "Tandem tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import logging

        from tandem import checks  # noqa: F401  (registers the system checks)
        from tandem.logging import AttemptFilter

        # Django's task lines carry the attempt's fields, and a failed attempt's line no
        # traceback (it is on the result; tandem's "task finished" line gives the error).
        django_tasks = logging.getLogger("django.tasks")
        if not any(isinstance(f, AttemptFilter) for f in django_tasks.filters):
            django_tasks.addFilter(AttemptFilter())
