"""Schema bounds and grammar checks that keep llama.cpp's recursive parser safe, and its logs short."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from llm_backend.engine import LLAMA_LOG_CHARS, LLAMA_LOGS_PER_MINUTE, _llama_log, _llama_log_times
from llm_backend.exceptions import InvalidConstraint
from llm_backend.grammar_probe import GrammarProbe, ProbeFailed
from llm_backend.grammars import MAX_GRAMMAR_BYTES, json_grammar, pattern_problem, schema_problem
from llm_backend.model_files import resolve_model_path
from llm_backend.specs import default_spec
from tests.support import ROOT


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "string", "maxLength": 20000}, "maxLength"),
        ({"type": "array", "items": {"type": "string", "minLength": 1001}}, "items.minLength"),
        (
            {"properties": {"a": {"properties": {"b": {"maxItems": -1}}}}},
            "properties.a.properties.b.maxItems",
        ),
        ({"anyOf": [{"type": "string"}, {"pattern": "^(?=x)$"}]}, "anyOf[1].pattern"),
        ({"$defs": {"d": {"maxLength": True}}}, "$defs.d.maxLength"),
    ],
)
def test_each_exceeded_bound_is_named_by_its_path(schema: dict[str, object], path: str) -> None:
    problem = schema_problem(schema)

    assert problem is not None and problem[0] == path


def test_schemas_nested_beyond_the_limit_are_refused() -> None:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "array", "items": schema}

    assert schema_problem(schema) is not None
    assert schema_problem({"type": "array", "items": {"type": "string", "maxLength": 1000}}) is None


@pytest.mark.parametrize(
    ("pattern", "refused"),
    [
        ("^[a-z]{3}-\\d{2,4}$", False),
        ("^(a{10}){100}$", False),
        ("^((a{10}){10}){11}$", True),
        ("^a{1001}$", True),
        ("^(a|b)\\1$", True),
        ("abc", True),
        ("^(unclosed$", True),
        ("^" + "x" * 1001 + "$", True),
    ],
)
def test_patterns_are_bounded(pattern: str, refused: bool) -> None:
    assert (pattern_problem(pattern) is not None) == refused


def test_a_grammar_too_large_is_refused_before_compiling() -> None:
    properties = {f"field_{i}_{'x' * 40}": {"type": "string", "maxLength": 1000} for i in range(60)}

    with pytest.raises(InvalidConstraint) as refused:
        json_grammar(json.dumps({"type": "object", "properties": properties}), param="response_format")

    assert str(MAX_GRAMMAR_BYTES) in str(refused.value)
    assert refused.value.param == "response_format"


def test_llama_cpp_messages_are_cut_short_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    _llama_log_times.clear()
    caplog.set_level(logging.WARNING, logger="llama_cpp")

    for _ in range(LLAMA_LOGS_PER_MINUTE + 40):
        _llama_log(3, b"error parsing grammar: " + b"(" * 1_000_000, None)

    records = [r for r in caplog.records if r.name == "llama_cpp"]
    assert len(records) == LLAMA_LOGS_PER_MINUTE
    assert all(len(r.getMessage()) <= LLAMA_LOG_CHARS + 40 for r in records)


@pytest.fixture(scope="module")
def probe() -> Iterator[GrammarProbe]:
    started = GrammarProbe(resolve_model_path(default_spec(), ROOT / "var" / "models"))
    yield started
    started.close()


def test_the_probe_tells_grammars_that_compile_from_those_that_do_not(
    probe: GrammarProbe, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = "root ::= " + "(" * 500 + '"a"'  # unbalanced: llama.cpp prints it whole when it fails

    assert probe.compiles('root ::= "yes" | "no"')
    assert not probe.compiles(broken)
    assert "(((" not in capfd.readouterr().err


def test_a_grammar_that_crashes_the_compiler_costs_one_request(probe: GrammarProbe) -> None:
    deep = "root ::= " + "(" * 400_000 + '"a"' + ")" * 400_000  # overflows the recursive parser's stack

    with pytest.raises(ProbeFailed):
        probe.compiles(deep)

    assert probe.compiles('root ::= "after"')
