"""Identity key columns (``ingest.identity``) in place of the unique keys on text.

Adds ``feed_url_key``, ``Author.identity_key``, ``Entry.guid_key``, ``Comment.guid_key`` and
``Pingback.source_key`` as nullable columns and drops the old unique keys on text; the data step
computes the keys in batches (``BATCH`` rows read by primary key, ``bulk_update`` of
``UPDATE_BATCH`` rows: 3 parameters a row, 1,500 a statement, under SQL Server's 2,100) and
resolves the rows the new keys make equal; then the key columns become NOT NULL and get their
unique constraints, and ``feed_url`` loses its own. What the data step resolves:

* sources whose feed URLs normalize to the same URL (``https://X/feed/`` and ``https://x/feed``):
  the lowest id is kept, the others' entries move to it, the others are deleted;
* entries with the same source and guid key (after that move, or guids that differed only in NFC
  form or surrounding white space): the lowest id is kept; the others are deleted with their
  author links, outbound links, comments, comment-feed state and the pingbacks to them, and the
  pingbacks they sent now come from the entry kept;
* comments with the same entry and guid key, pingbacks with the same target and source key: the
  lowest id is kept, the others deleted, and the counters of the entries concerned recounted;
* authors with the same identity key (names that differed only in NFC form or surrounding white
  space, emails only in case): the lowest id is kept and every entry of the others is linked to it
  instead (once), the others are deleted.

Every UPDATE and DELETE names its rows by primary key, at most ``UPDATE_BATCH`` of them, as the
T-SQL contract asks (tests/mssql/capture.py runs this step through mssql-django on such rows).
Only rows the new semantics call equal are merged; which rows those are depends on what the old
keys let in: on SQLite and PostgreSQL the variants above, on SQL Server and MariaDB (whose
collations already refused case, trailing-space and, on MariaDB, accent variants) fewer.

The keys are computed by the current ``ingest.identity``, on purpose: they must equal what the
code computes when it next writes. Reversing drops the key columns and restores the old keys on
text, which fails on SQL Server or MariaDB once rows differing only in case (or accents) exist;
deleted duplicates do not return.
"""

from django.db import migrations, models
from django.db.models import Count, Min

from ingest import identity

BATCH = 2000
UPDATE_BATCH = 500

KEYS = (
    # model, key column, text columns, function
    ("TechnicalArticle", "feed_url_key", ("feed_url",), identity.feed_url_key),
    ("Author", "identity_key", ("name", "email"), identity.author_key),
    ("Entry", "guid_key", ("guid",), identity.guid_key),
    ("Comment", "guid_key", ("guid",), identity.guid_key),
    ("Pingback", "source_key", ("source_url",), identity.url_key),
)


def _chunks(items, size=UPDATE_BATCH):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _fill(model, key, sources, compute, using):
    rows = model._base_manager.using(using)
    last = None
    while True:
        page = rows.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        values = list(page.values_list("pk", *sources)[:BATCH])
        if not values:
            return
        objs = [model(pk=pk, **{key: compute(*texts)}) for pk, *texts in values]
        rows.bulk_update(objs, [key], batch_size=UPDATE_BATCH)
        last = values[-1][0]


def _duplicates(model, scope, using):
    """(kept id, [other ids]) for every group of rows with equal ``scope`` values."""
    rows = model._base_manager.using(using)
    groups = list(
        rows.order_by().values(*scope).annotate(n=Count("pk"), keep=Min("pk")).filter(n__gt=1).values_list("keep", *scope)
    )
    for keep, *values in groups:
        others = rows.filter(**dict(zip(scope, values))).exclude(pk=keep).order_by("pk").values_list("pk", flat=True)
        yield keep, list(others)


def _ids(model, field, values, using):
    """(id, ``field``) of the rows whose ``field`` is one of ``values``."""
    rows = model._base_manager.using(using)
    found = []
    for chunk in _chunks(sorted(set(values))):
        found += rows.filter(**{f"{field}__in": chunk}).order_by("pk").values_list("pk", field)
    return found


def _update(model, ids, using, **values):
    for chunk in _chunks(sorted(ids)):
        model._base_manager.using(using).filter(pk__in=chunk).update(**values)


