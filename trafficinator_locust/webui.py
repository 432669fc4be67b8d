"""Control plane in Locust's web UI: a targets API, validation, per-target status and presets.

Why inside Locust's own Flask app (not a second server): one port, one login (``--web-login``),
one base path (``--web-base-path``), and the Targets tab sits beside Locust's own tabs. Every
route is on the plugin's blueprint and wrapped in ``web_ui.auth_required_if_enabled``.

Edits never bypass the YAML loader: each change builds the whole config document and runs the
loader on it, so an API error names the same config path a file error would. Tokens are
write-only: responses say ``"token_auth": "set"`` or ``null``. Changes to ``enabled`` and to a
target's pace (``visits_per_day``, its share of a total, ``profile``) apply at once through the
permit broker; everything else is staged for the next test start (``plugin.stage_config``).
See docs/web-ui.md and docs/adr/010-web-control-plane.md.
"""

from __future__ import annotations

import copy
import hmac
import io
import json
import logging
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify, redirect, request, send_from_directory, session, url_for
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING
from locust.stats import RequestStats, StatsEntry

from .broker import state_folder
from .config import Config, Target, resolve_document, single_target_as_multi
from .files import write_atomic
from .legacy import legacy_document
from .presets import FILE_NAME, PresetError, PresetExists, PresetInvalid, PresetNotFound, PresetStore, StalePreset, env_reference, strip_tokens
from .report import FAILING_SHARE, VisitTally, summarize
from .yaml_source import ConfigError, load_yaml_text

logger = logging.getLogger("trafficinator.webui")

TAB_KEY = "trafficinator-targets"
STATIC = Path(__file__).with_name("webui_static")
LOOPBACK = "127.0.0.1"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
USER_ENV, PASSWORD_ENV = "TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"
EXIT_CONFIG_ERROR = 2
TOKEN_KEEP = "set"
"""``token_auth: "set"`` in a request keeps the current token (what a GET returned)."""
SECRET_PREFIX = "TRAFFICINATOR_UI_TOKEN_"
"""Tokens typed as values in the UI live in memory as these variables; never saved."""
READ_ONLY_KEYS = ("token_env", "effective")

# Health (docs/web-ui.md): over the last HEALTH_WINDOW seconds of requests (the whole run when
# the window is empty); "failing" also when a target's visits are failing (report.FAILING_SHARE).
HEALTH_WINDOW = 60
FAILING_FAIL_RATIO = 0.5
DEGRADED_FAIL_RATIO = 0.05
DEGRADED_P95_MS = 2000
RATE_SPAN = 30.0


# =============================================================================================
# Options


def add_web_arguments(parser: LocustArgumentParser) -> None:
    """``--traffic-presets``, and ``--web-host`` defaulting to 127.0.0.1 (see docs/web-ui.md)."""
    group = next((g for g in parser._action_groups if g.title == "trafficinator"), parser)
    group.add_argument(
        "--traffic-presets", metavar="FILE", default=None,
        help="SQLite file of the web UI's named presets (default: $XDG_STATE_HOME/trafficinator/presets.sqlite3).",
    )
    for action in parser._actions:
        if "--web-host" in action.option_strings:
            action.default = LOOPBACK
            action.help = ("Host to bind the web interface to. trafficinator: defaults to 127.0.0.1 (the UI can change targets); "
                           "pass '*' or an address to expose it, with --web-login and TRAFFICINATOR_WEB_USER/PASSWORD.")


def presets_path(options: Any, env: Mapping[str, str] | None = None) -> Path:
    chosen = getattr(options, "traffic_presets", None) if options is not None else None
    return Path(chosen) if chosen else state_folder(env) / FILE_NAME


# =============================================================================================
# Pure helpers


_TOKEN_PARAM = re.compile(r"(token_auth=)[^&\s\"']+")


