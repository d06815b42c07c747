"""What the API shows of each table, and what it lets a client change.

Entries and authors are the pipeline's: read-only here but for an entry's ``rating``. The counters
(``number_of_comments``, ``number_of_pingbacks``) belong to their rows and are never written
through the API. An article's fetch state (``last_*``, ``next_fetch_at``, failures) is read-only.
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from ingest import selectors
from ingest.errors import BlockedURL, CredentialsError, UsageError
from ingest.models import Author, Comment, Enclosure, Entry, Event, Pingback, TechnicalArticle, WebhookEndpoint
from ingest.services import credentials as credential_service
from ingest.services import entries as entry_service
from ingest.services import sources as source_service
from ingest.services import webhooks as webhook_service

RATING_MIN, RATING_MAX = 0, 10
# fetch_interval: at least a minute, at most about a year (datetime arithmetic stays in range).
INTERVAL_MIN, INTERVAL_MAX = 60, 366 * 86400
# retention_days / retention_max_entries: the settings' own bounds (pipeline/settings.py).
RETENTION_DAYS_MAX, RETENTION_MAX_ENTRIES_MAX = 36500, 1_000_000_000

HEALTH_FIELDS = ("last_fetched_at", "last_success_at", "next_fetch_at", "consecutive_failures", "last_status",
                 "last_error", "created_at", "schedule_reason", "publish_cadence", "health_changed_at")
# A source's credentials: references to secrets (env:NAME, setting:KEY), never a value; writable by staff.
AUTH_FIELDS = ("auth_scheme", "auth_username", "auth_secret", "extra_headers")
AUTH_DEFAULTS = {"auth_scheme": "none", "auth_username": "", "auth_secret": "", "extra_headers": {}}


def validate_auth(values: dict) -> None:
    """The credentials check of ``credentials.auth_check`` (a secret named must be set now), its
    sentence on the field it is about."""
    try:
        credential_service.auth_check(scheme=values["auth_scheme"], username=values["auth_username"],
                                      secret=values["auth_secret"])
    except CredentialsError as exc:
        raise serializers.ValidationError({"auth_secret": [str(exc)]}) from None
    try:
        credential_service.auth_check(extra_headers=values["extra_headers"])
    except CredentialsError as exc:
        raise serializers.ValidationError({"extra_headers": [str(exc)]}) from None


class Strict(serializers.ModelSerializer):
    """A body that would change a read-only field is refused (400), not silently half-applied: a
    client that sends ``number_of_comments: 99`` learns that the counters are the pipeline's. A
    body read by GET and sent back with read-only fields as they are passes."""

    def validate(self, attrs: dict) -> dict:
        if isinstance(self.initial_data, dict):
            fields = self.fields
            sent_read_only = [name for name in self.initial_data if name in fields and fields[name].read_only]
            current = self.to_representation(self.instance) if self.instance is not None and sent_read_only else {}
            refused = {name: ["Read-only: the pipeline keeps it."] for name in sent_read_only
                       if name not in current or self.initial_data[name] != current[name]}
            refused.update({name: ["No such field."] for name in self.initial_data if name not in fields})
            if refused:
                raise serializers.ValidationError(refused)
        return super().validate(attrs)


class ArticleSerializer(Strict):
    health = serializers.SerializerMethodField(
        help_text="healthy, degraded (failures below INGEST_HEALTH_FAILING_AFTER, or stale against its own "
                  "schedule), failing, blocked or gone: docs/health.md.")
    fetch_interval = serializers.IntegerField(
        min_value=INTERVAL_MIN, max_value=INTERVAL_MAX, required=False, allow_null=True,
        help_text="Seconds between fetches; null means INGEST_DEFAULT_INTERVAL.",
    )
    retention_days = serializers.IntegerField(
        min_value=0, max_value=RETENTION_DAYS_MAX, required=False, allow_null=True,
        help_text="prune_entries deletes entries published more than this many days ago; null means "
                  "INGEST_RETENTION_DAYS, 0 keeps them forever.",
    )
    retention_max_entries = serializers.IntegerField(
        min_value=0, max_value=RETENTION_MAX_ENTRIES_MAX, required=False, allow_null=True,
        help_text="prune_entries keeps at most this many entries (the newest); null means "
                  "INGEST_RETENTION_MAX_ENTRIES, 0 means no cap.",
    )

    class Meta:
        model = TechnicalArticle
        fields = ("id", "name", "tagline", "feed_url", "site_url", "active", "fetch_comments", "fetch_interval",
                  "honour_server_hints", "health", *HEALTH_FIELDS, *AUTH_FIELDS, "retention_days", "retention_max_entries")
        read_only_fields = HEALTH_FIELDS
        extra_kwargs = {"name": {"required": False, "help_text": "Defaults to the feed URL's host."},
                        "feed_url": {"help_text": "The feed's address. Refused when it can never be fetched "
                                                  "(the fetch stage's address rules) or is already registered."}}

    def get_health(self, article: TechnicalArticle) -> str:
        return selectors.source_health(article, now=timezone.now())

    def validate_feed_url(self, value: str) -> str:
        value = value.strip()
        try:
            source_service.source_url_check(value)
        except BlockedURL as exc:
            raise serializers.ValidationError(str(exc)) from None
        taken = source_service.source_taken_by(url=value, exclude_id=self.instance.pk if self.instance else None)
        if taken is not None:
            raise serializers.ValidationError(f"This feed is already registered, as article {taken}.")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if any(name in attrs for name in AUTH_FIELDS):
            validate_auth({name: attrs[name] if name in attrs else getattr(self.instance, name, AUTH_DEFAULTS[name])
                           for name in AUTH_FIELDS})
        return attrs

    def create(self, validated_data: dict) -> TechnicalArticle:
        return source_service.source_create(**validated_data)

    def update(self, instance: TechnicalArticle, validated_data: dict) -> TechnicalArticle:
        return source_service.source_update(source=instance, **validated_data)


class AuthorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ("id", "name", "email")
        read_only_fields = fields


class AuthorBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ("id", "name")
        read_only_fields = fields


class EnclosureSerializer(serializers.ModelSerializer):
    class Meta:
        model = Enclosure
        fields = ("url", "type", "length", "kind")
        read_only_fields = fields


class EntrySerializer(Strict):
    article = serializers.IntegerField(source="technical_article_id", read_only=True, help_text="The article's id.")
    article_name = serializers.CharField(source="technical_article.name", read_only=True)
    # The entries' queryset (views.py) prefetches them into this list.
    authors = AuthorBriefSerializer(source="authors_brief", many=True, read_only=True)
    rating = serializers.IntegerField(min_value=RATING_MIN, max_value=RATING_MAX,
                                      help_text=f"{RATING_MIN} to {RATING_MAX}; 5 until someone rates the entry.")
    updated = serializers.DateTimeField(
        source="updated_at", read_only=True,
        help_text="When a value shown here last changed (content, counters, rating): sync with updated_since.",
    )
    # The entries' queryset (views.py) prefetches them into this list, in the feed's order.
    enclosures = EnclosureSerializer(
        source="enclosures_brief", many=True, read_only=True,
        help_text="The files the entry points to (RSS enclosure, Atom rel=enclosure, media:content, media:thumbnail): "
                  "where they are, never fetched.",
    )

    class Meta:
        model = Entry
        fields = ("id", "article", "article_name", "guid", "link", "headline", "body_text", "published_at",
                  "pub_date", "mod_date", "authors", "number_of_comments", "number_of_pingbacks", "rating",
                  "ingested_at", "updated", "enclosures", "duplicate_of")
        read_only_fields = tuple(name for name in fields if name != "rating")

    def to_representation(self, instance: Entry) -> dict:
        # Hand-rolled: ModelSerializer's generic walk over 16 Field objects per entry (get_attribute,
        # to_representation, a time-zone lookup per datetime) made a page of 100 entries ~2x slower
        # than the ORM work beneath it (docs/benchmarks.md, "The REST API"). The output is the
        # generic one's, key for key and byte for byte once rendered (tests/test_api_entry_json.py);
        # date settings other than the project's fall back to it.
        if not (settings.USE_TZ and api_settings.DATETIME_FORMAT == api_settings.DATE_FORMAT == ISO_8601):
            return super().to_representation(instance)
        zone = timezone.get_current_timezone()

        def when(value):  # DRF's DateTimeField: the current time zone, ISO 8601, "Z" for UTC
            text = value.astimezone(zone).isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text

        return {"id": instance.id, "article": instance.technical_article_id,
                "article_name": instance.technical_article.name, "guid": instance.guid, "link": instance.link,
                "headline": instance.headline, "body_text": instance.body_text,
                "published_at": when(instance.published_at), "pub_date": instance.pub_date.isoformat(),
                "mod_date": instance.mod_date.isoformat(),
                "authors": [{"id": author.id, "name": author.name} for author in instance.authors_brief],
                "number_of_comments": instance.number_of_comments, "number_of_pingbacks": instance.number_of_pingbacks,
                "rating": instance.rating, "ingested_at": when(instance.ingested_at), "updated": when(instance.updated_at),
                "enclosures": [{"url": e.url, "type": e.type, "length": e.length, "kind": e.kind}
                               for e in instance.enclosures_brief],
                "duplicate_of": instance.duplicate_of_id}

    def update(self, instance: Entry, validated_data: dict) -> Entry:
        if "rating" in validated_data:
            entry_service.entry_rating_set(entry=instance, rating=validated_data["rating"])
        return instance


class CommentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Comment
        fields = ("id", "guid", "author_name", "body", "published_at", "created_at")
        read_only_fields = fields


class PingbackSerializer(serializers.ModelSerializer):
    class Meta:
        model = Pingback
        fields = ("id", "source_url", "source_entry", "created_at")
        read_only_fields = fields


class FlatListField(serializers.ListField):
    """A list whose item errors are one sentence naming the item, not an object keyed by index: a
    400's body is field -> [sentences] everywhere in this API (docs/api.md, the schema's errors)."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict):
                raise
            index, messages = next(iter(exc.detail.items()))
            said = " ".join(str(m) for m in (messages if isinstance(messages, list) else [messages]))
            raise serializers.ValidationError(f"Item {index}: {said}") from None


