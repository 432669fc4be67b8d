"""Read YAML into plain Python values while remembering where each value came from.

Config errors must name the file, the line and the dotted config path (``targets[2].timezone``).
PyYAML's ``safe_load`` forgets line numbers, so this module composes the node tree, converts it
itself and keeps a ``path -> line`` map. It also expands ``${VAR}`` / ``${VAR:-default}`` in
string values, because tokens belong in the environment, not in the file.

Whatever the input, loading is bounded (docs/limits.md): a file is read only when it is a regular
file of at most :data:`MAX_CONFIG_BYTES`; composing stops at :data:`MAX_YAML_DEPTH` levels and at
:data:`MAX_YAML_NODES` values, counting each alias as the whole content of its anchor (an alias
bomb fails at the alias that crosses the limit, before anything is expanded); an alias inside its
own anchor is refused. Each such refusal is one :class:`ConfigError` naming file, line and path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from trafficinator_locust.core.errors import ConfigError, FileRefused, Problem
from trafficinator_locust.core.files import read_small_text

ConfigPath = tuple[str | int, ...]

MAX_CONFIG_BYTES = 1 << 20
"""Bytes of a YAML file: the config and each YAML file it includes (``events``, ``funnels``)."""
MAX_YAML_DEPTH = 32
"""Nesting levels of YAML collections, aliases expanded (the deepest config key is 8 levels down)."""
MAX_YAML_NODES = 200_000
"""Values (mappings, lists, keys and scalars) of one YAML file once every alias is expanded."""
MAX_ENV_NESTING = 8
"""``${A:-${B:-...}}``: defaults nested at most this deep."""

_NAME_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_SPECIAL = re.compile(r"[$}]")
_DOLLAR = re.compile(r"\$")


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
    """Plain data plus the line of every value, and how to name locations for humans.

    ``env`` expands ``${VAR}`` in the files the document includes (``None``: the process
    environment); ``cache`` and ``resolved_entries`` are the working memory of one resolution
    (lists shared by targets are built once, and the total is bounded; see :mod:`.traffic`).
    """

    data: Any
    source: str
    lines: dict[ConfigPath, int] = field(default_factory=dict)
    folder: Path = field(default_factory=Path.cwd)
    path_labels: dict[ConfigPath, str] = field(default_factory=dict)
    env: Mapping[str, str] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    resolved_entries: int = 0

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


class EnvReferenceError(ValueError):
    """A ``${...}`` that is not ``${VAR}`` or ``${VAR:-default}`` (the message says how to write it)."""


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``.

    A default may itself hold references, as in a shell or Docker Compose: ``${A:-${B:-x}}`` is A,
    else B, else ``x``; an inner variable is needed only when its default is used. Returns the text
    and the names of variables that are unset and have no default. Raises :class:`EnvReferenceError`
    for a ``${NAME`` that is not closed or not followed by ``}`` or ``:-``, and for defaults nested
    deeper than :data:`MAX_ENV_NESTING`. A ``$`` not followed by ``{`` and a name stays as written.
    """
    missing: list[str] = []
    value, _ = _expand(text, 0, env, missing, 0, True)
    return value, missing


def _expand(
    text: str, start: int, env: Mapping[str, str], missing: list[str], depth: int, active: bool
) -> tuple[str, int]:
    """Expand ``text`` from ``start``; inside a default (``depth > 0``) up to and past its closing ``}``.

    ``active`` is false inside a default that is not used: it is parsed (and checked) but its
    variables are not looked up.
    """
    out: list[str] = []
    index = start
    while True:
        found = (_SPECIAL if depth else _DOLLAR).search(text, index)
        if found is None:
            if depth:
                raise EnvReferenceError("a '${NAME:-default}' is not closed: add the '}' that ends its default")
            out.append(text[index:])
            return "".join(out), len(text)
        stop = found.start()
        out.append(text[index:stop])
        if text[stop] == "}":
            return "".join(out), stop + 1
        if text.startswith("$$", stop):
            out.append("$")
            index = stop + 2
            continue
        match = _NAME_REF.match(text, stop)
        if match is None:  # '$x', '${1}', '${}': not a reference, kept as written
            out.append("$")
            index = stop + 1
            continue
        name, after = match.group(1), match.end()
        value = env.get(name) if active else ""
        if text.startswith("}", after):
            if value is None:
                missing.append(name)
            out.append(value or "")
            index = after + 1
        elif text.startswith(":-", after):
            if depth >= MAX_ENV_NESTING:
                raise EnvReferenceError(
                    f"'${{...:-...}}' defaults nest deeper than {MAX_ENV_NESTING} levels; set the variable instead"
                )
            use_default = active and not value
            default, index = _expand(text, after + 2, env, missing, depth + 1, use_default)
            out.append(default if use_default else value or "")
        else:
            raise EnvReferenceError(
                f"'${{{name}' must be written ${{{name}}} or ${{{name}:-default}} (and $$ for a literal $)"
            )


