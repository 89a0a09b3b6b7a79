"""A WSGI module that imports a C extension without subinterpreter support (``_curses``): it
loads in the main interpreter, and fails in a web interpreter."""

import _curses  # noqa: F401  (single-phase init: refused inside isolated subinterpreters)

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
