import pytest

from tests.httpserver import FeedServer


@pytest.fixture
def feed_server():
    """A real HTTP server on 127.0.0.1 (random port) serving scripted responses."""
    with FeedServer() as server:
        yield server
