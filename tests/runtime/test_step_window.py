"""A ramp step's figures are the target's requests in that step only, from Locust's cumulative stats."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.stats import RequestStats

from trafficinator_locust.runtime.step_window import TargetWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log(stats: RequestStats, name: str, times: list[int], failed: int = 0) -> None:
    for ms in times:
        stats.log_request("POST", name, ms, 0)
    for _ in range(failed):
        stats.log_request("POST", name, 5, 0)
        stats.log_error("POST", name, "HTTP 503")


def test_a_window_counts_only_its_own_requests_and_percentiles():
    stats, clock = RequestStats(), Clock()
    _log(stats, "[A] pageview", [1000] * 50)  # before the window: slow, and not this step's
    _log(stats, "[B] pageview", [5] * 10)  # another target
    window = TargetWindow(stats, "A", clock)
    clock.now += 30
    _log(stats, "[A] pageview", [10] * 90)
    _log(stats, "[A] event", [200] * 5, failed=5)
    figures = window.measure()
    assert (figures.seconds, figures.requests, figures.failures) == (30, 100, 5)
    assert figures.p50_ms == 10 and figures.p95_ms == 200 and figures.fail_ratio == 0.05
    window.mark()
    assert window.measure().requests == 0 and window.measure().p95_ms == 0
