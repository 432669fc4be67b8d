"""``POST /api/verify``: the ingestion check of ``trafficinator verify``, as data, within a deadline.

Why not call :func:`verify.run_verify`: it prints a table for a terminal and returns an exit code,
and it asks one target after the other with a 30 s timeout per call, so a web request could wait
minutes on one silent Matomo. Here the same pieces (:func:`verify.parse_report`/:func:`load_report`
for the report, ``targets_for`` for matching it to the config, :class:`reporting_api.ReportingApi`
for the calls, :func:`verify.day_checks` for the verdict of every report of a day,
:func:`verify.calls_limiter` for the rate limit shared by all targets) run once per target in its own
thread (green under gevent, as in Locust), and the answer comes within the calls-per-minute pacing
plus ``timeout`` whatever a server does: a target still busy then fails with "timed out" and stops
before its next call.

The answer has a verdict per target of the report, in the report's order: its ``status`` ("ok",
"short", "failed", "error" or "not verifiable", as ``verify``'s ``TargetResult.status``) and its days
as :func:`verify.day_json` words them (a row per report, sent beside stored). A target without any
token is listed as not verifiable and does not fail the answer; a target the report says failed to
send fails it even when Matomo holds all it got. Every token of the checked targets is masked.

Bad input is an :class:`~.workspace.WebApiError` (4xx) naming the field: bad options, a report of the
wrong shape, a report naming targets the config does not have, or sent to another site or URL
than the config's target of that name (a report of another config). No Flask here.

A ``report_path`` is read once, only when it is a regular file of at most :data:`REPORT_LIMIT` bytes
(:func:`core.files.read_small_text`: ``/dev/zero``, a FIFO or a folder is refused at once, 422), in
gevent's threadpool so a slow disk never stalls the event loop (users, worker heartbeats, the UI).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import FileRefused, ReportingApiError, UsageError, WebApiError
from trafficinator_locust.core.files import MiB, read_small_text
from trafficinator_locust.core.masking import mask_strings
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.ops.reporting_api import ReportingApi
from trafficinator_locust.ops.tracker_http import display_url
from trafficinator_locust.ops.verify import (
    DEFAULT_CALLS_PER_MINUTE,
    DEFAULT_THRESHOLD,
    DayCheck,
    SentTarget,
    TargetResult,
    calls_limiter,
    day_checks,
    parse_report,
    targets_for,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_PACING_SECONDS",
    "MAX_TIMEOUT",
    "REPORT_LIMIT",
    "VerifyRequest",
    "off_the_loop",
    "read_request",
    "run_request",
    "verify_targets",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds each target may wait for its Matomo (the CLI's ``--timeout`` default, per call there)."""
MAX_TIMEOUT = 120.0
MAX_PACING_SECONDS = 300.0
"""A report needing more calls than fit in this many seconds at ``calls_per_minute`` is refused
(use the CLI, which has no web request to keep open)."""
REPORT_LIMIT = 16 * MiB
"""Bytes of a ``report_path`` file (the CLI's ``--report`` has the same cap, :func:`verify.load_report`).
A backfill report of a year of days for a dozen targets is well under 1 MiB."""
GRACE_SECONDS = 0.5
_T = TypeVar("_T")
CALLS_PER_DAY, CALLS_PER_TARGET = 1, 1
"""One ``API.getBulkRequest`` per day (``VisitsSummary.get`` for an older report without ``reports``);
``CoreAdminHome.getTrackingFailures`` once per target."""


@dataclass(frozen=True)
class VerifyRequest:
    """A checked request: which report entries against which config targets, and how.

    ``unverifiable``: the config names of the report's targets without any token (nothing is asked
    of them); ``order``: every target of the report by its config name, in the report's order.
    """

    pairs: tuple[tuple[SentTarget, Target], ...]
    threshold: float
    calls_per_minute: float
    timeout: float
    report: str
    unverifiable: tuple[str, ...] = ()
    order: tuple[str, ...] = ()

    @property
    def secrets(self) -> list[str]:
        """Every token of the checked targets, in clear (for masking the answer)."""
        return [token for _, target in self.pairs for token in target.secrets]

    @property
    def calls(self) -> int:
        return sum(CALLS_PER_TARGET + CALLS_PER_DAY * len(sent.days) for sent, _ in self.pairs)

    @property
    def pacing_seconds(self) -> float:
        """How long the rate limit alone spreads the calls (the first call goes at once)."""
        return max(0, self.calls - 1) * 60.0 / self.calls_per_minute


