#!/usr/bin/env python
"""Django's command-line utility for the pipeline.

A configuration error (a bad environment variable, which the settings raise as ImproperlyConfigured)
ends every command with one sentence naming the variable and exit status 2, before anything runs:
the settings are loaded here, ahead of Django's command machinery, which loads them lazily and would
let the error escape as a traceback, sometimes only at the first database access.
"""
import os
import sys

EXIT_CONFIGURATION = 2  # the README's exit statuses: 2 is for what the caller must fix


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018  (imports the settings module: every variable is parsed now)
    except ImproperlyConfigured as exc:
        _configuration_error(exc, argv)
    except ModuleNotFoundError as exc:
        module = os.environ["DJANGO_SETTINGS_MODULE"]
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        _configuration_error(f"DJANGO_SETTINGS_MODULE is {module!r}, which cannot be imported ({exc}).", argv)
    try:
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:  # raised later, e.g. by a database backend that cannot load
        if "--traceback" in argv:
            raise
        _configuration_error(exc, argv)


def _configuration_error(error: object, argv: list[str]) -> None:
    program = os.path.basename(argv[0]) if argv else "manage.py"
    sentence = " ".join(str(error).split())  # one line, even from a message that wraps
    sys.stderr.write(f"{program}: configuration error: {sentence}\n")
    sys.exit(EXIT_CONFIGURATION)


if __name__ == "__main__":
    main()
