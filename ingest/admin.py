from django.contrib import admin

from ingest.counters import counters_refresh
from ingest.models import Author, Comment, Entry, IngestRun, Pingback, TechnicalArticle


class CounterSourceAdmin(admin.ModelAdmin):
    """Comments and pingbacks edited here refresh their entry's counter in the same transaction
    (the admin wraps each change in one), so recompute_counts finds nothing to fix afterwards."""

    entry_field = "entry_id"

    def _refresh(self, objs) -> None:
        counters_refresh([getattr(obj, self.entry_field) for obj in objs])

    def save_model(self, request, obj, form, change):
        old = type(obj).objects.filter(pk=obj.pk).values_list(self.entry_field, flat=True).first() if change else None
        super().save_model(request, obj, form, change)
        counters_refresh([getattr(obj, self.entry_field)] + ([old] if old else []))

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._refresh([obj])

    def delete_queryset(self, request, queryset):
        objs = list(queryset)
        super().delete_queryset(request, queryset)
        self._refresh(objs)


@admin.register(TechnicalArticle)
class TechnicalArticleAdmin(admin.ModelAdmin):
    list_display = ("name", "feed_url", "active", "fetch_comments", "last_success_at", "next_fetch_at",
                    "consecutive_failures", "last_error")
    list_filter = ("active", "fetch_comments")
    search_fields = ("name", "tagline", "feed_url", "site_url")
    readonly_fields = ("etag", "last_modified", "last_fetched_at", "last_success_at", "last_status",
                       "consecutive_failures", "last_error", "lease_owner", "lease_expires_at", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "tagline", "feed_url", "site_url")}),
        ("Schedule", {"fields": ("active", "fetch_comments", "fetch_interval", "next_fetch_at")}),
        ("Last fetch", {"fields": ("last_fetched_at", "last_success_at", "last_status", "consecutive_failures",
                                   "last_error", "etag", "last_modified", "lease_owner", "lease_expires_at", "created_at")}),
    )
    actions = ["fetch_now"]

    @admin.action(description="Fetch at the next run (clear backoff)")
    def fetch_now(self, request, queryset):
        updated = queryset.update(next_fetch_at=None, active=True)
        self.message_user(request, f"{updated} source(s) will be fetched by the next run.")


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ("name", "email")
    search_fields = ("name", "email")


class CommentInline(admin.TabularInline):
    model = Comment
    extra = 0
    fields = ("author_name", "author_email", "published_at", "body")
    show_change_link = True


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = ("headline", "technical_article", "pub_date", "mod_date", "number_of_comments",
                    "number_of_pingbacks", "rating")
    list_filter = ("technical_article", "pub_date")
    search_fields = ("headline", "body_text", "guid", "link")
    filter_horizontal = ("authors",)
    date_hierarchy = "pub_date"
    readonly_fields = ("guid", "link_key", "content_hash", "ingested_at", "reported_comments")
    list_select_related = ("technical_article",)
    inlines = [CommentInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        counters_refresh([form.instance.pk])


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


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    list_display = ("id", "command", "trigger", "status", "started_at", "finished_at", "sources_fetched",
                    "sources_not_modified", "sources_failed", "entries_created", "entries_updated", "hostname")
    list_filter = ("command", "trigger", "status")
    search_fields = ("error", "hostname")
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
