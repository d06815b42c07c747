"""The containment boundary's verdicts: what an exception raised while handling one source or
comment feed means.

Everything that happens to one item runs inside the boundary (``fetch_parse`` and ``store``). A
foreseen failure is a ``SourceError`` with a sentence; anything else becomes that item's
``InternalError``. Only a failing database (its retries spent) gets through, and stops the run.
"""

from __future__ import annotations

import logging

from django.db import Error, IntegrityError, connection

from ingest.errors import InternalError, SourceError, StoreError, first_line
from ingest.retry import constraint_named, is_transient

log = logging.getLogger("ingest.services")


def internal(exc: Exception, *, what: str, **ids) -> InternalError:
    """An unexpected exception: this item's failure, loudly.

    Reader re-raises such errors to keep bugs visible; a worker that runs unattended must not let
    one publisher stop every run, so the traceback goes to the log at ERROR and the failure is
    counted apart (``internal_errors``) in the report, the run ledger and ``pipeline_status``.
    """
    log.error(f"internal error while handling {what}", exc_info=exc, extra={**ids, "error": first_line(exc)})
    return InternalError.wrap(exc)


def write_failure(exc: Exception, *, what: str, **ids) -> SourceError:
    """What a write that raised means for the one item it was writing.

    A database that is failing (a transient error whose retries are spent) is not this item's
    fault: it re-raises and the run stops. A unique key that collided again after the retry, or a
    value the database refuses, is about this item's data: a ``StoreError``. Anything else is an
    internal error of this item.
    """
    if isinstance(exc, IntegrityError):
        name = constraint_named(exc)
        return StoreError(
            f"The database refused this feed's entries: two of its keys collide in a unique constraint"
            f"{f' ({name})' if name else ''}, which a database with a case- or accent-insensitive collation "
            f"reports for keys that differ only in case or accents: {first_line(exc)[:300]}"
        )
    if isinstance(exc, Error):
        if is_transient(exc, connection.vendor):
            raise exc  # the database itself is failing (its retries are spent): the run cannot go on
        # MariaDB: a value over max_allowed_packet; a value invalid for its column.
        return StoreError(f"The database refused this feed's entries: {first_line(exc)}")
    return internal(exc, what=what, **ids)
