"""One target's requests over a window of time (a ramp step), from Locust's own cumulative stats.

Locust keeps, per request name, counts and a histogram of rounded response times since the run
began. A capacity ramp needs the same for each step alone: so a window marks the cumulative figures
of the target's ``[<target>] <kind>`` entries at its start and subtracts them at its end. On a master
these are the figures merged from the workers' reports (a few seconds late at most).

Example::

    window = TargetWindow(environment.stats, "Production")   # marks now
    ...                                                       # the step runs
    figures = window.measure()                                 # requests, failures, p50/p95 of the step
    window.mark()                                              # the next step starts here
"""

from __future__ import annotations

from locust.stats import RequestStats, StatsEntry, calculate_response_time_percentile

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from trafficinator_locust.runtime.summary import target_entries


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
    """Marks a target's cumulative request figures and measures what happened since."""

    def __init__(self, stats: RequestStats, target: str, clock: Callable[[], float] = time.monotonic):
        self._stats = stats
        self._target = target
        self._clock = clock
        self.mark()

    def _totals(self) -> tuple[int, int, Counter[int]]:
        merged = StatsEntry(self._stats, self._target, "", use_response_times_cache=False)
        for entry in target_entries(self._stats, self._target):
            merged.extend(entry)
        return merged.num_requests - merged.num_none_requests, merged.num_failures, Counter(merged.response_times)

    def mark(self) -> None:
        """Start a new window now."""
        self._started = self._clock()
        self._requests, self._failures, self._times = self._totals()

    def measure(self) -> WindowFigures:
        """The figures since the last mark (percentiles over this window's requests only)."""
        requests, failures, times = self._totals()
        window = times - self._times  # Counter subtraction keeps positive counts: this window's histogram
        count = requests - self._requests
        p50 = calculate_response_time_percentile(dict(window), count, 0.5) if count > 0 and window else 0
        p95 = calculate_response_time_percentile(dict(window), count, 0.95) if count > 0 and window else 0
        return WindowFigures(self._clock() - self._started, count, failures - self._failures, int(p50), int(p95))
