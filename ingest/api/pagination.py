"""Cursor pagination: a page is "after this position", not "page 7", so a client walking the list
while the pipeline inserts neither skips nor repeats a row (an offset would shift under it), and
the database seeks to the position instead of counting past an OFFSET."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    page_size_query_param = "page_size"
    page_size_query_description = "Rows per page: API_PAGE_SIZE (50) unless given, at most API_MAX_PAGE_SIZE (500)."
    ordering = "-id"

    def get_page_size(self, request) -> int:
        # Settings are read per request (deployments and tests change them), not frozen in the class.
        default, most = settings.API_PAGE_SIZE, settings.API_MAX_PAGE_SIZE
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return default
        try:
            size = int(raw)
        except ValueError:
            return default
        return max(1, min(size, most))

    def paginate_queryset(self, queryset, request, view=None):
        self._queryset = queryset
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        """A cursor's position is a value of the ordering column, sent to the database: a cursor
        whose position is no such value (not a number, a time past year 9999 in UTC, a NUL, which
        PostgreSQL refuses) was not made here, and is 404 like any other cursor that is not ours."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            field = self._queryset.model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                field.get_db_prep_value(field.to_python(cursor.position), connections[self._queryset.db])
            except (ValidationError, ValueError, OverflowError):
                raise NotFound(self.invalid_cursor_message) from None
            if "\x00" in cursor.position:
                raise NotFound(self.invalid_cursor_message)
        return cursor
