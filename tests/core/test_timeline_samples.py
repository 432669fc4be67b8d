"""A run's samples in bounded memory (core/timeline.py): merged pairwise when full, the interval doubles."""

from __future__ import annotations

from trafficinator_locust.core.timeline import Sample, Timeline, halve, merge, samples_from


def _sample(t: float, visits: int = 6, p95: int = 100, expected: float | None = 5.0) -> Sample:
    return Sample(
        t=t,
        seconds=10,
        visits=visits,
        visits_failed=1,
        expected=expected,
        requests=20,
        failures=2,
        p50_ms=50,
        p95_ms=p95,
    )


def test_a_sample_gives_rates_per_minute():
    sample = _sample(10, visits=6, expected=5.0)
    assert sample.visits_per_minute == 36 and sample.expected_per_minute == 30
    assert _sample(10, expected=None).expected_per_minute is None


def test_merging_adds_counts_joins_windows_and_keeps_the_worse_p95():
    merged = merge(_sample(10, visits=6, p95=100), _sample(20, visits=4, p95=300))
    assert (merged.t, merged.seconds, merged.visits, merged.visits_failed) == (20, 20, 10, 2)
    assert (merged.requests, merged.failures, merged.p95_ms, merged.expected) == (40, 4, 300, 10.0)
    assert merged.visits_per_minute == 30  # the mean rate of both windows
    assert merge(_sample(10, expected=None), _sample(20, expected=None)).expected is None


def test_halving_keeps_an_odd_last_sample():
    samples = [_sample(10 * i) for i in range(1, 6)]
    assert [s.t for s in halve(samples)] == [20, 40, 50]


def test_a_full_timeline_halves_every_target_and_doubles_its_interval():
    timeline = Timeline(["A", "B"], interval=10, max_samples=4)
    for i in range(1, 5):
        timeline.add("A", _sample(10 * i))
        timeline.add("B", _sample(10 * i))
    assert timeline.interval == 10 and len(timeline.of("A")) == 4
    timeline.add("A", _sample(50))
    assert timeline.interval == 20
    assert [s.t for s in timeline.of("A")] == [20, 40, 50] and [s.t for s in timeline.of("B")] == [20, 40]
    assert sum(s.visits for s in timeline.of("A")) == 5 * 6  # nothing counted is lost
    for i in range(100):
        timeline.add("A", _sample(60 + i))
    assert len(timeline.of("A")) <= 4


def test_the_dict_reads_back():
    timeline = Timeline(["A"])
    timeline.add("A", _sample(10))
    assert samples_from(timeline.as_dict()["targets"]["A"]) == timeline.of("A")
