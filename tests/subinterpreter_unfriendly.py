"""A task module that imports a C extension without subinterpreter support (``_curses``)."""

import _curses  # noqa: F401  (single-phase init: refused inside isolated subinterpreters)

from django.tasks import task


@task
def uses_curses() -> str:
    return "curses imported"
