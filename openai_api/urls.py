from django.urls import path, re_path

from . import views
from .responses_api import views as responses_views

urlpatterns = [
    path("chat/completions", views.chat_completions),
    path("completions", views.completions),
    path("models", views.models_list),
    path("models/<path:model_id>", views.models_retrieve),
    path("responses", responses_views.responses_create),
    path("responses/<str:response_id>", responses_views.response_detail),
    path("responses/<str:response_id>/input_items", responses_views.response_input_items),
    re_path(r"^.*$", views.unknown_route),
]
