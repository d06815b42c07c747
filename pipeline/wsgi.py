"""WSGI entry point for the web process (admin and health check)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")
application = get_wsgi_application()
