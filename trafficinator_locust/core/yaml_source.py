"""Read YAML into plain Python values while remembering where each value came from.

Config errors must name the file, the line and the dotted config path (``targets[2].timezone``).
PyYAML's ``safe_load`` forgets line numbers, so this module composes the node tree, converts it
itself and keeps a ``path -> line`` map. It also expands ``${VAR}`` / ``${VAR:-default}`` in
string values, because tokens belong in the environment, not in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trafficinator_locust.core.errors import ConfigError, Problem

ConfigPath = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def format_path(path: ConfigPath) -> str:
    """``("targets", 2, "timezone")`` -> ``targets[2].timezone``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass
class SourceDocument:
    """Plain data plus the line of every value, and how to name locations for humans."""

    data: Any
    source: str
    lines: dict[ConfigPath, int] = field(default_factory=dict)
    folder: Path = field(default_factory=Path.cwd)
    path_labels: dict[ConfigPath, str] = field(default_factory=dict)

    def line_of(self, path: ConfigPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def label_of(self, path: ConfigPath) -> str:
        """How a user knows this location: a dotted path, or e.g. an environment variable name."""
        for cut in range(len(path), 0, -1):
            label = self.path_labels.get(path[:cut])
            if label is not None:
                rest = format_path(("x",) + path[cut:])[1:]
                return label + rest
        return format_path(path)

    def problem(self, path: ConfigPath, message: str) -> Problem:
        return Problem(self.source, self.line_of(path), self.label_of(path), message)


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``.

    Returns the text and the names of variables that are unset and have no default.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    return _ENV_REF.sub(replace, text), missing


def load_yaml_file(path: Path, env: Mapping[str, str] | None = None) -> SourceDocument:
    """Load a YAML file into a :class:`SourceDocument`, raising :class:`ConfigError` on any problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(source, None, "", "file not found; check the path (relative paths start at the current folder)")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [
                Problem(
                    source, None, "", f"cannot read the file ({exc.__class__.__name__}); it must be readable UTF-8 text"
                )
            ]
        ) from None
    return load_yaml_text(text, source, folder=path.resolve().parent, env=env)


def load_yaml_text(
    text: str, source: str, folder: Path | None = None, env: Mapping[str, str] | None = None
) -> SourceDocument:
    """Parse YAML text; see :func:`load_yaml_file`."""
    env = os.environ if env is None else env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "invalid YAML"
        raise ConfigError(
            [Problem(source, line, "", f"YAML syntax error: {what}; fix the indentation or quoting near this line")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, None, "", f"YAML error: {exc}")]) from None
    doc = SourceDocument(data=None, source=source, folder=folder or Path.cwd())
    if root is None:
        raise ConfigError(
            [
                Problem(
                    source, None, "", "the file is empty; it needs a 'targets' list (see config/multi-environment.yaml)"
                )
            ]
        )
    problems: list[Problem] = []
    doc.data = _convert(root, (), doc, env, problems)
    if problems:
        raise ConfigError(problems)
    return doc


def _convert(
    node: yaml.Node, path: ConfigPath, doc: SourceDocument, env: Mapping[str, str], problems: list[Problem]
) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    doc.problem(path, "YAML merge keys ('<<') are not supported; write the keys out or use 'defaults'")
                )
                continue
            key = yaml.SafeLoader.construct_scalar(_LOADER, key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                problems.append(
                    Problem(doc.source, key_node.start_mark.line + 1, format_path(path), "keys must be plain strings")
                )
                continue
            if key in result:
                problems.append(
                    Problem(
                        doc.source,
                        key_node.start_mark.line + 1,
                        format_path(path + (key,)),
                        f"duplicate key '{key}'; keep only one",
                    )
                )
                continue
            result[key] = _convert(value_node, path + (key,), doc, env, problems)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (index,), doc, env, problems) for index, item in enumerate(node.value)]
    value = _LOADER.construct_object(node, deep=True)
    if isinstance(value, str) and "$" in value:
        value, missing = expand_env(value, env)
        for name in missing:
            problems.append(
                doc.problem(path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
            )
    return value


_LOADER = yaml.SafeLoader("")
