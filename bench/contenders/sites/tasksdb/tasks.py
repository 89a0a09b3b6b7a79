"""The task ``tasksdb-*`` run, through Django's task API on django-tasks-db's backend."""

from django.tasks import task

from contenders import marks


@task
def mark(stamp: float = 0.0) -> None:
    marks.mark(stamp)
