"""The Celery app: configuration from Django settings (``CELERY_*``), tasks from ``<app>/tasks.py``.

Start a worker with ``celery -A pipeline worker`` and the one beat with ``celery -A pipeline beat``
(docs/celery.md). The tasks only trigger and distribute the services; no domain code here.

Logging: worker and beat log through the project's ``LOGGING`` (``LOG_FORMAT``, ``LOG_LEVEL``), like
the commands and the web, instead of Celery's own setup; with ``LOG_FORMAT=json`` their start-up
banners (plain text on stdout) are left out, so that every line they write is one JSON object.
"""

import logging
import os
import sys

from celery import Celery, signals
from kombu.utils.objects import cached_property

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")

log = logging.getLogger("pipeline.celery")


def _json_logs() -> bool:
    from django.conf import settings

    return settings.LOG_FORMAT == "json"


class PipelineCelery(Celery):
    @cached_property
    def Beat(self):  # Celery's name
        """``celery beat``, without its banner when the logs are JSON (``beat: Starting...`` is logged)."""
        from celery.apps.beat import Beat

        class QuietBeat(Beat):
            def __init__(self, *args, quiet: bool = False, **kwargs):
                super().__init__(*args, quiet=quiet or _json_logs(), **kwargs)

        return self.subclass_with_self(QuietBeat)


app = PipelineCelery("pipeline")


def _project_logging(**kwargs):
    """Django's ``LOGGING`` for worker and beat, as ``django.setup()`` applies it.

    Connected to ``setup_logging``, it stops Celery from setting logging up itself, so Celery's
    ``--loglevel`` and ``--logfile`` do nothing (``LOG_LEVEL`` does); to ``celeryd_init`` as well,
    so that the warnings a worker gives before that (running as root, ...) are records too. A
    worker with ``worker_hijack_root_logger`` off (the tests' in-process worker) keeps the logging
    its process has.
    """
    if not app.conf.worker_hijack_root_logger:
        return
    from celery.apps import worker
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    worker.safe_say = _say_as_a_record


signals.setup_logging.connect(_project_logging, weak=False)
signals.celeryd_init.connect(_project_logging, weak=False)


def _say_as_a_record(msg: str, f=sys.__stderr__) -> None:
    """Celery's few writes straight to the terminal (the shutdown notices of its signal handlers),
    formatted like a record of ``celery.apps.worker``; written as Celery writes them, with one
    ``os.write`` and no logging lock, as befits a signal handler."""
    handlers = logging.getLogger().handlers
    if handlers and handlers[0].formatter:
        msg = handlers[0].formatter.format(logging.LogRecord("celery.apps.worker", logging.INFO, __file__, 0,
                                                             msg.strip(), None, None))
    try:
        os.write(f.fileno(), f"{msg}\n".encode())
    except (OSError, ValueError):
        pass  # a notice lost must not stop the shutdown


@signals.celeryd_after_setup.connect
def _banner_as_a_record(sender, instance, **kwargs):
    """With JSON logs, the worker's banner becomes one record: the same facts, in the format."""
    if not _json_logs():
        return
    instance.quiet = True
    pool = instance.pool_cls if isinstance(instance.pool_cls, str) else instance.pool_cls.__module__
    log.info("celery worker starting", extra={
        "hostname": instance.hostname, "concurrency": instance.concurrency, "pool": pool.rsplit(".", 1)[-1],
        "broker": instance.app.connection().as_uri(), "queues": sorted(instance.app.amqp.queues)})


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
