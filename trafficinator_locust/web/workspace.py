"""The config being edited from the web UI: its YAML document, its validated form, its file.

Why edits never bypass the YAML loader: each change builds the whole config document and runs the
loader on it (:meth:`Workspace.validate`), so an API error names the same config path a file error
would, and the API cannot produce a config the file could not hold. Tokens are write-only: a view
says ``"token_auth": "set"`` or ``null``; a token typed as a value lives in memory only, as a
``${TRAFFICINATOR_UI_TOKEN_<n>}`` variable the document references, so saving refuses it and
presets omit it. See docs/adr/010-web-control-plane.md.

Limits (docs/web-ui.md, Security): a target name is at most :data:`MAX_NAME_LENGTH` characters and
any text a client sends (a key or a value) at most :data:`MAX_TEXT_LENGTH`, both 422 naming the
field; a change may not grow the document past :data:`MAX_DOCUMENT_BYTES` (413), because every
later change runs the loader on the whole of it. A token reaches the YAML file only as a bare
``${VAR}`` (the presets' policy, :func:`presets.is_bare_reference`), or as the file already held it.

No Flask and no Locust here: requests arrive as plain dicts, refusals leave as :class:`WebApiError`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from trafficinator_locust.core.config import Config, Target, resolve_document, single_target_as_multi
from trafficinator_locust.core.errors import ConfigError, WebApiError
from trafficinator_locust.core.files import read_small_text, write_atomic
from trafficinator_locust.core.legacy import legacy_document
from trafficinator_locust.core.yaml_source import MAX_CONFIG_BYTES, load_yaml_text
from trafficinator_locust.web.config_writer import backup_path, render_yaml
from trafficinator_locust.web.presets import (
    MAX_NAME_LENGTH,
    TOKEN_KEYS,
    env_reference,
    is_bare_reference,
    strip_tokens,
    token_places,
)

__all__ = [
    "CONFIG_FILE_LIMIT",
    "MAX_DOCUMENT_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_TEXT_LENGTH",
    "READ_ONLY_KEYS",
    "SECRET_PREFIX",
    "TOKEN_KEEP",
    "Workspace",
    "check_text",
    "name_in",
    "problems_of",
]

logger = logging.getLogger("trafficinator.webui")

TOKEN_KEEP = "set"
"""``token_auth: "set"`` (or ``report_token_auth``) in a request keeps the current token (what a GET returned)."""
ENV_KEYS = {"token_auth": "token_env", "report_token_auth": "report_token_env"}
"""For each token key (:data:`presets.TOKEN_KEYS`), the view's key naming the variable of its ``${VAR}``."""
SECRET_PREFIX = "TRAFFICINATOR_UI_TOKEN_"
"""Tokens typed as values in the UI live in memory as these variables; never saved."""
READ_ONLY_KEYS = (*ENV_KEYS.values(), "effective")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_TEXT_LENGTH = 4096
"""Characters of any one key or text value a client sends (a URL, a title, one of ``traffic.urls``)."""
MAX_DOCUMENT_BYTES = 512 * 1024
"""Bytes of the whole config document (as compact JSON) a change may grow it to: each change runs
the loader on all of it (~1.5 s a MiB), so this bounds the time of every later change too. Long URL
lists belong in a file (``urls: urls.txt``)."""
CONFIG_FILE_LIMIT = MAX_CONFIG_BYTES
"""Bytes of the config file the workspace reads (at the start and before a save): the loader's own limit."""


def problems_of(error: ConfigError) -> list[dict[str, Any]]:
    return [{"path": p.path or "<top level>", "message": p.message} for p in error.problems]


