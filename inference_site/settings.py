"""Django settings. Every environment variable the server reads is read here, once.

See the README ("Configuration") for the variables and their defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from llm_backend.specs import SpecError, build_specs

from .env import Env

# Lets admin and ORM generics be subscripted at run time, as their type stubs describe them.
django_stubs_ext.monkeypatch()

env = Env(os.environ)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env.path("VAR_DIR", BASE_DIR / "var")

DEBUG = env.boolean("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY from the environment; with DEBUG on, one generated once into VAR_DIR."""
    configured = env.string("SECRET_KEY")
    if configured:
        return configured
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` and export it as SECRET_KEY "
            "(or set DEBUG=true on a development machine)."
        )
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.items("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# -- security (README, "Security": what each of these weakens or strengthens) ----------------
# Browser origins that may call /v1 (CORS); empty: no CORS headers at all.
CORS_ALLOWED_ORIGINS = env.items("CORS_ALLOWED_ORIGINS", [])
# Origins trusted for the admin's CSRF check when it is served behind a proxy on another host.
CSRF_TRUSTED_ORIGINS = env.items("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy: trust its X-Forwarded-Proto, mark cookies secure, send HSTS.
if env.boolean("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.boolean("SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 0, minimum=0) or 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "llm_backend",
    "openai_api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "inference_site.cors.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "inference_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "inference_site.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env.string("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env.integer("DB_CONN_MAX_AGE", 60, minimum=0) or 0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# The admin's static files, served by WhiteNoise under uvicorn straight from the installed apps.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Largest request body the API accepts, in bytes (a bigger one gets 413).
API_MAX_BODY_BYTES: int = env.integer("API_MAX_BODY_BYTES", 8 * 1024 * 1024) or 8 * 1024 * 1024
# -- hostile clients (README, "Limits, health and metrics") ----------------------------------
# Largest request body anywhere else (admin, /api/, /health...): a bigger one gets a plain 413.
SITE_MAX_BODY_BYTES: int = env.integer("SITE_MAX_BODY_BYTES", 1024 * 1024) or 1024 * 1024
# Seconds a client may take to send a whole request body, from when the server starts reading
# it (after its headers and, on /v1, its key are checked); a slower one gets 408.
BODY_READ_TIMEOUT: float = env.seconds("BODY_READ_TIMEOUT") or 30.0
# Seconds a connection may take to send its request headers, from when it opens or its previous
# response ends; then it is closed (python -m inference_site.serve applies these two).
HTTP_HEADER_TIMEOUT: float = env.seconds("HTTP_HEADER_TIMEOUT") or 10.0
# Open connections per worker process; past it the one idle longest is closed (each takes a file
# descriptor: 768 leaves room for the rest under the 1024 that systemd allows by default).
HTTP_MAX_CONNECTIONS: int = env.integer("HTTP_MAX_CONNECTIONS", 768) or 768
# Caps on what one request may ask for (over a cap: 400 naming the parameter).
API_MAX_N: int = env.integer("API_MAX_N", 8) or 8
API_MAX_TOKENS: int = env.integer("API_MAX_TOKENS", 0, minimum=0) or 0  # 0: only the context limits it
API_MAX_PROMPT_TOKENS: int = env.integer("API_MAX_PROMPT_TOKENS", 0, minimum=0) or 0  # 0: the context
API_MAX_MESSAGES: int = env.integer("API_MAX_MESSAGES", 1024) or 1024
# Prompt tokens one request may have scored (completions with echo and logprobs).
API_MAX_SCORED_TOKENS: int = env.integer("API_MAX_SCORED_TOKENS", 2048, minimum=0) or 0
# Seconds running generations may go on after SIGTERM before they are ended with an error
# event (and the process exits); keep it below the service manager's stop timeout.
SHUTDOWN_GRACE_SECONDS: float = env.seconds("SHUTDOWN_GRACE_SECONDS") or 20.0
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["openai_api.management_permissions.StaffModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "openai_api.management_api.error_shape_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Redis for state shared by every worker and machine (rate-limit counters); None = in-process.
REDIS_URL = env.string("REDIS_URL")

# Prometheus metrics shared by the uvicorn workers of one server: one folder, cleared at start.
PROMETHEUS_MULTIPROC_DIR = env.path("PROMETHEUS_MULTIPROC_DIR", VAR_DIR / "prometheus")
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

# Keep prompt and completion text in the request log (off: only counts and timings are kept).
REQUEST_LOG_TEXT = env.boolean("REQUEST_LOG_TEXT", False)

# Stored Responses API responses are kept this many days (0: until deleted); older ones are
# gone for the API at once and removed from the database by `manage.py prune_responses`.
RESPONSES_RETENTION_DAYS: int = env.integer("RESPONSES_RETENTION_DAYS", 30, minimum=0) or 0

# -- models -------------------------------------------------------------------------------
LLM_MODEL_DIR = env.path("LLM_MODEL_DIR", VAR_DIR / "models")
try:
    LLM_MODELS = build_specs(
        models_file=env.string("LLM_MODELS_FILE"),
        model_path=env.string("LLM_MODEL_PATH"),
        model_name=env.string("LLM_MODEL_NAME"),
        chat_format=env.string("LLM_CHAT_FORMAT"),
        chat_template_file=env.string("LLM_CHAT_TEMPLATE_FILE"),
        n_ctx=env.integer("LLM_N_CTX"),
        tuning={
            "slots": env.integer("LLM_SLOTS"),
            "max_queue": env.integer("LLM_MAX_QUEUE"),
            "queue_timeout": env.seconds("LLM_QUEUE_TIMEOUT"),
            "prefix_block": env.integer("LLM_PREFIX_BLOCK"),
            "step_tokens": env.integer("LLM_STEP_TOKENS"),
            "host_cache_mb": env.integer("LLM_HOST_CACHE_MB", minimum=0),
        },
    )
except SpecError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

LOG_LEVEL = (env.string("LOG_LEVEL") or "INFO").upper()
LOG_FORMAT = env.string("LOG_FORMAT") or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "inference_site.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx logs every request at INFO: the remote nodes' health checks would fill the log.
    "loggers": {"django.request": {"level": "ERROR"}, "httpx": {"level": "WARNING"}},
}