def mask_secrets(text: str, values: Iterable[str]) -> str:
    """``text`` with every secret value and any ``token_auth=...`` parameter replaced by ``***``."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, "***")
    return _TOKEN_PARAM.sub(r"\1***", text)


def classify_health(recent_requests: int, recent_failures: int, p95_ms: float | None, visits_failing: bool = False) -> str | None:
    """healthy | degraded | failing from a window of requests (``None`` when nothing was sent).

    failing: >= 50 % of the requests failed, or the target's visits are failing; degraded: >= 5 %
    failed, or p95 >= 2000 ms; else healthy.
    """
    if visits_failing:
        return "failing"
    if recent_requests <= 0:
        return None
    ratio = recent_failures / recent_requests
    if ratio >= FAILING_FAIL_RATIO:
        return "failing"
    if ratio >= DEGRADED_FAIL_RATIO or (p95_ms is not None and p95_ms >= DEGRADED_P95_MS):
        return "degraded"
    return "healthy"


def target_entries(stats: RequestStats, target: str) -> list[StatsEntry]:
    prefix = f"[{target}] "
    return [entry for (name, _method), entry in stats.entries.items() if name.startswith(prefix)]


def recent_counts(entries: Iterable[StatsEntry], now: float, seconds: int) -> tuple[int, int]:
    """Requests and failures of the last ``seconds`` (Locust keeps per-second counts)."""
    since = int(now) - seconds
    requests = failures = 0
    for entry in entries:
        requests += sum(n for t, n in entry.num_reqs_per_sec.items() if t > since)
        failures += sum(n for t, n in entry.num_fail_per_sec.items() if t > since)
    return requests, failures


def last_error(stats: RequestStats, target: str) -> str | None:
    """The most recently seen error of a target's requests (unmasked: mask before showing)."""
    prefix = f"[{target}] "
    found = [e for e in stats.errors.values() if e.name.startswith(prefix)]
    if not found:
        return None
    latest = max(found, key=lambda e: (e.last_seen or 0.0, e.occurrences))
    return f"{latest.name}: {latest.error}"


class RecentRate:
    """Visits started per second per target over the last ``span`` seconds, from samples of the
    (cumulative) tally taken whenever status is read; a count that goes down (a new run) restarts it."""

    def __init__(self, span: float = RATE_SPAN):
        self.span = span
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, now: float, counts: Mapping[str, int]) -> None:
        if self._samples and any(counts.get(name, 0) < count for name, count in self._samples[-1][1].items()):
            self._samples.clear()
        self._samples.append((now, dict(counts)))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.span:
            self._samples.popleft()

    def rate(self, name: str) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        return (last.get(name, 0) - first.get(name, 0)) / (t1 - t0) if t1 > t0 else None


def pending_changes(running: Config, new: Config) -> list[str]:
    """What of ``new`` waits for the next test start, relative to the config the run started with."""
    before = {t.name.casefold(): t for t in running.targets}
    after = {t.name.casefold(): t for t in new.targets}
    notes = [f"{t.name}: added" for key, t in after.items() if key not in before]
    notes += [f"{t.name}: removed (paused now)" for key, t in before.items() if key not in after]
    for key, target in after.items():
        old = before.get(key)
        if old is None:
            continue
        if target.enabled and not old.enabled:
            notes.append(f"{target.name}: enabled (its users start at the next test start)")
        fields = [f for f in ("name", "url", "site_id", "token_auth", "timezone", "seed", "traffic") if getattr(old, f) != getattr(target, f)]
        if old.weight != target.weight:
            fields.append("weight (the split of users)")
        if fields:
            notes.append(f"{target.name}: {', '.join(fields)}")
    for field in ("distribution", "seed"):
        if getattr(running, field) != getattr(new, field):
            notes.append(f"{field}: {getattr(new, field)}")
    return notes


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


# =============================================================================================
# The config being edited