# =============================================================================================
# The request


def read_request(body: Mapping[str, Any], config: Config, folder: Path) -> VerifyRequest:
    """Check a request body (see docs/web-ui.md) against ``config``; a relative ``report_path``
    resolves against ``folder`` (the config's). Raises :class:`WebApiError` (404/422) naming the field."""
    threshold = _number(body, "threshold", DEFAULT_THRESHOLD, upper=1.0, rule="> 0 and <= 1 (e.g. 0.99)")
    calls_per_minute = _number(body, "calls_per_minute", DEFAULT_CALLS_PER_MINUTE, upper=None, rule="> 0")
    timeout = _number(body, "timeout", DEFAULT_TIMEOUT, upper=MAX_TIMEOUT, rule=f"> 0 and <= {MAX_TIMEOUT:g} seconds")
    raw, sent, source = _report(body, folder)
    chosen = body.get("target")
    if chosen is not None:
        sent = _only(sent, chosen, config)
    if not sent:
        raise WebApiError(
            422, "the report names no target: nothing to verify", [{"path": "report", "message": "'targets' is empty"}]
        )
    try:
        found, unverifiable = targets_for(config, sent)
    except UsageError as error:
        raise WebApiError(
            422, f"the report does not fit the current config: {error}", _problems("report", str(error))
        ) from None
    pairs = tuple(found)
    by_name = {t.name.casefold(): t for t in config.targets}
    _check_same_destinations(raw, [(entry, by_name[entry.name.casefold()]) for entry in sent], config)
    order = tuple(by_name[entry.name.casefold()].name for entry in sent)
    request = VerifyRequest(pairs, threshold, calls_per_minute, timeout, source, tuple(unverifiable), order)
    if request.pacing_seconds > MAX_PACING_SECONDS:
        raise WebApiError(
            422,
            f"the report needs {request.calls} Reporting API calls: "
            f"at calls_per_minute={calls_per_minute:g} that takes {request.pacing_seconds:.0f} s, "
            f"more than the {MAX_PACING_SECONDS:.0f} s a web request may take; raise calls_per_minute "
            '(if your Matomo allows it), verify one target at a time ({"target": name}), or run `trafficinator verify`',
            [{"path": "calls_per_minute", "message": "too low for this report"}],
        )
    return request


def _number(body: Mapping[str, Any], key: str, default: float, *, upper: float | None, rule: str) -> float:
    value = body.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or (upper is not None and value > upper)
    ):
        raise WebApiError(
            422,
            f"{key} must be a number {rule}, got {json.dumps(value)}",
            [{"path": key, "message": f"must be {rule}"}],
        )
    return float(value)


def _report(body: Mapping[str, Any], folder: Path) -> tuple[Any, list[SentTarget], str]:
    """The report as sent (for :func:`_check_same_destinations`), parsed, and where it came from."""
    inline, path = body.get("report"), body.get("report_path")
    if (inline is None) == (path is None):
        raise WebApiError(
            422,
            "send the report of what was sent: "
            'either {"report": <the JSON report>} or {"report_path": "<file on this server>"}',
            [{"path": "report", "message": "exactly one of report and report_path is required"}],
        )
    if inline is not None:
        return inline, _usage_errors(lambda: parse_report(inline, "report"), "report", "report"), "the request body"
    if not isinstance(path, str) or not path.strip():
        raise WebApiError(
            422,
            "report_path must be the path of a JSON report on this server",
            [{"path": "report_path", "message": "must be a non-empty string"}],
        )
    resolved = (folder / path).resolve()
    raw = _read_report_file(resolved)
    sent = _usage_errors(lambda: parse_report(raw, str(resolved)), str(resolved), "report_path")
    return raw, sent, str(resolved)


