"""The Celery app: configuration from Django settings (``CELERY_*``), tasks from ``<app>/tasks.py``.

Start a worker with ``celery -A pipeline worker`` and the one beat with ``celery -A pipeline beat``
(docs/celery.md). The tasks only trigger and distribute the services; no domain code here.
"""

import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")

app = Celery("pipeline")


@app.on_configure.connect
def _settings_or_exit(sender, **kwargs):
    # Celery reads the settings lazily, deep inside its command line; a configuration error would
    # surface there as a traceback. Load them first and stop with the sentence, like manage.py.
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"celery: configuration error: {' '.join(str(exc).split())}\n")
        # SystemExit, because Celery logs and swallows an Exception raised by a signal receiver.
        raise SystemExit(2) from None


# Every CELERY_* name in settings configures Celery (CELERY_TASK_ACKS_LATE -> task_acks_late).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
