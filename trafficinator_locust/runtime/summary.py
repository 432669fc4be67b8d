"""Per-target run summary: visits started (counted by the plugin) beside Locust's request stats and
each target's budget (cap today, visits expected at its pace, state).

Locust counts requests; a Matomo administrator counts visits. The tally counts a visit when its
first hit is answered 2xx (Matomo then has the visit), per target and per the target's local day;
workers ship their counts to the master in Locust's own worker reports, and the master builds one
table and one JSON document per run.
"""

from __future__ import annotations

from locust.stats import RequestStats, StatsEntry

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from trafficinator_locust.core.budget import Pace, TargetStatus
from trafficinator_locust.core.bulk import parse_refusal
from trafficinator_locust.core.config import Config, Transport
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.core.reports import COUNT_KEYS, nested
from trafficinator_locust.core.table import render_table
from trafficinator_locust.runtime.tally import VisitTally

# A target whose failed visits are at least this share of its visits (and at least one) is "failing".
FAILING_SHARE = 0.5
# A running paced target that sent under this share of the visits its pace expects (once at least
# STALL_MIN_VISITS are expected) is "stalled": nobody is sending its visits.
STALL_SHARE, STALL_MIN_VISITS = 0.5, 10


@dataclass(frozen=True)
class BudgetView:
    """What the master knows of each target's budget at the end of a run (from the broker).

    ``window`` is the run's ``(start, end)`` in unix seconds; ``statuses`` the ledger's view per
    target (absent for targets the master did not budget).
    """

    paces: Mapping[str, Pace]
    statuses: Mapping[str, TargetStatus]
    window: tuple[float, float] | None
    paced: bool = True


@dataclass(frozen=True)
class DaySummary:
    day: str
    visits_started: int
    visits_failed: int
    cap: int | None
    expected_visits: float | None
    figures: Mapping[str, int] = field(default_factory=dict)  # core.reports deltas summed (money in cents)


@dataclass(frozen=True)
class TargetSummary:
    target: str
    site_id: int
    visits_started: int
    visits_failed: int
    bot_visits: int
    requests: int
    failures: int
    hits: int
    hits_per_second: float | None
    fail_ratio: float
    p50_ms: int
    p95_ms: int
    requests_by_kind: dict[str, int]
    cap_today: int | None = None
    granted_today: int | None = None
    expected_visits: float | None = None
    state: str = "running"
    days: list[DaySummary] = field(default_factory=list)
    refused_hits: dict[str, Any] = field(default_factory=lambda: {"total": 0, "by_kind": {}, "sample": None})
    capacity: dict[str, Any] | None = None  # --traffic-pacing ramp: the knee found (core.ramp.Ramp.as_dict)


def visits_failing(started: int, failed: int) -> bool:
    """At least one failed visit, and failures are at least FAILING_SHARE of the target's visits."""
    return bool(failed) and failed >= FAILING_SHARE * (started + failed)


def target_entries(stats: RequestStats, target: str) -> list[StatsEntry]:
    """Locust's stats entries of one target: those named ``[<target>] <kind>``."""
    prefix = f"[{target}] "
    return [entry for (name, _method), entry in stats.entries.items() if name.startswith(prefix)]


