"""Tables only: the seed tutorial's TechnicalArticle, Author and Entry, plus what a feed pipeline needs.

Feed-source state (feed_url, etag, schedule, failures, lease) lives on ``TechnicalArticle`` itself
rather than on a one-to-one model: in this product a TechnicalArticle *is* a publication whose feed
is ingested, every article has exactly one feed, and one row means the lease claim, the due-source
scan and the admin list are single-table statements with no join.

Field names and types of the seed (name, tagline, headline, body_text, pub_date, mod_date, authors,
number_of_comments, number_of_pingbacks, rating) are kept so that readers of the tutorial recognise
them. Column widths are chosen for every backend: unique keys stay under SQL Server's 1,700-byte
nonclustered index limit and MariaDB's 3,072-byte InnoDB limit (utf8mb4).
"""

from __future__ import annotations

import datetime
import uuid

from django.db import models
from django.utils import timezone

FEED_URL_MAX = 700  # unique: 700 nvarchar = 1,400 bytes (SQL Server), 2,800 bytes utf8mb4 (MariaDB)
LINK_MAX = 2000


class TechnicalArticle(models.Model):
    name = models.CharField(max_length=100)
    tagline = models.TextField(blank=True)

    feed_url = models.URLField(max_length=FEED_URL_MAX, unique=True)
    site_url = models.URLField(max_length=LINK_MAX, blank=True)
    active = models.BooleanField(default=True, help_text="Inactive sources are never fetched.")
    fetch_comments = models.BooleanField(
        default=False, help_text="Also poll each recent entry's comment feed (one request per entry)."
    )
    fetch_interval = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds between fetches; empty means INGEST_DEFAULT_INTERVAL."
    )
    etag = models.CharField(max_length=255, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Author(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "email"], name="author_name_email_uniq")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Entry(models.Model):
    technical_article = models.ForeignKey(TechnicalArticle, on_delete=models.CASCADE)
    headline = models.CharField(max_length=255)
    body_text = models.TextField()
    pub_date = models.DateField()
    mod_date = models.DateField(default=datetime.date.today)
    authors = models.ManyToManyField(Author)
    number_of_comments = models.IntegerField(default=0)
    number_of_pingbacks = models.IntegerField(default=0)
    rating = models.IntegerField(default=5)

    guid = models.CharField(max_length=255, help_text="Identity of the entry within its feed.")
    link = models.URLField(max_length=LINK_MAX, blank=True)
    link_key = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="sha256 of the normalized link, for cross-references."
    )
    published_at = models.DateTimeField(db_index=True)
    content_hash = models.CharField(max_length=64)
    comments_feed_url = models.URLField(max_length=LINK_MAX, blank=True)
    reported_comments = models.IntegerField(
        null=True, blank=True, help_text="Comment count the feed reports (slash:comments, thr:total); information only."
    )
    ingested_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["technical_article", "guid"], name="entry_article_guid_uniq")]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return self.headline


def _new_guid() -> str:
    return f"local:{uuid.uuid4().hex}"


class Comment(models.Model):
    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="comments")
    guid = models.CharField(max_length=255, default=_new_guid)
    author_name = models.CharField(max_length=200, blank=True)
    author_email = models.EmailField(blank=True)
    body = models.TextField(blank=True)
    published_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "guid"], name="comment_entry_guid_uniq")]

    def __str__(self) -> str:
        return f"{self.author_name or 'anonymous'} on {self.entry_id}"


class Pingback(models.Model):
    target = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="pingbacks")
    source_url = models.URLField(max_length=FEED_URL_MAX)
    source_entry = models.ForeignKey(
        Entry, on_delete=models.SET_NULL, null=True, blank=True, related_name="pingbacks_sent"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source_url", "target"], name="pingback_source_target_uniq")]

    def __str__(self) -> str:
        return f"{self.source_url} -> {self.target_id}"


class EntryLink(models.Model):
    """An outbound link found in an entry's body, kept so that a pingback is recorded whichever of
    the two entries is ingested first (the target may arrive in a later run)."""

    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="outbound_links")
    link_key = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry", "link_key"], name="entrylink_entry_key_uniq")]


class CommentFeed(models.Model):
    """Fetch state of one entry's comment feed (wfw:commentRss): validators, schedule, failures."""

    entry = models.OneToOneField(Entry, on_delete=models.CASCADE, related_name="comment_feed", primary_key=True)
    etag = models.CharField(max_length=255, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    next_fetch_at = models.DateTimeField(null=True, blank=True, db_index=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

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

    command = models.CharField(max_length=40, db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    sources_total = models.PositiveIntegerField(default=0, help_text="Sources claimed by this run.")
    sources_fetched = models.PositiveIntegerField(default=0)
    sources_not_modified = models.PositiveIntegerField(default=0)
    sources_failed = models.PositiveIntegerField(default=0)
    entries_created = models.PositiveIntegerField(default=0)
    entries_updated = models.PositiveIntegerField(default=0)
    entries_unchanged = models.PositiveIntegerField(default=0)
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
