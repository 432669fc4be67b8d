"""Control plane in Locust's web UI: the Flask glue of the targets API, validation, verification,
per-target status, presets, the Targets tab and the control page.

Why inside Locust's own Flask app (not a second server): one port, one login (``--web-login``),
one base path (``--web-base-path``), and the Targets tab sits beside Locust's own tabs. Every
route is on the plugin's blueprint and wrapped in ``web_ui.auth_required_if_enabled``.

The UI can start load, so every request to the app, Locust's ``/swarm`` as much as the plugin's
API, passes :func:`_guard_every_request` before any view (a ``before_request`` hook): the Host must
be a name of this UI (:func:`allowed_hosts`: DNS rebinding), an ``Origin`` must be this UI's, a
state-changing request's ``Referer`` too (cross-site requests), the body at most
:data:`MAX_BODY_BYTES` and JSON at most :data:`MAX_JSON_DEPTH` deep. See docs/web-ui.md (Security).

This module only turns HTTP into calls and answers into JSON; the logic lives elsewhere:
:mod:`.workspace` (the edited config, validated by the YAML loader, tokens write-only),
:mod:`.control` (what applies live through the permit broker, what waits for the next start),
:mod:`.target_status` (status and health), :mod:`.verify_api` (``/api/verify``),
:mod:`.learn_api` (``/api/targets/<name>/learn``, a traffic model learned from another target),
:mod:`.web_login` (the login) and :mod:`.openapi` (``/api/openapi.json``).
See docs/web-ui.md and docs/adr/010-web-control-plane.md.
"""

from __future__ import annotations

from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

import json
import logging
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from trafficinator_locust.core.errors import (
    ConfigError,
    PresetError,
    PresetExists,
    PresetInvalid,
    PresetNotFound,
    StalePreset,
    UsageError,
    WebApiError,
)
from trafficinator_locust.core.files import MiB
from trafficinator_locust.core.loopback import LOOPBACK, LOOPBACK_HOSTS
from trafficinator_locust.core.masking import mask_secrets, mask_strings
from trafficinator_locust.runtime.broker import state_folder
from trafficinator_locust.web.control import ControlPlane, Coordination
from trafficinator_locust.web.login import PASSWORD_ENV, USER_ENV, configure_login
from trafficinator_locust.web.openapi import openapi_document
from trafficinator_locust.web.presets import FILE_NAME, PresetStore
from trafficinator_locust.web.workspace import Workspace, problems_of

logger = logging.getLogger("trafficinator.webui")

TAB_KEY = "trafficinator-targets"
TAB_COLUMNS = [
    ("name", "Target"),
    ("state", "State"),
    ("health", "Health"),
    ("visits", "Visits today / cap"),
    ("rate", "Visits/min"),
    ("expected", "Expected/min"),
    ("requests", "Requests"),
    ("failpct", "Fail %"),
    ("p50", "p50 ms"),
    ("p95", "p95 ms"),
    ("error", "Last error"),
]
STATIC = Path(__file__).with_name("static")
MAX_BODY_BYTES = 1 * MiB
"""Bytes of any request body to the app, Locust's routes included (413 beyond): a whole config is
far less; the config document itself is capped at ``workspace.MAX_DOCUMENT_BYTES``."""
MAX_JSON_DEPTH = 32
"""Levels of nesting of a JSON body (an object in an object ... counts each); deeper is 400 before
any validation (a traffic config needs about 8)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing; every other method is state-changing (Origin and Referer checked)."""
EVERY_INTERFACE = frozenset({"", "*", "0.0.0.0", "::", "[::]"})


# =============================================================================================
# Options


def add_web_arguments(parser: LocustArgumentParser) -> None:
    """``--traffic-presets``, and ``--web-host`` defaulting to 127.0.0.1 (see docs/web-ui.md)."""
    group = next((g for g in parser._action_groups if g.title == "trafficinator"), parser)
    group.add_argument(
        "--traffic-presets",
        metavar="FILE",
        default=None,
        help="SQLite file of the web UI's named presets (default: $XDG_STATE_HOME/trafficinator/presets.sqlite3).",
    )
    for action in parser._actions:
        if "--web-host" in action.option_strings:
            action.default = LOOPBACK
            action.help = (
                "Host to bind the web interface to. trafficinator: defaults to 127.0.0.1 (the UI can change targets); "
                "pass '*' or an address to expose it, with --web-login and TRAFFICINATOR_WEB_USER/PASSWORD."
            )


