"""Ingestion check: did each target's Matomo store what was sent, report by report, per target and local day?

Why: an HTTP 200/204 (or a bulk ``tracked`` count) is not proof of storage. Matomo refuses some hits
with a 400 the generator may not look at, silently drops others (bots, excluded IPs, referrer spam),
rolls back whole bulk batches, converts a goal once per visit; archiving may not have run for past
days, and a proxy may answer for a Matomo that is down. Visits almost never go wrong; goals, revenue,
events, abandoned carts and returning visits do. Only the Reporting API tells what is stored.

``trafficinator verify CONFIG --report REPORT.json`` reads a report of what was sent (the live run's
``--traffic-report`` or the backfill's ``--report``)::

    {"targets": [{"target": NAME, "days": {"YYYY-MM-DD": {"visits": N, "hits": M, "actions": A,
        "reports": {"pageviews": P, "events": E, "goals": {"2": {"conversions": C, "revenue": R}}, ...}}}}]}

(``actions`` and ``reports`` optional: an older report is checked on visits, and actions when known;
extra keys are ignored), asks each target's Reporting API for every day in one ``API.getBulkRequest``
(``VisitsSummary.get``, ``Actions.get``, ``Events.getCategory``, ``Goals.get`` per goal and for
``ecommerceOrder`` / ``ecommerceAbandonedCart``, ``VisitFrequency.get``), and prints one row per day
and report, sent beside stored. A row passes when stored is within ``1 - threshold`` of sent, both
ways (a duplicated batch is as wrong as a lost one; money in cents); with the default 0.99 one lost
conversion in a hundred fails. A target the report says failed (a backfill that stopped, a live
target whose visits all failed) fails, whatever Matomo holds. A target without any token
(``report_token_auth`` or ``token_auth``) is listed as not verifiable; the others are still checked.
API calls are paced by a token bucket (``--calls-per-minute``) that sleeps, never spins.

Pure parts (:func:`parse_report`, :func:`check_day`, :func:`calls_limiter`) are separate from the HTTP
calls (:class:`~.reporting_api.ReportingApi`) so they are tested without a network. The command line
is :mod:`trafficinator_locust.cli`; ``/api/verify`` runs the same pieces with a deadline
(:mod:`trafficinator_locust.web.verify_api`); ``--traffic-verify`` runs :func:`verify_sent` after a
Locust run.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import EXIT_FAILED, EXIT_OK, ReportingApiError, UsageError
from trafficinator_locust.core.reports import MONEY_KEYS, REPORT_KEYS, flat
from trafficinator_locust.core.table import render_table
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.ops.reporting_api import ReportingApi

__all__ = [
    "DEFAULT_CALLS_PER_MINUTE",
    "DEFAULT_THRESHOLD",
    "NOT_VERIFIABLE",
    "DayCheck",
    "ReportRow",
    "SentDay",
    "SentTarget",
    "TargetResult",
    "calls_limiter",
    "agrees",
    "check_day",
    "day_checks",
    "day_json",
    "load_report",
    "parse_report",
    "render_results",
    "results_json",
    "run_verify",
    "targets_for",
    "verify_sent",
]

DEFAULT_THRESHOLD = 0.99
DEFAULT_CALLS_PER_MINUTE = 60.0
_LABELS = {
    "visits": "visits",
    "actions": "actions",
    "pageviews": "pageviews",
    "searches": "site searches",
    "outlinks": "outlinks",
    "downloads": "downloads",
    "events": "events",
    "orders": "orders",
    "revenue": "order revenue",
    "abandoned_carts": "abandoned carts",
    "returning_visits": "returning visits",
}
_ORDER = ("visits", "actions", *REPORT_KEYS)


# =============================================================================================
# Pure


@dataclass(frozen=True)
class SentDay:
    """What a report says was sent to a target on one local day.

    ``reports``: the day's report figures (:func:`core.reports.flat`, money in cents), None in an older
    report; ``failed``: how many visits failed to start (a day that sent nothing but failures failed).
    """

    day: str
    visits: int
    hits: int
    actions: int | None = None
    reports: Mapping[str, int] | None = None
    failed_visits: int = 0


@dataclass(frozen=True)
class SentTarget:
    name: str
    days: tuple[SentDay, ...]
    failed: str | None = None  # why the report says this target failed (backfill status, live state)

    @property
    def goals(self) -> list[str]:
        """The goal ids the report expects conversions of (compared report by report)."""
        ids = {key.split(":")[1] for day in self.days for key in (day.reports or {}) if key.startswith("goal:")}
        return sorted(ids, key=lambda goal: (len(goal), goal))


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{where}: must be a whole number >= 0, got {value!r}")
    return value


def _reports(value: Any, where: str) -> dict[str, int]:
    """A day's ``reports`` object, checked: counts whole and >= 0, money a number >= 0."""
    if not isinstance(value, dict):
        raise UsageError(f'{where}: must be an object like {{"pageviews": 3, "goals": {{}}}}')
    for key in REPORT_KEYS:
        if key in value:
            _amount(value[key], f"{where}.{key}", money=key in MONEY_KEYS)
    goals = value.get("goals", {})
    if not isinstance(goals, dict):
        raise UsageError(f'{where}.goals: must be an object {{"<goal id>": {{"conversions": N, "revenue": R}}}}')
    for goal, entry in goals.items():
        spot = f"{where}.goals[{goal}]"
        if not str(goal).isdigit() or not isinstance(entry, dict):
            raise UsageError(f'{spot}: needs a goal id and {{"conversions": N, "revenue": R}}')
        _amount(entry.get("conversions", 0), f"{spot}.conversions", money=False)
        _amount(entry.get("revenue", 0), f"{spot}.revenue", money=True)
    return flat(value)


