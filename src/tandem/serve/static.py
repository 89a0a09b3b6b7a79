"""Static files: ``STATIC_URL`` served by WhiteNoise, configured as its Django middleware would be.

- After ``collectstatic``, every file under ``STATIC_ROOT``: compressed variants (``.gz``, ``.br``)
  are sent to clients that accept them, and files whose names carry a content hash (Django's
  ``ManifestStaticFilesStorage`` or WhiteNoise's ``CompressedManifestStaticFilesStorage``) are
  cached "forever" (``Cache-Control: max-age=315360000, public, immutable``); others for
  ``WHITENOISE_MAX_AGE`` (60 s).
- With ``DEBUG`` on, files are also looked up through the static files finders on each request,
  like ``runserver`` does — no ``collectstatic`` needed while developing.

Every ``WHITENOISE_*`` setting applies. Media files (``MEDIA_URL``) are not served: user uploads
are the site's business. A project that already has ``WhiteNoiseMiddleware`` in ``MIDDLEWARE``
keeps it, and this layer stays out of the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

MIDDLEWARE = "whitenoise.middleware.WhiteNoiseMiddleware"


def plan() -> tuple[bool, str]:
    """Whether to serve static files, and a line saying what is served from where."""
    from django.apps import apps
    from django.conf import settings

    if MIDDLEWARE in settings.MIDDLEWARE:
        return False, f"served by the project's {MIDDLEWARE}"
    url = settings.STATIC_URL or ""
    if not url or urlparse(url).netloc:
        return False, f"not served (STATIC_URL is {url!r})"
    finders = getattr(settings, "WHITENOISE_USE_FINDERS", settings.DEBUG) and apps.is_installed(
        "django.contrib.staticfiles"
    )
    root = settings.STATIC_ROOT
    sources = []
    if root:
        sources.append(f"STATIC_ROOT ({root})")
    if finders:
        sources.append("the finders (DEBUG)")
    if not sources:
        return False, "not served (no STATIC_ROOT, and DEBUG is off: run collectstatic)"
    return True, f"{urlparse(url).path} from {' and '.join(sources)}"


def static_files(app: WSGIApplication) -> Any:
    """``app`` with static files in front of it, when there is anything to serve."""
    serving, _ = plan()
    if not serving:
        return app
    from tandem.serve.static_files import StaticFiles  # WhiteNoise: only where it serves

    return StaticFiles(app)
