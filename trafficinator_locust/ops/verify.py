"""Ingestion check: did each target's Matomo store what was sent, per target and local day?

Why: an HTTP 200/204 (or a bulk ``tracked`` count) is not proof of storage. Matomo silently
drops some hits (bots, excluded IPs, referrer spam, ...), archiving may not have run for past days,
and a proxy may answer for a Matomo that is down. Only the Reporting API tells what is stored.

``trafficinator verify CONFIG --report REPORT.json`` reads a report of what was sent::

    {"targets": [{"target": NAME, "days": {"YYYY-MM-DD": {"visits": N, "hits": M, "actions": A}}}]}

(``actions`` optional: the expected ``nb_actions``; extra keys are ignored), asks each target's
Reporting API for ``VisitsSummary.get`` of every day (visits and actions) and for
``CoreAdminHome.getTrackingFailures``, prints sent beside stored, and exits 1 when a target stored
less than ``threshold`` x sent on some day. API calls are paced by a token bucket
(``--calls-per-minute``; Matomo Cloud limits its API) that sleeps, never spins.

Pure parts (:func:`load_report`, :func:`check_day`, :func:`calls_limiter`) are separate from the
HTTP calls (:class:`~.reporting_api.ReportingApi`) so they are tested without a network. The
command line (``trafficinator verify``) is :mod:`trafficinator_locust.cli`; ``/api/verify`` runs
the same pieces with a deadline (:mod:`trafficinator_locust.web.verify_api`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import EXIT_FAILED, EXIT_OK, ReportingApiError, UsageError
from trafficinator_locust.core.table import render_table
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.ops.reporting_api import ReportingApi

__all__ = [
    "DEFAULT_CALLS_PER_MINUTE",
    "DEFAULT_THRESHOLD",
    "DayCheck",
    "SentDay",
    "SentTarget",
    "calls_limiter",
    "check_day",
    "day_checks",
    "load_report",
    "parse_report",
    "run_verify",
    "targets_for",
]

DEFAULT_THRESHOLD = 0.99
DEFAULT_CALLS_PER_MINUTE = 60.0


# =============================================================================================
# Pure


@dataclass(frozen=True)
class SentDay:
    """What a report says was sent to a target on one local day."""

    day: str
    visits: int
    hits: int
    actions: int | None = None


@dataclass(frozen=True)
class SentTarget:
    name: str
    days: tuple[SentDay, ...]


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{where}: must be a whole number >= 0, got {value!r}")
    return value


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
            days.append(
                SentDay(
                    day,
                    _count(counts["visits"], f"{spot}.visits"),
                    _count(counts.get("hits", 0), f"{spot}.hits"),
                    None if actions is None else _count(actions, f"{spot}.actions"),
                )
            )
        targets.append(SentTarget(entry["target"], tuple(days)))
    return targets


def load_report(path: Path) -> list[SentTarget]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"--report {path}: no such file (write one with `trafficinator backfill --report {path}`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--report {path}: not readable JSON ({exc.__class__.__name__})") from None
    return parse_report(data, str(path))


@dataclass(frozen=True)
class DayCheck:
    """Sent beside stored for one target and day; ``ok`` when stored >= threshold x sent."""

    target: str
    day: str
    sent_visits: int
    stored_visits: int
    sent_actions: int | None
    stored_actions: int
    ok: bool


def check_day(target: str, sent: SentDay, stored_visits: int, stored_actions: int, threshold: float) -> DayCheck:
    """Visits always; actions too when the report knows how many were sent."""
    ok = stored_visits >= threshold * sent.visits
    if sent.actions is not None:
        ok = ok and stored_actions >= threshold * sent.actions
    return DayCheck(target, sent.day, sent.visits, stored_visits, sent.actions, stored_actions, ok)


def calls_limiter(calls_per_minute: float, clock: Callable[[], float] = time.monotonic) -> TokenBucket:
    """At most ``calls_per_minute`` API calls in any minute (+1): evenly spaced, no bursts."""
    return TokenBucket(calls_per_minute / 60.0, burst=1.0, clock=clock)


# =============================================================================================
# Against the targets


def targets_for(config: Config, sent: Sequence[SentTarget]) -> list[tuple[SentTarget, Target]]:
    """Each report entry with its config target (by name); UsageError for unknown or token-less targets."""
    by_name = {t.name.casefold(): (i, t) for i, t in enumerate(config.targets)}
    pairs, problems = [], []
    for entry in sent:
        found = by_name.get(entry.name.casefold())
        if found is None:
            problems.append(
                f"the report names target {entry.name!r}, which {config.source} does not have "
                f"(targets: {', '.join(t.name for t in config.targets)})"
            )
            continue
        index, target = found
        if target.token_auth is None:
            problems.append(
                f"{config.source}: targets[{index}] ({target.name}): no token_auth; "
                f"the Reporting API needs a token with view access to site {target.site_id}"
            )
            continue
        pairs.append((entry, target))
    if problems:
        raise UsageError("\n".join(problems))
    return pairs


def day_checks(api: ReportingApi, sent: SentTarget, target: Target, threshold: float) -> Iterator[DayCheck]:
    """Ask the target's Reporting API about each day of the report: one verdict per day, in order."""
    for day in sent.days:
        visits, actions = api.visits_summary(target.site_id, day.day)
        yield check_day(target.name, day, visits, actions, threshold)