def _amount(value: Any, where: str, money: bool) -> None:
    if money:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e15:
            raise UsageError(f"{where}: must be an amount >= 0, got {value!r}")
    else:
        _count(value, where)


def _failed_target(entry: Mapping[str, Any]) -> str | None:
    """Why a report entry says its target failed: a backfill ``status: failed``, a live ``state: failing``."""
    if entry.get("status") == "failed":
        return f"the backfill failed: {entry.get('error') or 'no reason given'}"
    if entry.get("state") == "failing":
        return "most of its visits failed to start (the run's state: failing)"
    return None


def parse_report(data: Any, source: str) -> list[SentTarget]:
    """Check a report's shape (see the module docstring); :class:`UsageError` names the bad spot."""
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        raise UsageError(
            f"--report {source}: needs a top-level 'targets' list "
            "(written by `trafficinator backfill --report` or the Locust run report)"
        )
    targets = []
    for index, entry in enumerate(data["targets"]):
        where = f"--report {source}: targets[{index}]"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("target"), str)
            or not isinstance(entry.get("days"), dict)
        ):
            raise UsageError(
                f'{where}: needs \'target\' (a name) and \'days\' ({{"YYYY-MM-DD": {{"visits": N, "hits": M}}}})'
            )
        days = []
        for day, counts in sorted(entry["days"].items()):
            spot = f"{where}.days[{day}]"
            try:
                date.fromisoformat(day)
            except ValueError:
                raise UsageError(f"{spot}: the key must be a date like 2025-03-14") from None
            if not isinstance(counts, dict) or "visits" not in counts:
                raise UsageError(f"{spot}: needs at least 'visits'")
            actions = counts.get("actions")
            reports = counts.get("reports")
            days.append(
                SentDay(
                    day,
                    _count(counts["visits"], f"{spot}.visits"),
                    _count(counts.get("hits", 0), f"{spot}.hits"),
                    None if actions is None else _count(actions, f"{spot}.actions"),
                    None if reports is None else _reports(reports, f"{spot}.reports"),
                    _count(counts.get("visits_failed", 0), f"{spot}.visits_failed"),
                )
            )
        targets.append(SentTarget(entry["target"], tuple(days), _failed_target(entry)))
    return targets


def load_report(path: Path, limit: int = 16 << 20) -> list[SentTarget]:
    """The report file ``--report`` names, read only when it is a regular file of at most ``limit``
    bytes (16 MiB, as the web API's ``verify_api.REPORT_LIMIT``): ``/dev/zero`` or a FIFO is a
    :class:`~trafficinator_locust.core.errors.FileRefused` (exit 2) at once, never a hang."""
    from trafficinator_locust.core.files import read_small_text

    try:
        data = json.loads(read_small_text(path, limit, "--report"))
    except FileNotFoundError:
        raise UsageError(
            f"--report {path}: no such file (write one with `trafficinator backfill --report {path}`)"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"--report {path}: not readable JSON ({exc.__class__.__name__})") from None
    return parse_report(data, str(path))


