"""Per-target status of a running generator: state, health, visits today against the cap, rates.

Why separate from the routes: health thresholds and rates are policy an operator reads in
docs/web-ui.md and tests check with plain numbers; the web UI only serves the result
(``GET /api/status`` and the Targets tab). The run summary (:func:`report.summarize`) supplies the
per-target figures; this module adds what only a live view needs: a recent window of requests,
the last error (masked), the current visit rate and the health verdict. No Flask; Locust's stats
objects are read, never changed.
"""

from __future__ import annotations

from locust.stats import RequestStats, StatsEntry

from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from trafficinator_locust.core.config import Config
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.runtime.summary import BudgetView, summarize, target_entries, visits_failing
from trafficinator_locust.runtime.tally import VisitTally

__all__ = [
    "DEGRADED_FAIL_RATIO",
    "DEGRADED_P95_MS",
    "FAILING_FAIL_RATIO",
    "HEALTH_WINDOW",
    "RecentRate",
    "classify_health",
    "last_error",
    "recent_counts",
    "status_document",
]

# Health (docs/web-ui.md): over the last HEALTH_WINDOW seconds of requests (the whole run when
# the window is empty); "failing" also when a target's visits are failing (report.FAILING_SHARE).
HEALTH_WINDOW = 60
FAILING_FAIL_RATIO = 0.5
DEGRADED_FAIL_RATIO = 0.05
DEGRADED_P95_MS = 2000
RATE_SPAN = 30.0


def classify_health(
    recent_requests: int, recent_failures: int, p95_ms: float | None, visits_failing: bool = False
) -> str | None:
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


def status_document(
    config: Config,
    stats: RequestStats,
    tally: VisitTally,
    view: BudgetView | None,
    rates: RecentRate,
    *,
    now: float,
    runner_state: str | None,
    running: bool,
    secret_values: Iterable[str],
) -> dict[str, Any]:
    """The answer of ``GET /api/status``: the run, the health thresholds, one row per target.

    Disabled targets are summarized like enabled ones (their figures stay visible) and marked
    ``disabled``; a target whose summary says running while no test runs is ``idle``.
    """
    everyone = config.model_copy(
        update={"targets": tuple(t.model_copy(update={"enabled": True}) for t in config.targets)}
    )
    rows = summarize(everyone, stats, tally, view)
    secrets = list(secret_values)
    targets = []
    for target, row in zip(config.targets, rows):
        budget = view.statuses.get(target.name) if view else None
        pace = view.paces.get(target.name, target.pace()) if view else target.pace()
        recent = recent_counts(target_entries(stats, target.name), now, HEALTH_WINDOW)
        requests, failures = recent if recent[0] else (row.requests, row.failures)
        error = last_error(stats, target.name)
        today = pace.day_of(now).isoformat()
        state = row.state if target.enabled else "disabled"
        if state == "running" and not running:
            state = "idle"
        targets.append(
            {
                "name": target.name,
                "enabled": target.enabled,
                "state": state,
                "health": classify_health(
                    requests,
                    failures,
                    row.p95_ms if row.requests else None,
                    visits_failing(row.visits_started, row.visits_failed),
                ),
                "visits_today": tally.days.get(target.name, {}).get(today, [0, 0])[0],
                "visits_started": row.visits_started,
                "visits_failed": row.visits_failed,
                "granted_today": budget.granted_today if budget else None,
                "cap_today": budget.cap_today if budget else pace.cap(pace.day_of(now)),
                "current_rate": _rounded(rates.rate(target.name)),
                "expected_rate": _rounded(pace.rate(now)),
                "requests": row.requests,
                "failures": row.failures,
                "fail_pct": round(100 * row.fail_ratio, 2),
                "p50_ms": row.p50_ms,
                "p95_ms": row.p95_ms,
                "last_error": mask_secrets(error, secrets) if error else None,
            }
        )
    return {
        "runner": runner_state,
        "running": running,
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "rates": "visits per second",
        "health_thresholds": {
            "window_seconds": HEALTH_WINDOW,
            "failing_fail_ratio": FAILING_FAIL_RATIO,
            "degraded_fail_ratio": DEGRADED_FAIL_RATIO,
            "degraded_p95_ms": DEGRADED_P95_MS,
        },
        "targets": targets,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
