"""``StaticFiles``: WhiteNoise as WSGI middleware (``static.static_files`` imports this module
only when there are static files to serve: WhiteNoise, and ``django.contrib.staticfiles`` which
it imports, stay out of a server that serves none)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from whitenoise.base import WhiteNoise
from whitenoise.middleware import WhiteNoiseMiddleware

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication


class StaticFiles(WhiteNoiseMiddleware):  # type: ignore[misc]
    """WhiteNoise as WSGI middleware, with the settings ``WhiteNoiseMiddleware`` reads (finders
    in DEBUG, the manifest's hashed names as immutable)."""

    def __init__(self, application: WSGIApplication) -> None:
        with warnings.catch_warnings():
            # STATIC_ROOT not collected yet (DEBUG): the finders serve; say it once, not warn.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            super().__init__(get_response=None)
        self.application = application

    __call__ = WhiteNoise.__call__
    serve = staticmethod(WhiteNoise.serve)


__all__ = ["StaticFiles"]
