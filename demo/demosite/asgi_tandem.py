"""ASGI entry point that also runs tandem's workers inside the server process.

``uvicorn demosite.asgi_tandem:application`` (or hypercorn, or ``granian --interface asgi``): the
lifespan wrapper starts a supervisor in each server worker process on ``lifespan.startup`` and
drains it on ``lifespan.shutdown``. Django's own ASGI handler does not take part in lifespan; the
wrapper answers the server itself.
"""

import os

from django.core.asgi import get_asgi_application

import tandem.embedded

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demosite.settings")

application = tandem.embedded.lifespan(get_asgi_application())
