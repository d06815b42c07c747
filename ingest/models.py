"""Tables only: the seed tutorial's TechnicalArticle, Author and Entry, plus what a feed pipeline needs.

Feed-source state (feed_url, etag, schedule, failures, lease) lives on ``TechnicalArticle`` itself
rather than on a one-to-one model: in this product a TechnicalArticle *is* a publication whose feed
is ingested, every article has exactly one feed, and one row means the lease claim, the due-source
scan and the admin list are single-table statements with no join.

Field names and types of the seed (name, tagline, headline, body_text, pub_date, mod_date, authors,
number_of_comments, number_of_pingbacks, rating) are kept so that readers of the tutorial recognise
them. Column widths are chosen for every backend: unique keys stay under SQL Server's 1,700-byte
nonclustered index limit and MariaDB's 3,072-byte InnoDB limit (utf8mb4).

Identity is never a text column compared by the database's collation (case-insensitive on SQL
Server and MariaDB, accent-insensitive on MariaDB, byte-exact on SQLite and PostgreSQL): every
unique key is a fixed-width hex key column (``feed_url_key``, ``identity_key``, ``guid_key``,
``source_key``) computed by ``ingest.identity`` from the text column it stands for, which stays
for display. ``Keyed`` derives the keys on every ORM write (``save``, ``bulk_create``,
``bulk_update``, ``update``), so no row can be written with a key that disagrees with its text.
"""

from __future__ import annotations

import base64
import datetime
import secrets
import uuid
from collections.abc import Callable
from typing import ClassVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.utils import timezone

from ingest import identity
from ingest.types import (
    AUTH_REFERENCE_MAX,
    AUTH_USERNAME_MAX,
    AUTHOR_NAME_MAX,
    COMMAND_MAX,
    EMAIL_MAX,
    ENCLOSURE_TYPE_MAX,
    ETAG_MAX,
    FEED_HINTS_MAX,
    FEED_URL_MAX,
    GUID_MAX,
    HEADLINE_MAX,
    HOSTNAME_MAX,
    KEY_LENGTH,
    LAST_MODIFIED_MAX,
    LEASE_OWNER_MAX,
    LINK_MAX,
    SCHEDULE_REASON_MAX,
    SOURCE_NAME_MAX,
)

KEY_MAX = KEY_LENGTH  # every width lives in ingest.types, shared with the stages that fill the columns


def _key_field(help_text: str, verbose_name: str | None = None) -> models.CharField:
    return models.CharField(max_length=KEY_MAX, editable=False, help_text=help_text, verbose_name=verbose_name)


