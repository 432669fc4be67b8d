"""The run's sampler (runtime/timeline.py): per target and window, visits from the tally, the pace's
expected visits, and requests, failures and p95 from Locust's stats."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.stats import RequestStats

import time

import pytest

from trafficinator_locust.core.budget import Pace
from trafficinator_locust.runtime.tally import VisitTally
from trafficinator_locust.runtime.timeline import TimelineCollector

DAY = 86_400


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _collector(stats: RequestStats, tally: VisitTally, clock: Clock, wall: Clock, **kwargs) -> TimelineCollector:
    paces = {"A": Pace(DAY * 6), "B": Pace(None)}  # A: 6 visits a second, B: no pace
    return TimelineCollector(["A", "B"], stats, tally, paces.get, clock=clock, wall=wall, **kwargs)


def test_each_window_holds_its_own_visits_requests_and_p95(monkeypatch: pytest.MonkeyPatch):
    stats, tally, clock, wall = RequestStats(), VisitTally(), Clock(100.0), Clock(1_800_000_000.0)
    monkeypatch.setattr(time, "time", wall)  # Locust files each request under its second of time.time()
    wall.now -= 1
    tally.visit_started("A", ok=True)  # before the run started: not the timeline's
    stats.log_request("POST", "[A] pageview", 5000, 0)
    wall.now += 1
    collector = _collector(stats, tally, clock, wall)
    clock.now += 5
    wall.now += 5
    assert not collector.tick()  # the 10 s window is not due
    clock.now += 2
    wall.now += 2
    for _ in range(3):
        tally.visit_started("A", ok=True)
    tally.visit_started("A", ok=False)
    for ms in [10] * 39 + [400]:
        stats.log_request("POST", "[A] pageview", ms, 0)
    stats.log_error("POST", "[A] pageview", "HTTP 503")
    clock.now += 3
    wall.now += 3
    assert collector.tick()
    (sample,) = collector.samples("A")
    assert (sample.t, sample.seconds, sample.visits, sample.visits_failed) == (10, 10, 3, 1)
    assert (sample.requests, sample.failures, sample.p95_ms) == (40, 1, 10)  # the one slow answer is past p95
    assert sample.expected == 60.0 and sample.visits_per_minute == 18
    (other,) = collector.samples("B")
    assert (other.visits, other.requests, other.expected) == (0, 0, None)
    # the next window starts empty; the live view adds the window in progress, the end keeps it
    clock.now += 2
    wall.now += 2
    stats.log_request("POST", "[A] event", 800, 0)
    clock.now += 2
    wall.now += 2
    live = collector.current("A")
    assert len(live) == 2 and live[-1].requests == 1 and live[-1].p95_ms == 800 and live[-1].seconds == 4
    assert len(collector.samples("A")) == 1
    collector.finish()
    assert [s.t for s in collector.samples("A")] == [10, 14]
    collector.finish()  # nothing since: no empty window
    assert len(collector.samples("A")) == 2


def test_memory_stays_bounded_over_a_long_run():
    stats, tally, clock, wall = RequestStats(), VisitTally(), Clock(0.0), Clock(1_800_000_000.0)
    collector = _collector(stats, tally, clock, wall, max_samples=8)
    for _ in range(2000):
        clock.now += 1
        wall.now += 1
        tally.visit_started("A", ok=True)
        collector.tick()
    kept = collector.samples("A")
    assert len(kept) <= 8 and collector.timeline.interval > 10
    assert sum(s.visits for s in kept) == 2000 - (clock.now - kept[-1].t)  # every visit up to the last sample
