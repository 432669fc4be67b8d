"""The charts of one target, as SVG: the same pictures in the HTML report and on the live Targets page.

Every run (from its :class:`~.timeline.Sample` list):

* ``visits``: visits started per minute against the visits per minute its pace expects;
* ``failures``: failed requests and failed visits per minute;
* ``latency``: p50 and p95 of each window, in ms.

A ramp run (``--traffic-pacing ramp``; the ``capacity`` object of :meth:`~.ramp.Ramp.as_dict`) adds:

* ``delivered``: delivered against offered hits/s, one point per step, with the ideal ``y = x``
  and the knee;
* ``ramp_p95``: each step's p95 against its offered rate, with the ramp's p95 limit.

::

    for chart in target_charts(timeline.of("Production"), capacity):
        print(chart.key, chart.title, len(chart.svg))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from trafficinator_locust.core.charts import Series, line_chart
from trafficinator_locust.core.errors import UsageError
from trafficinator_locust.core.ramp import parse_ramp
from trafficinator_locust.core.timeline import Sample

TIME_AXIS = "time since the start (m:ss)"


class Chart(NamedTuple):
    key: str
    title: str
    svg: str


def run_charts(samples: Sequence[Sample]) -> list[Chart]:
    """The three charts every run has, over time (a point at the end of each window)."""

    def over_time(values: list[float | None]) -> list[tuple[float, float | None]]:
        return [(s.t, v) for s, v in zip(samples, values)]

    visits = Series("visits started/min", over_time([s.visits_per_minute for s in samples]))
    expected = Series("expected at the pace/min", over_time([s.expected_per_minute for s in samples]), dashed=True)
    failed = Series("failed requests/min", over_time([s.requests_per_minute(s.failures) for s in samples]))
    failed_visits = Series("failed visits/min", over_time([s.per_minute(s.visits_failed) for s in samples]))
    answered = [s for s in samples if s.requests]
    p95 = Series("p95", [(s.t, float(s.p95_ms)) for s in answered])
    p50 = Series("p50", [(s.t, float(s.p50_ms)) for s in answered], dashed=True)
    return [
        Chart(
            "visits",
            "Visits per minute vs expected pace",
            line_chart(
                "Visits per minute vs expected pace",
                [visits, expected],
                x_label=TIME_AXIS,
                y_label="visits/min",
                x_format="duration",
                x_from=0.0,
            ),
        ),
        Chart(
            "failures",
            "Failures per minute",
            line_chart(
                "Failures per minute",
                [failed, failed_visits],
                x_label=TIME_AXIS,
                y_label="failures/min",
                x_format="duration",
                x_from=0.0,
            ),
        ),
        Chart(
            "latency",
            "Response time (each window)",
            line_chart(
                "Response time (each window)",
                [p95, p50],
                x_label=TIME_AXIS,
                y_label="ms",
                x_format="duration",
                x_from=0.0,
            ),
        ),
    ]


def _offered(step: Mapping[str, Any]) -> float | None:
    value = step.get("offered_hits_per_second", step.get("rate_hits_per_second"))
    return float(value) if isinstance(value, (int, float)) else None


def _p95_limit(capacity: Mapping[str, Any]) -> float | None:
    try:
        return parse_ramp(str(capacity.get("spec") or "")).p95
    except UsageError:
        return None


def ramp_charts(capacity: Mapping[str, Any] | None) -> list[Chart]:
    """Delivered vs offered rate and p95 vs offered rate, from the ramp's steps (none without a ramp)."""
    if not capacity:
        return []
    steps = sorted(
        (step for step in capacity.get("steps") or [] if _offered(step) is not None),
        key=lambda step: _offered(step) or 0.0,
    )
    offered = [_offered(step) or 0.0 for step in steps]
    delivered = Series(
        "delivered hits/s", [(o, _number(s.get("delivered_hits_per_second"))) for o, s in zip(offered, steps)]
    )
    top = max(offered, default=0.0)
    ideal = Series("offered (all kept)", [(0.0, 0.0), (top, top)] if top else [], dashed=True)
    knee = capacity.get("knee_hits_per_second")
    rate_series = [delivered, ideal]
    p95 = Series("p95 ms", [(o, _number(s.get("p95_ms"))) for o, s in zip(offered, steps)])
    p95_series = [p95]
    limit = _p95_limit(capacity)
    if limit is not None and top:
        p95_series.append(Series(f"p95 limit {limit:g} ms", [(0.0, limit), (top, limit)], dashed=True))
    if isinstance(knee, (int, float)) and top:
        rate_series.append(Series(f"knee {knee:.1f} hits/s", [(knee, 0.0), (knee, top)], dashed=True))
    limited = capacity.get("limited_by") or "none"
    title = (
        f"Delivered vs offered (knee {knee:.1f} hits/s, limited by {limited})"
        if isinstance(knee, (int, float))
        else f"Delivered vs offered (no knee, limited by {limited})"
    )
    return [
        Chart(
            "delivered",
            title,
            line_chart(
                title, rate_series, x_label="offered hits/s (each step)", y_label="delivered hits/s", x_from=0.0
            ),
        ),
        Chart(
            "ramp_p95",
            "p95 vs offered rate",
            line_chart(
                "p95 vs offered rate", p95_series, x_label="offered hits/s (each step)", y_label="p95 ms", x_from=0.0
            ),
        ),
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def target_charts(samples: Sequence[Sample], capacity: Mapping[str, Any] | None = None) -> list[Chart]:
    """Every chart of one target: the run's three, then the ramp's two when it ramped."""
    return run_charts(samples) + ramp_charts(capacity)
