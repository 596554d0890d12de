from django.apps import AppConfig


class OpenaiApiConfig(AppConfig):
    name = "openai_api"
    verbose_name = "OpenAI API"

    def ready(self) -> None:
        """Feed the schedulers' step and queue histograms into /metrics."""
        from .metrics import install_step_observer

        install_step_observer()
