"""Validation of `fastnn bench --json` documents against schema.json (beside this file).

Uses jsonschema when it is installed; otherwise a small validator for the subset of JSON
Schema that schema.json uses (type, const, enum, required, properties,
additionalProperties, items, minimum) — so the bench needs no extra dependency.
"""
from __future__ import annotations

import json
import os

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")


class SchemaError(ValueError):
    pass


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return json.load(f)


_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def _check(x, s, path):
    if "const" in s and x != s["const"]:
        raise SchemaError(f"{path}: expected {s['const']!r}, got {x!r}")
    if "enum" in s and x not in s["enum"]:
        raise SchemaError(f"{path}: expected one of {s['enum']}, got {x!r}")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_TYPES[t](x) for t in types):
            raise SchemaError(f"{path}: expected {' or '.join(types)}, got {type(x).__name__} {x!r:.80}")
    if "minimum" in s and _TYPES["number"](x) and x < s["minimum"]:
        raise SchemaError(f"{path}: expected >= {s['minimum']}, got {x}")
    if isinstance(x, dict):
        for k in s.get("required", []):
            if k not in x:
                raise SchemaError(f"{path}: missing required key {k!r}")
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for k, v in x.items():
            if k in props:
                _check(v, props[k], f"{path}.{k}")
            elif extra is False:
                raise SchemaError(f"{path}: unexpected key {k!r}")
            elif isinstance(extra, dict):
                _check(v, extra, f"{path}.{k}")
    if isinstance(x, list) and "items" in s:
        for i, v in enumerate(x):
            _check(v, s["items"], f"{path}[{i}]")


def validate(doc, schema=None, use_jsonschema=True) -> None:
    """Raises SchemaError if doc does not match the schema."""
    schema = schema or load_schema()
    doc = json.loads(json.dumps(doc, default=str))  # what will actually be written
    if use_jsonschema:
        try:
            import jsonschema
        except ImportError:
            jsonschema = None
        if jsonschema is not None:
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as e:
                raise SchemaError(f"{'.'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}") from None
            return
    _check(doc, schema, "$")
