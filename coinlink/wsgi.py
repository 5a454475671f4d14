"""WSGI entry point (the platform is served over ASGI by daphne; this is for tools that want WSGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coinlink.settings")
application = get_wsgi_application()
