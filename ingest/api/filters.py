"""The list endpoints' query parameters (django-filter): each one a plain column comparison on an
indexed column, so that a filtered page costs what an unfiltered one does."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django.utils import timezone
from django_filters.fields import IsoDateTimeField
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter

from ingest import selectors
from ingest.models import TechnicalArticle


ID_MAX = 2**63 - 1  # a BigAutoField: larger numbers are refused (400) rather than overflow the driver


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=ID_MAX, **kwargs)


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 time that stays a time once converted to UTC, as SQLite and MariaDB store it:
    9999-12-31T23:00-01:00 (year 10000 in UTC) is refused (400) rather than overflow at the driver."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise forms.ValidationError("This time is out of range in UTC.", code="invalid") from None
        return value


class TimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class EntryFilter(django_filters.FilterSet):
    # Plain numbers, not model choices: a model choice costs a query to check that the row exists,
    # and "no such article" is an empty list here, as for any filter that matches nothing.
    article = IdFilter(field_name="technical_article_id", help_text="Only this article's entries.")
    author = IdFilter(field_name="authors", help_text="Only entries this author wrote.")
    published_after = TimeFilter(
        field_name="published_at", lookup_expr="gte", help_text="Published at or after this time (ISO 8601).")
    published_before = TimeFilter(
        field_name="published_at", lookup_expr="lt", help_text="Published before this time (ISO 8601).")
    updated_since = TimeFilter(
        field_name="updated_at", lookup_expr="gte",
        help_text="Changed at or after this time (ISO 8601): how a client syncs, see docs/api.md.")
    duplicates = django_filters.ChoiceFilter(
        choices=(("hide", "hide"), ("only", "only")), method="duplicates_filter",
        help_text="hide: leave out the copies of an article another source carried first (duplicate_of set); "
                  "only: just those copies. Absent: every entry.")

    def duplicates_filter(self, queryset, name, value):
        return queryset.filter(duplicate_of__isnull=value == "hide") if value else queryset


class ArticleFilter(django_filters.FilterSet):
    health = django_filters.ChoiceFilter(
        choices=[(state, state) for state in selectors.HEALTH_STATES], method="health_filter",
        help_text="Only articles whose feed is in this health state, staleness judged now (docs/health.md).")

    class Meta:
        model = TechnicalArticle
        fields = ("active", "fetch_comments")

    def health_filter(self, queryset, name, value):
        return selectors.sources_by_health(queryset, state=value, now=timezone.now()) if value else queryset


class Search(SearchFilter):
    """DRF's ``search``, refusing a term (one with a NUL) in the shape of every other refused query
    parameter, ``{"search": [sentence]}``, not DRF's bare list (the schema's ValidationError is an object)."""

    def get_search_terms(self, request):
        try:
            return super().get_search_terms(request)
        except ValidationError as exc:
            raise ValidationError({self.search_param: exc.detail}) from None


class Ordering(OrderingFilter):
    """``ordering`` takes the names the JSON shows: ``updated`` orders by ``updated_at``."""

    aliases: dict[str, str] = {"updated": "updated_at"}

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        return [self._column(term) for term in ordering] if ordering else ordering

    def _column(self, term: str) -> str:
        sign = "-" if term.startswith("-") else ""
        return sign + self.aliases.get(term.lstrip("-"), term.lstrip("-"))
