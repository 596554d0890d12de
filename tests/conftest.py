from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support import Server, start_scripted_server, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real uvicorn serving the real default model for the whole session."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=server.api_key, max_retries=0, timeout=120)


@pytest.fixture
def async_client(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.api_url, api_key=server.api_key, max_retries=0, timeout=120)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, headers=server.auth(), timeout=120) as raw:
        yield raw


@pytest.fixture(scope="session")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real uvicorn serving only the scripted model (no model file) for the whole session."""
    running = start_scripted_server(tmp_path_factory.mktemp("scripted"))
    yield running
    stop_server(running)


@pytest.fixture
def scripted_client(scripted: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=scripted.api_url, api_key=scripted.api_key, max_retries=0, timeout=60)


@pytest.fixture
def scripted_http(scripted: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scripted.api_url, headers=scripted.auth(), timeout=60) as raw:
        yield raw