def name_in(body: dict[str, Any]) -> str:
    """The ``name`` of a target sent by a client (422 when missing, not text or too long)."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WebApiError(
            422, "a target needs a name (text)", [{"path": "name", "message": "required, non-empty text"}]
        )
    if len(name) > MAX_NAME_LENGTH:
        raise WebApiError(
            422,
            f"a target name is at most {MAX_NAME_LENGTH} characters (got {len(name):,})",
            [{"path": "name", "message": f"at most {MAX_NAME_LENGTH} characters"}],
        )
    return name


def check_text(value: Any, path: str = "") -> None:
    """422 naming the first key or text in ``value`` (a client's JSON) longer than :data:`MAX_TEXT_LENGTH`.

    ``path`` is where ``value`` sits (``config``), for the problem's ``path`` (``config.targets[0].url``).
    The JSON depth is bounded before this (the app refuses more than 32 levels), so recursion is too.
    """
    if isinstance(value, str):
        if len(value) > MAX_TEXT_LENGTH:
            raise WebApiError(
                422,
                f"{path or 'the body'}: at most {MAX_TEXT_LENGTH:,} characters of text (got {len(value):,})",
                [{"path": path or "<top level>", "message": f"at most {MAX_TEXT_LENGTH} characters"}],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if len(str(key)) > MAX_TEXT_LENGTH:
                where = f"{path}.<a key of {len(str(key)):,} characters>" if path else "<a long key>"
                raise WebApiError(
                    422,
                    f"{where}: a key is at most {MAX_TEXT_LENGTH:,} characters",
                    [{"path": where, "message": f"at most {MAX_TEXT_LENGTH} characters"}],
                )
            check_text(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{path}[{index}]")


def document_size(data: Any) -> int:
    """The size of a config document as compact JSON, the measure of :data:`MAX_DOCUMENT_BYTES`."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class Workspace:
    """The config being edited: the YAML document as data (tokens as written: ``${VAR}``), its
    validated :class:`Config`, and the file it came from (``None``: legacy environment)."""

    def __init__(self, data: dict[str, Any], config: Config, path: Path | None, folder: Path, env: Mapping[str, str]):
        self.data = data
        self.config = config
        self.path = path
        self.folder = folder
        self.env = env
        self.secrets: dict[str, str] = {}
        self.version = 1
        self._next_secret = 1

    @classmethod
    def load(cls, config: Config, env: Mapping[str, str] | None = None) -> Workspace:
        env = os.environ if env is None else env
        path = Path(config.source)
        if path.is_file():
            raw = yaml.safe_load(read_small_text(path, CONFIG_FILE_LIMIT, "the config file"))
            data = (single_target_as_multi(raw) or raw) if isinstance(raw, dict) else {"targets": []}
            workspace = cls(data, config, path.resolve(), path.resolve().parent, env)
        else:  # the single-target environment variables (legacy.py): no file to save to
            data = legacy_document(env).data
            for target in data["targets"]:
                if "token_auth" in target:
                    target["token_auth"] = "${MATOMO_TOKEN_AUTH}"
            workspace = cls(data, config, None, Path.cwd(), env)
        try:
            workspace.config = workspace.validate(workspace.data)
        except ConfigError as error:  # the file changed since Locust loaded it: keep Locust's view
            logger.warning(
                "trafficinator web UI: the config file no longer loads (%s); showing the config Locust started with",
                error.problems[0],
            )
        return workspace

    # -- reading

    def index_of(self, name: str) -> int | None:
        for index, target in enumerate(self.data.get("targets") or []):
            if isinstance(target, dict) and str(target.get("name", "")).casefold() == name.casefold():
                return index
        return None

    def resolved(self, name: str) -> Target | None:
        return next((t for t in self.config.targets if t.name.casefold() == name.casefold()), None)

    def view(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A target as the API shows it: as written, tokens write-only (``token_auth`` and
        ``report_token_auth``: "set" or null, the variable of a ``${VAR}`` beside), plus its effective values."""
        target = self.resolved(str(raw.get("name", "")))
        shown = {key: copy.deepcopy(value) for key, value in raw.items() if key not in TOKEN_KEYS}
        for key in TOKEN_KEYS:
            reference = env_reference(raw.get(key))
            present = getattr(target, key, None) is not None if target else raw.get(key)
            shown[key] = TOKEN_KEEP if present else None
            shown[ENV_KEYS[key]] = reference if reference and not reference.startswith(SECRET_PREFIX) else None
        if target is not None:
            shown["effective"] = {
                "url": target.url,
                "site_id": target.site_id,
                "weight": target.weight,
                "weight_share": round(self.config.weight_share(target), 4),
                "visits_per_day": target.visits_per_day,
                "timezone": target.timezone,
                "enabled": target.enabled,
            }
        return shown

    def views(self) -> list[dict[str, Any]]:
        return [self.view(t) for t in self.data.get("targets") or []]

    def portable(self) -> dict[str, Any]:
        """A copy of the document for a preset: a token typed in the UI shows as a value there
        (so :func:`presets.strip_tokens` omits it with a warning), never as its in-memory variable."""
        data = copy.deepcopy(self.data)
        for _, holder, key in token_places(data):
            if _typed(holder[key]):
                holder[key] = "<typed in the web UI>"
        return data

    def preset_document(self, config: Any) -> tuple[dict[str, Any], list[str]]:
        """What a preset stores: ``config`` (checked with the loader; its variables may be unset
        here) or, when ``None``, the current document; tokens reduced to ``${VAR}`` references."""
        if config is None:
            return strip_tokens(self.portable())
        if not isinstance(config, dict):
            raise WebApiError(
                422,
                "config must be a JSON object (a whole traffic config)",
                [{"path": "config", "message": "must be an object"}],
            )
        check_text(config, "config")
        self.check_size(config, "the preset")
        clean, warnings = strip_tokens(config)
        missing = {name: "unset" for name in _VARIABLE.findall(yaml.safe_dump(clean)) if name not in os.environ}
        self.validate(clean, missing)
        return clean, warnings

    def secret_values(self) -> list[str]:
        values = [token for t in self.config.targets for token in t.secrets]
        return values + list(self.secrets.values())

    def existing(self, name: str) -> int:
        """The index of target ``name``; 404 naming the targets there are."""
        index = self.index_of(name)
        if index is None:
            known = ", ".join(str(t.get("name")) for t in self.data.get("targets") or [])
            raise WebApiError(404, f"no target named '{name}' (targets: {known})")
        return index

    # -- changing (each returns a whole new document; ControlPlane.change validates and commits it)

    def with_added(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        check_text(body)
        name = name_in(body)
        if self.index_of(name) is not None:
            raise WebApiError(
                409,
                f"a target named '{name}' exists (names are case-insensitive); "
                f"change it with PUT/PATCH /api/targets/{name}",
            )
        target, secret = self.incoming_target(body, None)
        data = copy.deepcopy(self.data)
        data.setdefault("targets", []).append(target)
        return data, secret

    def with_changed(
        self, name: str, body: dict[str, Any], partial: bool
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Replace target ``name`` (PUT) or some of its keys (PATCH: ``null`` removes a key)."""
        check_text(body)
        index = self.existing(name)
        current = self.data["targets"][index]
        if partial:
            merged = {**{k: v for k, v in current.items() if k not in TOKEN_KEYS}, **body}
            body = {k: v for k, v in merged.items() if v is not None or k in TOKEN_KEYS}
        body.setdefault("name", current.get("name"))
        new_name = name_in(body)
        other = self.index_of(new_name)
        if other is not None and other != index:
            raise WebApiError(409, f"a target named '{new_name}' exists (names are case-insensitive)")
        target, secret = self.incoming_target(body, current)
        data = copy.deepcopy(self.data)
        data["targets"][index] = target
        return index, data, secret

    def without(self, name: str) -> tuple[dict[str, Any], str]:
        """The document without target ``name``, and the name as written."""
        data = copy.deepcopy(self.data)
        removed = data["targets"].pop(self.existing(name))
        return data, removed.get("name")

    def incoming_target(
        self, body: dict[str, Any], current: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The document entry for a target sent by a client, and any token typed as a value.

        Each token key (``token_auth``, ``report_token_auth``): absent or ``"set"`` keeps the current
        one; ``null``/``""`` removes it; ``${VAR}`` is kept as the reference; any other text is held
        in memory only.
        """
        target = {key: value for key, value in body.items() if key not in READ_ONLY_KEYS}
        extra: dict[str, str] = {}
        for key in TOKEN_KEYS:
            token = target.pop(key, TOKEN_KEEP)
            if token == TOKEN_KEEP:
                token = current.get(key) if current else None
            elif token is not None and not isinstance(token, str):
                raise WebApiError(
                    422,
                    f"{key} must be text: a ${{VAR}} reference, a token, or null to remove it",
                    [{"path": key, "message": "must be a string or null"}],
                )
            elif token and env_reference(token) is None:
                name = f"{SECRET_PREFIX}{self._next_secret}"
                self._next_secret += 1
                extra[name] = token
                token = f"${{{name}}}"
            if token:
                target[key] = token
        return target, extra

    def check_limits(self, data: dict[str, Any]) -> None:
        """Refuse a new document that grows past :data:`MAX_DOCUMENT_BYTES` (413) or brings a target
        name longer than :data:`MAX_NAME_LENGTH` (422); what the file already had stays editable."""
        self.check_size(data, "the config")
        known = {str(t.get("name")) for t in self.data.get("targets") or [] if isinstance(t, dict)}
        for index, target in enumerate(data.get("targets") or []):
            name = target.get("name") if isinstance(target, dict) else None
            if isinstance(name, str) and len(name) > MAX_NAME_LENGTH and name not in known:
                raise WebApiError(
                    422,
                    f"targets[{index}].name: a target name is at most {MAX_NAME_LENGTH} characters",
                    [{"path": f"targets[{index}].name", "message": f"at most {MAX_NAME_LENGTH} characters"}],
                )

    def check_size(self, data: Any, what: str) -> None:
        size = document_size(data)
        if size > MAX_DOCUMENT_BYTES and size > document_size(self.data):
            raise WebApiError(
                413,
                f"{what} would be {size:,} bytes (as JSON), more than the {MAX_DOCUMENT_BYTES:,} allowed: "
                "put long URL lists in a file (traffic.urls: urls.txt) or remove targets",
            )

    def validate(self, data: dict[str, Any], extra_env: Mapping[str, str] | None = None) -> Config:
        """Run the YAML loader on a whole document; raises :class:`ConfigError` with config paths."""
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        env = {**self.env, **self.secrets, **(extra_env or {})}
        return resolve_document(load_yaml_text(text, self.source, folder=self.folder, env=env))

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "environment"

    def commit(self, data: dict[str, Any], config: Config, extra_secrets: Mapping[str, str]) -> None:
        self.data, self.config = data, config
        used = yaml.safe_dump(data)
        self.secrets = {
            name: value for name, value in {**self.secrets, **extra_secrets}.items() if f"${{{name}}}" in used
        }
        self.version += 1

    # -- saving

    def check_savable(self, data: dict[str, Any]) -> None:
        if self.path is None:
            raise WebApiError(
                409,
                "this config came from the MATOMO_* environment variables: there is no file to save to; "
                "start Locust with --traffic-config FILE",
            )
        typed = list(dict.fromkeys(str(h.get("name", where)) for where, h, key in token_places(data) if _typed(h[key])))
        if typed:
            raise WebApiError(
                422,
                f"the token of {', '.join(typed)} was typed as a value in the web UI and is never written to a file: "
                "send the token as a ${VAR} reference (and export VAR) to save",
            )
        in_file = self._file_tokens()
        clear = [
            (where, key)
            for where, holder, key in token_places(data)
            if holder[key] not in (None, "") and not is_bare_reference(holder[key]) and holder[key] not in in_file
        ]
        if clear:
            raise WebApiError(
                422,
                f"{'; '.join(f'{where}: {key}' for where, key in clear)}: not a bare ${{VAR}} reference. The web UI "
                "writes a token to the file only as ${VAR}, as presets store it (a ${VAR:-default}'s default, or a "
                "value, may be a token in clear): send it as ${VAR} (and export VAR) to save",
                [{"path": f"{where.split(' ', 1)[0]}.{key}", "message": "not a bare ${VAR}"} for where, key in clear],
            )

    def _file_tokens(self) -> set[Any]:
        """The token values the config file holds now, as written (what saving may keep as it was)."""
        assert self.path is not None
        raw = yaml.safe_load(read_small_text(self.path, CONFIG_FILE_LIMIT, "the config file"))
        document = (single_target_as_multi(raw) or raw) if isinstance(raw, dict) else {}
        return {holder[key] for _, holder, key in token_places(document) if isinstance(holder[key], str)}

    def save(self, now: float) -> dict[str, str]:
        """Write the document back to its file (comments kept) after a timestamped backup."""
        assert self.path is not None
        original = read_small_text(self.path, CONFIG_FILE_LIMIT, "the config file")
        text = render_yaml(original, self.data)
        if yaml.safe_load(text) != self.data:
            raise WebApiError(
                500,
                "the YAML written back would not read as the edited config "
                "(a value YAML 1.1 reads differently?); nothing was saved",
            )
        backup = backup_path(self.path, now)
        shutil.copy2(self.path, backup)
        mode = self.path.stat().st_mode & 0o777
        write_atomic(self.path, text)
        os.chmod(self.path, mode)
        return {"path": str(self.path), "backup": str(backup)}


def _typed(value: Any) -> bool:
    """Whether a token value is one typed in the web UI (its in-memory ``${TRAFFICINATOR_UI_TOKEN_<n>}``)."""
    return str(env_reference(value) or "").startswith(SECRET_PREFIX)
