"""Gunicorn's settings: its own log lines (``gunicorn.error``: start, workers, errors;
``gunicorn.access``: one line per request) through the project's ``LOGGING``, in the format of
every other process (``LOG_FORMAT``, one JSON object per line with ``json``), on stderr.

    gunicorn pipeline.wsgi:application --config python:pipeline.gunicorn_conf

With ``logconfig_dict`` set, gunicorn writes the access log without ``--access-logfile``;
``--log-level`` still sets the level of ``gunicorn.error``. The web's Django records go the same
way once the worker has loaded the application.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")

from django.conf import settings as _settings

# Gunicorn starts from its own defaults and replaces each top-level key given here.
logconfig_dict = {
    **_settings.LOGGING,
    "loggers": {
        **_settings.LOGGING["loggers"],
        # Without handlers of their own: through the root logger's, like every record.
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": True},
    },
}
