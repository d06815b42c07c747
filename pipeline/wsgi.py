"""WSGI entry point for the web process (admin and health check)."""
import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # The server (gunicorn) reports the failed import with its traceback; this line first says
    # which variable to fix.
    sys.stderr.write(f"pipeline.wsgi: configuration error: {' '.join(str(exc).split())}\n")
    raise
