"""Named whole traffic configs kept in SQLite: the web UI's presets.

Why SQLite: two Locust processes (or two browser tabs hitting one) may save presets at the same
time; SQLite gives atomic, durable writes and a file that a killed process cannot leave half
written. Every write runs in a ``BEGIN IMMEDIATE`` transaction (one writer at a time, readers
never see a partial change), and each preset carries a ``version`` that a caller may quote to
refuse a stale overwrite (no lost update).

A preset's config is the YAML document as plain data. Tokens are secrets: only bare ``${VAR}``
references are stored (:func:`strip_tokens` drops a ``:-default`` and omits a token written as a
value), and the store refuses anything else. Nothing here imports Locust or Flask.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trafficinator_locust.core.errors import PresetError, PresetExists, PresetInvalid, PresetNotFound, StalePreset

FILE_NAME = "presets.sqlite3"
MAX_NAME_LENGTH = 100
BUSY_TIMEOUT = 10.0
_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS presets (
    name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    version INTEGER NOT NULL
)
"""


# ---------------------------------------------------------------------------------------------
# Tokens: references only


def env_reference(value: Any) -> str | None:
    """The variable name when ``value`` is exactly ``${VAR}`` or ``${VAR:-default}``, else ``None``."""
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


TOKEN_KEYS = ("token_auth", "report_token_auth")
"""The config keys that hold secrets: a preset keeps them only as ``${VAR}``."""


def is_bare_reference(value: Any) -> bool:
    """Whether ``value`` is exactly ``${VAR}``: the only form in which a token is stored or written."""
    return isinstance(value, str) and value == f"${{{env_reference(value)}}}"


def token_places(config: Any) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every place a token may sit in a config document: ``(where, holder, key)`` for each of
    :data:`TOKEN_KEYS` in ``defaults`` and in each target (``where`` names the holder for messages)."""
    if not isinstance(config, dict):
        return
    holders: list[tuple[str, Any]] = [("defaults", config.get("defaults"))]
    targets = config.get("targets")
    for index, target in enumerate(targets if isinstance(targets, list) else []):
        name = target.get("name", "?") if isinstance(target, dict) else "?"
        holders.append((f"targets[{index}] ({name})", target))
    for (where, holder), key in itertools.product(holders, TOKEN_KEYS):
        if isinstance(holder, dict) and key in holder:
            yield where, holder, key


def strip_tokens(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``config`` whose every token (:data:`TOKEN_KEYS`) is a bare ``${VAR}`` or is omitted.

    A ``${VAR:-default}`` loses its default (the default may be a token in clear); a token written
    as a value is omitted. Returns the copy and one warning per omitted token.
    """
    clean = copy.deepcopy(config)
    warnings: list[str] = []
    for where, holder, key in list(token_places(clean)):
        if holder.get(key) in (None, ""):
            holder.pop(key, None)
            continue
        name = env_reference(holder[key])
        if name is None:
            del holder[key]
            warnings.append(
                f"{where}: {key} was given as a value and is not stored; write it as ${{VAR}} to keep it in a preset"
            )
        else:
            holder[key] = f"${{{name}}}"
    return clean, warnings


def _check_tokens(config: dict[str, Any]) -> None:
    for _, holder, key in token_places(config):
        if not is_bare_reference(holder[key]):
            raise PresetInvalid(f"a preset stores {key} only as a bare ${{VAR}} reference (see strip_tokens)")