@dataclass(frozen=True)
class ReportRow:
    """One report of one day: sent beside stored (money in cents), and whether they agree."""

    report: str  # a core.reports key, "visits", "actions" or "goal:<id>:conversions" / "goal:<id>:revenue"
    sent: int
    stored: int
    ok: bool

    @property
    def label(self) -> str:
        if self.report.startswith("goal:"):
            _, goal, figure = self.report.split(":")
            return f"goal {goal} {figure}"
        return _LABELS.get(self.report, self.report)

    @property
    def money(self) -> bool:
        return self.report in MONEY_KEYS or self.report.endswith(":revenue")

    def shown(self, value: int) -> str:
        return f"{value / 100:.2f}" if self.money else str(value)


def agrees(sent: int, stored: int, threshold: float) -> bool:
    """Stored within ``1 - threshold`` of sent, both ways, strictly (exact when sent is small).

    In millionths, so that 99 of 100 with 0.99 fails (a float 1 - 0.99 is a hair above 0.01).
    """
    tolerance = round((1 - threshold) * 1_000_000)
    return sent == stored or abs(stored - sent) * 1_000_000 < tolerance * sent


@dataclass(frozen=True)
class DayCheck:
    """Sent beside stored for one target and day, one row per report the report knows; ``ok`` when
    every row agrees and the day did not fail to send."""

    target: str
    day: str
    rows: tuple[ReportRow, ...]
    ok: bool
    note: str | None = None  # why a day failed besides its rows

    def row(self, report: str) -> ReportRow | None:
        return next((row for row in self.rows if row.report == report), None)

    @property
    def short(self) -> list[ReportRow]:
        return [row for row in self.rows if not row.ok]


def check_day(target: str, sent: SentDay, stored: Mapping[str, int], threshold: float) -> DayCheck:
    """Every report of ``sent`` against Matomo's ``stored`` figures (``ReportingApi.day_reports``)."""
    expected: dict[str, int] = {"visits": sent.visits}
    if sent.actions is not None:
        expected["actions"] = sent.actions
    if sent.reports is not None:
        expected.update(sent.reports)
    order = {key: index for index, key in enumerate(_ORDER)}
    keys = sorted(expected, key=lambda key: (order.get(key, len(order)), _goal_order(key)))
    rows = tuple(
        ReportRow(key, expected[key], stored.get(key, 0), agrees(expected[key], stored.get(key, 0), threshold))
        for key in keys
    )
    note = None
    if sent.visits == 0 and sent.failed_visits:
        note = f"sent nothing: {sent.failed_visits} visit(s) failed to start"
    return DayCheck(target, sent.day, rows, note is None and all(row.ok for row in rows), note)


def _goal_order(key: str) -> tuple[int, str, str]:
    if not key.startswith("goal:"):
        return (0, "", "")
    _, goal, figure = key.split(":")
    return (len(goal), goal, figure)


