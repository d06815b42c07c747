"""Generate a feed corpus for the benchmarks, for users without ``../shared/corpus/real-feeds``.

    python -m bench.generate --out var/bench/corpus --feeds 200 --entries-per-feed 30
    python -m bench.run --corpus var/bench/corpus

Writes ``--feeds`` files, alternating RSS 2.0 (WordPress-shaped: content:encoded, dc:creator,
wfw:commentRss, slash:comments, categories) and Atom (Blogger-shaped: html content, author with
email, xml:base), each with ``--entries-per-feed`` entries whose bodies are realistic HTML:
paragraphs, relative and absolute links, images, code, lists, entities, non-ASCII text, and the
things a sanitizer must remove (script, style, event handlers, javascript: URLs). Deterministic
for a given ``--seed``: the same command writes the same bytes. The defaults give about the real
corpus's shape (200 feeds, ~6,000 entries, ~40 MB).

``big_feed`` writes one feed of a given size (the memory benchmark's 9 MB and 50 MB feeds).
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

WORDS = ["index", "query", "plan", "latency", "throughput", "replica", "shard", "cache", "vacuum", "lock", "deadlock", "transaction", "commit", "rollback", "isolation", "snapshot", "cursor", "batch", "stream", "queue", "worker", "schedule", "lease", "retry", "backoff", "jitter", "partition", "bucket", "merge", "join", "hash", "sort", "scan", "seek", "page", "buffer", "log", "checkpoint", "recovery", "backup", "restore", "schema", "migration", "column", "table", "row", "tuple", "constraint", "trigger", "view", "function", "procedure", "statistics", "histogram", "cardinality", "estimate", "optimizer", "rewrite", "predicate", "filter", "projection", "aggregate", "window", "the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "that", "this", "as", "it", "be", "are", "from", "by", "at", "or", "an", "was", "we", "you", "can", "our", "résumé", "naïve", "café", "Zürich", "façade", "東京", "データベース", "Ελληνικά"]
HOSTS = ("queryplan.example", "blog.dbtips.example", "engineering.example.com", "notes.sre.example", "devjournal.example.org")
NAMES = ("Ada Lovelace", "Grace Hopper", "Edgar Codd", "Barbara Liskov", "Jim Gray", "Michael Stonebraker",
         "Pat Helland", "Margo Seltzer", "Jennifer Widom", "Donald Chamberlin", "Ray Boyce", "Hector Garcia-Molina")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + rng.choice((".", ".", ".", "?", " &amp; more.", " &mdash; really."))


def _paragraph(rng: random.Random, site: str) -> str:
    parts = []
    for _ in range(rng.randint(2, 6)):
        sentence = _sentence(rng, rng.randint(6, 18))
        roll = rng.random()
        if roll < 0.25:
            sentence += f' See <a href="https://{rng.choice(HOSTS)}/{rng.choice(WORDS)}/{rng.randint(1, 9999)}/">this post</a>.'
        elif roll < 0.35:
            sentence += f' More in <a href="/archive/{rng.randint(2001, 2026)}/{rng.randint(1, 12):02d}/" title="archive">the archive</a>.'
        elif roll < 0.42:
            sentence = f"<strong>{sentence}</strong>"
        elif roll < 0.48:
            sentence += f" Use <code>SELECT {rng.choice(WORDS)} FROM t WHERE id &lt; {rng.randint(1, 99)}</code>."
        parts.append(sentence)
    style = ' style="color: red" onclick="track()"' if rng.random() < 0.1 else ""
    return f"<p{style}>{' '.join(parts)}</p>"


def body_html(rng: random.Random, site: str, paragraphs: int) -> str:
    blocks = []
    for _ in range(paragraphs):
        blocks.append(_paragraph(rng, site))
        roll = rng.random()
        if roll < 0.12:
            blocks.append(f'<p><img src="/images/{rng.randint(1, 999)}.png" alt="{rng.choice(WORDS)}" width="640" height="360" '
                          f'onerror="alert(1)"></p>')
        elif roll < 0.2:
            blocks.append("<pre><code>" + escape("\n".join(f"SELECT * FROM t{j} WHERE a < {j} AND b > 'x';" for j in range(rng.randint(2, 8))))
                          + "</code></pre>")
        elif roll < 0.26:
            blocks.append("<ul>" + "".join(f"<li>{_sentence(rng, rng.randint(3, 8))}</li>" for _ in range(rng.randint(2, 5))) + "</ul>")
        elif roll < 0.29:
            blocks.append('<script>document.write("tracking pixel");</script><style>p { color: blue }</style>')
        elif roll < 0.31:
            blocks.append('<p><a href="javascript:alert(1)">click</a> <iframe src="https://ads.example/frame"></iframe></p>')
        elif roll < 0.34:
            blocks.append(f'<blockquote cite="https://{rng.choice(HOSTS)}/q">{_sentence(rng, 12)}</blockquote>')
    return "\n".join(blocks)


def _entries(rng: random.Random, feed_no: int, count: int, site: str, paragraphs: tuple[int, int]):
    start = EPOCH - timedelta(days=feed_no)
    for n in range(count):
        published = start - timedelta(hours=n * rng.randint(3, 40), minutes=rng.randint(0, 59))
        slug = "-".join(rng.choice(WORDS[:60]) for _ in range(4))
        authors = rng.sample(NAMES, k=1 if rng.random() < 0.85 else 2)
        yield {
            "n": n,
            "title": _sentence(rng, rng.randint(4, 10)).rstrip(".?"),
            "link": f"{site}/{published:%Y/%m}/{slug}-{n}/",
            "guid": f"{site}/?p={feed_no * 100_000 + n}",
            "published": published,
            "updated": published + timedelta(hours=rng.randint(0, 48)),
            "authors": authors,
            "categories": rng.sample(WORDS[:60], k=rng.randint(1, 4)),
            "body": body_html(rng, site, rng.randint(*paragraphs)),
            "comments": rng.randint(0, 40),
        }


def rss_feed(rng: random.Random, feed_no: int, count: int, paragraphs=(3, 14)) -> str:
    site = f"https://{HOSTS[feed_no % len(HOSTS)]}/blog{feed_no}"
    items = []
    for e in _entries(rng, feed_no, count, site, paragraphs):
        summary = escape(e["body"][:300])
        authors = "".join(f"<dc:creator><![CDATA[{a}]]></dc:creator>" for a in e["authors"])
        categories = "".join(f"<category><![CDATA[{c}]]></category>" for c in e["categories"])
        items.append(f"""  <item>
    <title>{escape(e['title'])}</title>
    <link>{e['link']}</link>
    <comments>{e['link']}#comments</comments>
    <pubDate>{format_datetime(e['published'])}</pubDate>
    {authors}
    {categories}
    <guid isPermaLink="false">{e['guid']}</guid>
    <description>{summary}</description>
    <content:encoded><![CDATA[{e['body']}]]></content:encoded>
    <wfw:commentRss>{e['link']}feed/</wfw:commentRss>
    <slash:comments>{e['comments']}</slash:comments>
  </item>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:wfw="http://wellformedweb.org/CommentAPI/" xmlns:slash="http://purl.org/rss/1.0/modules/slash/"
  xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
  <title>Query Plan Quarterly #{feed_no}</title>
  <atom:link href="{site}/feed/" rel="self" type="application/rss+xml" />
  <link>{site}/</link>
  <description>Notes on databases, number {feed_no}</description>
  <language>en-US</language>
  <generator>https://wordpress.org/?v=6.4</generator>
{chr(10).join(items)}
</channel>
</rss>
"""


def atom_feed(rng: random.Random, feed_no: int, count: int, paragraphs=(3, 14)) -> str:
    site = f"https://{HOSTS[feed_no % len(HOSTS)]}/blog{feed_no}"
    entries = []
    for e in _entries(rng, feed_no, count, site, paragraphs):
        authors = "".join(
            f"<author><name>{escape(a)}</name><email>{a.split()[0].lower()}@{HOSTS[feed_no % len(HOSTS)]}</email></author>"
            for a in e["authors"])
        categories = "".join(f'<category scheme="{site}/tags" term="{c}"/>' for c in e["categories"])
        entries.append(f"""  <entry>
    <id>tag:{HOSTS[feed_no % len(HOSTS)]},2026:blog-{feed_no}.post-{e['n']}</id>
    <published>{e['published'].isoformat()}</published>
    <updated>{e['updated'].isoformat()}</updated>
    {categories}
    <title type="text">{escape(e['title'])}</title>
    <content type="html">{escape(e['body'])}</content>
    <link rel="replies" type="application/atom+xml" href="{e['link']}feeds/comments/default" title="Post Comments"/>
    <link rel="alternate" type="text/html" href="{e['link']}" title="{escape(e['title'])}"/>
    {authors}
    <thr:total>{e['comments']}</thr:total>
  </entry>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:thr="http://purl.org/syndication/thread/1.0" xml:base="{site}/">
  <id>tag:{HOSTS[feed_no % len(HOSTS)]},2026:blog-{feed_no}</id>
  <updated>{EPOCH.isoformat()}</updated>
  <title type="text">Engineering Notes #{feed_no}</title>
  <subtitle type="html">Databases &amp; &lt;b&gt;pipelines&lt;/b&gt;</subtitle>
  <link rel="alternate" type="text/html" href="{site}/"/>
  <link rel="self" type="application/atom+xml" href="{site}/feeds/posts/default"/>
  <generator version="7.00" uri="https://www.blogger.com">Blogger</generator>
{chr(10).join(entries)}
</feed>
"""


def corpus_write(out: Path, *, feeds: int, entries_per_feed: int, seed: int = 1) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for feed_no in range(feeds):
        rng = random.Random(seed * 1_000_003 + feed_no)
        make = rss_feed if feed_no % 2 == 0 else atom_feed
        text = make(rng, feed_no, entries_per_feed)
        path = out / f"feed-{feed_no:04d}.{'rss' if feed_no % 2 == 0 else 'atom'}.xml"
        path.write_text(text, encoding="utf-8")
        total += path.stat().st_size
    return {"out": str(out), "feeds": feeds, "entries": feeds * entries_per_feed, "bytes": total}


def big_feed(path: Path, size: int, *, seed: int = 7) -> dict:
    """One RSS feed of about ``size`` bytes (entries of ~3 KB) written in a stream, never whole in memory."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = entries = 0
    with path.open("w", encoding="utf-8") as handle:
        head, _, tail = rss_feed(rng, 0, 0).partition("\n</channel>")
        handle.write(head)
        written += len(head.encode())
        while written < size - 4096 or not entries:
            item = rss_feed(rng, entries, 1, paragraphs=(2, 6))
            item = item[item.index("  <item>"):item.index("</channel>")]
            handle.write(item)
            written += len(item.encode())
            entries += 1
        handle.write("\n</channel>" + tail)
    return {"path": str(path), "bytes": path.stat().st_size, "entries": entries}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the feed files into (created)")
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries-per-feed", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = corpus_write(args.out, feeds=args.feeds, entries_per_feed=args.entries_per_feed, seed=args.seed)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
