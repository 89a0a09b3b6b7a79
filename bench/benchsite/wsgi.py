"""WSGI entry point of the benchmark site (``gunicorn benchsite.wsgi`` in ``bench/serve.py``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
application = get_wsgi_application()
