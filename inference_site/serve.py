"""Start the server: ``python -m inference_site.serve [--host H] [--port P] [--workers N]``.

uvicorn on uvloop's event loop, with this project's HTTP protocol
(:mod:`inference_site.http_protocol`: httptools' parser, a deadline for request headers,
``HTTP_HEADER_TIMEOUT``, and a cap on open connections per worker, ``HTTP_MAX_CONNECTIONS``).
uvicorn's own log lines (the access log included) follow ``LOG_LEVEL``. Before serving, the
process's soft limit on open files is raised to its hard limit (see
:func:`ensure_open_files`); if even the hard limit cannot fit that many connections, start-up
stops with a sentence saying so.
"""

from __future__ import annotations

import argparse
import os
import resource

import uvicorn

APP = "inference_site.asgi:application"
PROTOCOL = "inference_site.http_protocol:BoundedHttpToolsProtocol"
# File descriptors a worker needs besides its connections: the model file, database and
# Redis connections, metric files, logs, the event loop's own.
RESERVED_FDS = 256
MAX_OPEN_FILES = 65536


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m inference_site.serve",
        description="Serve the application with uvicorn and the connection limits in the settings.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (each loads each model)")
    parser.add_argument("--app", default=APP, help="the ASGI application, as module:attribute")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inference_site.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        ensure_open_files(settings.HTTP_MAX_CONNECTIONS + RESERVED_FDS)
    except ImproperlyConfigured as exc:  # a wrong setting: its sentence, not a traceback
        raise SystemExit(str(exc)) from None
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=PROTOCOL,
        loop="uvloop",
        log_level=uvicorn_log_level(settings.LOG_LEVEL),
        # A backstop only: on SIGTERM the app itself ends every stream after
        # SHUTDOWN_GRACE_SECONDS (inference_site.shutdown); uvicorn then cancels what is left.
        timeout_graceful_shutdown=int(settings.SHUTDOWN_GRACE_SECONDS) + 15,
    )


def uvicorn_log_level(level: str) -> str | None:
    """uvicorn's name for the logging level ``level`` (``LOG_LEVEL``); None (uvicorn's default,
    info) for a level it has no name for."""
    from uvicorn.config import LOG_LEVELS

    name = level.lower()
    return name if name in LOG_LEVELS else None


def ensure_open_files(needed: int) -> None:
    """Raise the soft limit on open files to the hard limit (at most :data:`MAX_OPEN_FILES`).

    ``HTTP_MAX_CONNECTIONS`` bounds the connections kept open; the headroom above it absorbs
    a burst of new connections, which asyncio accepts up to the listen backlog (2048) at a
    time before the surplus reaches the protocol that closes it. systemd's default is a
    soft limit of 1024 under a hard one of 524288, so this usually finds room. A hard limit
    below ``needed`` is a configuration error, stated in a sentence.
    """
    from django.core.exceptions import ImproperlyConfigured

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
    if target < needed:
        raise ImproperlyConfigured(
            f"HTTP_MAX_CONNECTIONS needs {needed} open files per worker (with {RESERVED_FDS} "
            f"for everything else), but this process may open only {hard}: lower "
            "HTTP_MAX_CONNECTIONS or raise the limit (ulimit -n, systemd's LimitNOFILE=)."
        )
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":
    main()
