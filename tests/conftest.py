import pytest

from samples.feedserver import FeedServer
from tests.workers import broker  # noqa: F401  (fixture: the Celery app on this run's own Redis keys)


@pytest.fixture
def feed_server():
    """A real HTTP server on 127.0.0.1 (random port) serving scripted responses."""
    with FeedServer() as server:
        yield server


# Modules that never touch the database run once, in the SQLite pass (see scripts/test).
_NODB_MODULES = {"test_fetch", "test_parse", "test_opml", "test_mssql_driver", "test_feedserver", "test_layout"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in _NODB_MODULES:
            item.add_marker(pytest.mark.nodb)
