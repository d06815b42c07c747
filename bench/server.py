"""The benchmarks' corpus server: ``samples.feedserver.FeedServer`` serving the feed files of a folder.

    with CorpusServer(folder) as server:
        urls = server.urls()              # one URL per feed file, sorted by name
        server.mode = "ignore"            # from now on conditional headers are ignored (always 200)
        server.add_stream("/big", path)   # a file sent chunked, without Content-Length
        server.sent("/big")               # body bytes written before the client hung up

Modes: ``conditional`` answers 304 to a matching conditional request (the one rule of
``samples.feedserver``); ``ignore`` sends the same validators but always answers 200 with the body
(so a client must notice that nothing changed by itself, e.g. by content hash). This module only
says which files a corpus is made of; serving is the feed server's. Bodies are read into memory
once, so serving costs little CPU beside the client being measured, which runs in a child process.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from samples.feedserver import FeedServer, content_type, etag_for

SKIP_SUFFIXES = (".md", ".txt", ".tsv", ".json", ".opml")


def feed_files(folder: str | Path) -> list[Path]:
    """The feed files of a corpus folder: every regular file except notes, lists and hidden files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"The corpus folder {folder} does not exist; generate one with `python -m bench.generate --out DIR`.")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SKIP_SUFFIXES))


class CorpusServer(FeedServer):
    def __init__(self, folder: str | Path | None = None, *, mode: str = "conditional") -> None:
        super().__init__()
        self.mode = mode
        self._bodies: dict[str, tuple[bytes, str, str]] = {}  # route -> (body, etag, content type); read by bench.ingest
        for path in feed_files(folder) if folder is not None else []:
            self.add(f"/{quote(path.name)}", path.read_bytes())

    @property
    def mode(self) -> str:
        return "conditional" if self.conditional else "ignore"

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in ("conditional", "ignore"):
            raise ValueError(f"unknown mode {mode!r}")
        self.conditional = mode == "conditional"

    def add(self, route: str, body: bytes, **reply) -> None:
        """Serve ``body`` as a publisher would (media type, ETag), or with the ``Reply`` keywords given."""
        if reply:
            super().add(route, body, **reply)
            return
        etag, media_type = etag_for(body), content_type(body)
        super().add(route, body, etag=etag, content_type=media_type)
        self._bodies[route] = (body, etag, media_type)

    def add_stream(self, route: str, path: Path) -> None:
        """Serve ``path`` chunked (no Content-Length), so a client can only stop it by hanging up."""
        super().add(route, file=path, chunked=True)

    def urls(self) -> list[str]:
        return [self.url(route) for route in sorted(self._bodies)]
