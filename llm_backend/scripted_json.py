"""Small valid JSON instances of JSON Schemas, for the scripted model's structured replies.

Not a validator: :func:`minimal_instance` covers the schemas clients commonly send (objects
with properties, strings, numbers, arrays, enums, unions, local references) and answers ``{}``
for the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from .exceptions import InvalidConstraint

MAX_REPEAT = 1000
"""The longest string or array a schema's ``minLength`` / ``minItems`` gets."""
MAX_DEPTH = 32
MAX_NODES = 10_000
_BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
_FORMATS = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def parse_schema(text: str | None, param: str) -> Any:
    """The parsed schema (None for None); InvalidConstraint naming ``param`` if it is not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidConstraint(f"The JSON schema is not valid JSON ({exc}).", param=param) from exc


def minimal_instance(schema: Any, words: Iterator[str]) -> Any:
    """A small instance valid for common schemas: ``const``/``enum`` first values, the first
    branch of ``oneOf``/``anyOf`` that does not recurse, ``allOf`` merged, local ``$ref``s, the
    listed properties of an object (optional ones unless they recurse), ``minItems`` items,
    numbers at their minimum (else 0), strings from ``words`` within their lengths. Anything
    else is ``{}``, and so is everything past :data:`MAX_DEPTH` levels or :data:`MAX_NODES`
    values (never an error: a schema it cannot satisfy gets an instance that fails it)."""
    value = _Builder(schema, words).build(schema, (), 0)
    return {} if value is _RECURSES else value


_RECURSES = object()
"""What a ``$ref`` already being expanded gives: an optional property holding it is left out."""


class _Builder:
    def __init__(self, root: Any, words: Iterator[str]) -> None:
        self.root = root
        self.words = words
        self.nodes = 0

    def build(self, schema: Any, refs: tuple[str, ...], depth: int) -> Any:
        self.nodes += 1
        if not isinstance(schema, dict) or depth > MAX_DEPTH or self.nodes > MAX_NODES:
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in refs:
                return _RECURSES
            return self.build(_resolve(self.root, ref), (*refs, ref), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("oneOf", "anyOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                built = (self.build(branch, refs, depth + 1) for branch in branches)
                return next((value for value in built if value is not _RECURSES), _RECURSES)
        if isinstance(schema.get("allOf"), list):
            return self.build(_merged(schema), refs, depth + 1)
        kind = _type_of(schema)
        if kind == "object":
            return self.object(schema, refs, depth)
        if kind == "array":
            return self.array(schema, refs, depth)
        if kind == "string":
            return _string(schema, self.words)
        if kind in ("integer", "number"):
            return _number(schema, integer=kind == "integer")
        return {"boolean": True, "null": None}.get(kind, {})

    def value(self, schema: Any, refs: tuple[str, ...], depth: int) -> Any:
        built = self.build(schema, refs, depth)
        return {} if built is _RECURSES else built

    def object(self, schema: dict[str, Any], refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [name for name in schema.get("required", ()) if isinstance(name, str)]
        out = {name: self.value(properties.get(name, {}), refs, depth + 1) for name in required}
        limit = schema.get("maxProperties")
        for name, child in properties.items():
            if name in out or (isinstance(limit, int) and len(out) >= limit):
                continue
            built = self.build(child, refs, depth + 1)
            if built is not _RECURSES:
                out[name] = built
        return out

    def array(self, schema: dict[str, Any], refs: tuple[str, ...], depth: int) -> list[Any]:
        items = schema.get("items", {})
        prefix = schema.get("prefixItems", items if isinstance(items, list) else [])
        out = [self.value(p, refs, depth + 1) for p in prefix]
        count = min(_count(schema, "minItems"), MAX_REPEAT)
        out += [self.value(items, refs, depth + 1) for _ in range(count - len(out))]
        return out


def _merged(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``allOf`` branches folded in (properties and required combined)."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for branch in schema["allOf"]:
        if not isinstance(branch, dict):
            continue
        for key, value in branch.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged[key] = value
    return merged


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node = root
    for part in ref[1:].split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    hints = {
        "object": ("properties", "required", "additionalProperties"),
        "array": ("items", "prefixItems", "minItems"),
        "string": ("minLength", "maxLength", "pattern", "format"),
        "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    }
    return next((k for k, keys in hints.items() if any(key in schema for key in keys)), "any")


def _string(schema: dict[str, Any], words: Iterator[str]) -> str:
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    text = next(words)
    shortest = min(_count(schema, "minLength"), MAX_REPEAT)
    if len(text) < shortest:
        text = (text + "x" * shortest)[:shortest]
    longest = schema.get("maxLength")
    return text[:longest] if isinstance(longest, int) and longest >= 0 else text


def _count(schema: dict[str, Any], key: str) -> int:
    value = schema.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    def bound(key: str) -> float | None:
        value = schema.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    low, low_open, high, high_open = (bound(k) for k in _BOUNDS)
    if schema.get("exclusiveMinimum") is True:  # draft 4
        low, low_open = None, low
    if schema.get("exclusiveMaximum") is True:
        high, high_open = None, high
    lows = [v for v in (low, None if low_open is None else math.floor(low_open) + 1) if v is not None]
    if lows:
        value = float(max(lows))
    elif high is not None and high < 0:
        value = high
    elif high_open is not None and high_open <= 0:
        value = high_open - 1
    else:
        value = 0.0
    if integer:
        return math.ceil(value) if lows else math.floor(value)
    return int(value) if value.is_integer() else value
