"""The task the ``django.tasks`` peers run (dj_queue, threadmill, django-ox): Django's own
``@task``, as their docs define tasks. django-vtasks' docs use its own decorator:
``vtasks_tasks.py``."""

from django.tasks import task

from contenders import marks


@task
def mark(stamp: float = 0.0) -> None:
    marks.mark(stamp)
