"""The benchmark's task: does nothing, so the numbers are tandem's overhead alone."""

from django.tasks import task


@task
def noop() -> None:
    return None
