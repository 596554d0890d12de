from django.urls import path, re_path

from . import views

urlpatterns = [
    path("chat/completions", views.chat_completions),
    path("completions", views.completions),
    path("models", views.models_list),
    path("models/<path:model_id>", views.models_retrieve),
    re_path(r"^.*$", views.unknown_route),
]