def run_verify(
    config: Config,
    report: Path,
    threshold: float = DEFAULT_THRESHOLD,
    calls_per_minute: float = DEFAULT_CALLS_PER_MINUTE,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float = 30.0,
) -> int:
    """Compare sent with stored for every target and day of ``report``; returns the exit code.

    Why: only the Reporting API tells what Matomo stored, so after a backfill (and its archiving)
    this is how to know the history is complete. Prints a table of sent beside stored to ``out``
    and the short days to ``err``; returns ``EXIT_OK``, or ``EXIT_FAILED`` when a target stored
    less than ``threshold`` x sent on some day or could not be asked. Bad input (options, the
    report, targets without a token) raises :class:`UsageError`.

    Example::

        code = run_verify(load_config("traffic.yaml"), Path("backfill-report.json"), calls_per_minute=30)
    """

    out = out or sys.stdout
    err = err or sys.stderr
    if not 0 < threshold <= 1:
        raise UsageError(f"--threshold {threshold}: must be > 0 and <= 1 (e.g. 0.99)")
    if not calls_per_minute > 0:
        raise UsageError(f"--calls-per-minute {calls_per_minute}: must be > 0")
    pairs = targets_for(config, load_report(report))
    limiter = calls_limiter(calls_per_minute)
    checks: list[DayCheck] = []
    broken: dict[str, str] = {}
    failures: dict[str, list[Mapping[str, Any]]] = {}
    for sent, target in pairs:
        api = ReportingApi(target, limiter, timeout)
        try:
            failures[target.name] = api.tracking_failures(target.site_id)
            checks.extend(day_checks(api, sent, target, threshold))
        except ReportingApiError as exc:
            broken[target.name] = str(exc)
    rows = []
    for check in checks:
        actions = "-" if check.sent_actions is None else str(check.sent_actions)
        ratio = f"{100 * check.stored_visits / check.sent_visits:.1f}%" if check.sent_visits else "-"
        rows.append(
            [
                check.target,
                check.day,
                check.sent_visits,
                check.stored_visits,
                ratio,
                actions,
                check.stored_actions,
                "ok" if check.ok else "SHORT",
            ]
        )
    if rows:
        out.write(
            render_table(
                [
                    "target",
                    "day",
                    "visits sent",
                    "visits stored",
                    "stored %",
                    "actions sent",
                    "actions stored",
                    "check",
                ],
                rows,
            )
            + "\n"
        )
    for name, rows_failed in failures.items():
        if rows_failed:
            problems = ", ".join(f"{row.get('problem')} x{row.get('count', 1)}" for row in rows_failed)
            out.write(f"{name}: Matomo lists {len(rows_failed)} tracking failure(s): {problems}\n")
    short: dict[str, list[str]] = {}
    for check in checks:
        if not check.ok:
            short.setdefault(check.target, []).append(check.day)
    for name, message in broken.items():
        err.write(f"trafficinator verify: target {name}: {message}\n")
    for name, days in short.items():
        err.write(
            f"trafficinator verify: target {name} stored less than {threshold:.0%} of what was sent "
            f"on {len(days)} day(s): {', '.join(days)}\n"
        )
    if short:
        err.write(
            "  If these past days were sent recently, Matomo may not have archived them yet: "
            "invalidate and re-archive them\n"
            "  (./console core:invalidate-report-data --dates=FIRST,LAST --sites=ID, then ./console core:archive) "
            "and verify again.\n"
        )
    if short or broken:
        return EXIT_FAILED
    days = len(checks)
    out.write(
        f"verify OK: {len(pairs)} target(s), {days} day(s): every target stored at least {threshold:.0%} "
        "of the visits (and actions) sent on every day\n"
    )
    return EXIT_OK
