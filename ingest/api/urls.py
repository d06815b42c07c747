"""``/api/``: the tutorial's router (``articles``, ``authors``, ``entries``), the OpenAPI schema
and its Swagger UI."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from ingest.api.views import ArticleViewSet, AuthorViewSet, EntryViewSet, WebhookEndpointViewSet

router = DefaultRouter()
router.register("articles", ArticleViewSet, basename="article")
router.register("authors", AuthorViewSet, basename="author")
router.register("entries", EntryViewSet, basename="entry")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include(router.urls)),
]
