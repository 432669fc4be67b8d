"""A target's figures over time, in bounded memory: what the charts of a run draw.

Each :class:`Sample` covers one window (by default 10 s) of one target: visits started and failed
(the tally), visits expected at its pace over that window, requests and failed requests, and the
window's p50/p95 (Locust's stats: :class:`~trafficinator_locust.runtime.step_window.TargetWindow`).
The collector lives in :mod:`trafficinator_locust.runtime.timeline`; this module only keeps samples.

Memory is bounded for runs of any length: a :class:`Timeline` holds at most ``max_samples`` per
target. When one is full, neighbouring samples are merged pairwise (:func:`merge`: counts add up,
windows join, the p95 is the worse of the two) and the sampling interval doubles, so the picture
keeps the whole run at half the resolution instead of forgetting its start::

    timeline = Timeline(["Production"], interval=10, max_samples=360)
    timeline.add("Production", Sample(t=10, seconds=10, visits=9, visits_failed=0, expected=10.0,
                                      requests=40, failures=1, p50_ms=80, p95_ms=300))
    timeline.interval          # 10 (20 once a target's 360 samples were merged into 180)
    timeline.as_dict()          # {"interval": 10, "targets": {"Production": [{...}]}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_INTERVAL = 10.0
"""Seconds between two samples of a run (doubles each time the timeline is compacted)."""
DEFAULT_MAX_SAMPLES = 360
"""Samples kept per target: an hour at 10 s before the first compaction."""


@dataclass(frozen=True)
class Sample:
    """One target's window ending ``t`` seconds after the run's start and lasting ``seconds``."""

    t: float
    seconds: float
    visits: int
    visits_failed: int
    expected: float | None  # visits due at the target's pace in the window (None: no pace)
    requests: int
    failures: int
    p50_ms: int
    p95_ms: int
    request_seconds: float | None = None  # the whole seconds requests were counted over (else ``seconds``)

    def per_minute(self, count: float | None) -> float | None:
        """``count`` (of visits) over this window as a rate per minute."""
        if count is None or self.seconds <= 0:
            return None
        return count * 60.0 / self.seconds

    def requests_per_minute(self, count: int) -> float | None:
        """``count`` (of requests) as a rate per minute, over the seconds requests were counted in."""
        seconds = self.seconds if self.request_seconds is None else self.request_seconds
        return count * 60.0 / seconds if seconds > 0 else None

    @property
    def visits_per_minute(self) -> float | None:
        return self.per_minute(self.visits)

    @property
    def expected_per_minute(self) -> float | None:
        return self.per_minute(self.expected)


def merge(first: Sample, second: Sample) -> Sample:
    """Two neighbouring windows as one: counts summed, the later end, the worse percentiles
    (an exact p95 of the union would need both histograms; the worse one never hides a spike)."""
    expected = (
        None
        if first.expected is None and second.expected is None
        else (first.expected or 0.0) + (second.expected or 0.0)
    )
    return Sample(
        t=second.t,
        seconds=first.seconds + second.seconds,
        visits=first.visits + second.visits,
        visits_failed=first.visits_failed + second.visits_failed,
        expected=expected,
        requests=first.requests + second.requests,
        request_seconds=None
        if first.request_seconds is None and second.request_seconds is None
        else (first.request_seconds or 0.0) + (second.request_seconds or 0.0),
        failures=first.failures + second.failures,
        p50_ms=max(first.p50_ms, second.p50_ms),
        p95_ms=max(first.p95_ms, second.p95_ms),
    )


def halve(samples: list[Sample]) -> list[Sample]:
    """Each pair of neighbours merged into one (an odd last sample stays as it is)."""
    merged = [merge(samples[i], samples[i + 1]) for i in range(0, len(samples) - 1, 2)]
    return merged + (samples[-1:] if len(samples) % 2 else [])


class Timeline:
    """Per target, the run's samples oldest first, at most ``max_samples`` each (see the module doc)."""

    def __init__(
        self, targets: Iterable[str], interval: float = DEFAULT_INTERVAL, max_samples: int = DEFAULT_MAX_SAMPLES
    ):
        if max_samples < 2 or not interval > 0:
            raise ValueError("a timeline needs max_samples >= 2 and an interval > 0")
        self.interval = float(interval)
        self.max_samples = max_samples
        self.samples: dict[str, list[Sample]] = {name: [] for name in targets}

    def add(self, target: str, sample: Sample) -> None:
        kept = self.samples.setdefault(target, [])
        kept.append(sample)
        if len(kept) > self.max_samples:
            for name, others in self.samples.items():  # every target keeps the same resolution
                self.samples[name] = halve(others)
            self.interval *= 2

    def of(self, target: str) -> list[Sample]:
        return list(self.samples.get(target, []))

    def as_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "targets": {n: [asdict(s) for s in ss] for n, ss in self.samples.items()}}


def samples_from(raw: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Samples back from :meth:`Timeline.as_dict` rows."""
    return [Sample(**dict(row)) for row in raw]