class KeyedQuerySet(models.QuerySet):
    """Bulk writes derive the identity keys too: ``bulk_create`` always, ``bulk_update`` and
    ``update`` whenever they write a column a key is computed from."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            obj.keys_fill()
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        fields = list(fields)
        keys = [key for key in self.model.keys_of(fields) if key not in fields]
        if keys:
            objs = list(objs)
            for obj in objs:
                obj.keys_fill()
            fields += keys
        return super().bulk_update(objs, fields, *args, **kwargs)

    def update(self, **kwargs):
        return super().update(**{**kwargs, **self.model.keys_for(**kwargs)})


class Keyed(models.Model):
    """A table whose identity is a key column computed from text columns (``ingest.identity``)."""

    # key column -> (how it is computed, the columns it is computed from)
    KEYS: ClassVar[dict[str, tuple[Callable[..., str], tuple[str, ...]]]] = {}

    objects = KeyedQuerySet.as_manager()

    class Meta:
        abstract = True

    def keys_fill(self) -> None:
        for key, (compute, sources) in self.KEYS.items():
            setattr(self, key, compute(*(getattr(self, name) for name in sources)))

    @classmethod
    def keys_of(cls, fields) -> list[str]:
        """The key columns computed from any of ``fields``."""
        names = set(fields)
        return [key for key, (_, sources) in cls.KEYS.items() if names & set(sources)]

    @classmethod
    def keys_for(cls, **values) -> dict[str, str]:
        """The key columns of the text columns among ``values``: what to look a row up by, as in
        ``TechnicalArticle.objects.filter(**TechnicalArticle.keys_for(feed_url=url))``."""
        keys = {}
        for key in cls.keys_of(values):
            compute, sources = cls.KEYS[key]
            texts = [values.get(name) for name in sources]
            if not all(isinstance(text, str) for text in texts):
                raise TypeError(f"{cls.__name__}.{key} is computed from {', '.join(sources)}: each is needed, as text")
            keys[key] = compute(*texts)
        return keys

    def save(self, *args, **kwargs):
        self.keys_fill()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], *self.keys_of(kwargs["update_fields"])}
        super().save(*args, **kwargs)

    def validate_constraints(self, exclude=None):
        """Unique keys checked as forms (the admin) see them: on the text field a key is computed
        from, since the key column itself is in no form."""
        self.keys_fill()
        exclude = set(exclude or ())
        for key, (_, sources) in self.KEYS.items():
            if not exclude.issuperset(sources):
                exclude.discard(key)
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as error:
            errors: dict[str, list] = {}
            for name, messages in error.error_dict.items():
                shown = self.KEYS[name][1][0] if name in self.KEYS else name
                errors.setdefault(NON_FIELD_ERRORS if shown in exclude else shown, []).extend(messages)
            raise ValidationError(errors) from None


class Health(models.TextChoices):
    """A source's health (``ingest.health``, computed in one place): what an operator acts on."""

    HEALTHY = "healthy"  # fetched as scheduled, no errors
    DEGRADED = "degraded"  # errors below the threshold, or stale against its own cadence
    FAILING = "failing"  # failed INGEST_HEALTH_FAILING_AFTER times in a row or more
    BLOCKED = "blocked"  # refused: the URL guard, the publisher's bot protection, 401/403
    GONE = "gone"  # HTTP 410, or deactivated


