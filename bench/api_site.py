"""The API benchmark's URLconf: every product URL (``pipeline.urls``) plus ``/bench/floor/``, the
same first page of ``/api/entries/`` rendered by a plain Django view: the floor for this stack; and
``/bench/generic/``, the API's list as it was before its read path was made faster (DRF's generic
``ModelSerializer`` walk, authors prefetched into related managers), to measure that change.

The floor does the same work as the API in the fewest steps Django allows: the token checked in
one query, the 100 rows in one ``values()`` query (same columns, same ordering
``-published_at, -id``), their authors in one ``values_list()`` query on the through table (ordered
by name, as the API's prefetch orders them), and the same JSON (DRF's date formats, compact
separators, UTF-8). It goes through the same middleware (ETag included); it has no cursor, filters
or content negotiation. Mounted only here, never in the product's URLs.
"""

from __future__ import annotations

import datetime
import json

from django.db.models import Prefetch
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.utils import timezone
from rest_framework import serializers
from rest_framework.authtoken.models import Token

from ingest.api.serializers import AuthorBriefSerializer, EnclosureSerializer, EntrySerializer
from ingest.api.views import ENTRY_COLUMNS, EntryViewSet
from ingest.models import Author, Enclosure, Entry

FLOOR_COLUMNS = ("id", "technical_article_id", "technical_article__name", "guid", "link", "headline", "body_text",
                 "published_at", "pub_date", "mod_date", "number_of_comments", "number_of_pingbacks", "rating",
                 "ingested_at", "updated_at")


def _when(value: datetime.datetime) -> str:
    """DRF's DateTimeField output: the current time zone, ISO 8601, ``Z`` for UTC."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def floor(request):
    key = request.headers.get("Authorization", "").removeprefix("Token ")
    if not Token.objects.filter(key=key, user__is_active=True).exists():
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    size = int(request.GET.get("page_size", 100))
    rows = list(Entry.objects.order_by("-published_at", "-id").values_list(*FLOOR_COLUMNS)[:size])
    authors: dict[int, list[dict]] = {}
    for entry_id, author_id, name in (Entry.authors.through.objects.filter(entry_id__in=[row[0] for row in rows])
                                      .order_by("author__name").values_list("entry_id", "author_id", "author__name")):
        authors.setdefault(entry_id, []).append({"id": author_id, "name": name})
    enclosures: dict[int, list[dict]] = {}
    for entry_id, url, type_, length, kind in (Enclosure.objects.filter(entry_id__in=[row[0] for row in rows])
                                               .order_by("position", "pk")
                                               .values_list("entry_id", "url", "type", "length", "kind")):
        enclosures.setdefault(entry_id, []).append({"url": url, "type": type_, "length": length, "kind": kind})
    results = [{"id": pk, "article": article, "article_name": article_name, "guid": guid, "link": link,
                "headline": headline, "body_text": body, "published_at": _when(published), "pub_date": pub.isoformat(),
                "mod_date": mod.isoformat(), "authors": authors.get(pk, []), "number_of_comments": comments,
                "number_of_pingbacks": pingbacks, "rating": rating, "ingested_at": _when(ingested),
                "updated": _when(updated), "enclosures": enclosures.get(pk, [])}
               for (pk, article, article_name, guid, link, headline, body, published, pub, mod, comments, pingbacks,
                    rating, ingested, updated) in rows]
    body = json.dumps({"next": None, "previous": None, "results": results}, ensure_ascii=False, separators=(",", ":"))
    return HttpResponse(body.encode(), content_type="application/json")


class GenericEntrySerializer(EntrySerializer):
    authors = AuthorBriefSerializer(many=True, read_only=True)
    enclosures = EnclosureSerializer(many=True, read_only=True)
    to_representation = serializers.ModelSerializer.to_representation


class GenericEntryViewSet(EntryViewSet):
    queryset = (Entry.objects.select_related("technical_article").only(*ENTRY_COLUMNS)
                .prefetch_related(Prefetch("authors", queryset=Author.objects.only("id", "name")),
                                  Prefetch("enclosures", queryset=Enclosure.objects.order_by("position", "pk"))))
    serializer_class = GenericEntrySerializer


urlpatterns = [
    path("bench/floor/", floor, name="bench-floor"),
    path("bench/generic/", GenericEntryViewSet.as_view({"get": "list"}), name="bench-generic"),
    path("", include("pipeline.urls")),
]
handler404 = "ingest.views.not_found"
handler500 = "ingest.views.server_error"
