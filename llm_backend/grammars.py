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
import re
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from .exceptions import InvalidConstraint

MAX_REPEAT = 1000
"""Largest ``minLength``/``maxLength``/``minItems``/``maxItems`` and pattern ``{m,n}`` bound."""
MAX_SCHEMA_DEPTH = 32
"""Deepest nesting of schemas inside schemas (properties, items, anyOf...)."""
MAX_PATTERN_LENGTH = 1000
MAX_PATTERN_GROWTH = 1000
"""Largest product of the bounds of nested quantifiers in one pattern."""
MAX_GRAMMAR_BYTES = 256 * 1024
MAX_GRAMMAR_NESTING = 1200
"""Deepest nesting of parentheses in one grammar rule (llama.cpp parses them recursively)."""

_COUNT_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_SINGLE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")


def schema_problem(schema: Any, path: str = "") -> tuple[str, str] | None:
    """The first bound ``schema`` exceeds, as ``(path of the keyword, sentence)``; None if none.

    The path is relative to the schema, in the API's ``a.b[0].c`` style.
    """
    return _walk(schema, path, 0)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _walk(schema: Any, path: str, depth: int) -> tuple[str, str] | None:
    if not isinstance(schema, dict):
        return None
    if depth > MAX_SCHEMA_DEPTH:
        return path, f"Schemas may be nested at most {MAX_SCHEMA_DEPTH} levels deep."
    for key in _COUNT_KEYWORDS:
        value = schema.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return _join(path, key), f"'{key}' must be a non-negative integer."
        if value > MAX_REPEAT:
            return _join(path, key), f"'{key}' may be at most {MAX_REPEAT} on this server."
    pattern = schema.get("pattern")
    if pattern is not None:
        problem = pattern_problem(pattern)
        if problem:
            return _join(path, "pattern"), problem
    for key in _SUBSCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                found = _walk(child, _join(_join(path, key), str(name)), depth + 1)
                if found:
                    return found
    for key in _SUBSCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for i, child in enumerate(children):
                found = _walk(child, f"{_join(path, key)}[{i}]", depth + 1)
                if found:
                    return found
    for key in _SUBSCHEMA_SINGLE:
        child = schema.get(key)
        if isinstance(child, list):
            for i, item in enumerate(child):
                found = _walk(item, f"{_join(path, key)}[{i}]", depth + 1)
                if found:
                    return found
        else:
            found = _walk(child, _join(path, key), depth + 1)
            if found:
                return found
    return None


def pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` cannot be enforced here, or None.

    Patterns must be anchored (``^...$``), at most :data:`MAX_PATTERN_LENGTH` characters, with
    quantifier bounds up to :data:`MAX_REPEAT` whose product over nested groups stays within
    :data:`MAX_PATTERN_GROWTH`; lookarounds and backreferences have no grammar equivalent.
    """
    if not isinstance(pattern, str):
        return "'pattern' must be a string."
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"Patterns may be at most {MAX_PATTERN_LENGTH} characters on this server."
    if not (pattern.startswith("^") and pattern.endswith("$")) or len(pattern) < 2:
        return "Patterns must start with '^' and end with '$' to be enforced."
    if re.search(r"\(\?[=!<]|\\[1-9]|\\k<", pattern):
        return "Lookarounds and backreferences cannot be enforced by a grammar."
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"The pattern is not a valid regular expression ({exc})."
    return _pattern_growth_problem(pattern)


def _pattern_growth_problem(pattern: str) -> str | None:
    """How many times nested quantifiers repeat the pattern's innermost parts, at most."""
    frames = [1]  # per open group: the largest growth of anything inside it so far
    last = 1  # growth of the element just read (an atom or a closed group)
    i = 0
    while i < len(pattern):
        char = pattern[i]
        match = _QUANTIFIER.match(pattern, i) if char == "{" else None
        if match:
            low = int(match.group(1))
            high = int(match.group(3)) if match.group(3) else (None if match.group(2) else low)
            bound = max(low, high or 0, 1)
            if bound > MAX_REPEAT:
                return f"Quantifier bounds may be at most {MAX_REPEAT} on this server."
            last *= bound
            if last > MAX_PATTERN_GROWTH:
                return f"Nested quantifiers may repeat at most {MAX_PATTERN_GROWTH} times on this server."
            frames[-1] = max(frames[-1], last)
            i = match.end()
            continue
        if char == "(":
            frames.append(1)
            i += 1
            continue
        if char == ")":
            last = frames.pop() if len(frames) > 1 else 1
            frames[-1] = max(frames[-1], last)
            i += 1
            continue
        if char == "\\":
            i += 2
        elif char == "[":
            i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
        else:
            i += 1
        if char not in "*+?|^$":
            last = 1
    return None


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
