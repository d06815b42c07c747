"""``manage.py`` behind the network tripwire: ``python -m tests.reliability.guarded_manage ingest_feeds ...``.

The tripwire records to ``$RELIABILITY_TRIPWIRE_LOG`` (see ``tripwire``). Everything else is the
real command line, exit status and output included.
"""

import os
import sys

from tests.reliability import tripwire


def main() -> None:
    tripwire.install(os.environ.get("RELIABILITY_TRIPWIRE_LOG"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
