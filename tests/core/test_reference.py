"""docs/configuration.md is the schema, rendered: it cannot drift from the config models."""

from pathlib import Path

from trafficinator_locust.core.config import json_schema
from trafficinator_locust.core.reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _keys(schema: dict) -> set[str]:
    keys = set(schema["properties"])
    for model in schema["$defs"].values():
        keys |= set(model.get("properties", {}))
    return keys


def test_every_schema_key_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = sorted(key for key in _keys(json_schema()) if f"| `{key}` |" not in text)
    assert not missing, (
        f"keys missing from docs/configuration.md: {missing}; "
        "run `trafficinator schema --markdown > docs/configuration.md`"
    )


def test_configuration_md_is_the_current_rendering():
    assert DOC.read_text(encoding="utf-8") == render(), (
        "regenerate with `trafficinator schema --markdown > docs/configuration.md`"
    )
