"""The SVG line charts (core/charts.py): valid SVG, every series drawn, empty data, escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from trafficinator_locust.core.charts import (
    PALETTE,
    Series,
    duration_ticks,
    format_duration,
    format_number,
    line_chart,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _series(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-series"): g for g in root.iter(f"{SVG}g") if g.get("class") == "series"}


def test_two_series_are_drawn_as_paths_with_a_legend_and_ticks():
    sent = Series("sent", [(0, 0.0), (10, 55.0), (20, 61.0)])
    expected = Series("expected", [(0, 60.0), (20, 60.0)], dashed=True)
    root = _parse(line_chart("Visits", [sent, expected], x_label="time", y_label="visits/min", x_format="duration"))
    series = _series(root)
    assert list(series) == ["sent", "expected"]
    sent_path = series["sent"].find(f"{SVG}path")
    assert sent_path is not None and sent_path.get("d").count("L") == 2 and sent_path.get("stroke") == PALETTE[0]
    assert series["expected"].find(f"{SVG}path").get("stroke-dasharray")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Visits" in texts and "time" in texts and "visits/min" in texts and "sent" in texts and "expected" in texts
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert "0:00" in ticks and "0:20" in ticks  # the x axis in m:ss
    assert "0" in ticks and "60" in ticks  # the y axis from 0 past the highest value


def test_points_are_inside_the_plot_and_higher_values_are_higher_up():
    root = _parse(line_chart("t", [Series("s", [(0, 0.0), (5, 100.0)])], x_label="x", y_label="y", width=400))
    circles = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]
    assert len(circles) == 2
    (x0, y0), (x1, y1) = circles
    assert 0 < x0 < x1 < 400 and y1 < y0  # SVG's y grows downwards


def test_a_chart_without_points_renders_its_frame_and_says_so():
    for series in ([], [Series("nothing", [])], [Series("gaps", [(0, None), (1, float("nan"))])]):
        root = _parse(line_chart("Empty", series, x_label="x", y_label="y"))
        assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "empty"] == ["no data yet"]
        assert all(g.find(f"{SVG}path") is None for g in _series(root).values())


def test_a_gap_starts_a_new_segment():
    root = _parse(
        line_chart("t", [Series("s", [(0, 1.0), (1, 2.0), (2, None), (3, 1.0), (4, 2.0)])], x_label="x", y_label="y")
    )
    d = _series(root)["s"].find(f"{SVG}path").get("d")
    assert d.count("M") == 2 and d.count("L") == 2


def test_every_text_is_escaped():
    hostile = 'Beta <script>alert(1)</script> & "q"'
    svg = line_chart(hostile, [Series(hostile, [(0, 1.0)])], x_label=hostile, y_label=hostile)
    assert "<script" not in svg
    root = _parse(svg)
    assert [el.tag for el in root.iter() if el.tag.endswith("script")] == []
    assert root.find(f"{SVG}title").text == hostile
    assert root.get("aria-label") == hostile
    assert list(_series(root)) == [hostile]
    assert sum(1 for t in root.iter(f"{SVG}text") if t.text == hostile) == 4  # title, two labels, legend


@pytest.mark.parametrize(("low", "high"), [(0, 1), (0, 7), (0, 61.3), (0, 1234), (3.2, 3.3), (0, 0), (5, 5)])
def test_nice_ticks_cover_the_range_in_round_steps(low: float, high: float):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) >= 2
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1


def test_duration_ticks_fall_on_clock_steps():
    assert duration_ticks(0, 30) == [0, 10, 20, 30]
    assert duration_ticks(0, 3600)[1] == 900
    assert [format_duration(s) for s in (0, 8, 75, 3725)] == ["0:00", "0:08", "1:15", "1:02:05"]
    assert [format_number(v) for v in (0, 2.5, 1200, 25_000, 0.004)] == ["0", "2.5", "1200", "25k", "0.004"]