def calls_limiter(calls_per_minute: float, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
    """At most ``calls_per_minute`` API calls in any minute (+1): evenly spaced, no bursts."""
    return TokenBucket(calls_per_minute / 60.0, burst=1.0, clock=clock)


# =============================================================================================
# Against the targets


def targets_for(config: Config, sent: Sequence[SentTarget]) -> tuple[list[tuple[SentTarget, Target]], list[str]]:
    """Each report entry with its config target (by name), and the names of those without any token
    (not verifiable); UsageError for names the config does not have."""
    by_name = {t.name.casefold(): t for t in config.targets}
    pairs, unverifiable, problems = [], [], []
    for entry in sent:
        target = by_name.get(entry.name.casefold())
        if target is None:
            problems.append(
                f"the report names target {entry.name!r}, which {config.source} does not have "
                f"(targets: {', '.join(t.name for t in config.targets)})"
            )
        elif target.report_token is None:
            unverifiable.append(target.name)
        else:
            pairs.append((entry, target))
    if problems:
        raise UsageError("\n".join(problems))
    return pairs, unverifiable


def day_checks(api: ReportingApi, sent: SentTarget, target: Target, threshold: float) -> Iterator[DayCheck]:
    """Ask the target's Reporting API about each day of the report: one verdict per day, in order.

    One ``VisitsSummary.get`` per day for an old report (visits and actions only), else one bulk call.
    """
    goals = sent.goals
    for day in sent.days:
        if day.reports is None:
            visits, actions = api.visits_summary(target.site_id, day.day)
            stored = {"visits": visits, "actions": actions}
        else:
            stored = api.day_reports(target.site_id, day.day, goals)
        yield check_day(target.name, day, stored, threshold)


NOT_VERIFIABLE = (
    "not verifiable: no report_token_auth or token_auth (set report_token_auth: ${VAR} to a token with view access)"
)


@dataclass
class TargetResult:
    """One target's verdict: its days checked so far, Matomo's tracking failures, why it could not be
    (fully) checked (``error``; fewer days than ``days_in_report``) and why the report says it failed
    to send (``failed``).

    ``status``: "not verifiable" (no token: not asked), "error", "failed", "short" (a row off) or
    "ok"; ``ok`` for "ok" and "not verifiable".
    """

    target: str
    days: list[DayCheck] = field(default_factory=list)
    tracking_failures: list[Mapping[str, Any]] = field(default_factory=list)
    error: str | None = None
    failed: str | None = None
    verifiable: bool = True
    days_in_report: int = 0

    @property
    def status(self) -> str:
        if not self.verifiable:
            return "not verifiable"
        if self.error is not None or len(self.days) < self.days_in_report:
            return "error"
        if self.failed is not None:
            return "failed"
        return "ok" if all(day.ok for day in self.days) else "short"

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "not verifiable")

    @property
    def short_days(self) -> list[str]:
        return [day.day for day in self.days if not day.ok]

    def problems(self) -> list[str]:
        """What fails this target, one line each: the error, the failure, then each day off with
        every report row that is off (``target X, 2026-12-02: goal 2 conversions 13 of 14``)."""
        lines = []
        if self.error is not None:
            lines.append(f"target {self.target}: {self.error}")
        if self.failed is not None:
            lines.append(f"target {self.target} FAILED: {self.failed}")
        for day in self.days:
            if day.note is not None:
                lines.append(f"target {self.target}, {day.day}: {day.note}")
            if day.short:
                off = ", ".join(f"{row.label} {row.shown(row.stored)} of {row.shown(row.sent)}" for row in day.short)
                lines.append(f"target {self.target}, {day.day}: {off}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """As data (``--json``, ``--traffic-report``'s ``verify``, ``/api/verify``); money in currency units."""
        return {
            "target": self.target,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "failed": self.failed,
            "note": None if self.verifiable else NOT_VERIFIABLE,
            "short_days": self.short_days,
            "days": [day_json(day) for day in self.days],
            "tracking_failures": [dict(row) for row in self.tracking_failures],
        }


def verify_sent(
    config: Config,
    sent: Sequence[SentTarget],
    threshold: float = DEFAULT_THRESHOLD,
    calls_per_minute: float = DEFAULT_CALLS_PER_MINUTE,
    timeout: float = 30.0,
) -> list[TargetResult]:
    """Ask every verifiable target's Matomo about every day of ``sent``; one result per report entry."""
    if not 0 < threshold <= 1:
        raise UsageError(f"--threshold {threshold}: must be > 0 and <= 1 (e.g. 0.99)")
    if not calls_per_minute > 0:
        raise UsageError(f"--calls-per-minute {calls_per_minute}: must be > 0")
    pairs, unverifiable = targets_for(config, sent)
    limiter = calls_limiter(calls_per_minute)
    results = {name: TargetResult(name, verifiable=False) for name in unverifiable}
    for entry, target in pairs:
        result = results[target.name] = TargetResult(target.name, failed=entry.failed, days_in_report=len(entry.days))
        api = ReportingApi(target, limiter, timeout)
        try:
            result.tracking_failures = api.tracking_failures(target.site_id)
            result.days.extend(day_checks(api, entry, target, threshold))
        except ReportingApiError as exc:
            result.error = str(exc)
    by_name = {t.name.casefold(): t.name for t in config.targets}
    return [results[by_name[entry.name.casefold()]] for entry in sent]


def render_results(results: Sequence[TargetResult], threshold: float, out: TextIO, err: TextIO) -> bool:
    """The table (one row per target, day and report) to ``out``, the problems to ``err``; True when all passed."""
    rows = []
    for result in results:
        for day in result.days:
            for row in day.rows:
                diff = row.stored - row.sent
                rows.append(
                    [
                        result.target,
                        day.day,
                        row.label,
                        row.shown(row.sent),
                        row.shown(row.stored),
                        ("+" if diff > 0 else "") + row.shown(diff) if diff else "",
                        "ok" if row.ok else ("SHORT" if diff < 0 else "TOO MANY"),
                    ]
                )
    if rows:
        out.write(render_table(["target", "day", "report", "sent", "stored", "diff", "check"], rows) + "\n")
    for result in results:
        if result.tracking_failures:
            problems = ", ".join(f"{row.get('problem')} x{row.get('count', 1)}" for row in result.tracking_failures)
            out.write(
                f"{result.target}: Matomo lists {len(result.tracking_failures)} tracking failure(s): {problems}\n"
            )
        if not result.verifiable:
            out.write(f"{result.target}: {NOT_VERIFIABLE}\n")
    failing = False
    for result in results:
        for line in result.problems():
            err.write(f"trafficinator verify: {line}\n")
        failing = failing or not result.ok
    if failing and any(day.short for result in results for day in result.days):
        err.write(
            f"  A row fails when stored differs from sent by {1 - threshold:.1%} or more (--threshold {threshold:g}).\n"
            "  If these days were sent recently, Matomo may not have archived them yet: invalidate and\n"
            "  re-archive them (./console core:invalidate-report-data --dates=FIRST,LAST --sites=ID, then\n"
            "  ./console core:archive) and verify again; docs/matomo.md (Reading a verify mismatch)\n"
            "  says what each row depends on.\n"
        )
    if not failing:
        checked = [r for r in results if r.verifiable]
        days = sum(len(r.days) for r in checked)
        reports = sum(len(day.rows) for r in checked for day in r.days)
        out.write(
            f"verify OK: {len(checked)} target(s), {days} day(s), {reports} report row(s): every report within "
            f"{1 - threshold:.1%} of what was sent\n"
        )
    return not failing


def day_json(day: DayCheck) -> dict[str, Any]:
    """One day's verdict as data: a row per report (money in currency units, ``label`` as printed)."""
    return {
        "day": day.day,
        "ok": day.ok,
        "note": day.note,
        "rows": [
            {
                "report": row.report,
                "label": row.label,
                "sent": row.sent / 100 if row.money else row.sent,
                "stored": row.stored / 100 if row.money else row.stored,
                "money": row.money,
                "ok": row.ok,
            }
            for row in day.rows
        ],
    }


def results_json(results: Sequence[TargetResult], threshold: float) -> dict[str, Any]:
    """The verdict as data (``--json``, ``--traffic-report``'s ``verify``); money in currency units."""
    return {"ok": all(r.ok for r in results), "threshold": threshold, "targets": [r.as_dict() for r in results]}


def run_verify(
    config: Config,
    report: Path,
    threshold: float = DEFAULT_THRESHOLD,
    calls_per_minute: float = DEFAULT_CALLS_PER_MINUTE,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float = 30.0,
    as_json: bool = False,
) -> int:
    """Compare sent with stored for every target, day and report of ``report``; returns the exit code.

    Why: only the Reporting API tells what Matomo stored, so after a run or a backfill (and its
    archiving) this is how to know every report is complete. Prints the table (or, ``as_json``, the
    verdict as JSON) to ``out`` and the problems to ``err``; returns ``EXIT_OK``, or ``EXIT_FAILED``
    when a row is off, a target failed to send or could not be asked. Bad input (options, the
    report) raises :class:`UsageError`.

    Example::

        code = run_verify(load_config("traffic.yaml"), Path("backfill-report.json"), calls_per_minute=30)
    """
    out = out or sys.stdout
    err = err or sys.stderr
    results = verify_sent(config, load_report(report), threshold, calls_per_minute, timeout)
    if as_json:
        document = results_json(results, threshold)
        out.write(json.dumps(document, indent=2) + "\n")
        return EXIT_OK if document["ok"] else EXIT_FAILED
    return EXIT_OK if render_results(results, threshold, out, err) else EXIT_FAILED
