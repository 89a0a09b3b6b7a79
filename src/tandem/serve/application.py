"""What ``tandem serve`` serves: the project's WSGI application, wrapped.

Outermost first: the access log (``tandem.serve.access``), trusted proxy headers
(``tandem.serve.proxies``), static files (``tandem.serve.static``), the ``/-/`` endpoints
(``tandem.monitoring.ops``, in the main interpreter only: they report on its supervisor), then
the application named by ``WSGI_APPLICATION`` with ``Content-Length`` added to its whole responses
(``tandem.serve.lengths``: the connection stays open for the client's next request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tandem.serve.http import HttpOptions

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from tandem.monitoring.health import SupervisorProbe


def build(
    options: HttpOptions, *, ops: bool = True, supervisor_probe: SupervisorProbe | None = None
) -> WSGIApplication:
    from django.core.servers.basehttp import get_internal_wsgi_application

    from tandem.serve.lengths import ContentLength

    app: Any = ContentLength(get_internal_wsgi_application())
    if ops:
        from tandem.monitoring.ops import OpsApp

        app = OpsApp(app, supervisor_probe)
    if options.static:
        from tandem.serve.static import static_files

        app = static_files(app)
    if options.forwarded_allow_ips:
        from tandem.serve.proxies import TrustedProxies

        app = TrustedProxies(app, options.forwarded_allow_ips)
    if options.access_log:
        from tandem.serve.access import AccessLog

        app = AccessLog(app)
    return app  # type: ignore[no-any-return]
