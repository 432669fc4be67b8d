"""``GET /api/charts``: every target's SVG charts and its progress toward today's cap; a guarded read."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)

import xml.etree.ElementTree as ET

from test_webui import Harness

from trafficinator_locust.core.timeline import Sample
from trafficinator_locust.runtime.timeline import TimelineCollector


def test_before_any_run_every_target_has_empty_charts_and_its_cap(ui: Harness):
    status, body = ui.call("GET", "/api/charts")
    assert status == 200
    assert [t["name"] for t in body["targets"]] == ["Alpha", "Beta Shop", "Gamma"]
    alpha = body["targets"][0]
    assert alpha["cap_today"] == 1000 and alpha["samples"] == 0 and alpha["state"] == "idle"
    assert [c["key"] for c in alpha["charts"]] == ["visits", "failures", "latency"]
    for chart in alpha["charts"]:
        assert ET.fromstring(chart["svg"]).tag == "{http://www.w3.org/2000/svg}svg" and "no data yet" in chart["svg"]
    assert body["targets"][1]["cap_today"] is None  # no visits_per_day: no cap


def test_the_run_samples_are_drawn(ui: Harness):
    coordinator = ui.plugin.coordinator
    coordinator.on_test_start()
    timeline = coordinator.timeline
    assert isinstance(timeline, TimelineCollector)
    for t in (10.0, 20.0):
        timeline.timeline.add(
            "Alpha", Sample(t, 10, visits=5, visits_failed=0, expected=0.1, requests=9, failures=0, p50_ms=3, p95_ms=9)
        )
    status, body = ui.call("GET", "/api/charts")
    alpha = next(t for t in body["targets"] if t["name"] == "Alpha")
    assert status == 200 and alpha["samples"] >= 2
    visits = ET.fromstring(next(c["svg"] for c in alpha["charts"] if c["key"] == "visits"))
    drawn = [p.get("d") for p in visits.iter("{http://www.w3.org/2000/svg}path") if "L" in (p.get("d") or "")]
    assert len(drawn) == 2  # visits and expected, each a line


def test_charts_are_refused_to_a_foreign_host_or_origin(ui: Harness):
    assert ui.client.get("/api/charts", headers={"Host": "evil.example:8089"}).status_code == 403
    assert ui.client.get("/api/charts", headers={"Origin": "http://evil.example"}).status_code == 403