class TechnicalArticle(Keyed):
    """A publication and the state of its feed. Its identity is its feed URL as ``normalize_url``
    writes it (scheme and host case, default port, fragment and trailing slash do not matter; path
    and query are compared byte for byte): ``feed_url_key``."""

    KEYS = {"feed_url_key": (identity.feed_url_key, ("feed_url",))}

    name = models.CharField(max_length=SOURCE_NAME_MAX)
    tagline = models.TextField(blank=True)

    feed_url = models.URLField(max_length=FEED_URL_MAX, help_text="As registered; fetched as it is.")
    feed_url_key = _key_field("sha256 of the normalized feed URL: the source's identity.", "feed URL")
    site_url = models.URLField(max_length=LINK_MAX, blank=True)
    active = models.BooleanField(default=True, help_text="Inactive sources are never fetched.")
    fetch_comments = models.BooleanField(
        default=False, help_text="Also poll each recent entry's comment feed (one request per entry)."
    )
    fetch_interval = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds between fetches; empty means INGEST_DEFAULT_INTERVAL."
    )
    etag = models.CharField(max_length=ETAG_MAX, blank=True)
    last_modified = models.CharField(max_length=LAST_MODIFIED_MAX, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=LEASE_OWNER_MAX, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The schedule (ingest.schedule): the user's switch, what the last fetches said, and the why.
    honour_server_hints = models.BooleanField(
        default=True, help_text="Let the server's Cache-Control / Expires and the feed's ttl, sy:updatePeriod and "
                                "skipHours / skipDays delay the next fetch (within INGEST_MAX_INTERVAL).")
    publish_cadence = models.PositiveIntegerField(
        null=True, blank=True, editable=False,
        help_text="Seconds between the feed's recent entries, as measured at its last full fetch.")
    feed_hints = models.CharField(max_length=FEED_HINTS_MAX, blank=True, editable=False,
                                  help_text="The feed document's ttl, sy:* and skipHours / skipDays, as last read.")
    schedule_reason = models.CharField(max_length=SCHEDULE_REASON_MAX, blank=True, editable=False,
                                       help_text="Why the next fetch is when it is.")
    # ingest.parse.digest of the body the last successful store parsed: an equal 200 is not parsed again.
    body_digest = models.CharField(
        max_length=KEY_LENGTH, blank=True, default="", editable=False,
        help_text="SHA-256 of the last body stored (salted with what changes its parse): a 200 with the same "
                  "digest is not parsed again (not modified, same body) unless the run is forced (--all).")
    # Credentials (ingest.fetch.credentials): references to secrets, never a secret's value.
    auth_scheme = models.CharField(
        max_length=10, choices=[("none", "none"), ("basic", "basic"), ("bearer", "bearer")], default="none",
        help_text="How requests to the feed's origin authenticate.")
    auth_username = models.CharField(max_length=AUTH_USERNAME_MAX, blank=True, help_text="The basic scheme's user name.")
    auth_secret = models.CharField(
        max_length=AUTH_REFERENCE_MAX, blank=True, verbose_name="auth secret reference",
        help_text="Names the password or token, never holds it: env:NAME (an environment variable) or "
                  "setting:KEY (a key of INGEST_FEED_SECRETS).")
    extra_headers = models.JSONField(
        default=dict, blank=True,
        help_text='Extra request headers: {"X-Client": "literal", "X-Api-Key": {"secret": "env:NAME"}}. A header '
                  "naming a secret goes to the feed's origin only.")
    # Retention (ingest.services.retention, prune_entries): null means the setting, 0 keep forever.
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete entries published more than this many days ago; empty means "
                                         "INGEST_RETENTION_DAYS, 0 keeps them forever.")
    retention_max_entries = models.PositiveIntegerField(
        null=True, blank=True, help_text="Keep at most this many entries (the newest); empty means "
                                         "INGEST_RETENTION_MAX_ENTRIES, 0 means no cap.")

    # Health (ingest.health): the state of the last fetch outcome; staleness is judged when read.
    health = models.CharField(max_length=16, default=Health.HEALTHY, editable=False, db_index=True,
                              choices=Health.choices,
                              help_text="healthy, degraded, failing, blocked or gone, as of the last fetch.")
    health_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    health_stale_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When a healthy source reads as degraded (stale) unless fetched successfully before: its last "
                  "success plus INGEST_HEALTH_STALE_FACTOR times the interval its schedule chose.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feed_url_key"], name="source_feed_url_key_uniq")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Author(Keyed):
    """A person, identified by name and email together (``identity_key``): the name exactly, after
    Unicode NFC normalization and trimming (``Ada Lovelace`` and ``ada lovelace`` are two
    authors), the email case-insensitively (``ADA@example.com`` is ``ada@example.com``)."""

    KEYS = {"identity_key": (identity.author_key, ("name", "email"))}

    name = models.CharField(max_length=AUTHOR_NAME_MAX)
    email = models.EmailField(max_length=EMAIL_MAX, blank=True)
    identity_key = _key_field("sha256 of the NFC name and the case-folded email: the author's identity.", "author")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["identity_key"], name="author_identity_key_uniq")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Entry(Keyed):
    """One item of a feed, identified within its feed by its guid (``guid_key``): compared byte for
    byte after Unicode NFC normalization and trimming, so case- and accent-sensitive (``POST-ABC``
    and ``post-abc``, ``café`` and ``cafe`` are two entries), a composed and a decomposed ``é``
    the same."""

    KEYS = {"guid_key": (identity.guid_key, ("guid",))}

    technical_article = models.ForeignKey(TechnicalArticle, on_delete=models.CASCADE)
    headline = models.CharField(max_length=HEADLINE_MAX)
    body_text = models.TextField()
    pub_date = models.DateField()
    mod_date = models.DateField(default=datetime.date.today)
    authors = models.ManyToManyField(Author)
    number_of_comments = models.IntegerField(default=0)
    number_of_pingbacks = models.IntegerField(default=0)
    rating = models.IntegerField(default=5)

    guid = models.CharField(
        max_length=GUID_MAX, help_text="Identity of the entry within its feed, as the feed wrote it."
    )
    guid_key = _key_field("sha256 of the NFC, trimmed guid: the entry's identity within its feed.", "guid")
    link = models.URLField(max_length=LINK_MAX, blank=True)
    link_key = models.CharField(
        max_length=KEY_MAX, blank=True, db_index=True, help_text="sha256 of the normalized link, for cross-references."
    )
    published_at = models.DateTimeField(db_index=True)
    content_hash = models.CharField(max_length=KEY_MAX)
    comments_feed_url = models.URLField(max_length=LINK_MAX, blank=True)
    reported_comments = models.IntegerField(
        null=True, blank=True, help_text="Comment count the feed reports (slash:comments, thr:total); information only."
    )
    ingested_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(
        default=timezone.now, db_index=True,
        help_text="When a value the API shows last changed (content, counters, rating): what clients sync by.",
    )
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, db_index=True, related_name="duplicates",
        help_text="The canonical entry of the same article from another source (same link_key); null for a "
                  "canonical or unique entry (docs/how-it-works.md, \"Duplicates across feeds\").",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["technical_article", "guid_key"], name="entry_article_guid_key_uniq")
        ]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return self.headline