def _delete(model, ids, connection):
    """DELETE by primary key, in chunks. Not through Django's collector, which would also delete by
    foreign key, unbounded (SQL Server's lock escalation): what refers to these rows is dealt with
    before, row by row."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(ids)):
            cursor.execute(
                f"DELETE FROM {quote(model._meta.db_table)} WHERE {quote(model._meta.pk.column)} IN "
                f"({', '.join(['%s'] * len(chunk))})",
                chunk,
            )


def identity_keys_fill(apps, schema_editor):
    connection = schema_editor.connection
    using = connection.alias
    model = {name: apps.get_model("ingest", name) for name in
             ("TechnicalArticle", "Author", "Entry", "Comment", "Pingback", "EntryLink", "CommentFeed")}
    for name, key, sources, compute in KEYS:
        _fill(model[name], key, sources, compute, using)
    Entry, Comment, Pingback = model["Entry"], model["Comment"], model["Pingback"]
    links = Entry._meta.get_field("authors").remote_field.through

    # Sources: the entries of the others move to the one kept.
    for keep, others in _duplicates(model["TechnicalArticle"], ("feed_url_key",), using):
        _update(Entry, [pk for pk, _ in _ids(Entry, "technical_article_id", others, using)], using,
                technical_article_id=keep)
        _delete(model["TechnicalArticle"], others, connection)

    # Entries: the others go, with what hangs off them; pingbacks they sent now come from the one kept.
    kept_for = {other: keep for keep, others in _duplicates(Entry, ("technical_article_id", "guid_key"), using)
                for other in others}
    if kept_for:
        for dependent, field in ((links, "entry_id"), (model["EntryLink"], "entry_id"), (Comment, "entry_id"),
                                 (model["CommentFeed"], "entry_id"), (Pingback, "target_id")):
            _delete(dependent, [pk for pk, _ in _ids(dependent, field, kept_for, using)], connection)
        sent: dict[int, list[int]] = {}
        for pk, source_entry in _ids(Pingback, "source_entry_id", kept_for, using):
            sent.setdefault(kept_for[source_entry], []).append(pk)
        for keep, pingbacks in sent.items():
            _update(Pingback, pingbacks, using, source_entry_id=keep)
        _delete(Entry, kept_for, connection)

    # Comments and pingbacks: the others go; their entries' counters are recounted.
    for related, field, key, counter in ((Comment, "entry_id", "guid_key", "number_of_comments"),
                                         (Pingback, "target_id", "source_key", "number_of_pingbacks")):
        recount = set()
        for keep, others in _duplicates(related, (field, key), using):
            _delete(related, others, connection)
            recount.add(related._base_manager.using(using).filter(pk=keep).values_list(field, flat=True).get())
        for entry_id in sorted(recount):
            count = related._base_manager.using(using).filter(**{field: entry_id}).count()
            _update(Entry, [entry_id], using, **{counter: count})

    # Authors: the entries of the others are linked to the one kept (once), the others go.
    for keep, others in _duplicates(model["Author"], ("identity_key",), using):
        rows = links._base_manager.using(using)
        linked = set(rows.filter(author_id=keep).values_list("entry_id", flat=True))
        stale, repoint = [], []
        for pk, entry_id in rows.filter(author_id__in=others).order_by("pk").values_list("pk", "entry_id"):
            (stale if entry_id in linked else repoint).append(pk)
            linked.add(entry_id)
        _delete(links, stale, connection)
        _update(links, repoint, using, author_id=keep)
        _delete(model["Author"], others, connection)

    if connection.vendor == "postgresql":
        # The deletes above leave deferred foreign-key checks pending until COMMIT, and PostgreSQL
        # refuses ALTER TABLE on a table with pending trigger events: run the checks now.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _key(help_text, verbose_name, *, null=False):
    return models.CharField(editable=False, help_text=help_text, max_length=64, null=null, verbose_name=verbose_name)


# (model, key column, help text, verbose name) of each key column.
KEY_FIELDS = (
    ("technicalarticle", "feed_url_key", "sha256 of the normalized feed URL: the source's identity.", "feed URL"),
    ("author", "identity_key", "sha256 of the NFC name and the case-folded email: the author's identity.", "author"),
    ("entry", "guid_key", "sha256 of the NFC, trimmed guid: the entry's identity within its feed.", "guid"),
    ("comment", "guid_key", "sha256 of the NFC, trimmed guid: the comment's identity within its entry.", "guid"),
    ("pingback", "source_key", "sha256 of the normalized source URL: with the target, the pingback's identity.",
     "source URL"),
)


class Migration(migrations.Migration):

    dependencies = [
        ("ingest", "0002_run_owner_internal_errors"),
    ]

    operations = [
        *(migrations.AddField(model_name=model, name=name, field=_key(help_text, verbose_name, null=True))
          for model, name, help_text, verbose_name in KEY_FIELDS),
        # Before the data step: moving a source's entries to its duplicate must not meet the old
        # (technical_article, guid) key, which on SQL Server and MariaDB calls "POST" and "post" one.
        migrations.RemoveConstraint(model_name="author", name="author_name_email_uniq"),
        migrations.RemoveConstraint(model_name="entry", name="entry_article_guid_uniq"),
        migrations.RemoveConstraint(model_name="comment", name="comment_entry_guid_uniq"),
        migrations.RemoveConstraint(model_name="pingback", name="pingback_source_target_uniq"),
        migrations.RunPython(identity_keys_fill, migrations.RunPython.noop, elidable=False),
        *(migrations.AlterField(model_name=model, name=name, field=_key(help_text, verbose_name))
          for model, name, help_text, verbose_name in KEY_FIELDS),
        # Each new unique index is at most 8 + 64 * 2 = 136 bytes on SQL Server (bigint and
        # nvarchar(64)), far under its 1,700-byte limit, and holds hex digits only.
        migrations.AddConstraint(
            model_name="technicalarticle",
            constraint=models.UniqueConstraint(fields=("feed_url_key",), name="source_feed_url_key_uniq"),
        ),
        migrations.AddConstraint(
            model_name="author",
            constraint=models.UniqueConstraint(fields=("identity_key",), name="author_identity_key_uniq"),
        ),
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.UniqueConstraint(fields=("technical_article", "guid_key"), name="entry_article_guid_key_uniq"),
        ),
        migrations.AddConstraint(
            model_name="comment",
            constraint=models.UniqueConstraint(fields=("entry", "guid_key"), name="comment_entry_guid_key_uniq"),
        ),
        migrations.AddConstraint(
            model_name="pingback",
            constraint=models.UniqueConstraint(fields=("target", "source_key"), name="pingback_target_source_key_uniq"),
        ),
        # feed_url_key is the source's identity now; feed_url stays, without a unique constraint.
        migrations.AlterField(
            model_name="technicalarticle",
            name="feed_url",
            field=models.URLField(help_text="As registered; fetched as it is.", max_length=700),
        ),
        migrations.AlterField(
            model_name="entry",
            name="guid",
            field=models.CharField(help_text="Identity of the entry within its feed, as the feed wrote it.", max_length=255),
        ),
    ]
