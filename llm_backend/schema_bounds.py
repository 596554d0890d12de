"""Bounds a JSON Schema must keep before any backend turns it into a grammar.

llama-cpp-python's ``json_schema_to_gbnf`` turns ``maxLength: 20000`` into 20,000 nested
groups, which overflow llama.cpp's recursive grammar parser; a pattern such as
``^((a{1000}){1000}){1000}$`` expands into a gigabyte of grammar text. :func:`schema_problem`
finds the first bound a schema exceeds (repetition counts, nesting, pattern size and the growth
of nested quantifiers) with the path of the offending keyword, so the HTTP layer can refuse it
with a 400 before anything is queued. Pure Python: nothing here loads a model library.
"""

from __future__ import annotations

import re
from typing import Any

MAX_REPEAT = 1000
"""Largest ``minLength``/``maxLength``/``minItems``/``maxItems`` and pattern ``{m,n}`` bound."""
MAX_SCHEMA_DEPTH = 32
"""Deepest nesting of schemas inside schemas (properties, items, anyOf...)."""
MAX_PATTERN_LENGTH = 1000
MAX_PATTERN_GROWTH = 1000
"""Largest product of the bounds of nested quantifiers in one pattern."""

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