def check_name(name: Any) -> str:
    """A preset name: 1..100 printable characters, no '/', no leading or trailing space."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME_LENGTH
        or name != name.strip()
        or not name.isprintable()
        or "/" in name
    ):
        raise PresetInvalid(
            f"a preset name must be 1 to {MAX_NAME_LENGTH} printable characters without '/' or leading/trailing spaces"
        )
    return name


# ---------------------------------------------------------------------------------------------
# The store


@dataclass(frozen=True)
class Preset:
    name: str
    config: dict[str, Any]
    created: float
    updated: float
    version: int

    def as_dict(self, with_config: bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "version": self.version,
            "targets": [t.get("name") for t in self.config.get("targets", []) if isinstance(t, dict)],
        }
        if with_config:
            entry["config"] = self.config
        return entry


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


class PresetStore:
    """Presets in one SQLite file; every call opens its own connection (safe from any greenlet or thread)."""

    def __init__(self, path: str | Path, *, clock: Any = time.time):
        self.path = Path(path)
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as db:
            db.execute(_SCHEMA)

    def list(self) -> list[Preset]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name, config, created, updated, version FROM presets ORDER BY name COLLATE NOCASE"
            ).fetchall()
        return [_preset(row) for row in rows]

    def get(self, name: str) -> Preset:
        with self._read() as db:
            row = db.execute(
                "SELECT name, config, created, updated, version FROM presets WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise PresetNotFound(f"no preset named '{name}'")
        return _preset(row)

    def create(self, name: str, config: dict[str, Any]) -> Preset:
        """A new preset; :class:`PresetExists` when the name (case-insensitive) is taken."""
        check_name(name)
        _check_tokens(config)
        now = self._clock()
        with self._write() as db:
            found = db.execute("SELECT name FROM presets WHERE name = ?", (name,)).fetchone()
            if found is not None:
                raise PresetExists(f"a preset named '{found[0]}' exists; pick another name or update it with PUT")
            db.execute("INSERT INTO presets VALUES (?, ?, ?, ?, 1)", (name, _dumps(config), now, now))
        return Preset(name, config, now, now, 1)

    def save(self, name: str, config: dict[str, Any], expected_version: int | None = None) -> tuple[Preset, bool]:
        """Create or replace; returns the preset and whether it was created.

        With ``expected_version`` the preset must exist at that version (:class:`StalePreset`,
        :class:`PresetNotFound` otherwise): a read-modify-write that loses no concurrent update.
        """
        check_name(name)
        _check_tokens(config)
        now = self._clock()
        with self._write() as db:
            row = db.execute("SELECT name, created, version FROM presets WHERE name = ?", (name,)).fetchone()
            if row is None:
                if expected_version is not None:
                    raise PresetNotFound(f"no preset named '{name}' (it was deleted?); create it without a version")
                db.execute("INSERT INTO presets VALUES (?, ?, ?, ?, 1)", (name, _dumps(config), now, now))
                return Preset(name, config, now, now, 1), True
            stored_name, created, version = row
            if expected_version is not None and expected_version != version:
                raise StalePreset(stored_name, expected_version, version)
            db.execute(
                "UPDATE presets SET config = ?, updated = ?, version = ? WHERE name = ?",
                (_dumps(config), now, version + 1, name),
            )
        return Preset(stored_name, config, created, now, version + 1), False

    def delete(self, name: str, expected_version: int | None = None) -> None:
        with self._write() as db:
            row = db.execute("SELECT name, version FROM presets WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise PresetNotFound(f"no preset named '{name}'")
            if expected_version is not None and expected_version != row[1]:
                raise StalePreset(row[0], expected_version, row[1])
            db.execute("DELETE FROM presets WHERE name = ?", (name,))

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise PresetError(f"cannot open the presets file {self.path}: {exc}") from None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        except sqlite3.Error as exc:
            raise PresetError(f"cannot read the presets file {self.path}: {exc}") from None
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock at once (``BEGIN IMMEDIATE``): no lost update."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise PresetError(f"cannot write the presets file {self.path}: {exc}") from None
        finally:
            db.close()


def _dumps(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=False, ensure_ascii=False)


def _preset(row: tuple[str, str, float, float, int]) -> Preset:
    name, config, created, updated, version = row
    return Preset(name, json.loads(config), created, updated, version)


__all__ = [
    "FILE_NAME",
    "Preset",
    "PresetStore",
    "check_name",
    "env_reference",
    "is_bare_reference",
    "strip_tokens",
    "token_places",
]