class ApiError(Exception):
    """An answer other than success: status code, message, and the config problems if any."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def problems_of(error: ConfigError) -> list[dict[str, Any]]:
    return [{"path": p.path or "<top level>", "message": p.message} for p in error.problems]


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
            logger.warning("trafficinator web UI: the config file no longer loads (%s); showing the config Locust started with", error.problems[0])
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
                "url": target.url, "site_id": target.site_id, "weight": target.weight,
                "weight_share": round(self.config.weight_share(target), 4), "visits_per_day": target.visits_per_day,
                "timezone": target.timezone, "enabled": target.enabled,
            }
        return shown

    def portable(self) -> dict[str, Any]:
        """A copy of the document for a preset: a token typed in the UI shows as a value there
        (so :func:`presets.strip_tokens` omits it with a warning), never as its in-memory variable."""
        data = copy.deepcopy(self.data)
        for target in data.get("targets") or []:
            if isinstance(target, dict) and str(env_reference(target.get("token_auth")) or "").startswith(SECRET_PREFIX):
                target["token_auth"] = "<typed in the web UI>"
        return data

    def secret_values(self) -> list[str]:
        values = [t.token_auth.get_secret_value() for t in self.config.targets if t.token_auth]
        return values + list(self.secrets.values())

    def existing(self, name: str) -> int:
        """The index of target ``name``; 404 naming the targets there are."""
        index = self.index_of(name)
        if index is None:
            known = ", ".join(str(t.get("name")) for t in self.data.get("targets") or [])
            raise ApiError(404, f"no target named '{name}' (targets: {known})")
        return index

    # -- changing (each returns a whole new document; ControlPlane.change validates and commits it)

    def with_added(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        name = _name_in(body)
        if self.index_of(name) is not None:
            raise ApiError(409, f"a target named '{name}' exists (names are case-insensitive); change it with PUT/PATCH /api/targets/{name}")
        target, secret = self.incoming_target(body, None)
        data = copy.deepcopy(self.data)
        data.setdefault("targets", []).append(target)
        return data, secret

    def with_changed(self, name: str, body: dict[str, Any], partial: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Replace target ``name`` (PUT) or some of its keys (PATCH: ``null`` removes a key)."""
        index = self.existing(name)
        current = self.data["targets"][index]
        if partial:
            merged = {**{k: v for k, v in current.items() if k != "token_auth"}, **body}
            body = {k: v for k, v in merged.items() if v is not None or k == "token_auth"}
        body.setdefault("name", current.get("name"))
        new_name = _name_in(body)
        other = self.index_of(new_name)
        if other is not None and other != index:
            raise ApiError(409, f"a target named '{new_name}' exists (names are case-insensitive)")
        target, secret = self.incoming_target(body, current)
        data = copy.deepcopy(self.data)
        data["targets"][index] = target
        return index, data, secret

    def incoming_target(self, body: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str]]:
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
            raise ApiError(422, "token_auth must be text: a ${VAR} reference, a token, or null to remove it", [{"path": "token_auth", "message": "must be a string or null"}])
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
        self.secrets = {name: value for name, value in {**self.secrets, **extra_secrets}.items() if f"${{{name}}}" in used}
        self.version += 1

    # -- saving

    def check_savable(self, data: dict[str, Any]) -> None:
        if self.path is None:
            raise ApiError(409, "this config came from the MATOMO_* environment variables: there is no file to save to; start Locust with --traffic-config FILE")
        typed = [str(t.get("name")) for t in data.get("targets") or [] if isinstance(t, dict) and str(env_reference(t.get("token_auth")) or "").startswith(SECRET_PREFIX)]
        if typed:
            raise ApiError(422, f"the token of {', '.join(typed)} was typed as a value in the web UI and is never written to a file: "
                                "send token_auth as a ${VAR} reference (and export VAR) to save")

    def save(self, now: float) -> dict[str, str]:
        """Write the document back to its file (comments kept) after a timestamped backup."""
        assert self.path is not None
        original = self.path.read_text(encoding="utf-8")
        text = render_yaml(original, self.data)
        if yaml.safe_load(text) != self.data:
            raise ApiError(500, "the YAML written back would not read as the edited config (a value YAML 1.1 reads differently?); nothing was saved")
        backup = backup_path(self.path, now)
        shutil.copy2(self.path, backup)
        mode = self.path.stat().st_mode & 0o777
        write_atomic(self.path, text)
        os.chmod(self.path, mode)
        return {"path": str(self.path), "backup": str(backup)}


# =============================================================================================
# What the routes act on