def presets_path(options: Any, env: Mapping[str, str] | None = None) -> Path:
    chosen = getattr(options, "traffic_presets", None) if options is not None else None
    return Path(chosen) if chosen else state_folder(env) / FILE_NAME


# =============================================================================================
# Installing


def install(environment: Environment, coordinator: Coordination) -> None:
    """Attach the plugin's routes and tabs to Locust's Flask app (called once per environment with a web UI).

    ``coordinator`` is the master's (or local runner's) role: the web side changes budgets and
    stages configs through it and nothing else. Raises :class:`UsageError` for a presets file that
    cannot be opened or half a login account.
    """
    web_ui = environment.web_ui
    assert web_ui is not None
    options = environment.parsed_options
    locust_blueprint = web_ui.app.blueprints.get("locust")
    base = (
        locust_blueprint.url_prefix if locust_blueprint is not None else getattr(options, "web_base_path", "")
    ) or ""
    try:
        presets = PresetStore(presets_path(options))
    except (PresetError, OSError) as error:
        raise UsageError(f"--traffic-presets: {error}") from None
    control = ControlPlane(environment, coordinator, Workspace.load(coordinator.config), presets)
    login = configure_login(web_ui, options, base)
    _guard_every_request(web_ui.app, allowed_hosts(web_ui.host, login), web_ui.host)
    if not login and web_ui.host not in LOOPBACK_HOSTS:
        logger.warning(
            "trafficinator: the web UI listens on %s without a login: anyone who reaches it can change targets. "
            "Use --web-login with %s/%s, or --web-host 127.0.0.1.",
            web_ui.host or "every interface",
            USER_ENV,
            PASSWORD_ENV,
        )
    web_ui.app.register_blueprint(_blueprint(control, web_ui, base))
    _add_tab(control, web_ui)
    _json_errors_for_api(web_ui.app, base)
    environment.events.test_start.add_listener(lambda **_: control.on_test_start())


# =============================================================================================
# The Targets tab


