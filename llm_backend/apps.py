from django.apps import AppConfig


class LlmBackendConfig(AppConfig):
    name = "llm_backend"
    verbose_name = "LLM backend"
