"""The admin, as an operator's console: sources with their fetch state and actions (fetch now,
re-activate, reset backoff, a chunked delete), feed URLs checked by the fetch guard as
``add_source`` checks them, entries whose counters only the pipeline writes, read-only runs with
their details laid out, and django-celery-beat's tables only when beat reads them. Thin: every
write beyond Django's own form saves goes through ``ingest.services``. See docs/admin.md.
"""

import json

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import csrf_protect_m
from django.db.models import Count, Q
from django.urls import NoReverseMatch, reverse, reverse_lazy
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django_celery_beat import admin as beat_admin  # registers its tables first, so that they can be unregistered
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from ingest import selectors
from ingest.errors import BlockedURL, CredentialsError, UsageError
from ingest.models import (
    Author, Comment, Enclosure, Entry, HostBudget, IdleTick, IngestRun, Pingback, TechnicalArticle, WebhookDelivery,
    WebhookEndpoint, WebSubSubscription,
)
from ingest.services.credentials import auth_check
from ingest.services.delete import source_delete, source_delete_preview
from ingest.services.duplicates import promote_duplicates
from ingest.services.hosts import hosts_unblock
from ingest.services.recount import entries_counts_refresh
from ingest.services.webhooks import endpoint_check_url, endpoint_enable
from ingest.services.sources import source_url_check, sources_activate, sources_backoff_reset, sources_schedule_now

# "View site": the health endpoint, the one page of this product outside the admin (no public site).
admin.site.site_url = reverse_lazy("healthz")

# --- django-celery-beat's tables: shown only when beat reads them ---------------------------------

PERIODIC_TASK_ADMINS = {
    PeriodicTask: beat_admin.PeriodicTaskAdmin,
    IntervalSchedule: beat_admin.IntervalScheduleAdmin,
    CrontabSchedule: beat_admin.CrontabScheduleAdmin,
    SolarSchedule: beat_admin.SolarScheduleAdmin,
    ClockedSchedule: beat_admin.ClockedScheduleAdmin,
}


def periodic_tasks_admin(site: admin.AdminSite = admin.site) -> bool:
    """Register django-celery-beat's tables on ``site`` under the database scheduler
    (``PIPELINE_BEAT_SCHEDULER=database``), unregister them otherwise: under the default scheduler
    beat reads ``CELERY_BEAT_SCHEDULE`` and an edit there would do nothing. Returns whether they are
    shown. Run at import; the URLconf takes the site's URLs once, so a change later needs it reloaded."""
    shown = getattr(settings, "PIPELINE_BEAT_SCHEDULER", "settings") == "database"
    for model, model_admin in PERIODIC_TASK_ADMINS.items():
        if shown and not site.is_registered(model):
            site.register(model, model_admin)
        elif not shown and site.is_registered(model):
            site.unregister(model)
    return shown


periodic_tasks_admin()