def _new_guid() -> str:
    return f"local:{uuid.uuid4().hex}"


class Comment(Keyed):
    """A comment on an entry, identified within it by its guid (``guid_key``), compared as an
    entry's guid is."""

    KEYS = {"guid_key": (identity.guid_key, ("guid",))}

    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="comments")
    guid = models.CharField(max_length=GUID_MAX, default=_new_guid)
    guid_key = _key_field("sha256 of the NFC, trimmed guid: the comment's identity within its entry.", "guid")
    author_name = models.CharField(max_length=AUTHOR_NAME_MAX, blank=True)
    author_email = models.EmailField(max_length=EMAIL_MAX, blank=True)
    body = models.TextField(blank=True)
    published_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "guid_key"], name="comment_entry_guid_key_uniq")]

    def __str__(self) -> str:
        return f"{self.author_name or 'anonymous'} on {self.entry_id}"


class Pingback(Keyed):
    """A link from one entry to another, identified by its target and its source URL as
    ``normalize_url`` writes it (``source_key``, the ``link_key`` of ``source_url``)."""

    KEYS = {"source_key": (identity.url_key, ("source_url",))}

    target = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="pingbacks")
    source_url = models.URLField(max_length=FEED_URL_MAX)
    source_key = _key_field("sha256 of the normalized source URL: with the target, the pingback's identity.", "source URL")
    source_entry = models.ForeignKey(
        Entry, on_delete=models.SET_NULL, null=True, blank=True, related_name="pingbacks_sent"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["target", "source_key"], name="pingback_target_source_key_uniq")]

    def __str__(self) -> str:
        return f"{self.source_url} -> {self.target_id}"


class EntryLink(models.Model):
    """An outbound link found in an entry's body, kept so that a pingback is recorded whichever of
    the two entries is ingested first (the target may arrive in a later run)."""

    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="outbound_links")
    link_key = models.CharField(max_length=KEY_MAX, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "link_key"], name="entrylink_entry_key_uniq")]


