"""``manage.py`` behind the network tripwire: ``python -m tests.reliability.guarded_manage ingest_feeds ...``.

The tripwire records to ``$RELIABILITY_TRIPWIRE_LOG`` (see ``tripwire``); ``RELIABILITY_FAULT_*``
inject one stage's failure for chosen sources (see ``faults``). Everything else is the real command
line, exit status and output included.
"""

import os
import sys

from tests.reliability import tripwire


def main() -> None:
    tripwire.install(os.environ.get("RELIABILITY_TRIPWIRE_LOG"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    import manage  # the repository's manage.py (the working directory is the repository)

    if any(name.startswith("RELIABILITY_FAULT_") for name in os.environ):
        django.setup()
        from tests.reliability import faults

        faults.install()
    manage.main(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
