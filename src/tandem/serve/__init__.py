"""The HTTP side of ``tandem serve``: the server, and what it wraps around the project's WSGI app.

- ``http``: waitress, held to a header deadline and an idle keep-alive timeout, stopped through a
  pipe and drained (in-flight requests finish, idle connections close);
- ``application``: the WSGI stack it serves — the access log, trusted proxy headers, static files
  (WhiteNoise), ``/-/`` endpoints, then the project's application (``Content-Length`` added to
  its whole responses);
- ``proxies``, ``access``, ``static``, ``lengths``: one piece of that stack each.

Nothing here imports Django at module level: a web interpreter imports these before it sets Django
up.
"""
