from django.contrib import admin
from django.urls import include, path

from openai_api import ops_views

urlpatterns = [
    path("health", ops_views.health),
    path("ready", ops_views.ready),
    path("metrics", ops_views.metrics_view),
    path("admin/", admin.site.urls),
    path("v1/", include("openai_api.urls")),
    path("api/", include("openai_api.management_urls")),
]
