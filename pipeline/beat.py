"""Beat's schedulers: the default file scheduler and the optional database one.

``PersistentScheduler`` (``PIPELINE_BEAT_SCHEDULER=settings``, the default) is Celery's own, which
first creates the folder of its state file (``CELERY_BEAT_SCHEDULE_FILENAME``, or ``--schedule``):
settings write nothing at import, so that a read-only install can import them, and the folder is
made only by the one process that writes there, when it starts.

``SeedingDatabaseScheduler`` (``PIPELINE_BEAT_SCHEDULER=database``):
django-celery-beat's ``DatabaseScheduler`` writes every ``CELERY_BEAT_SCHEDULE`` entry over its
table at each beat start, which would silently undo what an operator changed in the admin. This
one only *seeds*: an entry missing from the table is created from settings, an entry already there
(edited, disabled or not) is left as it is. It also translates the ``expires`` option (seconds),
which django-celery-beat stores as ``expire_seconds``, so that seeded entries expire too.
"""

from __future__ import annotations

from pathlib import Path

from celery import beat
from django.core.exceptions import ImproperlyConfigured
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


class PersistentScheduler(beat.PersistentScheduler):
    def setup_schedule(self):
        folder = Path(self.schedule_filename).parent
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImproperlyConfigured(
                    f"celery beat cannot create {folder} for its schedule file ({exc.strerror}); set "
                    "CELERY_BEAT_SCHEDULE_FILENAME (or --schedule) to a writable path, as a read-only install must."
                ) from exc
        super().setup_schedule()


def _for_table(entry: dict) -> dict:
    options = dict(entry.get("options") or {})
    expires = options.pop("expires", None)
    if isinstance(expires, (int, float)) and "expire_seconds" not in options:
        options["expire_seconds"] = int(expires)
    return {**entry, "options": options}


class SeedingDatabaseScheduler(DatabaseScheduler):
    def update_from_dict(self, mapping):
        existing = set(PeriodicTask.objects.filter(name__in=list(mapping)).values_list("name", flat=True))
        missing = {name: _for_table(entry) for name, entry in mapping.items() if name not in existing}
        if missing:
            super().update_from_dict(missing)
