"""django-tandem: background tasks for Django's ``django.tasks`` API.

The public surface is deliberately small; everything else is private and may change.
"""

from tandem.tasks import Task, task

__version__ = "0.1.0"

__all__ = ["Task", "__version__", "task"]