# ---------------------------------------------------------------------------------------------
# Reading files


def load_yaml_file(path: Path, env: Mapping[str, str] | None = None) -> SourceDocument:
    """Load a YAML file into a :class:`SourceDocument`, raising :class:`ConfigError` on any problem."""
    source = str(path)
    try:
        text = read_small_text(path, MAX_CONFIG_BYTES, "file")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(source, None, "", "file not found; check the path (relative paths start at the current folder)")]
        ) from None
    except FileRefused as exc:
        reason = str(exc).removeprefix(f"file {path}: ")
        hint = "; a traffic config is a few kilobytes" if "bytes" in reason else ""
        raise ConfigError([Problem(source, None, "", reason + hint)]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [
                Problem(
                    source, None, "", f"cannot read the file ({exc.__class__.__name__}); it must be readable UTF-8 text"
                )
            ]
        ) from None
    return load_yaml_text(text, source, folder=path.resolve().parent, env=env)


# ---------------------------------------------------------------------------------------------
# Composing, bounded


class _Refused(Exception):
    """Composing stopped at a limit: where and why."""

    def __init__(self, line: int | None, path: ConfigPath, message: str):
        super().__init__(message)
        self.line, self.path, self.message = line, path, message


class _BoundedComposer(Composer):
    """PyYAML's composer that counts values and depth as it goes, aliases as their anchor's content.

    Each alias costs the size (values) and height (levels) its anchor had when it was composed, so a
    bomb of nested aliases is refused at the alias that crosses :data:`MAX_YAML_NODES`, in time
    proportional to the file, and an alias inside its own anchor (a loop) is refused outright.
    """

    def _start_bounds(self) -> None:
        self._path: list[str | int] = []
        self._depth = -1
        self._values = 0
        self._deepest = 0
        self._open: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._heights: dict[str, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        part: str | int | None = None
        if parent is not None:
            if isinstance(index, int):
                part = index
            elif isinstance(index, yaml.ScalarNode):
                part = str(index.value)
        if part is not None:
            self._path.append(part)
        self._depth += 1
        try:
            return self._compose_counted(parent, index)
        finally:
            self._depth -= 1
            if part is not None:
                self._path.pop()

    def _compose_counted(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        depth = self._depth
        event = self.peek_event()
        if self.check_event(AliasEvent):
            name = event.anchor
            if name in self._open:
                self._refuse(
                    event.start_mark,
                    f"the alias *{name} is inside its own anchor &{name}, so it would repeat forever; "
                    "write the value out",
                )
            node = super().compose_node(parent, index)  # an undefined alias raises here
            self._count(self._sizes.get(name, 1), event.start_mark, name)
            reach = depth + self._heights.get(name, 0)
            if reach > MAX_YAML_DEPTH:
                self._refuse(event.start_mark, self._too_deep(f" once the alias *{name} is expanded"))
            self._deepest = max(self._deepest, reach)
            return node
        if depth > MAX_YAML_DEPTH:
            self._refuse(event.start_mark, self._too_deep(""))
        anchor = getattr(event, "anchor", None)
        before, outer_deepest = self._values, self._deepest
        self._deepest = depth
        self._count(1, event.start_mark, None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            if anchor is not None:
                self._open.discard(anchor)
        if anchor is not None:
            self._sizes[anchor] = self._values - before
            self._heights[anchor] = self._deepest - depth
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def _count(self, values: int, mark: Any, alias: str | None) -> None:
        self._values += values
        if self._values > MAX_YAML_NODES:
            expanded = f" once the alias *{alias} is expanded (an alias repeats all of its anchor)" if alias else ""
            self._refuse(
                mark,
                f"the YAML holds more than {MAX_YAML_NODES:,} values{expanded}; "
                "a traffic config needs far fewer (long page lists belong in a traffic.urls file)",
            )

    @staticmethod
    def _too_deep(why: str) -> str:
        return f"the YAML nests deeper than {MAX_YAML_DEPTH} levels{why}; no config key is that deep"

    def _refuse(self, mark: Any, message: str) -> None:
        raise _Refused(mark.line + 1 if mark is not None else None, tuple(self._path), message)


class _PyLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
    """PyYAML's own parser (used without libyaml), the bounded composer, the safe constructor."""

    def __init__(self, text: str):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._start_bounds()

    def dispose(self) -> None:
        self.state = None
        self.states = []


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the same events, slower
    CParser = None

if CParser is not None:

    class _CLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):  # type: ignore[misc,valid-type]
        """libyaml's parser (fast), the bounded composer, the safe constructor."""

        def __init__(self, text: str):
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_bounds()

    _Loader: type = _CLoader
else:
    _Loader = _PyLoader


def load_yaml_text(
    text: str, source: str, folder: Path | None = None, env: Mapping[str, str] | None = None
) -> SourceDocument:
    """Parse YAML text; see :func:`load_yaml_file`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [Problem(source, None, "", f"{len(text):,} characters, more than the {MAX_CONFIG_BYTES:,} bytes allowed")]
        )
    try:
        loader = _Loader(text)  # the pure-Python reader checks every character here
        root = loader.get_single_node()
    except _Refused as exc:
        raise ConfigError([Problem(source, exc.line, format_path(exc.path), exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "invalid YAML"
        if "maximum nesting depth" in what:  # libyaml's own limit (1000 levels), met before ours on one line
            message = _BoundedComposer._too_deep("")
        else:
            message = f"YAML syntax error: {what}; fix the indentation or quoting near this line"
        raise ConfigError([Problem(source, line, "", message)]) from None
    except yaml.reader.ReaderError as exc:  # a control character written as such (libyaml: position in characters)
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        message = (
            f"the character U+{code:04X} is not allowed in YAML ({exc.reason}); remove it, "
            'or write it as an escape such as "\\x07" inside double quotes'
        )
        raise ConfigError([Problem(source, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, None, "", f"YAML error: {exc}")]) from None
    except RecursionError:  # cannot happen below MAX_YAML_DEPTH; a clear refusal all the same
        raise ConfigError([Problem(source, None, "", _BoundedComposer._too_deep(""))]) from None
    doc = SourceDocument(data=None, source=source, folder=folder or Path.cwd(), env=env)
    if root is None:
        raise ConfigError(
            [
                Problem(
                    source, None, "", "the file is empty; it needs a 'targets' list (see config/multi-environment.yaml)"
                )
            ]
        )
    problems: list[Problem] = []
    try:
        doc.data = _convert(root, (), doc, os.environ if env is None else env, problems, loader)
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(problems)
    return doc


def _convert(
    node: yaml.Node,
    path: ConfigPath,
    doc: SourceDocument,
    env: Mapping[str, str],
    problems: list[Problem],
    loader: SafeConstructor,
) -> Any:
    """Plain data of a composed node: depth, size and loops were bounded while composing."""
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(
                    doc.problem(path, "YAML merge keys ('<<') are not supported; write the keys out or use 'defaults'")
                )
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
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
            result[key] = _convert(value_node, path + (key,), doc, env, problems, loader)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (index,), doc, env, problems, loader) for index, item in enumerate(node.value)]
    try:
        value = loader.construct_object(node, deep=True)
    except Exception as exc:  # noqa: BLE001 - any failure of PyYAML's safe constructors (`!!timestamp x`: AttributeError)
        loader.recursive_objects.clear()
        problems.append(doc.problem(path, _scalar_problem(node, exc)))
        return None
    if isinstance(value, str) and "$" in value:
        try:
            value, missing = expand_env(value, env)
        except EnvReferenceError as exc:
            problems.append(doc.problem(path, str(exc)))
            return None
        for name in missing:
            problems.append(
                doc.problem(path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
            )
    return value


def _scalar_problem(node: yaml.Node, exc: Exception) -> str:
    """What is wrong with a scalar YAML could not build (a bad date, an unknown tag, a 5,000-digit number)."""
    tag = str(node.tag)
    short = "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag
    shown = repr(node.value) if len(str(node.value)) <= 40 else repr(str(node.value)[:37] + "...")
    if isinstance(exc, ConstructorError):
        detail = str(exc.problem or exc)
    elif isinstance(exc, (ValueError, OverflowError)):
        detail = str(exc)
    else:  # a constructor tripping over a value it did not expect
        detail = ""
    why = f" ({detail.splitlines()[0]})" if detail else ""
    if "could not determine a constructor" in detail:
        return f"the tag {short} is not supported: plain YAML values only; remove the tag"
    if tag.endswith(":timestamp"):
        return f"{shown} is not a valid date{why}; quote it if it is text"
    if tag.endswith(":int") and "digits" in detail:
        return f"a number of {len(str(node.value)):,} digits is not allowed; every number here is far smaller"
    return f"cannot read this {short} value {shown}{why}; fix it or quote it as text"
