"""values.schema.json documents every value and still rejects typos."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.chart.conftest import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _properties(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property at any depth: objects, array items, maps, $defs."""
    if not isinstance(node, dict):
        return
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _properties(child, f"{path}.{name}")
    for keyword in ("items", "additionalProperties"):
        yield from _properties(node.get(keyword), f"{path}[{keyword}]")


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, definition in SCHEMA["$defs"].items():
        yield f"$defs.{name}", definition
        yield from _properties(definition, f"$defs.{name}")
    yield from _properties(SCHEMA, "")


def test_every_property_has_a_description() -> None:
    undocumented = [path for path, schema in _schemas() if not str(schema.get("description", "")).strip()]
    assert not undocumented, f"add a description (from the values.yaml comment) to: {undocumented}"


def test_every_object_with_properties_rejects_unknown_keys() -> None:
    open_objects = [
        path
        for path, schema in [("", SCHEMA), *_schemas()]
        if "properties" in schema and schema.get("additionalProperties") is not False
    ]
    assert not open_objects, f"typos under these would pass silently: {open_objects}"