class CommentFeed(models.Model):
    """Fetch state of one entry's comment feed (wfw:commentRss): validators, schedule, failures."""

    entry = models.OneToOneField(Entry, on_delete=models.CASCADE, related_name="comment_feed", primary_key=True)
    etag = models.CharField(max_length=ETAG_MAX, blank=True)
    last_modified = models.CharField(max_length=LAST_MODIFIED_MAX, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # As TechnicalArticle.body_digest, for this comment feed.
    body_digest = models.CharField(max_length=KEY_LENGTH, blank=True, default="", editable=False,
                                   help_text="SHA-256 of the last comment-feed body stored (salted).")

    def __str__(self) -> str:
        return f"comments of {self.entry_id}"


class IngestRun(models.Model):
    class Trigger(models.TextChoices):
        MANUAL = "manual"
        CRON = "cron"
        CELERY = "celery"
        AZURE = "azure"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"

    command = models.CharField(max_length=COMMAND_MAX, db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    hostname = models.CharField(max_length=HOSTNAME_MAX, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    # The lease owner of the sources this run claimed: how a later run tells a dead run (no
    # process, or no live lease) from a slow one, and frees what it held.
    lease_owner = models.CharField(max_length=LEASE_OWNER_MAX, blank=True)
    sources_total = models.PositiveIntegerField(default=0, help_text="Sources claimed by this run.")
    sources_fetched = models.PositiveIntegerField(default=0)
    sources_not_modified = models.PositiveIntegerField(default=0)
    sources_failed = models.PositiveIntegerField(default=0)
    sources_internal_errors = models.PositiveIntegerField(
        default=0, help_text="Of the failed sources, those that failed on something unexpected (a bug): look at the logs."
    )
    entries_created = models.PositiveIntegerField(default=0)
    entries_updated = models.PositiveIntegerField(default=0)
    entries_unchanged = models.PositiveIntegerField(default=0)
    sources_deferred = models.PositiveIntegerField(
        default=0, help_text="Sources not fetched because their host's budget stayed spent (fetched by a later run)."
    )
    stats = models.JSONField(default=dict, blank=True, help_text="Per-command details (per-source results, chunks, retries).")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.command} #{self.pk} ({self.status})"

    @property
    def elapsed_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class IdleTick(models.Model):
    """Scheduled runs of a command that found nothing to do, counted instead of recorded.

    A beat tick with no source due leaves no ``IngestRun`` (288 rows a day for nothing): the
    dispatcher adds one to ``idle_ticks`` and stamps ``last_idle_at`` on this command's row, in one
    UPDATE. ``pipeline_status`` and ``/healthz`` count the last idle tick as a sign of life.
    """

    command = models.CharField(max_length=COMMAND_MAX, unique=True)
    idle_ticks = models.PositiveBigIntegerField(default=0)
    last_idle_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.command}: {self.idle_ticks} idle ticks"


class HostBudget(models.Model):
    """One host's shared request budget (docs/scheduling-policy.md, "Per-host budget").

    Every run and Celery worker that fetches from the host takes a turn here first
    (``ingest/services/hosts.py``): ``last_start_at`` spaces request starts by INGEST_HOST_SPACING,
    the ``HostSlot`` rows cap requests in flight at INGEST_HOST_CONCURRENCY, and ``blocked_until``
    holds every fetch to the host after a Retry-After when INGEST_RETRY_AFTER_SCOPE=host. The
    host is the URL's lower-cased hostname (no port); ``host_key`` is its hash, the identity rule
    of every unique key.
    """

    host_key = models.CharField(max_length=KEY_MAX, unique=True, editable=False)
    host = models.CharField(max_length=HOSTNAME_MAX)
    last_start_at = models.DateTimeField(null=True, blank=True)
    blocked_until = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.host


class HostSlot(models.Model):
    """One of a host's request slots: free (no holder, or expired), or held by one fetch in flight.

    A fetch holds a slot from its turn until its response is read; the expiry (the fetch deadline
    and a margin) frees the slot of a process that was killed mid-request."""

    budget = models.ForeignKey(HostBudget, on_delete=models.CASCADE, related_name="slots")
    number = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=LEASE_OWNER_MAX, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget", "number"], name="hostslot_budget_number_uniq")]

    def __str__(self) -> str:
        return f"{self.budget_id}#{self.number}"
def _callback_id() -> str:
    return secrets.token_urlsafe(32)  # 43 characters: the opaque part of the callback URL


def unlink_by_pk(collector, field, sub_objs, using) -> None:
    """``SET_NULL``, by primary key: Django's own is lazy and nulls the rows with one UPDATE by
    foreign key, unbounded; this one is called only when rows point at the deleted row (a SELECT
    finds them), which are then updated by their ids, in batches (the T-SQL contract of
    tests/test_tsql_contract.py: every UPDATE is bounded by primary key)."""
    collector.add_field_update(field, None, sub_objs)


def _websub_secret() -> str:
    return secrets.token_hex(32)  # hub.secret: WebSub allows up to 200 bytes


class WebSubSubscription(models.Model):
    """One WebSub subscription of a source's feed at its hub (``ingest.services.websub``).

    ``callback_id`` is the opaque last segment of the callback URL (``/websub/<callback_id>``) and
    ``secret`` the key of the HMAC the hub signs its pushes with; neither is ever logged or shown.
    ``source`` is null once the source is deleted, and ``wanted`` is off once its feed names another
    hub or topic: such a row is unsubscribed by the next maintenance pass. ``next_action_at`` is
    when that pass acts on the row next (send the request, retry it, renew the lease).
    """

    class State(models.TextChoices):
        PENDING = "pending"  # discovered; the subscription request is not sent yet
        REQUESTED = "requested"  # sent; waiting for the hub's verification of intent
        SUBSCRIBED = "subscribed"  # verified; the lease runs until lease_expires_at
        UNSUBSCRIBING = "unsubscribing"  # unsubscription sent; waiting for its verification
        UNSUBSCRIBED = "unsubscribed"
        DENIED = "denied"  # the hub refused the subscription (hub.mode=denied)
        FAILED = "failed"  # the request to the hub failed; retried at next_action_at

    source = models.ForeignKey(TechnicalArticle, on_delete=unlink_by_pk, null=True, blank=True,
                               related_name="websub_subscriptions")
    callback_id = models.CharField(max_length=KEY_MAX, unique=True, default=_callback_id, editable=False)
    hub_url = models.URLField(max_length=LINK_MAX)
    topic_url = models.URLField(max_length=LINK_MAX)
    secret = models.CharField(max_length=KEY_MAX, default=_websub_secret, editable=False)
    wanted = models.BooleanField(default=True, help_text="Off: the feed names another hub or topic now.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    lease_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="As the hub granted it.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_action_at = models.DateTimeField(null=True, blank=True, db_index=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    pushes = models.PositiveIntegerField(default=0, help_text="Pushed bodies ingested.")
    consecutive_failures = models.PositiveIntegerField(default=0, help_text="Requests to the hub that failed in a row.")
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "WebSub subscription"

    def __str__(self) -> str:
        return f"{self.topic_url} at {self.hub_url} ({self.state})"


class Enclosure(Keyed):
    """A file an entry points to: an RSS ``<enclosure>``, an Atom ``rel="enclosure"`` link, a
    ``media:content`` or a ``media:thumbnail`` (``ingest.parse.enclosures``). Identified within its
    entry by its kind and its URL as ``normalize_url`` writes it (``url_key``: a 2,000-character URL
    cannot be in an index on SQL Server). The pipeline stores where the file is, never the file."""

    class Kind(models.TextChoices):
        ENCLOSURE = "enclosure"
        CONTENT = "content", "media:content"
        THUMBNAIL = "thumbnail", "media:thumbnail"

    KEYS = {"url_key": (identity.url_key, ("url",))}

    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="enclosures")
    url = models.URLField(max_length=LINK_MAX)
    url_key = _key_field("sha256 of the normalized URL: with the entry and the kind, the enclosure's identity.", "URL")
    type = models.CharField(max_length=ENCLOSURE_TYPE_MAX, blank=True, help_text="MIME type, as the feed states it.")
    length = models.BigIntegerField(null=True, blank=True, help_text="Bytes, as the feed states it.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ENCLOSURE)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order within the entry, as in the feed.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "kind", "url_key"], name="enclosure_entry_kind_url_key_uniq")]

    def __str__(self) -> str:
        return self.url


def cascade_by_pk(collector, field, sub_objs, using) -> None:
    """``CASCADE`` without Django's fast path, which deletes the rows with one DELETE by foreign key,
    unbounded: the collector reads them first (none, once ``delete_source`` has deleted them in
    chunks) and deletes what it found by primary key (the T-SQL contract of tests/test_tsql_contract.py)."""
    models.CASCADE(collector, field, sub_objs, using)


class EntryTombstone(models.Model):
    """The identity of an entry ``prune_entries`` deleted, so that the next fetch of its feed does
    not ingest it again (``ingest.upsert``). ``guid_key`` is the entry's ``Entry.guid_key``. A
    tombstone is dropped by the first successful fetch whose document no longer carries the guid:
    the table holds at most what the sources' feeds still carry."""

    source = models.ForeignKey(TechnicalArticle, on_delete=cascade_by_pk, related_name="tombstones")
    guid_key = models.CharField(max_length=KEY_MAX, editable=False)
    pruned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "guid_key"], name="tombstone_source_guid_key_uniq")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.guid_key[:12]}"


