from django.contrib import admin
from django.urls import include, path

from ingest.callbacks import websub_callback
from ingest.views import healthz, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("ingest.api.urls")),
    path("healthz", healthz, name="healthz"),
    # Prometheus metrics, token or network restricted (docs/metrics.md).
    path("metrics", metrics, name="metrics"),
    # WebSub hubs verify subscriptions and push new content here (ingest/callbacks.py).
    path("websub/<str:callback_id>", websub_callback, name="websub-callback"),
]

# JSON, not Django's HTML pages, for /api/ paths no view answered (ingest/views.py).
handler404 = "ingest.views.not_found"
handler500 = "ingest.views.server_error"
