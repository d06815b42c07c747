"""``celery -A pipeline ...`` behind the network tripwire: ``python -m tests.reliability.guarded_celery worker ...``.

Prefork pool processes are forked from this one, so they inherit the tripwire.
"""

import os
import sys

from tests.reliability import tripwire


def main() -> None:
    tripwire.install(os.environ.get("RELIABILITY_TRIPWIRE_LOG"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", "-A", "pipeline", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
