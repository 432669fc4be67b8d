"""Samples each target's figures every few seconds of a run, for the charts (HTML report, Targets page).

Read on the coordinating process (local runner or master) from what it already has, so it works the
same locally, with ``--processes`` and with workers (whose figures reach the master in Locust's worker
reports, a few seconds late at most):

* visits started and failed: the :class:`~.tally.VisitTally`'s per-target counters (a delta per window);
* visits expected: the target's pace in the permit broker's ledger (its budget, retargeted live by
  the web UI or a ramp), integrated over the window like the run summary's ``expected``;
* requests, failures, p50 and p95 of the window: :class:`~.step_window.TargetWindow` over Locust's stats
  (requests counted over the whole seconds of the window; on a master :func:`~.step_window.report_lag` seconds
  earlier, when every worker has reported them).

The samples are kept by a :class:`~trafficinator_locust.core.timeline.Timeline` (bounded memory)::

    collector = TimelineCollector(["Production"], environment.stats, tally, broker_pace, lag=report_lag(runner))
    collector.tick()       # every second (the coordinator's upkeep): samples once a window is due
    collector.finish()     # the run ended: the last, partial window
    collector.current()    # the kept samples plus the window in progress (the live page)
"""

from __future__ import annotations

from locust.stats import RequestStats

import time
from collections.abc import Callable, Iterable

from trafficinator_locust.core.budget import Pace
from trafficinator_locust.core.timeline import DEFAULT_INTERVAL, DEFAULT_MAX_SAMPLES, Sample, Timeline
from trafficinator_locust.runtime.step_window import TargetWindow
from trafficinator_locust.runtime.tally import VisitTally

MIN_FINAL_SECONDS = 2.0
"""A last window shorter than this is not sampled (its rates would be noise)."""


class TimelineCollector:
    """One run's per-target samples (see the module docstring); a new collector each test start."""

    def __init__(
        self,
        targets: Iterable[str],
        stats: RequestStats,
        tally: VisitTally,
        pace_of: Callable[[str], Pace | None],
        *,
        interval: float = DEFAULT_INTERVAL,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        lag: float = 0.0,
    ):
        self.names = list(targets)
        self.timeline = Timeline(self.names, interval, max_samples)
        self._stats, self._tally, self._pace_of = stats, tally, pace_of
        self._clock, self._wall = clock, wall
        self.started = clock()
        self._window_start = self.started
        self._wall_start = wall()
        self._windows = {name: TargetWindow(stats, name, wall=wall, lag=lag) for name in self.names}
        self._counts = {name: (tally.started[name], tally.failed[name]) for name in self.names}

    def _sample(self, name: str, now: float, wall_now: float) -> Sample:
        figures = self._windows[name].measure()
        started, failed = self._counts[name]
        pace = self._pace_of(name)
        expected = (
            pace.expected_visits(self._wall_start, wall_now)
            if pace is not None and pace.visits_per_day is not None
            else None
        )
        return Sample(
            t=round(now - self.started, 3),
            seconds=round(now - self._window_start, 3),
            visits=self._tally.started[name] - started,
            visits_failed=self._tally.failed[name] - failed,
            expected=None if expected is None else round(expected, 3),
            requests=figures.requests,
            request_seconds=figures.seconds,
            failures=figures.failures,
            p50_ms=figures.p50_ms,
            p95_ms=figures.p95_ms,
        )

    def _take(self, now: float) -> None:
        wall_now = self._wall()
        for name in self.names:
            self.timeline.add(name, self._sample(name, now, wall_now))
            self._windows[name].mark()
            self._counts[name] = (self._tally.started[name], self._tally.failed[name])
        self._window_start, self._wall_start = now, wall_now

    def tick(self) -> bool:
        """Sample every target when the window is due; whether it did."""
        now = self._clock()
        if now - self._window_start < self.timeline.interval:
            return False
        self._take(now)
        return True

    def finish(self) -> None:
        """The run ended: sample the window in progress (unless it just began)."""
        now = self._clock()
        if now - self._window_start >= MIN_FINAL_SECONDS:
            self._take(now)

    def current(self, name: str) -> list[Sample]:
        """``name``'s kept samples and, for a live view, the window in progress (not kept)."""
        kept = self.timeline.of(name)
        now = self._clock()
        if name in self._windows and now - self._window_start >= MIN_FINAL_SECONDS:
            kept.append(self._sample(name, now, self._wall()))
        return kept

    def samples(self, name: str) -> list[Sample]:
        return self.timeline.of(name)
