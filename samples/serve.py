"""Serve the bundled sample feeds on 127.0.0.1, the way a feed publisher would.

    python -m samples.serve --port 8765            serve until killed
    python -m samples.serve --port 8765 --wait     return once the server answers
    python -m samples.serve --port 8765 --opml     print an OPML list of the sample feeds

Every file under samples/feeds is served with an ETag and Last-Modified, and conditional requests
get 304 (``samples.feedserver``, the same server the tests use), so a second ingest run finds
nothing modified. The placeholder origin ``http://feeds.sample.invalid`` inside the files
(comment-feed links) is replaced with this server's own address.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import urllib.request
from pathlib import Path
from xml.sax.saxutils import quoteattr

from samples.feedserver import FeedServer

FEEDS = Path(__file__).resolve().parent / "feeds"
PLACEHOLDER = b"http://feeds.sample.invalid"


def top_level_feeds() -> list[Path]:
    return sorted(FEEDS.glob("*.xml"))


def sample_server(port: int = 0) -> FeedServer:
    """A started server with every sample feed on it, the placeholder origin replaced by its own."""
    server = FeedServer(port=port).start()
    server.add_folder(FEEDS, replace={PLACEHOLDER: server.base_url.encode()}, charset="utf-8")
    return server


def feed_title(path: Path) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", path.read_bytes(), re.DOTALL)
    return html.unescape(match.group(1).decode("utf-8").replace("<![CDATA[", "").replace("]]>", "").strip()) if match else path.stem


def opml(base_url: str) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<opml version="2.0">', "<head><title>Sample feeds</title></head>", "<body>"]
    for path in top_level_feeds():
        title = quoteattr(feed_title(path))
        lines.append(f'  <outline type="rss" text={title} title={title} xmlUrl={quoteattr(f"{base_url}/{path.name}")}/>')
    lines += ["</body>", "</opml>"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--wait", action="store_true", help="wait (up to 10 s) until the server answers, then exit")
    parser.add_argument("--opml", action="store_true", help="print the OPML list of the sample feeds and exit")
    args = parser.parse_args()
    base_url = f"http://127.0.0.1:{args.port}"
    if args.opml:
        print(opml(base_url))
        return 0
    if args.wait:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base_url}/{top_level_feeds()[0].name}", timeout=1).close()
                return 0
            except OSError:
                time.sleep(0.1)
        print(f"The sample server did not answer on {base_url}.", file=sys.stderr)
        return 1
    try:
        server = sample_server(args.port)
    except OSError as exc:
        print(f"Cannot serve the samples on {base_url}: {exc.strerror}. Set SAMPLES_PORT to a free port.", file=sys.stderr)
        return 1
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
