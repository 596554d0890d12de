"""The real model, loaded once per test module that asks for it (its tests run in this process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_backend.engine import LlamaEngine
from llm_backend.model_files import resolve_model_path
from llm_backend.specs import default_spec
from tests.support import ROOT


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    loaded = LlamaEngine(default_spec(), resolve_model_path(default_spec(), ROOT / "var" / "models"))
    yield loaded
    loaded.close()