class WebhookEndpointSerializer(Strict):
    """A webhook endpoint (docs/webhooks.md). The secret is write-once: generated (or given) at
    creation and shown in that response only; afterwards only the admin shows it to staff. The URL
    passes the fetch stage's address guard, as every delivery does."""

    secret = serializers.CharField(write_only=True, required=False, max_length=128,
                                   help_text="whsec_ and the base64 of 24-64 bytes; generated when omitted. Write-once.")
    event_types = FlatListField(child=serializers.ChoiceField(choices=Event.Type.values), required=False,
                                        help_text="Event types it receives; empty: all.")
    source_ids = FlatListField(child=serializers.IntegerField(min_value=1), required=False,
                                       help_text="Only events of these sources; empty: every source.")

    class Meta:
        model = WebhookEndpoint
        fields = ("id", "name", "url", "secret", "event_types", "source_ids", "active", "state", "disabled_reason",
                  "last_success_at", "last_error", "created_at")
        read_only_fields = ("state", "disabled_reason", "last_success_at", "last_error", "created_at")

    def validate_url(self, value: str) -> str:
        try:
            webhook_service.endpoint_check_url(value)
        except UsageError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_secret(self, value: str) -> str:
        if self.instance is not None:
            raise serializers.ValidationError("Write-once: set at creation; create a new endpoint to change it.")
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not 24 <= len(key) <= 64:
            raise serializers.ValidationError("Must be whsec_ and the base64 of 24 to 64 bytes.")
        return value

    def create(self, validated_data):
        endpoint = super().create(validated_data)
        self.created_secret = endpoint.secret
        return endpoint

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if getattr(self, "created_secret", None):
            data["secret"] = self.created_secret
        return data
