"""``EntrySerializer.to_representation`` is hand-rolled for speed (see its comment): its JSON must be
exactly what DRF's generic ModelSerializer would send, for every kind of entry, in any time zone."""

from datetime import UTC, date, datetime

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from ingest.api.serializers import EntrySerializer
from ingest.api.views import EntryViewSet
from ingest.models import Author, Enclosure, Entry, TechnicalArticle


@pytest.fixture
def entries(db):
    article = TechnicalArticle.objects.create(name="Ünïcode wéekly — 日本語", feed_url="https://blog.example/feed")
    zoe = Author.objects.create(name="Zoë Ødegaard", email="z@x.example")  # first: ids and names sort apart
    ada = Author.objects.create(name="Ada Lovelace")
    plain = Entry.objects.create(
        technical_article=article, guid="g1", headline="Plain", body_text="<p>plain</p>", link="https://blog.example/1",
        pub_date=date(2026, 1, 2), published_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), content_hash="a")
    rich = Entry.objects.create(
        technical_article=article, guid="tag:blog.example,2026:ü", headline="Café “quoted” 🚀 \u2028 line",
        body_text="<p>naïve \"q\" \\ русский</p>", link="", pub_date=date(2025, 12, 31), mod_date=date(2026, 2, 1),
        published_at=datetime(2025, 12, 31, 23, 59, 59, 123456, tzinfo=UTC), content_hash="b", rating=0,
        number_of_comments=7, number_of_pingbacks=2)
    rich.authors.set([zoe, ada])
    plain.authors.set([ada])
    Entry.objects.create(technical_article=article, guid="g3", headline="No authors", body_text="",
                         pub_date=date(2026, 3, 1), published_at=datetime(2026, 3, 1, tzinfo=UTC), content_hash="c")
    # Out of order on purpose: shown by position. A length past 32 bits, none, a type with parameters.
    Enclosure.objects.bulk_create([
        Enclosure(entry=rich, url="https://cdn.example/épisode.jpg", kind="thumbnail", position=1),
        Enclosure(entry=rich, url="https://cdn.example/épisode.mp3?x=1&y=\"2\"", type='audio/mpeg; codecs="mp3"',
                  length=2**40, position=0),
        Enclosure(entry=plain, url="https://cdn.example/1.ogg", type="audio/ogg", length=0),
    ])


def generic(serializer: EntrySerializer, entry: Entry) -> dict:
    return serializers.ModelSerializer.to_representation(serializer, entry)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_the_list_json_is_the_generic_serializers_byte_for_byte(entries, zone, settings):
    settings.TIME_ZONE = zone
    page = list(EntryViewSet.queryset.order_by("-published_at", "-id"))
    serializer = EntrySerializer()
    with timezone.override(zone):
        fast = JSONRenderer().render(EntrySerializer(page, many=True).data)
        slow = JSONRenderer().render([generic(serializer, entry) for entry in page])
    assert fast == slow
    shown = {row["headline"]: row for row in EntrySerializer(page, many=True).data}
    assert [a["name"] for a in shown["Café “quoted” 🚀 \u2028 line"]["authors"]] == ["Ada Lovelace", "Zoë Ødegaard"]
    assert shown["No authors"]["authors"] == [] and shown["Café “quoted” 🚀 \u2028 line"]["link"] == ""
    assert [e["kind"] for e in shown["Café “quoted” 🚀 \u2028 line"]["enclosures"]] == ["enclosure", "thumbnail"]
    assert shown["Café “quoted” 🚀 \u2028 line"]["enclosures"][0]["length"] == 2**40
    assert shown["No authors"]["enclosures"] == [] and shown["Plain"]["enclosures"][0]["length"] == 0


def test_other_date_formats_fall_back_to_the_generic_serializer(entries, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DATETIME_FORMAT": "%Y-%m-%d %H:%M"}
    entry = EntryViewSet.queryset.get(guid="g1")
    assert EntrySerializer(entry).data["published_at"] == "2026-01-02 03:04"


def test_one_entry_and_a_rating_change_show_its_authors(entries, django_user_model):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("staff", is_staff=True))
    entry = Entry.objects.get(guid="tag:blog.example,2026:ü")
    names = ["Ada Lovelace", "Zoë Ødegaard"]
    shown = client.get(f"/api/entries/{entry.pk}/").json()
    assert [a["name"] for a in shown["authors"]] == names
    changed = client.patch(f"/api/entries/{entry.pk}/", {"rating": 9}, format="json").json()
    assert changed["rating"] == 9 and [a["name"] for a in changed["authors"]] == names