def _read_report_file(path: Path) -> Any:
    """The JSON of a report file: once, a small regular file only, off the event loop (422 otherwise)."""

    def refused(text: str) -> WebApiError:
        return WebApiError(422, f"report_path: {text}", [{"path": "report_path", "message": text}])

    try:
        text = off_the_loop(lambda: read_small_text(path, REPORT_LIMIT, "file"))
    except FileNotFoundError:
        raise refused(f"{path}: no such file on this server") from None
    except FileRefused as error:
        raise refused(str(error)) from None
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise refused(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise refused(f"{path}: not readable JSON ({exc.__class__.__name__})") from None


def off_the_loop(read: Callable[[], _T], timeout: float | None = None) -> _T:
    """``read()`` in gevent's threadpool (a real thread): a slow or stuck disk or server waits there,
    not on the event loop that runs the users, the worker heartbeats and the web UI.

    ``timeout``: ``TimeoutError`` after that many seconds (the thread finishes on its own, bounded
    by its own timeouts: ``/api/targets/<name>/learn``'s socket timeout). Its exceptions are raised here.
    """
    import gevent

    def caught() -> tuple[_T | None, BaseException | None]:
        try:  # an exception is handed back, not raised there (gevent would print its trace)
            return read(), None
        except Exception as error:  # noqa: BLE001
            return None, error

    pool = gevent.get_hub().threadpool
    if timeout is None:
        value, error = pool.apply(caught)
    else:
        try:
            value, error = pool.spawn(caught).get(timeout=timeout)
        except gevent.Timeout:
            raise TimeoutError(f"no answer within {timeout:g} s") from None
    if error is not None:
        raise error
    return cast(_T, value)


def _usage_errors(parse: Callable[[], list[SentTarget]], source: str, field: str) -> list[SentTarget]:
    """``verify``'s report errors name the CLI option (``--report FILE: ...``): say the field instead."""
    try:
        return parse()
    except UsageError as error:
        text = str(error).replace(f"--report {source}: ", "")
        raise WebApiError(422, f"{field}: {text}", _problems(field, text)) from None


def _problems(field: str, text: str) -> list[dict[str, Any]]:
    return [{"path": field, "message": line} for line in text.splitlines()]


def _only(sent: list[SentTarget], name: Any, config: Config) -> list[SentTarget]:
    """The report's entry for target ``name`` (404 when the config has no such target)."""
    if not isinstance(name, str) or not any(t.name.casefold() == name.casefold() for t in config.targets):
        known = ", ".join(t.name for t in config.targets)
        raise WebApiError(404, f"no target named {json.dumps(name)} (targets: {known})")
    chosen = [entry for entry in sent if entry.name.casefold() == name.casefold()]
    if not chosen:
        raise WebApiError(
            422,
            f"the report has no days for target '{name}' (it names: {', '.join(e.name for e in sent) or 'no target'})",
            [{"path": "target", "message": "not in the report"}],
        )
    return chosen


def _check_same_destinations(raw: Any, pairs: Sequence[tuple[SentTarget, Target]], config: Config) -> None:
    """Refuse a report whose entries were sent to another site or tracker than the config's target
    of the same name (run reports carry ``site_id``, backfill reports ``site_id`` and ``url``)."""
    written = (
        {str(e.get("target")).casefold(): e for e in raw.get("targets", []) if isinstance(e, dict)}
        if isinstance(raw, dict)
        else {}
    )
    problems = []
    for sent, target in pairs:
        entry = written.get(sent.name.casefold(), {})
        if "site_id" in entry and entry["site_id"] != target.site_id:
            problems.append(
                f"{sent.name}: the report was sent to site {entry['site_id']}, "
                f"{config.source} has site {target.site_id}"
            )
        if isinstance(entry.get("url"), str) and entry["url"] != display_url(target.url):
            problems.append(
                f"{sent.name}: the report was sent to {entry['url']}, {config.source} has {display_url(target.url)}"
            )
    if problems:
        raise WebApiError(
            422, "the report is of another config: " + "; ".join(problems), _problems("report", "\n".join(problems))
        )


# =============================================================================================
# Running it


def run_request(request: VerifyRequest, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Verify every target of ``request`` and answer as ``POST /api/verify`` does: a verdict per
    target of the report, in its order (the token-less ones "not verifiable"), and ``problems``
    naming each failing target and row. The checked targets' tokens are masked everywhere (Matomo's
    messages and tracking-failure rows are quoted)."""
    limiter = calls_limiter(request.calls_per_minute, clock=clock)
    checked = verify_targets(
        request.pairs, request.threshold, limiter, request.timeout, request.pacing_seconds, clock=clock
    )
    verdicts = _in_report_order(request, checked)
    answer = {
        "ok": all(v.ok for v in verdicts),
        "report": request.report,
        "threshold": request.threshold,
        "calls_per_minute": request.calls_per_minute,
        "timeout": request.timeout,
        "problems": [line for v in verdicts for line in v.problems()],
        "targets": [v.as_dict() for v in verdicts],
    }
    return mask_strings(answer, request.secrets)


def _in_report_order(request: VerifyRequest, checked: Sequence[TargetResult]) -> list[TargetResult]:
    """The verdicts of the checked pairs (in report order already) with the token-less targets in their place."""
    unverifiable = set(request.unverifiable)
    order = request.order or tuple(v.target for v in checked) + request.unverifiable
    verdicts = iter(checked)
    return [TargetResult(name, verifiable=False) if name in unverifiable else next(verdicts) for name in order]


def verify_targets(
    pairs: Sequence[tuple[SentTarget, Target]],
    threshold: float,
    limiter: TokenBucket,
    timeout: float,
    pacing_seconds: float = 0.0,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> list[TargetResult]:
    """One verdict per pair, in order, within ``pacing_seconds + timeout`` (+ a short grace)."""
    deadline = clock() + pacing_seconds + timeout
    runs = [_TargetRun(sent, target, limiter, threshold, timeout, deadline, clock) for sent, target in pairs]
    threads = [threading.Thread(target=run.run, name=f"verify-{run.target.name}", daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + GRACE_SECONDS - clock()))
    return [run.verdict() for run in runs]


class _OutOfTime(Exception):
    """The target's deadline came before its next call."""


class _TargetRun:
    """The calls of one target, in its own thread; keeps what it found so far."""

    def __init__(
        self,
        sent: SentTarget,
        target: Target,
        limiter: TokenBucket,
        threshold: float,
        timeout: float,
        deadline: float,
        clock: Callable[[], float],
    ):
        self.sent, self.target, self.threshold, self.timeout = sent, target, threshold, timeout
        self.deadline, self.clock = deadline, clock
        self.api = ReportingApi(target, limiter, timeout=timeout, sleep=self._sleep)
        self.checks: list[DayCheck] = []
        self.failures: list[Mapping[str, Any]] = []
        self.error: str | None = None
        self.finished = False

    def _sleep(self, seconds: float) -> None:
        """The rate limiter's wait, refused when it would end past the deadline."""
        if self.clock() + seconds > self.deadline:
            raise _OutOfTime
        time.sleep(seconds)

    def run(self) -> None:
        site = self.target.site_id
        try:
            self.failures = self.api.tracking_failures(site)
            for check in day_checks(self.api, self.sent, self.target, self.threshold):
                self.checks.append(check)
                if self.clock() > self.deadline and len(self.checks) < len(self.sent.days):
                    raise _OutOfTime
        except ReportingApiError as error:
            self.error = str(error)
        except _OutOfTime:
            self.error = self._timed_out()
        except Exception as error:  # noqa: BLE001  (e.g. http.client's BadStatusLine from a server that is no HTTP server)
            self.error = f"{display_url(self.api.url)} gave no usable answer ({error.__class__.__name__})"
        finally:
            self.finished = True

    def _timed_out(self) -> str:
        return (
            f"timed out after {self.timeout:g} s of waiting for {display_url(self.api.url)}; "
            f"{len(self.checks)} of {len(self.sent.days)} day(s) checked"
        )

    def verdict(self) -> TargetResult:
        error = self.error if self.finished else self._timed_out()
        return TargetResult(
            self.target.name,
            list(self.checks),
            list(self.failures),
            error,
            self.sent.failed,
            days_in_report=len(self.sent.days),
        )
