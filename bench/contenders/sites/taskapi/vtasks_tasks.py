"""The task ``vtasks-*`` run: ``django_vtasks.task``, as django-vtasks' docs define tasks (a
superset of Django's ``@task``; ``on_commit=True`` by default, which outside a transaction enqueues
at once)."""

from django_vtasks import task

from contenders import marks


@task
def mark(stamp: float = 0.0) -> None:
    marks.mark(stamp)