class Event(models.Model):
    """The outbox (``ingest.services.events``): one row per change a consumer may want to hear of,
    written in the same transaction as the change, so that an event exists exactly when its change
    committed. ``entry_id`` and ``source_id`` are plain integers, not foreign keys: the event of a
    pruned entry or of a deleted source outlives its row. ``dispatched_at`` is set once the event
    has been fanned out to the webhook endpoints that want it (``WebhookDelivery`` rows)."""

    class Type(models.TextChoices):
        ENTRY_CREATED = "entry.created"
        ENTRY_UPDATED = "entry.updated"
        ENTRY_PRUNED = "entry.pruned"
        SOURCE_HEALTH_CHANGED = "source.health_changed"

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=32, choices=Type.choices)
    source_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    entry_id = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.type} #{self.id}"


def _webhook_secret() -> str:
    # Standard Webhooks: "whsec_" and the base64 of the key (24-64 bytes).
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(models.Model):
    """A receiver of signed event batches (``ingest.services.webhooks``, Standard Webhooks)."""

    class State(models.TextChoices):
        ACTIVE = "active"  # delivering
        FAILING = "failing"  # its last attempts failed; retried with backoff
        DISABLED = "disabled"  # kept failing, or switched off: nothing is sent until re-enabled

    name = models.CharField(max_length=SOURCE_NAME_MAX, blank=True)
    url = models.URLField(max_length=LINK_MAX)
    secret = models.CharField(max_length=128, default=_webhook_secret,
                              help_text="The signing key, whsec_ and base64 (Standard Webhooks).")
    event_types = models.JSONField(default=list, blank=True,
                                   help_text='Event types it receives, e.g. ["entry.created"]; empty means all.')
    # Ids, not a many-to-many: deleting a source must not touch this table (the T-SQL contract's
    # bounded deletes); an id of a deleted source simply matches nothing.
    source_ids = models.JSONField(default=list, blank=True,
                                  help_text="Only events of these sources (ids); empty means every source.")
    active = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    disabled_reason = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Delivery bookkeeping (ingest.services.webhooks): batches that went dead in a row, since when
    # it has been failing (both decide when it is disabled), and the worker sending to it now.
    dead_batches = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name or self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: pending until the endpoint acknowledged it (2xx), dead after the
    last attempt. Sent in batches in event order; ``message_id`` is the ``webhook-id`` of the batch
    it was last sent in, kept across retries of that batch."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        DEAD = "dead"  # the dead letter: every attempt failed; `webhooks replay` sends it again

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    message_id = models.CharField(max_length=64, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhookdelivery_endpoint_event_uniq")]
        indexes = [models.Index(fields=["endpoint", "state", "event"], name="webhookdelivery_queue_idx")]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.state})"
