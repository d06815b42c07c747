"""Exit 0 when the database or Redis URL given as the only argument accepts a TCP connection."""

import socket
import sys
from urllib.parse import urlsplit

DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379}

parts = urlsplit(sys.argv[1])
try:
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS.get(parts.scheme, 0)), timeout=2):
        pass
except OSError:
    sys.exit(1)
