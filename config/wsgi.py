"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from core import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the application loads its middleware: Django's instrumentation adds its own. Each gunicorn
# worker loads this module after its fork (no `preload_app`), so each sets up its own.
tracing.setup("web")

application = get_wsgi_application()