class CounterSourceAdmin(admin.ModelAdmin):
    """Comments and pingbacks edited here refresh their entry's counter in the same transaction
    (the admin wraps each change in one), so recompute_counts finds nothing to fix afterwards."""

    entry_field = "entry_id"

    def _refresh(self, objs) -> None:
        entries_counts_refresh(entry_ids=[getattr(obj, self.entry_field) for obj in objs])

    def save_model(self, request, obj, form, change):
        old = type(obj).objects.filter(pk=obj.pk).values_list(self.entry_field, flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        entries_counts_refresh(entry_ids=[getattr(obj, self.entry_field)] + ([old] if old else []))

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._refresh([obj])

    def delete_queryset(self, request, queryset):
        objs = list(queryset)
        super().delete_queryset(request, queryset)
        self._refresh(objs)


class SourceForm(forms.ModelForm):
    """A feed URL typed in the admin passes the check ``add_source`` makes (the fetch guard): a URL in
    a private network is refused with the guard's sentence, which names the setting that allows it.
    (No Meta: the admin builds it from the fieldsets, as for its own default form.)"""

    def clean_feed_url(self):
        url = self.cleaned_data["feed_url"]
        if url and (self.instance._state.adding or "feed_url" in self.changed_data):
            try:
                source_url_check(url)
            except BlockedURL as exc:
                raise forms.ValidationError(str(exc), code="blocked") from None
        return url

    def clean_extra_headers(self):
        return self.cleaned_data.get("extra_headers") or {}  # an empty box means no extra headers

    def clean(self):
        """The credentials pass ``credentials.auth_check`` (a reference's syntax, a secret that must
        be set now, the extra headers' rules); the sentence names a reference, never a value."""
        cleaned = super().clean()
        names = ("auth_scheme", "auth_username", "auth_secret", "extra_headers")
        if all(name in cleaned for name in names) and (self.instance._state.adding or set(names) & set(self.changed_data)):
            try:
                auth_check(scheme=cleaned["auth_scheme"], username=cleaned["auth_username"],
                           secret=cleaned["auth_secret"])
            except CredentialsError as exc:
                self.add_error("auth_secret", forms.ValidationError(str(exc), code="credentials"))
            try:
                auth_check(extra_headers=cleaned["extra_headers"])
            except CredentialsError as exc:
                self.add_error("extra_headers", forms.ValidationError(str(exc), code="credentials"))
        return cleaned


class HealthFilter(admin.SimpleListFilter):
    """Sources by effective health (docs/health.md): a healthy source gone stale is degraded here."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [(state, state) for state in selectors.HEALTH_STATES]

    def queryset(self, request, queryset):
        if self.value() in selectors.HEALTH_STATES:
            return selectors.sources_by_health(queryset, state=self.value(), now=timezone.now())
        return queryset


@admin.register(TechnicalArticle)
class TechnicalArticleAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = ("name", "feed_url", "active", "health_state", "fetch_comments", "last_success_at", "next_fetch_at",
                    "schedule_reason", "consecutive_failures", "last_error")
    list_filter = (HealthFilter, "active", "fetch_comments")
    search_fields = ("name", "tagline", "feed_url", "site_url")
    readonly_fields = ("etag", "last_modified", "last_fetched_at", "last_success_at", "last_status",
                       "consecutive_failures", "last_error", "lease_owner", "lease_expires_at", "created_at",
                       "schedule_reason", "publish_cadence", "feed_hints", "health_state", "health_changed_at",
                       "health_stale_at", "body_digest")
    fieldsets = (
        (None, {"fields": ("name", "tagline", "feed_url", "site_url")}),
        ("Schedule", {"fields": ("active", "fetch_comments", "fetch_interval", "honour_server_hints", "next_fetch_at",
                                 "schedule_reason", "publish_cadence", "feed_hints")}),
        ("Health", {"fields": ("health_state", "health_changed_at", "health_stale_at")}),
        ("Last fetch", {"fields": ("last_fetched_at", "last_success_at", "last_status", "consecutive_failures",
                                   "last_error", "etag", "last_modified", "lease_owner", "lease_expires_at", "created_at",
                                   "body_digest")}),
        ("Credentials (references to secrets, never a value)",
         {"fields": ("auth_scheme", "auth_username", "auth_secret", "extra_headers")}),
        ("Retention", {"fields": ("retention_days", "retention_max_entries")}),
    )
    actions = ["fetch_now", "reactivate", "reset_backoff"]

    @admin.display(description="health", ordering="health")
    def health_state(self, obj) -> str:
        return selectors.source_health(obj, now=timezone.now())

    @admin.action(description="Fetch at the next run (clear backoff)")
    def fetch_now(self, request, queryset):
        updated = sources_schedule_now(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{updated} source(s) will be fetched by the next run.")

    @admin.action(description="Re-activate (keep the schedule)")
    def reactivate(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        switched = sources_activate(ids=ids)
        already = f" ({len(ids) - switched} already active)" if len(ids) > switched else ""
        self.message_user(request, f"{switched} source(s) re-activated{already}; each is fetched when it is due.")

    @admin.action(description="Reset backoff (forget failures, fetch at the next run)")
    def reset_backoff(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        inactive = queryset.filter(active=False).count()
        updated = sources_backoff_reset(ids=ids)
        note = f" {inactive} of them inactive: re-activate them to fetch them." if inactive else ""
        self.message_user(request, f"{updated} source(s): failures forgotten, due at the next run.{note}")

    # Deleting a source goes through ingest.services.delete, chunk by chunk, like `manage.py
    # delete_source`: Django's collector would list and delete every entry, comment and pingback in
    # statements that grow with the source (and spill into #Temp_params on SQL Server).

    def get_deleted_objects(self, objs, request):
        """The confirmation page: per source, how many rows of each kind go with it (counted, not listed)."""
        deleted, model_count, perms_needed = [], {}, set()
        for obj in objs:
            plan = source_delete_preview(source_id=obj.pk)
            lines = []
            for label, n in plan.rows.items():
                model = apps.get_model(label)
                if model is TechnicalArticle or (not n and model is not Entry):
                    continue
                opts = model._meta
                lines.append(f"{n:,} {opts.verbose_name if n == 1 else opts.verbose_name_plural}")
                if n and self.admin_site.is_registered(model) and \
                        not self.admin_site.get_model_admin(model).has_delete_permission(request):
                    perms_needed.add(opts.verbose_name)
            for label, n in plan.rows.items():
                name = apps.get_model(label)._meta.verbose_name_plural
                model_count[name] = model_count.get(name, 0) + n
            deleted.append(f"{capfirst(self.opts.verbose_name)}: {obj}")
            deleted.append(lines)
        return deleted, {name: n for name, n in model_count.items() if n}, perms_needed, []

    @csrf_protect_m  # as Django's own delete_view
    def delete_view(self, request, object_id, extra_context=None):
        # Django runs a confirmed delete inside one transaction; the chunked delete commits a
        # transaction per chunk (run_atomic refuses to run inside another one).
        return self._delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        source_delete(source_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for pk in list(queryset.values_list("pk", flat=True)):
            source_delete(source_id=pk)


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ("name", "email")
    search_fields = ("name", "email")


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    fields = ("author_name", "author_email", "published_at", "body")
    show_change_link = True


class EnclosureInline(admin.TabularInline):
    """An entry's enclosures, media:content and media:thumbnail, as the feed lists them: the
    pipeline's, read-only (the next fetch would undo an edit)."""

    model = Enclosure
    extra = 0
    fields = ("position", "kind", "url", "type", "length")
    readonly_fields = fields
    ordering = ("position", "pk")
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class DuplicateFilter(admin.SimpleListFilter):
    """Copies of an article another source carried first (``duplicate_of`` set), or the others."""

    title = "duplicate"
    parameter_name = "duplicate"

    def lookups(self, request, model_admin):
        return (("yes", "yes"), ("no", "no"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(duplicate_of__isnull=self.value() == "no")
        return queryset


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ("headline", "technical_article", "pub_date", "mod_date", "number_of_comments",
                    "number_of_pingbacks", "rating")
    list_filter = ("technical_article", "pub_date", DuplicateFilter)
    search_fields = ("headline", "body_text", "guid", "link")
    autocomplete_fields = ("authors",)  # searched on AuthorAdmin.search_fields, never all authors in one widget
    date_hierarchy = "pub_date"
    # The counters are the pipeline's: written from the Comment and Pingback rows (and by
    # recompute_counts), never by hand.
    # updated_at is stamped by every write (save_related's counter refresh included), for API clients.
    readonly_fields = ("number_of_comments", "number_of_pingbacks", "guid", "link_key", "content_hash", "ingested_at",
                       "updated_at", "reported_comments", "canonical_entry")
    exclude = ("duplicate_of",)  # the pipeline's (ingest.services.duplicates): shown as canonical_entry
    list_select_related = ("technical_article",)
    inlines = [CommentInline, EnclosureInline]

    @admin.display(description="canonical entry")
    def canonical_entry(self, obj):
        """The entry this one is a copy of (another source carried the article first), linked."""
        if obj is None or obj.duplicate_of_id is None:
            return "- (this entry is canonical or has no copy in another source)"
        canonical = Entry.objects.select_related("technical_article").only(
            "id", "headline", "technical_article__name").get(pk=obj.duplicate_of_id)
        return format_html('<a href="{}">{}</a> ({})', reverse("admin:ingest_entry_change", args=[canonical.pk]),
                           canonical.headline, canonical.technical_article.name)

    def delete_model(self, request, obj):
        promote_duplicates([obj.pk])  # its copies re-point to the oldest remaining one, in the same transaction
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        promote_duplicates(list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        entries_counts_refresh(entry_ids=[form.instance.pk])


@admin.register(Comment)
class CommentAdmin(CounterSourceAdmin):
    list_display = ("entry", "author_name", "published_at", "created_at")
    search_fields = ("author_name", "author_email", "body")
    raw_id_fields = ("entry",)


@admin.register(Pingback)
class PingbackAdmin(CounterSourceAdmin):
    entry_field = "target_id"
    list_display = ("target", "source_url", "source_entry", "created_at")
    search_fields = ("source_url",)
    raw_id_fields = ("target", "source_entry")


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of what happened, not something to edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebSubSubscription)
class WebSubSubscriptionAdmin(ReadOnlyAdmin):
    """WebSub subscriptions as the hubs granted them (docs/scheduling-policy.md, "WebSub"). The
    secret and the callback id are not shown: either would let anyone forge pushes or verifications."""

    list_display = ("topic_url", "hub_url", "source", "state", "lease_expires_at", "next_action_at", "pushes", "last_push_at")
    list_filter = ("state", "wanted")
    search_fields = ("topic_url", "hub_url")
    fields = readonly_fields = ("source", "hub_url", "topic_url", "wanted", "state", "lease_seconds", "lease_expires_at",
                                "next_action_at", "requested_at", "verified_at", "last_push_at", "pushes",
                                "consecutive_failures", "last_error", "created_at")


@admin.register(IngestRun)
class IngestRunAdmin(ReadOnlyAdmin):
    """The ledger, read-only: a run is what happened, not something to edit."""

    list_display = ("id", "command", "trigger", "status", "started_at", "finished_at", "sources_fetched",
                    "sources_not_modified", "sources_failed", "entries_created", "entries_updated", "hostname")
    list_filter = ("command", "trigger", "status")
    search_fields = ("error", "hostname")
    date_hierarchy = "started_at"
    fieldsets = (
        (None, {"fields": ("command", "trigger", "status", "started_at", "finished_at", "error", "hostname", "pid",
                           "lease_owner")}),
        ("Counts", {"fields": ("sources_total", "sources_fetched", "sources_not_modified", "sources_failed",
                               "sources_internal_errors", "entries_created", "entries_updated", "entries_unchanged",
                               "sources_deferred")}),
        ("Details", {"fields": ("details",)}),
    )
    readonly_fields = ("details",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("stats")  # one source result each: the list needs none

    @admin.display(description="details")
    def details(self, obj):
        return run_details(obj.stats)


@admin.register(IdleTick)
class IdleTickAdmin(ReadOnlyAdmin):
    """Scheduled ticks that found nothing due, per command: counted by the dispatcher."""

    list_display = ("command", "idle_ticks", "last_idle_at")


@admin.register(HostBudget)
class HostBudgetAdmin(ReadOnlyAdmin):
    """Each host's shared request budget (docs/scheduling-policy.md, "Per-host budget"): its last
    request start, its slots in use, and a Retry-After block, which an operator may lift."""

    list_display = ("host", "last_start_at", "slots_in_use", "blocked_until", "blocked_reason")
    search_fields = ("host",)
    actions = ["unblock"]

    @admin.display(description="slots in use")
    def slots_in_use(self, obj: HostBudget) -> int:
        return obj.slots.exclude(holder="").filter(expires_at__gt=timezone.now()).count()

    @admin.action(description="Lift the Retry-After block (fetch the host's sources again)")
    def unblock(self, request, queryset):
        lifted = hosts_unblock(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{lifted} host(s) unblocked; their deferred sources are fetched by the next run.")


# --- IngestRun.stats, laid out (shapes: docs/architecture.md, "One ingest run") --------------------

SOURCES_SHOWN = 500  # rows of the per-source table; a run of more says how many are left out


def _n(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_details(stats) -> str:
    """``IngestRun.stats`` as an operator reads it: an ingest run's totals, retries, skipped
    sources, comment feeds and per-source table; a recount's summary; any other key as itself."""
    if not isinstance(stats, dict) or not stats:
        return "—"
    if "sources" in stats or "skipped_leased" in stats:
        known, parts = {"retries", "skipped_leased", "comments", "sources"}, _ingest_details(stats)
    elif "scanned" in stats:
        known, parts = {"run_id", "status", "dry_run", "scanned", "changed", "chunks", "retries", "elapsed_s"}, \
            [_recount_details(stats)]
    else:
        known, parts = set(), []
    rest = {key: value for key, value in stats.items() if key not in known}
    if rest:
        parts.append(format_html('<table class="run-other"><tbody>{}</tbody></table>', format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>",
            ((key, value if isinstance(value, (str, int, float)) else json.dumps(value, default=str))
             for key, value in rest.items()))))
    return format_html_join("", "{}", ((part,) for part in parts))


def _ingest_details(stats: dict) -> list[str]:
    sources = [s for s in stats.get("sources") or () if isinstance(s, dict)]
    outcomes = [s.get("outcome") for s in sources]
    failed = outcomes.count("failed")
    internal = sum(1 for s in sources if s.get("internal_error"))
    totals = (f"{len(sources)} source(s): {sum(_n(s.get('created')) for s in sources)} new, "
              f"{sum(_n(s.get('updated')) for s in sources)} updated, {sum(_n(s.get('unchanged')) for s in sources)} "
              f"unchanged, {outcomes.count('not_modified')} not modified, {failed} failed"
              + (f" ({internal} internal error(s): see the logs)" if internal else "")
              + (f", {outcomes.count('deferred')} deferred (host budget)" if "deferred" in outcomes else "")
              + f"; {sum(_n(s.get('pingbacks')) for s in sources)} pingbacks recorded")
    retries = (f"{_n(stats.get('retries'))} transaction retries (transient database errors); "
               f"{_n(stats.get('skipped_leased'))} due source(s) skipped, leased by another run")
    c = stats.get("comments") if isinstance(stats.get("comments"), dict) else {}
    comments = (f"Comment feeds: {_n(c.get('feeds'))} polled, {_n(c.get('created'))} new comments, "
                f"{_n(c.get('updated'))} updated, {_n(c.get('not_modified'))} not modified, "
                f"{_n(c.get('failed'))} failed")
    parts = [format_html('<p class="run-totals">{}</p><p>{}</p><p>{}</p>', totals, retries, comments)]
    if sources:
        shown = sorted(sources, key=lambda s: s.get("outcome") != "failed")[:SOURCES_SHOWN]  # failed first
        more = len(sources) - len(shown)
        parts.append(format_html(
            '<table class="run-sources"><thead><tr><th>id</th><th>source</th><th>outcome</th><th>new</th>'
            "<th>updated</th><th>unchanged</th><th>pingbacks</th><th>reason</th></tr></thead><tbody>{}</tbody></table>{}",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                 "<td>{}</td></tr>", (_source_row(s) for s in shown)),
            format_html("<p>… and {} more</p>", more) if more else ""))
    return parts


def _source_row(result: dict) -> tuple:
    name = result.get("name") or result.get("url") or ""
    try:
        shown = format_html('<a href="{}">{}</a>', reverse("admin:ingest_technicalarticle_change",
                                                           args=[result.get("id")]), name)
    except NoReverseMatch:
        shown = name
    counts = (_n(result.get(key)) for key in ("created", "updated", "unchanged", "pingbacks"))
    reason = result.get("error") or result.get("deferred_reason") or ""
    return (result.get("id", ""), shown, result.get("outcome", ""), *counts, reason)


def _recount_details(stats: dict) -> str:
    elapsed = stats.get("elapsed_s")
    summary = (f"{_n(stats.get('scanned'))} entries scanned, {_n(stats.get('changed'))} changed, "
               f"{_n(stats.get('chunks'))} chunks, {_n(stats.get('retries'))} retries"
               + (f" in {elapsed:.2f}s" if isinstance(elapsed, (int, float)) else ""))
    if stats.get("dry_run"):
        summary += " (dry run: nothing written)"
    return format_html('<p class="run-totals">{}</p>', summary)


# --- webhooks (docs/webhooks.md) ------------------------------------------------------------------

class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "secret", "event_types", "source_ids", "active")

    def clean_url(self):
        """The fetch stage's address guard, as at delivery: a URL it would refuse is refused here."""
        url = self.cleaned_data["url"]
        try:
            endpoint_check_url(url)
        except UsageError as exc:
            raise forms.ValidationError(str(exc)) from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Receivers of signed event batches: their state, why one was disabled, and their backlog. The
    secret is shown to staff (the receiver needs it); the API never shows it after creation."""

    form = WebhookEndpointForm
    list_display = ("__str__", "state", "active", "pending", "dead", "last_success_at", "disabled_reason")
    list_filter = ("state", "active")
    search_fields = ("name", "url")
    readonly_fields = ("state", "disabled_reason", "consecutive_failures", "dead_batches", "failing_since",
                       "next_attempt_at", "last_success_at", "last_error", "created_at")
    actions = ("reenable",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            pending_count=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.PENDING)),
            dead_count=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.DEAD)))

    @admin.display(description="pending", ordering="pending_count")
    def pending(self, obj):
        return obj.pending_count

    @admin.display(description="dead", ordering="dead_count")
    def dead(self, obj):
        return obj.dead_count

    @admin.action(description="Re-enable (send again from the next pass)")
    def reenable(self, request, queryset):
        done = sum(endpoint_enable(pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} endpoint(s) re-enabled; 'webhooks replay --since' sends what they missed.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """One event for one endpoint, read-only: pending, delivered, or dead (a dead letter)."""

    list_display = ("event", "endpoint", "state", "attempts", "last_status", "last_attempt_at", "delivered_at")
    list_filter = ("state", "endpoint")
    fields = readonly_fields = ("event", "endpoint", "state", "attempts", "message_id", "next_attempt_at",
                                "last_attempt_at", "delivered_at", "last_status", "last_error", "created_at")
