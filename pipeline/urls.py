from django.contrib import admin
from django.urls import include, path

from ingest.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("ingest.api.urls")),
    path("healthz", healthz, name="healthz"),
]

# JSON, not Django's HTML pages, for /api/ paths no view answered (ingest/views.py).
handler404 = "ingest.views.not_found"
handler500 = "ingest.views.server_error"