def refused_hits(stats: RequestStats, target: str, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """Hits of ``target``'s bulk requests that Matomo refused: total, per kind and a sample reason (masked).

    Read from Locust's failures of ``[<target>] bulk``, whose text says ``refused N hits (kind n, ...):
    reason`` (:func:`~trafficinator_locust.core.bulk.refusal_message`): Locust collects them from every
    worker, so the master counts them without a channel of its own. The texts never hold a token; any of
    ``secrets`` is masked in the sample all the same.
    """
    name = f"[{target}] bulk"
    by_kind: dict[str, int] = {}
    sample: tuple[int, str] | None = None
    for error in stats.errors.values():
        if error.name != name:
            continue
        found = parse_refusal(error.to_name())
        if found is None:
            continue
        kinds, reason = found
        for kind, count in kinds.items():
            by_kind[kind] = by_kind.get(kind, 0) + count * error.occurrences
        if sample is None or error.occurrences > sample[0]:
            sample = (error.occurrences, reason)
    return {
        "total": sum(by_kind.values()),
        "by_kind": dict(sorted(by_kind.items())),
        "sample": mask_secrets(sample[1], secrets) if sample else None,
    }


def target_state(status: TargetStatus | None, started: int, failed: int, expected: float | None = None) -> str:
    """running | capped | paused | failing | stalled: failing wins (the tracker is the problem), then
    the budget; a running paced target that sent under half the visits its pace expects is stalled
    (no user of it is running, e.g. they all sat on a worker that died, or far too few users)."""
    if visits_failing(started, failed):
        return "failing"
    if status is None or status.state == "unpaced":
        return "running"
    if status.state == "running" and expected is not None and stalled(started + failed, expected):
        return "stalled"
    return status.state


def stalled(sent: int, expected: float) -> bool:
    """Under :data:`STALL_SHARE` of the expected visits, once at least :data:`STALL_MIN_VISITS` are expected."""
    return expected >= STALL_MIN_VISITS and sent < STALL_SHARE * expected


def _days(name: str, pace: Pace | None, tally: VisitTally, window: tuple[float, float] | None) -> list[DaySummary]:
    """One row per local day the run touched or a visit was counted in, oldest first."""
    counted = tally.days.get(name, {})
    spans: dict[str, float | None] = {}
    if pace is not None and window is not None:
        start, end = window
        cursor = start
        while cursor < end:
            plan = pace.plan_at(cursor)
            spans[plan.day.isoformat()] = (
                pace.expected_visits(cursor, min(end, plan.end)) if pace.visits_per_day is not None else None
            )
            cursor = plan.end
    rows = []
    for day in sorted(set(spans) | set(counted) | set(tally.reports.get(name, {}))):
        started, failed = counted.get(day, [0, 0])
        cap = pace.cap(date.fromisoformat(day)) if pace is not None else None
        expected = spans.get(day)
        figures = dict(tally.reports.get(name, {}).get(day, {}))
        rows.append(DaySummary(day, started, failed, cap, None if expected is None else round(expected, 2), figures))
    return rows


def summarize(
    config: Config,
    stats: RequestStats,
    tally: VisitTally,
    budget: BudgetView | None = None,
    capacities: Mapping[str, dict[str, Any] | None] | None = None,
) -> list[TargetSummary]:
    """One row per enabled target, from Locust's per-name stats, the plugin's tally, the budget and,
    in a ramp run, each target's capacity (its knee)."""
    rows = []
    secrets = [token for t in config.targets for token in t.secrets]
    for target in config.enabled_targets:
        prefix = f"[{target.name}] "
        merged = StatsEntry(stats, target.name, "", use_response_times_cache=False)
        kinds: dict[str, int] = {}
        for entry in target_entries(stats, target.name):
            merged.extend(entry)
            kind = entry.name[len(prefix) :]
            kinds[kind] = kinds.get(kind, 0) + entry.num_requests
        status = budget.statuses.get(target.name) if budget else None
        pace = budget.paces.get(target.name) if budget else None
        expected = None
        if pace is not None and pace.visits_per_day is not None and budget is not None and budget.window is not None:
            expected = round(pace.expected_visits(*budget.window), 2)
        bulk = target.transport is Transport.bulk
        hits = tally.hits[target.name] if bulk else merged.num_requests - merged.num_failures
        seconds = budget.window[1] - budget.window[0] if budget is not None and budget.window is not None else None
        rows.append(
            TargetSummary(
                target=target.name,
                site_id=target.site_id,
                visits_started=tally.started[target.name],
                visits_failed=tally.failed[target.name],
                bot_visits=tally.bots[target.name],
                requests=merged.num_requests,
                failures=merged.num_failures,
                hits=hits,
                hits_per_second=round(hits / seconds, 1) if seconds else None,
                fail_ratio=round(merged.fail_ratio, 4),
                p50_ms=int(merged.get_response_time_percentile(0.5) or 0),
                p95_ms=int(merged.get_response_time_percentile(0.95) or 0),
                requests_by_kind=dict(sorted(kinds.items())),
                cap_today=status.cap_today if status else None,
                granted_today=status.granted_today if status else None,
                expected_visits=expected,
                state=target_state(status, tally.started[target.name], tally.failed[target.name], expected),
                days=_days(target.name, pace, tally, budget.window if budget else None),
                refused_hits=refused_hits(stats, target.name, secrets),
                capacity=(capacities or {}).get(target.name),
            )
        )
    return rows


def _shown(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    return str(value)


def summary_table(rows: list[TargetSummary]) -> str:
    """The per-target table; a ``refused`` column (hits Matomo refused, by kind) when a target has any."""
    refused = any(r.refused_hits["total"] for r in rows)
    headers = [
        "target",
        "site",
        "visits",
        "cap today",
        "expected",
        "state",
        "requests",
        "failures",
        "fail %",
        "p50 ms",
        "p95 ms",
        "hits",
        "hits/s",
    ]
    body = [
        [
            r.target,
            r.site_id,
            r.visits_started,
            _shown(r.cap_today),
            _shown(r.expected_visits),
            r.state,
            r.requests,
            r.failures,
            f"{100 * r.fail_ratio:.1f}",
            r.p50_ms,
            r.p95_ms,
            r.hits,
            _shown(r.hits_per_second),
        ]
        + ([_refused_cell(r.refused_hits)] if refused else [])
        for r in rows
    ]
    table = render_table(headers + (["refused"] if refused else []), body)
    samples = [f"  {r.target}: {r.refused_hits['sample']}" for r in rows if r.refused_hits["sample"]]
    table += "\nrefused by Matomo, e.g.:\n" + "\n".join(samples) if samples else ""
    if any(r.capacity for r in rows):
        table += "\n\nCapacity (--traffic-pacing ramp)\n" + capacity_table(rows)
    return table


def capacity_table(rows: list[TargetSummary]) -> str:
    """Per target: the knee in hits and visits per second, what limited it, and the p95 at the knee."""
    body = []
    for r in rows:
        capacity = r.capacity or {}
        knee = capacity.get("knee_hits_per_second")
        at_knee = [s for s in capacity.get("steps", []) if s.get("passed") and s.get("rate_hits_per_second") == knee]
        lower_bound = capacity.get("knee_is_lower_bound")
        body.append(
            [
                r.target,
                "-" if knee is None else f"{'>=' if lower_bound else ''}{knee:.1f}",
                "-" if capacity.get("knee_visits_per_second") is None else f"{capacity['knee_visits_per_second']:.2f}",
                capacity.get("limited_by") or "-",
                f"{at_knee[-1]['p95_ms']:.0f}" if at_knee else "-",
                len(capacity.get("steps", [])),
            ]
        )
    return render_table(["target", "knee hits/s", "knee visits/s", "limited by", "p95 ms at knee", "steps"], body)


def _refused_cell(refused: Mapping[str, Any]) -> str:
    if not refused["total"]:
        return "0"
    return f"{refused['total']} (" + ", ".join(f"{kind} {n}" for kind, n in refused["by_kind"].items()) + ")"


def check_figures(rows: list[TargetSummary]) -> dict[str, dict[str, float | None]]:
    """The figures ``--traffic-check`` rules test, per target (``delivered`` only for paced targets)."""
    return {
        row.target: {
            "fail_ratio": row.fail_ratio,
            "failures": row.failures,
            "requests": row.requests,
            "visits": row.visits_started,
            "p50": row.p50_ms,
            "p95": row.p95_ms,
            "delivered": round(row.visits_started / row.expected_visits, 4) if row.expected_visits else None,
            "knee": row.capacity.get("knee_hits_per_second") if row.capacity else None,
        }
        for row in rows
    }


def report_entry(row: TargetSummary) -> dict[str, Any]:
    """A target's JSON entry; ``days`` maps each local day to its figures (the shape ``verify`` reads)."""
    entry = asdict(row)
    entry["days"] = {
        day.day: {
            "visits": day.visits_started,
            "visits_failed": day.visits_failed,
            "cap": day.cap,
            "expected_visits": day.expected_visits,
            **{key: day.figures.get(key, 0) for key in COUNT_KEYS},
            "reports": nested(day.figures),
        }
        for day in row.days
    }
    return entry


def write_report(
    path: str | Path,
    config: Config,
    rows: list[TargetSummary],
    run: Mapping[str, Any] | None = None,
    verdict: Mapping[str, Any] | None = None,
) -> None:
    """The JSON report (``--traffic-report``): config fingerprint, the run, one entry per target, and
    ``--traffic-verify``'s verdict (``verify``) when it ran."""
    document: dict[str, Any] = {"config": config.source, "fingerprint": config.fingerprint()}
    if run is not None:
        document["run"] = dict(run)
    document["targets"] = [report_entry(r) for r in rows]
    if verdict is not None:
        document["verify"] = dict(verdict)
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