class ControlPlane:
    """The workspace, the running plugin (broker, tally, staging), presets and status."""

    def __init__(self, environment: Environment, plugin: Any, workspace: Workspace, presets: PresetStore, clock: Callable[[], float] = time.time):
        self.environment = environment
        self.plugin = plugin
        self.workspace = workspace
        self.presets = presets
        self.clock = clock
        self.started_config: Config = plugin.config
        self.staged: Config | None = None
        self.rates = RecentRate()
        self.lock = threading.RLock()
        self.changed_live = False

    # -- changes

    def change(self, data: dict[str, Any], *, save: bool, extra_secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Validate a whole new document, make it current, apply what can be applied now, stage the rest."""
        with self.lock:
            config = self.workspace.validate(data, extra_secrets)
            if save:
                self.workspace.check_savable(data)
            self.workspace.commit(data, config, extra_secrets or {})
            applied = self._apply(config)
            if save:
                applied["saved"] = self.workspace.save(self.clock())
            return applied

    def _apply(self, config: Config) -> dict[str, Any]:
        live = self._apply_live(config)
        stage = getattr(self.plugin, "stage_config", None)
        if stage is not None:
            stage(config)
            self.staged = config
        applied: dict[str, Any] = {"live": live, "next_start": pending_changes(self.started_config, config), "staged": stage is not None}
        if stage is None and applied["next_start"]:
            applied["note"] = "this Locust cannot stage a new config: restart it (after saving) to apply the rest"
        return applied

    def _apply_live(self, config: Config) -> list[str]:
        """Pause disabled/removed targets, resume enabled ones, give each its new pace, through the broker."""
        broker = self.plugin.broker
        if broker is None:
            return []
        wanted = {t.name: t for t in config.targets}
        done = []
        for name in broker.ledger.targets:
            budget, target = broker.ledger.budget(name), wanted.get(name)
            paused = target is None or not target.enabled
            pace = target.pace() if target is not None else None
            if pace is not None and (pace == budget.pace or pace.timezone != budget.pace.timezone):
                pace = None  # unchanged, or a new time zone (next test start)
            if paused == budget.paused and pace is None:
                continue
            broker.retarget(name, pace=pace, paused=paused)
            self.changed_live = True
            what = "paused" if paused else "running"
            if pace is not None:
                what += f", {pace.visits_per_day if pace.visits_per_day is not None else 'no'} visits/day cap"
            done.append(f"{name}: {what}")
        return done

    def on_test_start(self) -> None:
        """A staged config is the running one from now on; clients learn the live limits again
        (a worker that joined after a live change never heard them)."""
        if self.staged is not None:
            self.started_config, self.staged = self.staged, None
        if self.changed_live and self.plugin.broker is not None:
            self.plugin.broker.announce_limits()

    # -- status

    def status(self) -> dict[str, Any]:
        now = self.clock()
        config = self.workspace.config
        stats = self.environment.stats
        tally: VisitTally = self.plugin.tally
        self.rates.add(now, tally.started)
        view = self.plugin.budget_view(now)
        everyone = config.model_copy(update={"targets": tuple(t.model_copy(update={"enabled": True}) for t in config.targets)})
        rows = summarize(everyone, stats, tally, view)
        secret_values = self.workspace.secret_values()
        runner = self.environment.runner
        running = bool(runner and runner.state in (STATE_SPAWNING, STATE_RUNNING))
        targets = []
        for target, row in zip(config.targets, rows):
            budget = view.statuses.get(target.name) if view else None
            pace = view.paces.get(target.name, target.pace()) if view else target.pace()
            recent = recent_counts(target_entries(stats, target.name), now, HEALTH_WINDOW)
            requests, failures = recent if recent[0] else (row.requests, row.failures)
            visits_failing = bool(row.visits_failed) and row.visits_failed >= FAILING_SHARE * (row.visits_started + row.visits_failed)
            error = last_error(stats, target.name)
            today = pace.day_of(now).isoformat()
            state = row.state if target.enabled else "disabled"
            if state == "running" and not running:
                state = "idle"
            targets.append({
                "name": target.name,
                "enabled": target.enabled,
                "state": state,
                "health": classify_health(requests, failures, row.p95_ms if row.requests else None, visits_failing),
                "visits_today": tally.days.get(target.name, {}).get(today, [0, 0])[0],
                "visits_started": row.visits_started,
                "visits_failed": row.visits_failed,
                "granted_today": budget.granted_today if budget else None,
                "cap_today": budget.cap_today if budget else pace.cap(pace.day_of(now)),
                "current_rate": _rounded(self.rates.rate(target.name)),
                "expected_rate": _rounded(pace.rate(now)),
                "requests": row.requests,
                "failures": row.failures,
                "fail_pct": round(100 * row.fail_ratio, 2),
                "p50_ms": row.p50_ms,
                "p95_ms": row.p95_ms,
                "last_error": mask_secrets(error, secret_values) if error else None,
            })
        return {
            "runner": runner.state if runner else None,
            "running": running,
            "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            "rates": "visits per second",
            "health_thresholds": {"window_seconds": HEALTH_WINDOW, "failing_fail_ratio": FAILING_FAIL_RATIO, "degraded_fail_ratio": DEGRADED_FAIL_RATIO, "degraded_p95_ms": DEGRADED_P95_MS},
            "targets": targets,
        }

    def tab_rows(self) -> list[dict[str, Any]]:
        """The Targets tab's rows (Locust's extended_stats), flat and short-keyed."""
        rows = []
        for t in self.status()["targets"]:
            cap = "-" if t["cap_today"] is None else t["cap_today"]
            rows.append({
                "name": t["name"], "state": t["state"], "health": t["health"] or "-",
                "visits": f"{t['visits_today']} / {cap}", "rate": _per_minute(t["current_rate"]), "expected": _per_minute(t["expected_rate"]),
                "requests": t["requests"], "failpct": t["fail_pct"], "p50": t["p50_ms"], "p95": t["p95_ms"], "error": t["last_error"] or "",
            })
        return rows


TAB_COLUMNS = [
    ("name", "Target"), ("state", "State"), ("health", "Health"), ("visits", "Visits today / cap"), ("rate", "Visits/min"),
    ("expected", "Expected/min"), ("requests", "Requests"), ("failpct", "Fail %"), ("p50", "p50 ms"), ("p95", "p95 ms"), ("error", "Last error"),
]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _per_minute(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 60:.1f}"


# =============================================================================================
# Flask glue


def install(environment: Environment, plugin: Any) -> None:
    """Attach the plugin's routes and tabs to Locust's Flask app (called once per environment with a web UI)."""
    web_ui = environment.web_ui
    assert web_ui is not None
    options = environment.parsed_options
    locust_blueprint = web_ui.app.blueprints.get("locust")
    base = (locust_blueprint.url_prefix if locust_blueprint is not None else getattr(options, "web_base_path", "")) or ""
    try:
        presets = PresetStore(presets_path(options))
    except (PresetError, OSError) as error:
        sys.stderr.write(f"trafficinator: --traffic-presets: {error}\n")
        sys.exit(EXIT_CONFIG_ERROR)
    control = ControlPlane(environment, plugin, Workspace.load(plugin.config), presets)
    login = _configure_login(web_ui, options, base)
    if not login and web_ui.host not in LOOPBACK_NAMES:
        logger.warning("trafficinator: the web UI listens on %s without a login: anyone who reaches it can change targets. "
                       "Use --web-login with %s/%s, or --web-host 127.0.0.1.", web_ui.host or "every interface", USER_ENV, PASSWORD_ENV)
    web_ui.app.register_blueprint(_blueprint(control, web_ui, base, loopback_only=not login and web_ui.host in LOOPBACK_NAMES))
    _add_tab(control, web_ui)
    _json_errors_for_api(web_ui.app, base)
    environment.events.test_start.add_listener(lambda **_: control.on_test_start())


class _LoginUser:
    """The one operator account of TRAFFICINATOR_WEB_USER/PASSWORD (Flask-Login's user protocol)."""

    is_authenticated = is_active = True
    is_anonymous = False

    def __init__(self, name: str):
        self.name = name

    def get_id(self) -> str:
        return self.name


def _configure_login(web_ui: Any, options: Any, base: str) -> bool:
    """Login with TRAFFICINATOR_WEB_USER/PASSWORD when they are set or --web-login is given.

    Browsers log in on Locust's login page (its form posts to the plugin); API clients may send
    HTTP Basic credentials. Returns whether login is required.
    """
    from flask_login import LoginManager, login_user

    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if not (getattr(options, "web_login", False) or user or password):
        return False
    if not (user and password):
        sys.stderr.write(f"trafficinator: the web login needs both {USER_ENV} and {PASSWORD_ENV} set (the operator's account); "
                         "set them, or drop --web-login to serve the UI on 127.0.0.1 only\n")
        sys.exit(EXIT_CONFIG_ERROR)
    app = web_ui.app
    if not web_ui.web_login:
        manager = LoginManager()
        manager.init_app(app)
        manager.login_view = "locust.login"
        web_ui.login_manager = manager
        web_ui.web_login = True
    manager = web_ui.login_manager
    if not app.secret_key:
        app.secret_key = secrets.token_hex(32)

    def valid(name: str | None, secret: str | None) -> bool:
        return hmac.compare_digest((name or "").encode(), user.encode()) & hmac.compare_digest((secret or "").encode(), password.encode())

    manager.user_loader(lambda name: _LoginUser(name) if hmac.compare_digest(name.encode(), user.encode()) else None)

    @manager.request_loader
    def basic_auth(req: Any) -> _LoginUser | None:
        auth = req.authorization
        return _LoginUser(user) if auth is not None and valid(auth.username, auth.password) else None

    @manager.unauthorized_handler
    def unauthorized() -> Any:
        if request.path.startswith(f"{base}/api/"):
            response = jsonify({"error": "login required: log in on the web UI, or send HTTP Basic credentials"})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Basic realm="trafficinator"'
            return response
        return redirect(url_for("locust.login"))

    login_blueprint = Blueprint("trafficinator_login", __name__, url_prefix=base or None)

    @login_blueprint.route("/trafficinator/login", methods=["POST"])
    def login_submit() -> Any:
        if valid(request.form.get("username"), request.form.get("password")):
            login_user(_LoginUser(user))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))

    app.register_blueprint(login_blueprint)
    web_ui.auth_args = {**(web_ui.auth_args or {}), "username_password_callback": f"{base}/trafficinator/login"}
    return True


