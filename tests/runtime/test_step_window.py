"""A ramp step's figures are the target's requests in that step only, from Locust's stats: counts of
the whole seconds inside the window (``lag`` earlier on a master), percentiles since the mark."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.stats import RequestStats

from trafficinator_locust.runtime.step_window import TargetWindow


class Wall:
    def __init__(self) -> None:
        self.now = 1000.5

    def __call__(self) -> float:
        return self.now


def _log(stats: RequestStats, name: str, times: list[int], second: int, failed: int = 0) -> None:
    """Log requests as if they ended in wall-clock ``second`` (Locust keys counts by time.time())."""
    for ms in times:
        stats.log_request("POST", name, ms, 0)
    for _ in range(failed):
        stats.log_request("POST", name, 5, 0)
        stats.log_error("POST", name, "HTTP 503")
    entry = stats.get(name, "POST")
    for counts in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
        for real in [key for key in counts if key > 1_000_000]:  # today's seconds: move them to ``second``
            counts[second] = counts.get(second, 0) + counts.pop(real)


def test_a_window_counts_only_its_own_whole_seconds_and_its_own_percentiles():
    stats, wall = RequestStats(), Wall()
    _log(stats, "[A] pageview", [1000] * 50, second=999)  # before the window: slow, and not this step's
    _log(stats, "[B] pageview", [5] * 10, second=1001)  # another target
    window = TargetWindow(stats, "A", wall)  # marked at 1000.5: whole seconds from 1001
    _log(stats, "[A] pageview", [10] * 90, second=1001)
    _log(stats, "[A] event", [200] * 5, second=1020, failed=5)
    wall.now = 1030.4
    figures = window.measure()
    assert (figures.seconds, figures.requests, figures.failures) == (29, 100, 5)
    assert figures.p50_ms == 10 and figures.p95_ms == 200 and figures.fail_ratio == 0.05
    window.mark()
    wall.now = 1031.0
    assert window.measure().requests == 0 and window.measure().p95_ms == 0


def test_with_a_lag_the_window_counts_the_seconds_the_workers_have_reported():
    """On a master the seconds ``lag`` before the window are counted: the step's own rate, complete."""
    stats, wall = RequestStats(), Wall()
    window = TargetWindow(stats, "A", wall, lag=4.0)  # marked at 1000.5: counts seconds 997..
    _log(stats, "[A] pageview", [10] * 30, second=996)  # before: the previous step
    _log(stats, "[A] pageview", [10] * 40, second=997)
    _log(stats, "[A] pageview", [10] * 60, second=1001)
    _log(stats, "[A] pageview", [10] * 80, second=1003)  # after the lagged end: the next step's
    wall.now = 1006.9
    figures = window.measure()
    assert (figures.seconds, figures.requests) == (5, 100)
