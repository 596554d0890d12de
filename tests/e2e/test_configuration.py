"""Serving several models from a TOML file, several workers, and refusing bad configuration.

What configures llama models runs on the real model file; workers and logging on the scripted one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import (
    MODEL,
    ROOT,
    SCRIPTED_MODEL,
    Server,
    start_scripted_server,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def model_file(server: object) -> Path:
    """The assembled default model (the session server has made sure it exists)."""
    return next((ROOT / "var" / "models").glob("*.gguf"))


def test_two_models_from_a_toml_file_are_served_under_their_names(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nname = "gemma-a"\npath = "{model_file}"\nchat_format = "gemma"\n\n'
        f'[[models]]\nname = "gemma-chatml"\npath = "{model_file}"\nchat_format = "chatml"\nn_ctx = 1024\n'
    )
    server = start_server(tmp_path, env={"LLM_MODELS_FILE": str(config)})
    try:
        client = openai.OpenAI(base_url=server.api_url, api_key=server.api_key, max_retries=0)
        assert sorted(m.id for m in client.models.list()) == ["gemma-a", "gemma-chatml"]
        for name in ("gemma-a", "gemma-chatml"):
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0
            )
            assert reply.model == name
        with pytest.raises(openai.BadRequestError) as too_long:
            client.completions.create(model="gemma-chatml", prompt="word " * 1100)
        assert "1024" in too_long.value.message
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model=MODEL, prompt="x")
    finally:
        stop_server(server)


def _wait_for_log_count(server: Server, needle: str, count: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while server.log().count(needle) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return server.log().count(needle)


def test_two_workers_serve_requests(tmp_path: Path) -> None:
    server = start_scripted_server(tmp_path, args=("--workers", "2"))
    try:
        with httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=120) as http:
            replies = [
                http.post(
                    "/completions",
                    json={"model": SCRIPTED_MODEL, "prompt": "Hi", "max_tokens": 2, "temperature": 0},
                )
                for _ in range(4)
            ]
        assert [r.status_code for r in replies] == [200] * 4
        # The server answers as soon as one worker is up; the other may still be starting.
        assert _wait_for_log_count(server, "Application startup complete.", 2) == 2
        assert len(set(re.findall(r"Started server process \[(\d+)\]", server.log()))) == 2
    finally:
        stop_server(server)


def _run_uvicorn_expecting_failure(tmp_path: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "inference_site.asgi:application", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_missing_model_file_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    output = _run_uvicorn_expecting_failure(tmp_path, {"LLM_MODEL_PATH": "/nonexistent/model.gguf"})

    assert "/nonexistent/model.gguf does not exist" in output


def test_corrupt_model_file_fails_at_start_up_naming_it(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file" * 100)

    output = _run_uvicorn_expecting_failure(tmp_path, {"LLM_MODEL_PATH": str(bogus)})

    assert f"{bogus} is not a loadable GGUF model" in output


def test_invalid_setting_fails_with_a_sentence_naming_it(tmp_path: Path) -> None:
    output = _run_uvicorn_expecting_failure(tmp_path, {"LLM_N_CTX": "lots"})

    assert "LLM_N_CTX must be an integer" in output


def test_settings_refuse_to_start_without_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    output = _run_uvicorn_expecting_failure(tmp_path, {"SECRET_KEY": "", "DEBUG": "false"})

    assert "SECRET_KEY must be set when DEBUG is off" in output


def test_json_logs_when_asked(tmp_path: Path) -> None:
    server = start_scripted_server(tmp_path, env={"LOG_FORMAT": "json"})
    try:
        httpx.get(server.api_url + "/models", headers=server.auth())
    finally:
        stop_server(server)

    access = [line for line in server.log().splitlines() if '"logger": "openai_api.access"' in line]
    assert access and json.loads(access[0])["message"].startswith("req-")
