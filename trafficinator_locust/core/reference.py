"""``docs/configuration.md`` rendered from the config's JSON Schema, so the reference cannot drift.

Every key of every model gets a row: its dotted path, type, constraints and description. A test
compares the committed file with this rendering; ``trafficinator schema --markdown`` prints it.
"""

from __future__ import annotations

from typing import Any

from trafficinator_locust.core.config import json_schema

HEADER = """# Configuration reference

Generated from the config's JSON Schema by `trafficinator schema --markdown > docs/configuration.md`
(a test fails when this file and the schema differ). Defaults not shown here are those of the
resolved model; `docs/traffic.md` explains the traffic model with its defaults and examples.

Paths: `targets[].X` keys may also be set in `defaults.X` (shared by every target that does not set
them). Unknown keys are errors.
"""


def render() -> str:
    schema = json_schema()
    defs = schema["$defs"]
    lines = [HEADER]
    sections = [("Top level", "", schema)] + _walk(schema, "", defs, set())
    for title, _prefix, model in sections:
        lines.append(f"\n## {title}\n")
        if model.get("description") and model is not schema:
            lines.append(model["description"].strip() + "\n")
        lines.append("| key | type | allowed | description |")
        lines.append("|---|---|---|---|")
        for name, prop in model.get("properties", {}).items():
            lines.append(f"| `{name}` | {_type(prop, defs)} | {_allowed(prop, defs)} | {_text(prop)} |")
    return "\n".join(lines) + "\n"


def _walk(
    model: dict[str, Any], prefix: str, defs: dict[str, Any], seen: set[str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """Sections for every nested model, in document order, each once."""
    found = []
    for name, prop in model.get("properties", {}).items():
        for ref in _refs(prop):
            if ref in seen or defs[ref].get("type") != "object":
                continue
            seen.add(ref)
            path = f"{prefix}{name}" + ("[]" if _is_list(prop) else "")
            found.append((f"`{path}` ({ref})", path + ".", defs[ref]))
            found.extend(_walk(defs[ref], path + ".", defs, seen))
    return found


def _refs(prop: dict[str, Any]) -> list[str]:
    refs = []
    if "$ref" in prop:
        refs.append(prop["$ref"].rsplit("/", 1)[-1])
    for key in ("anyOf", "oneOf", "allOf"):
        for option in prop.get(key, []):
            refs.extend(_refs(option))
    if "items" in prop:
        refs.extend(_refs(prop["items"]))
    if isinstance(prop.get("additionalProperties"), dict):
        refs.extend(_refs(prop["additionalProperties"]))
    return refs


def _is_list(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "array" or any(option.get("type") == "array" for option in prop.get("anyOf", []))


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        ref = prop["$ref"].rsplit("/", 1)[-1]
        return "enum" if "enum" in defs[ref] else "mapping"
    if "anyOf" in prop:
        return " or ".join(sorted({_type(option, defs) for option in prop["anyOf"] if option.get("type") != "null"}))
    kind = prop.get("type", "any")
    if kind == "array":
        item = _type(prop.get("items", {}), defs)
        return f"list of ({item})" if " or " in item else f"list of {item}"
    if kind == "object":
        return "mapping"
    return {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}.get(kind, kind)


def _allowed(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    parts = []
    options = prop.get("anyOf", [prop])
    for option in options:
        if "$ref" in option and "enum" in defs[option["$ref"].rsplit("/", 1)[-1]]:
            parts.append(" / ".join(f"`{v}`" for v in defs[option["$ref"].rsplit("/", 1)[-1]]["enum"]))
        if "enum" in option:
            parts.append(" / ".join(f"`{v}`" for v in option["enum"]))
        for key, symbol in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
            ("minLength", "length >="),
            ("minItems", "items >="),
            ("pattern", "matches"),
        ):
            if key in option:
                parts.append(f"{symbol} `{option[key]}`" if key == "pattern" else f"{symbol} {option[key]}")
    if prop.get("default") not in (None, [], {}):
        parts.append(f"default `{prop['default']}`")
    return ", ".join(parts) or "-"


def _text(prop: dict[str, Any]) -> str:
    return (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
