"""One target's requests over a window of time (a ramp step), from Locust's own stats.

Locust keeps, per request name, counts per wall-clock second (``num_reqs_per_sec``,
``num_fail_per_sec``, keyed by the second a request ended) and a histogram of rounded response times
since the run began. A capacity ramp needs the same for each step alone:

* counts come from the whole seconds inside the window, so a rate is exact whatever the tick's
  jitter; on a master those seconds are the workers' own, merged from their reports, which arrive
  up to ``WORKER_REPORT_INTERVAL`` (3 s) late: with ``lag`` the window counts the seconds that
  ended ``lag`` seconds before its own start and end, which every worker has reported by then;
* percentiles come from the difference of the cumulative histograms at the window's ends (a
  histogram has no time: on a master it is a few seconds late, which the ramp's warm-up covers).

Example::

    window = TargetWindow(environment.stats, "Production", lag=4.0)   # marks now
    ...                                                                # the step runs
    figures = window.measure()     # requests, failures (whole seconds), p50/p95 of the step
    window.mark()                  # the next step starts here
"""

from __future__ import annotations

from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, Runner
from locust.stats import RequestStats, StatsEntry, calculate_response_time_percentile

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from trafficinator_locust.runtime.summary import target_entries


def report_lag(runner: Runner | None) -> float:
    """Seconds a master's request counts are late (its workers report every
    ``WORKER_REPORT_INTERVAL`` seconds, plus one for delivery); 0 elsewhere."""
    return WORKER_REPORT_INTERVAL + 1.0 if isinstance(runner, MasterRunner) else 0.0


@dataclass(frozen=True)
class WindowFigures:
    """A target's requests in one window: how many, how many failed, response-time percentiles."""

    seconds: float
    requests: int
    failures: int
    p50_ms: int
    p95_ms: int

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def answered(self) -> int:
        """Requests answered without failure (single transport: the hits Matomo took)."""
        return self.requests - self.failures


class TargetWindow:
    """Marks a target's request figures and measures what happened since (see the module docstring)."""

    def __init__(self, stats: RequestStats, target: str, wall: Callable[[], float] = time.time, lag: float = 0.0):
        self._stats = stats
        self._target = target
        self._wall = wall  # Locust keys its per-second counts by time.time()
        self.lag = lag
        self.last_seconds = range(0)  # the whole seconds the last measure() counted
        self.mark()

    def _merged(self) -> StatsEntry:
        merged = StatsEntry(self._stats, self._target, "", use_response_times_cache=False)
        for entry in target_entries(self._stats, self._target):
            merged.extend(entry)
        return merged

    def mark(self) -> None:
        """Start a new window now."""
        self._started = self._wall()
        self._times = Counter(self._merged().response_times)

    def measure(self) -> WindowFigures:
        """The figures since the last mark: counts of the whole seconds inside it (``lag`` earlier),
        percentiles of the requests logged since the mark."""
        merged = self._merged()
        first, last = math.ceil(self._started - self.lag), math.floor(self._wall() - self.lag)
        seconds = self.last_seconds = range(first, last)
        requests = sum(merged.num_reqs_per_sec.get(second, 0) for second in seconds)
        failures = sum(merged.num_fail_per_sec.get(second, 0) for second in seconds)
        window = Counter(merged.response_times) - self._times  # keeps positive counts: this window's histogram
        count = sum(window.values())
        p50 = calculate_response_time_percentile(dict(window), count, 0.5) if count else 0
        p95 = calculate_response_time_percentile(dict(window), count, 0.95) if count else 0
        return WindowFigures(float(max(last - first, 0)), requests, min(failures, requests), int(p50), int(p95))