def tab_rows(status_targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Targets tab's rows (Locust's extended_stats), flat and short-keyed, from ``/api/status`` rows."""
    rows = []
    for t in status_targets:
        cap = "-" if t["cap_today"] is None else t["cap_today"]
        rows.append(
            {
                "name": t["name"],
                "state": t["state"],
                "health": t["health"] or "-",
                "visits": f"{t['visits_today']} / {cap}",
                "rate": _per_minute(t["current_rate"]),
                "expected": _per_minute(t["expected_rate"]),
                "requests": t["requests"],
                "failpct": t["fail_pct"],
                "p50": t["p50_ms"],
                "p95": t["p95_ms"],
                "error": t["last_error"] or "",
            }
        )
    return rows


def _per_minute(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 60:.1f}"


def _add_tab(control: ControlPlane, web_ui: Any) -> None:
    """The Targets tab: Locust renders extended tables from template_args and extended_stats."""
    args = web_ui.template_args
    args["extended_tabs"] = [*args.get("extended_tabs", []), {"title": "Targets", "key": TAB_KEY}]
    args["extended_tables"] = [
        *args.get("extended_tables", []),
        {"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in TAB_COLUMNS]},
    ]
    link = b'<script src="trafficinator/static/tab.js"></script></body>'

    @web_ui.app.after_request
    def extend(response: Response) -> Response:
        if request.endpoint == "locust.request_stats" and response.status_code == 200 and response.is_json:
            try:
                rows = tab_rows(control.status()["targets"])
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
    """HTTP errors (404, 405, 413, ...) under the plugin's /api answer JSON (other paths keep Flask's pages)."""
    from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge

    def handler(error: HTTPException) -> Any:
        if not request.path.startswith(f"{base}/api/"):
            return error
        if isinstance(error, NotFound):
            message = "no such API route (see /api/openapi.json)"
        elif isinstance(error, MethodNotAllowed):
            message = f"{request.method} is not allowed here (see /api/openapi.json)"
        elif isinstance(error, RequestEntityTooLarge):
            message = f"the request body is more than the {MAX_BODY_BYTES:,} bytes allowed"
        else:
            message = f"{error.code} {error.name}"
        response = jsonify({"error": message})
        response.status_code = error.code or 500
        return response

    app.register_error_handler(HTTPException, handler)


# =============================================================================================
# Guards of every request (Locust's routes included)


def allowed_hosts(bind: str | None, login: bool) -> frozenset[str] | None:
    """The host names (no port) a request's ``Host`` may carry; ``None``: any.

    Without a login, the loopback names, plus the address the UI is bound to when it is one
    (``--web-host 192.0.2.5``): a page of another site whose DNS name was rebound to this machine
    carries its own name and is refused. With a login any name is accepted (a reverse proxy's, a
    DNS name: the rebound page has no credentials for this UI), and when bound to every interface
    without one (a warning is logged) the names cannot be known.
    """
    bind = (bind or "").strip().lower()
    if login or bind in EVERY_INTERFACE:
        return None
    if bind in LOOPBACK_HOSTS:
        return LOOPBACK_HOSTS
    return LOOPBACK_HOSTS | {f"[{bind.strip('[]')}]" if ":" in bind else bind}


def host_name(host: str) -> str:
    """``Host`` without its port, lower case: ``[::1]:8089`` -> ``[::1]``, ``LocalHost`` -> ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_origin(value: str) -> bool:
    """Whether an ``Origin`` or ``Referer`` names this UI: an http(s) URL whose host and port are the
    request's ``Host`` (``Origin: null``, another scheme or another host: no)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    return parts.scheme in ("http", "https") and bool(netloc) and netloc == request.host.lower()


def _guard_every_request(app: Flask, hosts: frozenset[str] | None, bind: str | None) -> None:
    """Refuse, before any view of the app (Locust's and the plugin's):

    - 403 a ``Host`` not in ``hosts`` (:func:`allowed_hosts`), on reads too: DNS rebinding;
    - 403 an ``Origin`` that is not this UI (on every method: a foreign page may neither drive the
      UI nor read it through Locust's ``Access-Control-Allow-Origin: *``), and for a state-changing
      request without ``Origin``, a ``Referer`` that is not this UI. Neither header (curl, scripts)
      is allowed: browsers send ``Origin`` on every cross-site POST, and the Host check still holds;
    - 413 a body of more than :data:`MAX_BODY_BYTES` (``MAX_CONTENT_LENGTH`` also stops a chunked one);
    - 400 a JSON body nested more than :data:`MAX_JSON_DEPTH` levels (Locust's ``/user`` included).
    """
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    where = "loopback" if hosts == LOOPBACK_HOSTS else f"loopback or {bind}"

    @app.before_request
    def guard() -> Response | None:
        if hosts is not None and host_name(request.host) not in hosts:
            return _error(
                403,
                f"the web UI without a login answers only requests naming {where}; the Host header "
                f"'{request.host}' is another name (DNS rebinding?): use that address, or --web-login",
            )
        origin = request.headers.get("Origin")
        referer = request.headers.get("Referer") if request.method not in SAFE_METHODS else None
        for header, value in (("Origin", origin), ("Referer", None if origin is not None else referer)):
            if value is not None and not _same_origin(value):
                return _error(
                    403,
                    f"cross-origin request refused: its {header} is not this web UI ({request.host}); "
                    "the UI answers only its own pages and clients that send no Origin",
                )
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _error(413, f"the request body is more than the {MAX_BODY_BYTES:,} bytes allowed")
        if request.method not in SAFE_METHODS and request.is_json:
            try:
                _json_body()
            except WebApiError as error:
                return _error(error.status, error.message)
        return None


_NOT_JSON = object()


def _json_body() -> Any:
    """The request body as JSON (``_NOT_JSON`` when it is not JSON), parsed once per request;
    :class:`WebApiError` 400 when nested more than :data:`MAX_JSON_DEPTH` levels."""
    if "trafficinator_json" not in g:
        raw = request.get_data(cache=True)
        too_deep = WebApiError(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            data = json.loads(raw) if raw.strip() else _NOT_JSON
        except RecursionError:  # far deeper than the limit: the parser gave up
            raise too_deep from None
        except ValueError:
            data = _NOT_JSON
        if data is not _NOT_JSON and json_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise too_deep
        g.trafficinator_json = data
    return g.trafficinator_json


def json_depth(value: Any, limit: int) -> int:
    """Levels of nesting of ``value`` (``{}`` is 1, ``{"a": []}`` 2), counted without recursion;
    stops at ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# =============================================================================================
# Routes


def _blueprint(control: ControlPlane, web_ui: Any, base: str) -> Blueprint:
    bp = Blueprint("trafficinator", __name__, url_prefix=base or None)

    def route(rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            guarded = _guarded(view, control)
            bp.add_url_rule(
                rule, endpoint=f"{view.__name__}", view_func=web_ui.auth_required_if_enabled(guarded), methods=methods
            )
            return view

        return decorate

    ws = control.workspace

    # -- targets

    @route("/api/targets", ["GET"])
    def list_targets() -> Any:
        return {"targets": ws.views(), "version": ws.version, "file": str(ws.path) if ws.path else None}

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
            data, removed = ws.without(name)
            applied = control.change(data, save=_save_asked())
            return {"deleted": removed, "applied": applied}

    @route("/api/targets/<name>/learn", ["POST"])
    def learn_from_target(name: str) -> Any:
        from trafficinator_locust.web.learn_api import read_learn_request, run_learn

        checked = read_learn_request(_body(optional=True), ws, name)  # a preview: applying is PATCH above
        return run_learn(checked, ws)

    @route("/api/config/save", ["POST"])
    def save_config() -> Any:
        with control.lock:
            ws.check_savable(ws.data)
            return {"saved": ws.save(control.clock())}

    # -- validation, verification and status

    @route("/api/validate", ["POST"])
    def validate() -> Any:
        from trafficinator_locust.ops.preflight import DEFAULT_TIMEOUT, preflight

        body = _body(optional=True)
        targets = list(ws.config.targets)
        if body.get("target") is not None:
            found = ws.resolved(str(body["target"]))
            if found is None:
                raise WebApiError(404, f"no target named '{body['target']}'")
            targets = [found]
        timeout = body.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise WebApiError(
                422,
                "timeout must be a number of seconds in (0, 120]",
                [{"path": "timeout", "message": "must be > 0 and <= 120"}],
            )
        probe = body.get("probe", False)
        if not isinstance(probe, bool):
            raise WebApiError(422, "probe must be true or false", [{"path": "probe", "message": "must be a boolean"}])
        results = [r.as_dict() for r in preflight(targets, timeout=float(timeout), probe=probe)]
        return {"ok": all(r["ok"] for r in results), "probe": probe, "timeout": timeout, "results": results}

    @route("/api/verify", ["POST"])
    def verify() -> Any:
        from trafficinator_locust.web.verify_api import read_request, run_request

        secrets = ws.secret_values()
        checked = read_request(
            _body(), ws.config, ws.folder
        )  # the targets as now: edits during the check do not change it
        return mask_strings(run_request(checked), secrets)  # Matomo's messages and tracking failures are quoted

    @route("/api/status", ["GET"])
    def status() -> Any:
        return control.status()

    @route("/api/charts", ["GET"])
    def charts() -> Any:
        return control.charts()

    # -- presets

    @route("/api/presets", ["GET"])
    def list_presets() -> Any:
        return {"presets": [p.as_dict(with_config=False) for p in control.presets.list()]}

    @route("/api/presets", ["POST"])
    def create_preset() -> Any:
        body = _body()
        config, warnings = ws.preset_document(body.get("config"))
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
        config, warnings = ws.preset_document(body.get("config"))
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
        applied = control.change(preset.config, save=_save_asked())
        return {"applied": applied, "preset": preset.as_dict(with_config=False), "targets": ws.views()}

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


# =============================================================================================
# Request and answer helpers


def _guarded(view: Callable[..., Any], control: ControlPlane) -> Callable[..., Any]:
    """Turn errors into JSON answers (the Host, Origin and size checks ran before, for every route)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except HTTPException:
            raise  # 404 of a static file, 413 of a chunked body: the app's handlers answer them
        except WebApiError as error:
            return _error(error.status, error.message, error.problems)
        except ConfigError as error:
            return _error(
                422, "the config would not load: fix the problems listed (paths are config paths)", problems_of(error)
            )
        except UsageError as error:  # a file refused (core.files.FileRefused), ...
            return _error(422, mask_secrets(str(error), control.workspace.secret_values()))
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
            return _error(
                500,
                f"internal error ({error.__class__.__name__}): "
                f"{mask_secrets(str(error), control.workspace.secret_values())}",
            )

    return wrapper


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
    """The JSON object of the body whatever its Content-Type (400 otherwise, or nested too deeply)."""
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return {}
    data = _json_body()
    if not isinstance(data, dict):
        raise WebApiError(400, "the body must be a JSON object (Content-Type: application/json)")
    return data


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
        raise WebApiError(400, "version (or If-Match) must be a whole number") from None
