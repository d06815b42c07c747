"""The optional database scheduler (``PIPELINE_BEAT_SCHEDULER=database``).

django-celery-beat's ``DatabaseScheduler`` writes every ``CELERY_BEAT_SCHEDULE`` entry over its
table at each beat start, which would silently undo what an operator changed in the admin. This
one only *seeds*: an entry missing from the table is created from settings, an entry already there
(edited, disabled or not) is left as it is. It also translates the ``expires`` option (seconds),
which django-celery-beat stores as ``expire_seconds``, so that seeded entries expire too.
"""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


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
