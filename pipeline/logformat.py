"""Log formatters: key=value text for people, one JSON object per line for log collectors.

Fields passed with ``logger.info("...", extra={...})`` are kept as structured fields in both.
``CeleryTaskFilter`` adds ``task_id`` and ``task_name`` to the records logged while a Celery task
runs. settings.LOGGING puts all three on the one handler every process logs through, and
``configure`` (settings.LOGGING_CONFIG) applies it.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import datetime, timezone

from celery import current_task

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def configure(config: dict) -> None:
    """``logging.config.dictConfig``, and Python's warnings logged as records of ``py.warnings``
    (Django no longer does that), so that a warning is a line of the format too."""
    logging.captureWarnings(True)
    logging.config.dictConfig(config)


class CeleryTaskFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` to a record logged inside a Celery task (in the pool
    process or thread that runs it; Celery's own "Task ... succeeded" line included), and the
    ``run_id`` and ``source_id`` the task was given (``ingest_source``) when the record has none.
    Outside a task it changes nothing. Never filters a record out."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = current_task._get_current_object()  # this thread's running task, or None
        if task is not None and task.request.id and not hasattr(record, "task_id"):
            record.task_id = task.request.id
            record.task_name = task.name
            kwargs = task.request.kwargs if isinstance(task.request.kwargs, dict) else {}
            for key in ("run_id", "source_id"):
                if kwargs.get(key) is not None and not hasattr(record, key):
                    setattr(record, key, kwargs[key])
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        fields = _fields(record)
        if record.name.startswith("celery"):
            fields.pop("data", None)  # Celery's copy of what its message says (the JSON keeps it, structured)
        extra = " ".join(f"{key}={value!r}" if isinstance(value, str) and " " in value else f"{key}={value}"
                         for key, value in fields.items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
