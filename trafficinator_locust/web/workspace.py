"""The config being edited from the web UI: its YAML document, its validated form, its file.

Why edits never bypass the YAML loader: each change builds the whole config document and runs the
loader on it (:meth:`Workspace.validate`), so an API error names the same config path a file error
would, and the API cannot produce a config the file could not hold. Tokens are write-only: a view
says ``"token_auth": "set"`` or ``null``; a token typed as a value lives in memory only, as a
``${TRAFFICINATOR_UI_TOKEN_<n>}`` variable the document references, so saving refuses it and
presets omit it. See docs/adr/010-web-control-plane.md.

No Flask and no Locust here: requests arrive as plain dicts, refusals leave as :class:`WebApiError`.
"""

from __future__ import annotations

import copy
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
from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.legacy import legacy_document
from trafficinator_locust.core.yaml_source import load_yaml_text
from trafficinator_locust.web.config_writer import backup_path, render_yaml
from trafficinator_locust.web.presets import env_reference, strip_tokens

__all__ = ["READ_ONLY_KEYS", "SECRET_PREFIX", "TOKEN_KEEP", "Workspace", "name_in", "problems_of"]

logger = logging.getLogger("trafficinator.webui")

TOKEN_KEEP = "set"
"""``token_auth: "set"`` in a request keeps the current token (what a GET returned)."""
SECRET_PREFIX = "TRAFFICINATOR_UI_TOKEN_"
"""Tokens typed as values in the UI live in memory as these variables; never saved."""
READ_ONLY_KEYS = ("token_env", "effective")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def problems_of(error: ConfigError) -> list[dict[str, Any]]:
    return [{"path": p.path or "<top level>", "message": p.message} for p in error.problems]


def name_in(body: dict[str, Any]) -> str:
    """The ``name`` of a target sent by a client (422 when missing or not text)."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WebApiError(
            422, "a target needs a name (text)", [{"path": "name", "message": "required, non-empty text"}]
        )
    return name


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
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
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
        """A target as the API shows it: as written, token write-only, plus its effective values."""
        target = self.resolved(str(raw.get("name", "")))
        shown = {key: copy.deepcopy(value) for key, value in raw.items() if key != "token_auth"}
        reference = env_reference(raw.get("token_auth"))
        shown["token_auth"] = TOKEN_KEEP if (target.has_token if target else raw.get("token_auth")) else None
        shown["token_env"] = reference if reference and not reference.startswith(SECRET_PREFIX) else None
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
        for target in data.get("targets") or []:
            if isinstance(target, dict) and str(env_reference(target.get("token_auth")) or "").startswith(
                SECRET_PREFIX
            ):
                target["token_auth"] = "<typed in the web UI>"
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
        index = self.existing(name)
        current = self.data["targets"][index]
        if partial:
            merged = {**{k: v for k, v in current.items() if k != "token_auth"}, **body}
            body = {k: v for k, v in merged.items() if v is not None or k == "token_auth"}
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

        ``token_auth``: absent or ``"set"`` keeps the current one; ``null``/``""`` removes it;
        ``${VAR}`` is kept as the reference; any other text is held in memory only.
        """
        target = {key: value for key, value in body.items() if key not in READ_ONLY_KEYS}
        extra: dict[str, str] = {}
        token = target.pop("token_auth", TOKEN_KEEP)
        if token == TOKEN_KEEP:
            token = current.get("token_auth") if current else None
        elif token is not None and not isinstance(token, str):
            raise WebApiError(
                422,
                "token_auth must be text: a ${VAR} reference, a token, or null to remove it",
                [{"path": "token_auth", "message": "must be a string or null"}],
            )
        elif token and env_reference(token) is None:
            name = f"{SECRET_PREFIX}{self._next_secret}"
            self._next_secret += 1
            extra[name] = token
            token = f"${{{name}}}"
        if token:
            target["token_auth"] = token
        return target, extra

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
        typed = [
            str(t.get("name"))
            for t in data.get("targets") or []
            if isinstance(t, dict) and str(env_reference(t.get("token_auth")) or "").startswith(SECRET_PREFIX)
        ]
        if typed:
            raise WebApiError(
                422,
                f"the token of {', '.join(typed)} was typed as a value in the web UI and is never written to a file: "
                "send token_auth as a ${VAR} reference (and export VAR) to save",
            )

    def save(self, now: float) -> dict[str, str]:
        """Write the document back to its file (comments kept) after a timestamped backup."""
        assert self.path is not None
        original = self.path.read_text(encoding="utf-8")
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
