from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.core.management.base import CommandParser

from ingest import cli
from ingest.services.sources import opml_export


class Command(cli.PipelineCommand):
    help = (
        "Write the registered sources as an OPML 2.0 document (the format feed readers import): one "
        "outline per active source, its name, feed URL and site URL. To standard output, or to a file "
        "replaced in one step (a reader of the file never sees half of it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=None, help="Write the document to this file instead of standard output.")
        parser.add_argument("--all", action="store_true", help="Include the inactive sources too.")
        parser.add_argument("--json", action="store_true",
                            help="With --output: print what was written as one JSON object.")

    def handle(self, *args, **options) -> None:
        output = options["output"]
        if options["json"] and not output:
            raise cli.usage_error("--json needs --output: without it the OPML document itself is the output.")
        document, sources = opml_export(include_inactive=options["all"])
        if not output:
            self.stdout.write(document.decode("utf-8"), ending="")
            return
        path = Path(output)
        try:
            _write_atomically(path, document)
        except OSError as exc:
            raise cli.usage_error(f"Cannot write {path}: {exc.strerror or exc}.") from exc
        if options["json"]:
            cli.print_json(self.stdout, {"output": str(path), "sources": sources, "bytes": len(document)})
        elif options["verbosity"] >= 1:
            cli.say(self.stdout, f"Wrote {sources} source{'s' if sources != 1 else ''} to {path}.", "success",
                    options=options)


def _write_atomically(path: Path, content: bytes) -> None:
    """A temporary file beside ``path``, flushed to disk, then renamed over it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as an ordinary new file would be, not mkstemp's 0600
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
