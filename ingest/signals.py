"""The project's Django signals, for in-house consumers in the same process.

``entry_ingested`` is sent after the transaction that changed entries committed (never for a
rolled-back write), with ``entry_ids`` (a list of ints), ``kind`` (``created``, ``updated`` or
``pruned``) and ``source_id``; ``sender`` is the ``Entry`` model. A receiver that raises does not
undo the write: the change is committed and its ``Event`` rows are in the outbox already.
"""

from django.dispatch import Signal

entry_ingested = Signal()
