"""The viewsets behind ``/api/articles/``, ``/api/authors/`` and ``/api/entries/``.

Every list and detail response costs a constant number of queries whatever its size: the entry's
article comes in the same query (``select_related``), its authors and its enclosures in one more
each (``prefetch``).
Writes run whole, request included, in ``run_atomic``: a transient database error (deadlock, lock
timeout, Azure SQL throttling, SQLite busy) rolls the attempt back and runs it again, bounded and
jittered, so a write is applied once or not at all.
"""

from __future__ import annotations

import json

from django.db.models import Prefetch
from django.utils.cache import patch_vary_headers
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from ingest.api import serializers as s
from ingest.api.filters import ArticleFilter, EntryFilter
from ingest.errors import BlockedURL, NoFeedChosen
from ingest.models import Author, Comment, Enclosure, Entry, Pingback, TechnicalArticle, WebhookEndpoint
from ingest.retry import run_atomic
from ingest.services import sources as source_service
from ingest.services.delete import source_delete
from ingest.services.webhooks import endpoint_reset



class OpmlRenderer(BaseRenderer):
    """The OPML document's bytes as they are; an error (a dict) as the API's JSON error."""

    media_type = "text/x-opml"
    format = "opml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return json.dumps(data, ensure_ascii=False).encode("utf-8")


