"""ASGI entry point: ``uvicorn inference_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inference_site.settings")
django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

from llm_backend.registry import get_registry  # noqa: E402  (needs configured settings)
from openai_api.metrics import mark_this_process_dead  # noqa: E402
from openai_api.request_log_writer import request_log_writer  # noqa: E402

from .api_handler import ApiHandler, ApiRouter  # noqa: E402
from .body_limit import BodyLimitMiddleware  # noqa: E402
from .lifespan import LifespanMiddleware  # noqa: E402
from .shutdown import GracefulShutdown  # noqa: E402


def shutdown() -> None:
    """Stop the engines, then write every request-log row still queued."""
    get_registry().close()
    request_log_writer.close()
    mark_this_process_dead()


graceful_shutdown = GracefulShutdown(
    grace=settings.SHUTDOWN_GRACE_SECONDS,
    refuse_new=lambda: get_registry().refuse_new(),
    idle=lambda: get_registry().idle,
    stop_models=lambda: get_registry().close(),
)

application = LifespanMiddleware(
    BodyLimitMiddleware(ApiRouter(ApiHandler(), django_application)),
    startup=get_registry().load,
    shutdown=shutdown,
    started=graceful_shutdown.install,
)
