"""Cursor pagination: a page is "after this position", not "page 7", so a client walking the list
while the pipeline inserts neither skips nor repeats a row (an offset would shift under it), and
the database seeks to the position instead of counting past an OFFSET."""

from __future__ import annotations

from django.conf import settings
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