def _add_tab(control: ControlPlane, web_ui: Any) -> None:
    """The Targets tab: Locust renders extended tables from template_args and extended_stats."""
    args = web_ui.template_args
    args["extended_tabs"] = [*args.get("extended_tabs", []), {"title": "Targets", "key": TAB_KEY}]
    args["extended_tables"] = [*args.get("extended_tables", []), {"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in TAB_COLUMNS]}]
    link = b'<script src="trafficinator/static/tab.js"></script></body>'

    @web_ui.app.after_request
    def extend(response: Response) -> Response:
        if request.endpoint == "locust.request_stats" and response.status_code == 200 and response.is_json:
            try:
                rows = control.tab_rows()
            except Exception:  # noqa: BLE001  (never break Locust's own stats answer)
                logger.exception("trafficinator web UI: the Targets tab rows failed")
                return response
            payload = response.get_json()
            others = [entry for entry in payload.get("extended_stats") or [] if entry.get("key") != TAB_KEY]
            payload["extended_stats"] = [*others, {"key": TAB_KEY, "data": rows}]
            response.set_data(json.dumps(payload).encode())
        elif request.endpoint == "locust.index" and response.status_code == 200 and response.mimetype == "text/html":
            response.set_data(response.get_data().replace(b"</body>", link, 1))
        return response


def _json_errors_for_api(app: Any, base: str) -> None:
    """404/405 under the plugin's /api answer JSON (other paths keep Flask's pages)."""
    from werkzeug.exceptions import MethodNotAllowed, NotFound

    def handler(error: Any) -> Any:
        if not request.path.startswith(f"{base}/api/"):
            return error
        message = "no such API route (see /api/openapi.json)" if isinstance(error, NotFound) else f"{request.method} is not allowed here (see /api/openapi.json)"
        response = jsonify({"error": message})
        response.status_code = error.code
        return response

    app.register_error_handler(NotFound, handler)
    app.register_error_handler(MethodNotAllowed, handler)


def _blueprint(control: ControlPlane, web_ui: Any, base: str, loopback_only: bool) -> Blueprint:
    bp = Blueprint("trafficinator", __name__, url_prefix=base or None)

    def route(rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            guarded = _guarded(view, control, loopback_only)
            bp.add_url_rule(rule, endpoint=f"{view.__name__}", view_func=web_ui.auth_required_if_enabled(guarded), methods=methods)
            return view

        return decorate

    ws = control.workspace

    # -- targets

    @route("/api/targets", ["GET"])
    def list_targets() -> Any:
        return {"targets": [ws.view(t) for t in ws.data.get("targets") or []], "version": ws.version, "file": str(ws.path) if ws.path else None}

    @route("/api/targets", ["POST"])
    def add_target() -> Any:
        body = _body()
        with control.lock:
            data, secret = ws.with_added(body)
            applied = control.change(data, save=_save_asked(), extra_secrets=secret)
            return _created({"target": ws.view(ws.data["targets"][-1]), "applied": applied})

    @route("/api/targets/<name>", ["GET"])
    def get_target(name: str) -> Any:
        return {"target": ws.view(ws.data["targets"][ws.existing(name)])}

    @route("/api/targets/<name>", ["PUT", "PATCH"])
    def change_target(name: str) -> Any:
        body = _body()
        with control.lock:
            index, data, secret = ws.with_changed(name, body, partial=request.method == "PATCH")
            applied = control.change(data, save=_save_asked(), extra_secrets=secret)
            return {"target": ws.view(ws.data["targets"][index]), "applied": applied}

    @route("/api/targets/<name>", ["DELETE"])
    def delete_target(name: str) -> Any:
        with control.lock:
            data = copy.deepcopy(ws.data)
            removed = data["targets"].pop(ws.existing(name))
            applied = control.change(data, save=_save_asked())
            return {"deleted": removed.get("name"), "applied": applied}

    @route("/api/config/save", ["POST"])
    def save_config() -> Any:
        with control.lock:
            ws.check_savable(ws.data)
            return {"saved": ws.save(control.clock())}

    # -- validation and status

    @route("/api/validate", ["POST"])
    def validate() -> Any:
        from .preflight import DEFAULT_TIMEOUT, preflight

        body = _body(optional=True)
        targets = list(ws.config.targets)
        if body.get("target") is not None:
            found = ws.resolved(str(body["target"]))
            if found is None:
                raise ApiError(404, f"no target named '{body['target']}'")
            targets = [found]
        timeout = body.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise ApiError(422, "timeout must be a number of seconds in (0, 120]", [{"path": "timeout", "message": "must be > 0 and <= 120"}])
        probe = body.get("probe", False)
        if not isinstance(probe, bool):
            raise ApiError(422, "probe must be true or false", [{"path": "probe", "message": "must be a boolean"}])
        results = [r.as_dict() for r in preflight(targets, timeout=float(timeout), probe=probe)]
        return {"ok": all(r["ok"] for r in results), "probe": probe, "timeout": timeout, "results": results}

    @route("/api/status", ["GET"])
    def status() -> Any:
        return control.status()

    # -- presets

    @route("/api/presets", ["GET"])
    def list_presets() -> Any:
        return {"presets": [p.as_dict(with_config=False) for p in control.presets.list()]}

    @route("/api/presets", ["POST"])
    def create_preset() -> Any:
        body = _body()
        config, warnings = _preset_config(control, body)
        preset = control.presets.create(body.get("name"), config)
        return _created({"preset": preset.as_dict(), "warnings": warnings})

    @route("/api/presets/<name>", ["GET"])
    def get_preset(name: str) -> Any:
        preset = control.presets.get(name)
        response = jsonify({"preset": preset.as_dict()})
        response.headers["ETag"] = f'"{preset.version}"'
        return response

    @route("/api/presets/<name>", ["PUT"])
    def put_preset(name: str) -> Any:
        body = _body(optional=True)
        config, warnings = _preset_config(control, body)
        preset, created = control.presets.save(name, config, _expected_version(body))
        answer = {"preset": preset.as_dict(), "warnings": warnings}
        return _created(answer) if created else answer

    @route("/api/presets/<name>", ["DELETE"])
    def delete_preset(name: str) -> Any:
        control.presets.delete(name, _expected_version(_body(optional=True)))
        return {"deleted": name}

    @route("/api/presets/<name>/apply", ["POST"])
    def apply_preset(name: str) -> Any:
        preset = control.presets.get(name)
        applied = control.change(copy.deepcopy(preset.config), save=_save_asked())
        return {"applied": applied, "preset": preset.as_dict(with_config=False), "targets": [ws.view(t) for t in ws.data.get("targets") or []]}

    @route("/api/openapi.json", ["GET"])
    def openapi() -> Any:
        return openapi_document(base)

    # -- the control page

    @route("/trafficinator/", ["GET"])
    def control_page() -> Any:
        return send_from_directory(STATIC, "control.html")

    @route("/trafficinator/static/<path:filename>", ["GET"])
    def control_static(filename: str) -> Any:
        return send_from_directory(STATIC, filename)

    return bp


def _guarded(view: Callable[..., Any], control: ControlPlane, loopback_only: bool) -> Callable[..., Any]:
    """Refuse cross-site and (on loopback) DNS-rebinding requests; turn errors into JSON answers."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_origin(loopback_only)
            return view(*args, **kwargs)
        except ApiError as error:
            return _error(error.status, error.message, error.problems)
        except ConfigError as error:
            return _error(422, "the config would not load: fix the problems listed (paths are config paths)", problems_of(error))
        except PresetNotFound as error:
            return _error(404, str(error))
        except (PresetExists, StalePreset) as error:
            return _error(409, str(error))
        except PresetInvalid as error:
            return _error(422, str(error))
        except PresetError as error:
            return _error(500, str(error))
        except Exception as error:  # noqa: BLE001  (answer JSON, log the trace without secrets)
            logger.exception("trafficinator web UI: %s %s failed", request.method, request.path)
            return _error(500, f"internal error ({error.__class__.__name__}): {mask_secrets(str(error), control.workspace.secret_values())}")

    return wrapper


def _check_origin(loopback_only: bool) -> None:
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/").split("://", 1)[-1] != request.host:
        raise ApiError(403, "cross-origin requests to the trafficinator API are refused")
    if loopback_only and request.host.rsplit(":", 1)[0] not in LOOPBACK_NAMES:
        raise ApiError(403, f"the UI is bound to loopback without a login; the Host header '{request.host}' is not a loopback name")


def _error(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> Response:
    payload: dict[str, Any] = {"error": message}
    if problems:
        payload["problems"] = problems
    response = jsonify(payload)
    response.status_code = status
    return response


def _created(payload: dict[str, Any]) -> Response:
    response = jsonify(payload)
    response.status_code = 201
    return response


def _body(optional: bool = False) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return {}
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object (Content-Type: application/json)")
    return data


def _name_in(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(422, "a target needs a name (text)", [{"path": "name", "message": "required, non-empty text"}])
    return name


def _save_asked() -> bool:
    return request.args.get("save", "").lower() in ("1", "true", "yes")


def _expected_version(body: dict[str, Any]) -> int | None:
    """The version a client read (``If-Match: "3"`` or ``{"version": 3}``), to refuse a stale write."""
    header = request.headers.get("If-Match", "").strip().strip('"')
    value = body.get("version", header or None)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "version (or If-Match) must be a whole number") from None


def _preset_config(control: ControlPlane, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The body's ``config`` (checked with the loader, variables may be unset) or the current one."""
    if body.get("config") is None:
        return strip_tokens(control.workspace.portable())
    config = body["config"]
    if not isinstance(config, dict):
        raise ApiError(422, "config must be a JSON object (a whole traffic config)", [{"path": "config", "message": "must be an object"}])
    clean, warnings = strip_tokens(config)
    missing = {name: "unset" for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", yaml.safe_dump(clean)) if name not in os.environ}
    control.workspace.validate(clean, missing)
    return clean, warnings


# =============================================================================================
# OpenAPI


def openapi_document(base: str = "") -> dict[str, Any]:
    """An OpenAPI 3 description of the plugin's API (kept beside the routes; a test checks both agree)."""

    def op(summary: str, *, body: str | None = None, ok: str = "200", errors: tuple[int, ...] = (), params: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        entry: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}
        for code in errors:
            entry["responses"][str(code)] = {"$ref": "#/components/responses/Error"}
        if body:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
        if params:
            entry["parameters"] = list(params)
        return entry

    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    save = {"name": "save", "in": "query", "required": False, "schema": {"type": "string", "enum": ["1"]}, "description": "also write the config file (a timestamped backup is kept)"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "trafficinator control plane", "version": "1", "description": "Targets, validation, status and presets of a running trafficinator Locust (docs/web-ui.md). token_auth is write-only."},
        "servers": [{"url": base or "/"}],
        "paths": {
            "/api/targets": {
                "get": op("The current config's targets (token_auth: \"set\" or null)"),
                "post": op("Add a target (validated like the YAML file; applies at the next test start)", body="Target", ok="201", errors=(400, 409, 422), params=(save,)),
            },
            "/api/targets/{name}": {
                "get": op("One target", errors=(404,), params=(name,)),
                "put": op("Replace a target (enabled/weight/visits_per_day apply live)", body="Target", errors=(400, 404, 409, 422), params=(name, save)),
                "patch": op("Change some keys of a target (null removes a key)", body="Target", errors=(400, 404, 409, 422), params=(name, save)),
                "delete": op("Remove a target (paused now, gone at the next test start)", errors=(404, 422), params=(name, save)),
            },
            "/api/config/save": {"post": op("Write the current config to its YAML file (backup kept; tokens stay ${VAR})", errors=(409, 422))},
            "/api/validate": {"post": op("Preflight every target, or {\"target\": name}; {\"probe\": true} sends one test hit", body="Validate", errors=(400, 404, 422))},
            "/api/status": {"get": op("Per target: state, health, visits today / cap, rates, requests, failures, p50/p95, last error")},
            "/api/presets": {
                "get": op("Presets (names, created/updated times, versions)"),
                "post": op("Save a preset: {\"name\": ..., \"config\": optional, else the current config}", body="Preset", ok="201", errors=(400, 409, 422)),
            },
            "/api/presets/{name}": {
                "get": op("One preset with its config (ETag: its version)", errors=(404,), params=(name,)),
                "put": op("Create or replace a preset; If-Match or version refuses a stale write (409)", body="Preset", errors=(400, 404, 409, 422), params=(name,)),
                "delete": op("Delete a preset", errors=(404, 409), params=(name,)),
            },
            "/api/presets/{name}/apply": {"post": op("Make a preset the current config (live where possible, the rest at the next test start)", errors=(404, 422), params=(name, save))},
            "/api/openapi.json": {"get": op("This document")},
        },
        "components": {
            "schemas": {
                "Target": {"type": "object", "required": ["name"], "description": "A target as in the YAML file (docs/configuration.md). token_auth: a ${VAR} reference, a value (kept in memory only), \"set\" to keep, null to remove.", "additionalProperties": True},
                "Validate": {"type": "object", "properties": {"target": {"type": "string"}, "probe": {"type": "boolean"}, "timeout": {"type": "number"}}},
                "Preset": {"type": "object", "properties": {"name": {"type": "string"}, "config": {"type": "object"}, "version": {"type": "integer"}}},
            },
            "responses": {
                "Error": {"description": "Error", "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}}}}}},
            },
        },
    }
