"""``POST /api/targets/<name>/learn``: a traffic model learned from another target's reports, as a preview.

Why a preview only: the page shows the learned model (its YAML and its notes) before anything
changes; applying it is the existing ``PATCH /api/targets/<name>`` with ``{"traffic": model}`` and
saving it as a preset the existing ``POST /api/presets`` with the answer's ``preset_config``, so the
config is written one way only (:mod:`.workspace`, through the YAML loader).

The learning is ``trafficinator profile``'s (:func:`ops.profile.profile_learned`: ``Goals.getGoals``
then one ``API.getBulkRequest``, :mod:`core.learn` for the mapping) and so are the date checks
(:func:`ops.profile.check_range`). The calls block, so they run in gevent's threadpool
(:func:`.verify_api.off_the_loop`) within ``timeout`` seconds: a Matomo that archives slowly keeps a
thread waiting, never the event loop of the users, the worker heartbeats and the UI. The source
target's token (``report_token_auth``, else ``token_auth``) goes in POST bodies only; the answer is
masked with every token of the config. No Flask here::

    request = read_learn_request({"from_target": "Prod", "from": "2026-11-01", "to": "2026-11-30"}, ws, "Staging")
    answer = run_learn(request, ws)  # {"model": {...}, "yaml": "...", "target_keys": {...}, "notes": [...], ...}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from trafficinator_locust.core.config import Target
from trafficinator_locust.core.errors import ReportingApiError, WebApiError
from trafficinator_locust.core.files import MiB
from trafficinator_locust.core.learn import DEFAULT_TOP, render_yaml
from trafficinator_locust.core.masking import mask_strings
from trafficinator_locust.ops.profile import check_range, profile_learned
from trafficinator_locust.ops.reporting_api import ReportingApi
from trafficinator_locust.ops.tracker_http import display_url
from trafficinator_locust.web.verify_api import off_the_loop
from trafficinator_locust.web.workspace import Workspace

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "MAX_TOP",
    "LearnRequest",
    "read_learn_request",
    "run_learn",
]

DEFAULT_DAYS = 30
"""Days learned when the request names none: the 30 days up to yesterday (every weekday 4 times or more)."""
DEFAULT_TIMEOUT = 120.0
"""Seconds the whole profile may take (the CLI's ``--timeout`` default): Matomo may archive the range first."""
MAX_TIMEOUT = 300.0
MAX_TOP = 1000
"""Pages a learned model may keep: its ``urls`` go into the config document, bounded at 512 KiB."""
MAX_RUNNING = 2
"""Profiles at once (a third is 429): each holds a thread of gevent's pool, shared with ``/api/verify``."""
MAX_ANSWER_BYTES = 128 * MiB
"""Bytes of the bulk answer read from the source's Matomo (a longer one is cut, and refused as not JSON)."""
FIELDS = ("from_target", "from", "to", "top", "anonymize_urls", "timeout")
_running = [0]  # profiles in progress: the web UI's greenlets share one thread, so no lock is needed


@dataclass(frozen=True)
class LearnRequest:
    """A checked request: learn ``source``'s days ``first``..``last`` for target ``target`` (as written)."""

    target: str
    source: Target
    first: date
    last: date
    top: int = DEFAULT_TOP
    anonymize: bool = False
    timeout: float = DEFAULT_TIMEOUT


def _refused(field: str, message: str, status: int = 422) -> WebApiError:
    return WebApiError(status, f"{field}: {message}", [{"path": field, "message": message}])


def read_learn_request(
    body: Mapping[str, Any], workspace: Workspace, name: str, today: date | None = None
) -> LearnRequest:
    """Check a request body against the workspace: 404 for an unknown target or source, 422 naming the
    field for anything else (unknown fields, bad or reversed dates, a source without a token, ...)."""
    unknown = sorted(str(key) for key in body if key not in FIELDS)
    if unknown:
        raise _refused(unknown[0], f"unknown field (the fields: {', '.join(FIELDS)})")
    index = workspace.existing(name)
    target = str(workspace.data["targets"][index].get("name", name))
    source_name = body.get("from_target")
    if not isinstance(source_name, str) or not source_name.strip():
        raise _refused("from_target", "required: the name of the target whose reports to learn from")
    source = workspace.resolved(source_name)
    if source is None:
        known = ", ".join(t.name for t in workspace.config.targets)
        raise WebApiError(404, f"from_target: no target named '{source_name[:100]}' (targets: {known})")
    if not source.report_token:
        raise _refused(
            "from_target",
            f"target '{source.name}' has no report_token_auth or token_auth: give it one (a view token is enough)",
        )
    today = today or date.today()
    last = _day(body, "to", today - timedelta(days=1))
    first = _day(body, "from", last - timedelta(days=DEFAULT_DAYS - 1))
    try:
        check_range(first, last, today, names=("from", "to"))
    except ValueError as error:
        raise _refused("to" if "before" in str(error) or "future" in str(error) else "from", str(error)) from None
    top = body.get("top", DEFAULT_TOP)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise _refused("top", f"must be a whole number from 1 to {MAX_TOP} (the pages kept)")
    anonymize = body.get("anonymize_urls", False)
    if not isinstance(anonymize, bool):
        raise _refused("anonymize_urls", "must be true or false")
    timeout = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise _refused("timeout", f"must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return LearnRequest(target, source, first, last, top, anonymize, float(timeout))


def _day(body: Mapping[str, Any], field: str, default: date) -> date:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _refused(field, "must be a date like 2026-11-30")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise _refused(field, f"'{value[:40]}' is not a date like 2026-11-30") from None


def run_learn(request: LearnRequest, workspace: Workspace) -> dict[str, Any]:
    """The preview answer (nothing changes): ``model`` (for the target's ``traffic``), ``yaml`` (what
    ``trafficinator profile`` would print), ``target_keys`` (``visits_per_day``, ``profile``), ``notes``,
    and ``preset_config``: the config as a preset would store it (tokens as ``${VAR}`` only) with the
    target's ``traffic`` replaced by the model. 502 when the source's Matomo cannot be read or refuses,
    504 past ``timeout``, 429 when :data:`MAX_RUNNING` run already; every token of the config masked."""
    if _running[0] >= MAX_RUNNING:
        raise WebApiError(429, f"{MAX_RUNNING} profiles are running already: try again when one has answered")
    source = request.source
    api = ReportingApi(source, timeout=request.timeout, max_body=MAX_ANSWER_BYTES)
    secrets = workspace.secret_values()
    where = display_url(api.url)
    _running[0] += 1
    try:
        learned = off_the_loop(
            lambda: profile_learned(
                api,
                source.site_id,
                request.first,
                request.last,
                top=request.top,
                anonymize=request.anonymize,
                source=f"target {source.name}",
            ),
            timeout=request.timeout,
        )
    except TimeoutError:
        raise WebApiError(
            504, f"timed out after {request.timeout:g} s waiting for {where} (target '{source.name}')"
        ) from None
    except ReportingApiError as error:
        message = mask_strings(str(error), [*secrets, *source.secrets])
        raise WebApiError(502, f"cannot learn from target '{source.name}': {message}") from None
    finally:
        _running[0] -= 1
    preset, warnings = workspace.preset_document(None)
    entry = preset["targets"][workspace.existing(request.target)]
    entry["traffic"] = copy.deepcopy(learned.traffic)
    answer = {
        "target": request.target,
        "from_target": source.name,
        "from": request.first.isoformat(),
        "to": request.last.isoformat(),
        "top": request.top,
        "anonymize_urls": request.anonymize,
        "model": learned.traffic,
        "yaml": render_yaml(learned),
        "target_keys": learned.target,
        "notes": learned.notes,
        "preset_config": preset,
        "preset_warnings": warnings,
    }
    return mask_strings(answer, [*secrets, *source.secrets])
