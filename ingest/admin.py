from django.contrib import admin

from ingest.models import Author, Comment, Entry, IngestRun, Pingback, TechnicalArticle


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


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("entry", "author_name", "published_at", "created_at")
    search_fields = ("author_name", "author_email", "body")
    raw_id_fields = ("entry",)


@admin.register(Pingback)
class PingbackAdmin(admin.ModelAdmin):
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
