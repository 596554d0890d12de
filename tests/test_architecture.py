"""The seam between the apps holds: imports flow inference_site -> openai_api -> llm_backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.responses_support import SHARED_RESPONSES_SCHEMAS, VENDORED_RESPONSES_SCHEMAS
from tests.support import ROOT, SHARED_SCHEMAS, VENDORED_SCHEMAS

FORBIDDEN_IN_BACKEND = ("django.http", "rest_framework", "pydantic", "openai_api")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py")]


def test_llm_backend_does_not_import_the_http_layer() -> None:
    offenders = {
        str(path.relative_to(ROOT)): name
        for path in _python_files("llm_backend")
        for name in _imports(path)
        if name.startswith(FORBIDDEN_IN_BACKEND)
    }

    assert offenders == {}


def test_only_the_adapter_modules_import_llama_cpp() -> None:
    """The model (engine.py), its decoding context (batching.py), its samplers (sampler.py),
    schema-to-grammar conversion (grammars.py) and the child process that test-compiles
    grammars (grammar_worker.py); and the benchmark whose
    point is to measure llama-cpp-python itself, in process."""
    importers = {
        str(path.relative_to(ROOT))
        for path in _python_files("llm_backend", "openai_api", "inference_site", "bench", "examples")
        if any(name.split(".")[0] == "llama_cpp" for name in _imports(path))
    }

    assert importers == {
        "llm_backend/engine.py",
        "llm_backend/batching.py",
        "llm_backend/sampler.py",
        "llm_backend/grammars.py",
        "llm_backend/grammar_worker.py",
        "bench/compare.py",
    }


def test_vendored_openai_schemas_match_the_shared_copy() -> None:
    if SHARED_SCHEMAS.exists():
        assert VENDORED_SCHEMAS.read_bytes() == SHARED_SCHEMAS.read_bytes()
    assert VENDORED_SCHEMAS.stat().st_size > 10_000


def test_vendored_openai_responses_schemas_match_the_shared_copy() -> None:
    if SHARED_RESPONSES_SCHEMAS.exists():
        assert VENDORED_RESPONSES_SCHEMAS.read_bytes() == SHARED_RESPONSES_SCHEMAS.read_bytes()
    assert VENDORED_RESPONSES_SCHEMAS.stat().st_size > 10_000


BACKEND_INSIDES = re.compile(r"Scheduler|LlamaEngine|llama_cpp|\.engine\.")
PUBLIC_BACKEND_MODULES = {
    "llm_backend.contract",
    "llm_backend.types",
    "llm_backend.exceptions",
    "llm_backend.registry",
    "llm_backend.specs",
    "llm_backend.schema_bounds",
}


def test_the_http_layer_never_names_a_backends_insides() -> None:
    """openai_api and inference_site know the backend contract, not the scheduler, the engine
    or llama.cpp (the issue's ``grep -rnE 'Scheduler|LlamaEngine|llama_cpp|\\.engine\\.'``)."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files("openai_api", "inference_site")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if BACKEND_INSIDES.search(line)
    ]

    assert found == []


def test_the_http_layer_imports_only_the_backends_public_modules() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python_files("openai_api", "inference_site")
        for name in _imports(path) | _from_package_imports(path)
        if name.startswith("llm_backend.") and name not in PUBLIC_BACKEND_MODULES
    }

    assert offenders == set()


def _from_package_imports(path: Path) -> set[str]:
    """``from llm_backend import x`` counts as importing ``llm_backend.x``."""
    return {
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "llm_backend"
        for alias in node.names
    }


def test_the_registry_knows_kinds_only_through_the_kind_table() -> None:
    imported = _imports(ROOT / "llm_backend" / "registry.py") | {
        f"llm_backend.{node.module}"
        for node in ast.walk(ast.parse((ROOT / "llm_backend" / "registry.py").read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }

    assert not {name for name in imported if name.startswith("llm_backend.")} - {
        "llm_backend.contract",
        "llm_backend.exceptions",
        "llm_backend.kinds",
    }
