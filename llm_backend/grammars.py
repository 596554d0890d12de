"""JSON Schemas to llama.cpp grammars, within bounds that keep llama.cpp safe.

llama-cpp-python's ``json_schema_to_gbnf`` turns ``maxLength: 20000`` into 20,000 nested
groups, and llama.cpp's recursive grammar parser then overflows its thread's stack (a
segfault that takes the whole server down); a pattern such as ``^((a{1000}){1000}){1000}$``
expands into a gigabyte of grammar text before anything is compiled. So a schema is checked
before it is converted (:func:`schema_problem`: repetition counts, nesting, pattern size and
the growth of nested quantifiers, each refused with the path of the offending keyword), and
the grammar text after (:func:`json_grammar`: total size and nesting of groups). What llama.cpp
still refuses to compile is an :class:`InvalidConstraint` too.
"""

from __future__ import annotations

import json

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from .exceptions import InvalidConstraint
from .schema_bounds import MAX_REPEAT, MAX_SCHEMA_DEPTH, pattern_problem, schema_problem

__all__ = ["MAX_REPEAT", "MAX_SCHEMA_DEPTH", "json_grammar", "pattern_problem", "schema_problem"]

MAX_GRAMMAR_BYTES = 256 * 1024
MAX_GRAMMAR_NESTING = 1200
"""Deepest nesting of parentheses in one grammar rule (llama.cpp parses them recursively)."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _nesting(grammar: str) -> int:
    deepest = depth = 0
    in_literal = in_class = False
    i = 0
    while i < len(grammar):
        char = grammar[i]
        if char == "\\" and (in_literal or in_class):
            i += 2
            continue
        if in_literal:
            in_literal = char != '"'
        elif in_class:
            in_class = char != "]"
        elif char == '"':
            in_literal = True
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        elif char == "\n":
            depth = 0
        i += 1
    return deepest


def json_grammar(schema_text: str | None, *, param: str) -> str:
    """The GBNF grammar for JSON valid against ``schema_text`` (any JSON object when None).

    Raises :class:`InvalidConstraint` naming ``param`` (plus the keyword's path when a bound
    is exceeded) for schemas that cannot be enforced safely.
    """
    if schema_text is None:
        return JSON_GBNF
    try:
        schema = json.loads(schema_text)
    except (ValueError, RecursionError) as exc:
        raise InvalidConstraint(f"The JSON schema is not valid JSON ({exc}).", param=param) from exc
    problem = schema_problem(schema)
    if problem:
        where, sentence = problem
        raise InvalidConstraint(sentence, param=_join(param, where))
    try:
        grammar: str = json_schema_to_gbnf(schema_text)
    except RecursionError as exc:
        raise InvalidConstraint("The JSON schema is nested too deeply.", param=param) from exc
    except Exception as exc:  # the converter raises anything (AssertionError, KeyError...)
        raise InvalidConstraint(f"The JSON schema cannot be enforced: {exc}"[:500], param=param) from exc
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise InvalidConstraint(
            f"The JSON schema needs a grammar of {len(grammar)} bytes; at most {MAX_GRAMMAR_BYTES} "
            "are allowed on this server.",
            param=param,
        )
    if _nesting(grammar) > MAX_GRAMMAR_NESTING:
        raise InvalidConstraint("The JSON schema's grammar nests too deeply to be enforced.", param=param)
    return grammar
