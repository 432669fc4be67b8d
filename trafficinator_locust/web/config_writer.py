"""Writing an edited config back to its YAML file without losing what the operator wrote there.

Why not ``yaml.safe_dump``: a traffic file carries comments (why a cap, whose token), an order and
quoting that people rely on when they read it. ruamel.yaml's round-trip mode keeps them where the
value did not change; targets are matched by name, so a target's comments stay with it when
others are added or removed. Pure text in, text out; the caller writes the file (and its backup,
named by :func:`backup_path`).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["backup_path", "render_yaml"]


def backup_path(path: Path, now: float) -> Path:
    """``traffic.yaml`` -> ``traffic.yaml.20260310-120000.bak`` (a suffix ``-1``, ``-2`` if taken)."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate, n = path.with_name(f"{path.name}.{stamp}.bak"), 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{stamp}-{n}.bak")
    return candidate


def render_yaml(original: str, data: dict[str, Any]) -> str:
    """``data`` as YAML, keeping the original file's comments, order and quoting where unchanged."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    _, sequence, offset = load_yaml_guess_indent(original)
    rt.indent(mapping=_mapping_indent(original), sequence=sequence or 2, offset=offset or 0)
    document = rt.load(original)
    merged = _merge(document, data) if isinstance(document, dict) else data
    out = io.StringIO()
    rt.dump(merged, out)
    return out.getvalue()


def _mapping_indent(text: str) -> int:
    """The indentation of the first mapping nested under a top-level key (2 when there is none)."""
    parent = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if parent and indent > 0 and not line.lstrip().startswith("-"):
            return indent
        parent = indent == 0 and line.rstrip().endswith(":")
    return 2


def _merge(node: Any, value: Any) -> Any:
    """Fold ``value`` into the round-trip ``node``: keep what is equal, replace what changed.

    Lists of named mappings (``targets``) are matched by name, so a target's comments stay with it.
    """
    if isinstance(node, dict) and isinstance(value, dict):
        for key in [k for k in node if k not in value]:
            del node[key]
        for key, item in value.items():
            node[key] = _merge(node[key], item) if key in node else item
        return node
    if isinstance(node, list) and isinstance(value, list):
        named = {str(item["name"]).casefold(): item for item in node if isinstance(item, dict) and "name" in item}
        if node == value or not named:
            return node if node == value else value
        merged = []
        for item in value:
            old = named.get(str(item.get("name")).casefold()) if isinstance(item, dict) else None
            merged.append(item if old is None else _merge(old, item))
        node[:] = merged
        return node
    same = node == value and isinstance(node, bool) == isinstance(value, bool)
    return node if same else value
