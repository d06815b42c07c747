"""The Celery app: configuration from Django settings (``CELERY_*``), tasks from ``<app>/tasks.py``.

Start a worker with ``celery -A pipeline worker`` and the one beat with ``celery -A pipeline beat``
(docs/celery.md). The tasks only trigger and distribute the services; no domain code here.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")

app = Celery("pipeline")
# Every CELERY_* name in settings configures Celery (CELERY_TASK_ACKS_LATE -> task_acks_late).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
