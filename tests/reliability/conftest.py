"""Fixtures of the reliability suite, and the split between its fast and slow parts.

The fast part runs with the normal tests (``scripts/test``, every backend pass). The slow part
(``@pytest.mark.slow``: the corpus, the load test, Celery outages, 100,000-entry feeds) runs only
through ``scripts/reliability``, which sets ``RELIABILITY_SLOW=1`` and points the suite at
PostgreSQL; elsewhere those tests are reported as skipped with the command that runs them.
"""

from __future__ import annotations

import os

import pytest

SLOW_ENABLED = os.environ.get("RELIABILITY_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    if SLOW_ENABLED:
        return
    skip = pytest.mark.skip(reason="slow reliability scenario: run by scripts/reliability (see docs/reliability.md)")
    for item in items:
        if "slow" in item.keywords and "/reliability/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(skip)