class VaryByCredentials:
    """A cache between the API and its clients keys answers by the credentials too: unless reads are
    anonymous, a response for one token is no answer for a request without one."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_vary_headers(response, ("Authorization",))
        return response


class RetryingWrites:
    """Each write action runs in the retrying atomic helper, as one unit with its validation.

    No ``create`` here: the router routes POST to any viewset that has one, and entries have none
    (a POST must be 405, not a call to a missing parent method); ``ArticleViewSet`` has its own."""

    def _retrying(self, handler, request, *args, **kwargs):
        return run_atomic(lambda: handler(request, *args, **kwargs), label=f"api.{self.basename}.{self.action}")

    def update(self, request, *args, **kwargs):
        return self._retrying(super().update, request, *args, **kwargs)


@extend_schema_view(
    list=extend_schema(summary="List articles (the feed sources)"),
    retrieve=extend_schema(summary="One article and the health of its feed"),
    create=extend_schema(summary="Register a feed (staff)",
                         description="A feed_url that is a web page registers the one feed the page advertises; a page "
                                     "advertising several is a 400 listing them in `candidates`, to post again with one."),
    update=extend_schema(summary="Change an article (staff)"),
    partial_update=extend_schema(summary="Change some of an article's fields (staff)"),
    destroy=extend_schema(summary="Delete an article and everything ingested from it (staff)"),
)
class ArticleViewSet(VaryByCredentials, RetryingWrites, viewsets.ModelViewSet):
    """The feed sources (the tutorial's TechnicalArticle), with the health of each feed. Staff may
    register, change and delete them; the fetch state is the pipeline's, read-only here."""

    queryset = TechnicalArticle.objects.all()
    serializer_class = s.ArticleSerializer
    filterset_class = ArticleFilter
    search_fields = ("name",)
    ordering_fields = ("id", "name")
    ordering = ("id",)

    def create(self, request, *args, **kwargs):
        # A feed_url that is a web page means the feed it advertises: found by one fetch, before
        # and outside the transaction (no database work waits on a publisher's server).
        data = request.data
        given = data.get("feed_url") if hasattr(data, "get") else None
        if isinstance(given, str) and given.strip():
            try:
                feed_url = source_service.source_feed_url(given)
            except NoFeedChosen as exc:
                return Response({"feed_url": [f"{exc} Post again with the chosen feed's URL." if exc.candidates else str(exc)],
                                 "candidates": [{"url": c.url, "title": c.title, "type": c.type} for c in exc.candidates]},
                                status=status.HTTP_400_BAD_REQUEST)
            except BlockedURL as exc:
                return Response({"feed_url": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
            if feed_url != given.strip():
                data = data.copy()
                data["feed_url"] = feed_url
        return run_atomic(lambda: self._create(data), label=f"api.{self.basename}.{self.action}")

    def _create(self, data):
        serializer = self.get_serializer(data=data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return Response(serializer.data, status=status.HTTP_201_CREATED, headers=self.get_success_headers(serializer.data))

    @extend_schema(summary="Every active article as an OPML 2.0 document (the feed list readers import)",
                   description="One outline per active article (name, xmlUrl, htmlUrl), as `manage.py export_opml` "
                               "writes it. Not paginated.",
                   responses={(200, "text/x-opml"): bytes}, filters=False)
    @action(detail=False, methods=["get"], url_path="opml", renderer_classes=[OpmlRenderer], filter_backends=[],
            pagination_class=None)
    def opml(self, request, format=None):
        document, _ = source_service.opml_export()
        response = Response(document, content_type=f"{OpmlRenderer.media_type}; charset=utf-8")
        response["Content-Disposition"] = 'inline; filename="sources.opml"'
        return response

    def destroy(self, request, *args, **kwargs):
        article = self.get_object()
        # Deleted in bounded chunks, each its own retried transaction (services/delete.py).
        source_delete(source_id=article.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="List authors"),
    retrieve=extend_schema(summary="One author"),
)
class AuthorViewSet(VaryByCredentials, viewsets.ReadOnlyModelViewSet):
    """The authors the feeds name, read-only: the pipeline creates them from the entries."""

    queryset = Author.objects.all()
    serializer_class = s.AuthorSerializer
    search_fields = ("name",)
    ordering_fields = ("id", "name")
    ordering = ("id",)


ENTRY_COLUMNS = ("id", "technical_article_id", "technical_article__name", "guid", "link", "headline", "body_text",
                 "published_at", "pub_date", "mod_date", "number_of_comments", "number_of_pingbacks", "rating",
                 "ingested_at", "updated_at", "duplicate_of")
ENCLOSURE_COLUMNS = ("id", "entry_id", "url", "type", "length", "kind", "position")


@extend_schema_view(
    list=extend_schema(summary="List entries"),
    retrieve=extend_schema(summary="One entry"),
    update=extend_schema(summary="Rate an entry (staff; rating is the only writable field)"),
    partial_update=extend_schema(summary="Rate an entry (staff; rating is the only writable field)"),
)
class EntryViewSet(VaryByCredentials, RetryingWrites, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                   mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """The entries ingested from the feeds, newest first, with their authors and counters. Only the
    rating can be changed (by staff); the rest belongs to the feed and the pipeline."""

    # to_attr: each entry's authors as a plain list. Without it Django builds a related manager and a
    # filtered queryset per entry to hold them: a third of a 100-entry page's time (docs/benchmarks.md).
    queryset = (Entry.objects.select_related("technical_article").only(*ENTRY_COLUMNS)
                .prefetch_related(Prefetch("authors", queryset=Author.objects.only("id", "name"), to_attr="authors_brief"),
                                  Prefetch("enclosures", to_attr="enclosures_brief",
                                           queryset=Enclosure.objects.only(*ENCLOSURE_COLUMNS).order_by("position", "pk"))))
    serializer_class = s.EntrySerializer
    filterset_class = EntryFilter
    search_fields = ("headline",)
    ordering_fields = ("published_at", "id", "updated")
    ordering = ("-published_at", "-id")

    def _entry_id(self) -> int:
        """The entry of a nested route, checked to exist in one small query."""
        try:
            entry_id = int(self.kwargs["pk"])
        except ValueError:
            raise NotFound("No entry has this id.") from None
        if not Entry.objects.filter(pk=entry_id).exists():
            raise NotFound("No entry has this id.")
        return entry_id

    def _nested(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True, context=self.get_serializer_context()).data)

    @extend_schema(summary="The comments of an entry", responses=s.CommentSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], serializer_class=s.CommentSerializer, filter_backends=[],
            filterset_class=None, search_fields=(), ordering=("id",))
    def comments(self, request, pk=None):
        return self._nested(Comment.objects.filter(entry_id=self._entry_id()), s.CommentSerializer)

    @extend_schema(summary="The pingbacks an entry received", responses=s.PingbackSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], serializer_class=s.PingbackSerializer, filter_backends=[],
            filterset_class=None, search_fields=(), ordering=("id",))
    def pingbacks(self, request, pk=None):
        return self._nested(Pingback.objects.filter(target_id=self._entry_id()), s.PingbackSerializer)


@extend_schema_view(
    list=extend_schema(summary="List webhook endpoints (staff)"),
    retrieve=extend_schema(summary="One webhook endpoint, its state and why it was disabled (staff)"),
    create=extend_schema(summary="Add a webhook endpoint (staff); the response is the only one with its secret"),
    update=extend_schema(summary="Change a webhook endpoint (staff)"),
    partial_update=extend_schema(summary="Change some of a webhook endpoint's fields (staff)"),
    destroy=extend_schema(summary="Delete a webhook endpoint and its deliveries (staff)"),
)
class WebhookEndpointViewSet(VaryByCredentials, RetryingWrites, viewsets.ModelViewSet):
    """Receivers of signed event batches (docs/webhooks.md); staff only: a URL and its secret are
    the operator's. ``active`` is the switch; setting it true on a disabled endpoint re-enables it."""

    queryset = WebhookEndpoint.objects.all()
    serializer_class = s.WebhookEndpointSerializer
    permission_classes = [IsAdminUser]
    ordering = ("id",)

    def create(self, request, *args, **kwargs):
        return run_atomic(lambda: super(WebhookEndpointViewSet, self).create(request, *args, **kwargs),
                          label=f"api.{self.basename}.create")

    def perform_update(self, serializer):
        was_active = serializer.instance.active
        endpoint = serializer.save()
        if endpoint.active and (not was_active or endpoint.state == WebhookEndpoint.State.DISABLED):
            endpoint_reset(endpoint.pk)  # inside the update's run_atomic

    def destroy(self, request, *args, **kwargs):
        endpoint = self.get_object()
        run_atomic(endpoint.delete, label=f"api.{self.basename}.destroy")
        return Response(status=status.HTTP_204_NO_CONTENT)
