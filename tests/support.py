"""Helpers shared by the tests: a real uvicorn server process and OpenAI schema validation."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
SHARED_SCHEMAS = ROOT.parent / "shared" / "openai-schemas.json"
VENDORED_SCHEMAS = Path(__file__).resolve().parent / "openai-schemas.json"
MODEL = "gemma-3-270m"
SCRIPTED_MODEL = "scripted"
SCRIPTED_N_CTX = 1024
SCRIPTED_MODELS_TOML = f"""
[[models]]
name = "{SCRIPTED_MODEL}"
kind = "scripted"
n_ctx = {SCRIPTED_N_CTX}
"""


def scripted_models_toml(**settings: float | int | str) -> str:
    """A models file serving :data:`SCRIPTED_MODEL` with ``settings`` (keys of
    :class:`llm_backend.scripted_spec.ScriptedSpec`) overriding its defaults."""
    entry = {"name": SCRIPTED_MODEL, "kind": "scripted", "n_ctx": SCRIPTED_N_CTX, **settings}
    return "[[models]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())


@cache
def _schemas() -> dict[str, Any]:
    path = SHARED_SCHEMAS if SHARED_SCHEMAS.exists() else VENDORED_SCHEMAS
    return json.loads(path.read_text())["$defs"]


def assert_valid(schema_name: str, instance: Any) -> None:
    """Fail with every violation if ``instance`` does not match OpenAI's schema ``schema_name``."""
    validator = Draft202012Validator(_schemas()[schema_name])
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, f"{schema_name} violations: {errors}\nin {json.dumps(instance)[:2000]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    var_dir: Path
    environment: dict[str, str]
    api_key: str

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``manage.py`` against this server's database; return its standard output."""
        return manage({**self.environment, **(env or {})}, *args)

    def new_key(self, *options: str) -> str:
        return self.manage("create_api_key", "test", *options).strip().splitlines()[-1]

    @property
    def database(self) -> Path:
        return self.var_dir / "db.sqlite3"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    var_dir: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    app: str = "inference_site.asgi:application",
    serve: bool = False,
) -> Server:
    """Migrate a fresh database in ``var_dir`` and start uvicorn on a free loopback port.

    With ``serve``, uvicorn is started as production starts it, through ``python -m
    inference_site.serve`` (header deadline, connection cap); ``args`` go to that launcher.
    """
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environment = {
        **inherited,
        "VAR_DIR": str(var_dir),
        "LLM_MODEL_DIR": str(ROOT / "var" / "models"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    manage(environment, "migrate", "--noinput", "-v0")
    api_key = manage(environment, "create_api_key", "test-suite").strip().splitlines()[-1]
    port = free_port()
    log_path = var_dir / f"uvicorn-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *(("inference_site.serve", "--app") if serve else ("uvicorn",)),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        cwd=ROOT,
        env=environment,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        var_dir=var_dir,
        environment=environment,
        api_key=api_key,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.api_url + "/models", headers=server.auth(), timeout=2).status_code < 500:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"uvicorn did not answer within 120 s:\n{server.log()}")


def start_scripted_server(
    var_dir: Path,
    *,
    env: dict[str, str] | None = None,
    models_toml: str = SCRIPTED_MODELS_TOML,
    **options: Any,
) -> Server:
    """A real uvicorn serving only the scripted model (:data:`SCRIPTED_MODEL`): no model file,
    an empty model directory; for tests of what the HTTP layer decides. ``models_toml`` (see
    :func:`scripted_models_toml`) sets its pace, slots, queue or faults."""
    models_file = var_dir / "models.toml"
    models_file.write_text(models_toml)
    empty_models = var_dir / "no-models"
    empty_models.mkdir(exist_ok=True)
    environment = {"LLM_MODELS_FILE": str(models_file), "LLM_MODEL_DIR": str(empty_models), **(env or {})}
    return start_server(var_dir, env=environment, **options)


def manage(environment: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def sse_events(lines: Iterator[str]) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order, checking the framing as it goes."""
    payloads: list[str] = []
    pending_blank = False
    for line in lines:
        if pending_blank:
            assert line == "", f"an event must be followed by a blank line, got {line!r}"
            pending_blank = False
            continue
        assert line.startswith("data: "), f"unexpected SSE line {line!r}"
        payloads.append(line[len("data: ") :])
        pending_blank = True
    return payloads


class TcpProxy:
    """A loopback TCP forwarder the tests can cut and restore, to make a service "go away"."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def wait_for_log_row(
    database: Path, request_id: str, columns: str, timeout: float = 10.0
) -> tuple[object, ...]:
    """The request-log row of ``request_id`` (selected ``columns``), once the writer has stored it."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            row = db.execute(
                f"SELECT {columns} FROM openai_api_requestlog WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is not None:
            return tuple(row)
        time.sleep(0.1)
    raise AssertionError(f"no request-log row for {request_id}")
