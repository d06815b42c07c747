from django.apps import apps
from django.contrib import admin
from django.contrib.admin.options import csrf_protect_m
from django.utils.text import capfirst

from ingest.models import Author, Comment, Entry, IngestRun, Pingback, TechnicalArticle
from ingest.services.delete import source_delete, source_delete_preview
from ingest.services.recount import entries_counts_refresh
from ingest.services.sources import sources_schedule_now


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
        updated = sources_schedule_now(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{updated} source(s) will be fetched by the next run.")

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
