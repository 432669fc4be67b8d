"""The self-contained HTML report (core/html_report.py) and the charts of a target (core/target_charts.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from trafficinator_locust.core.html_report import TargetPage, render_report
from trafficinator_locust.core.target_charts import target_charts
from trafficinator_locust.core.timeline import Sample

TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
CAPACITY = {
    "knee_hits_per_second": 60.0,
    "knee_visits_per_second": 20.0,
    "knee_is_lower_bound": False,
    "limited_by": "p95",
    "spec": "start=10,factor=1.5,step=30s,p95=800,fail=0.01,after=hold",
    "steps": [
        {
            "rate_hits_per_second": r,
            "offered_hits_per_second": r,
            "delivered_hits_per_second": min(r, 60.0),
            "p50_ms": 20.0,
            "p95_ms": 100.0 if r <= 60 else 1500.0,
            "fail_ratio": 0.0,
        }
        for r in (10.0, 15.0, 22.5, 33.75, 50.6, 75.9, 61.9, 55.1)
    ],
}


def _samples(n: int = 6) -> list[Sample]:
    return [
        Sample(
            t=10.0 * i,
            seconds=10,
            visits=5 + i % 3,
            visits_failed=i % 2,
            expected=6.0,
            requests=30,
            failures=i % 3,
            p50_ms=40,
            p95_ms=100 + i,
        )
        for i in range(1, n + 1)
    ]


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", html, flags=re.S)]


def test_one_section_per_target_with_its_figures_and_charts():
    pages = [
        TargetPage("Production", {"visits_started": 42, "state": "running", "fail_ratio": 0.0125}, _samples()),
        TargetPage("Staging <b>&", {"visits_started": 7}, []),
    ]
    html = render_report(pages, run={"pacing": "paced", "seconds": 60.0})
    sections = re.findall(r'<section class="target" data-target="([^"]*)">', html)
    assert sections == ["Production", "Staging &lt;b&gt;&amp;"]
    assert "<b>&" not in html and "<h2>Staging &lt;b&gt;&amp;</h2>" in html
    assert "<td>42</td>" in html and "<td>1.25</td>" in html  # fail % from the ratio
    svgs = _svgs(html)
    assert len(svgs) == 6  # three charts per target (no ramp)
    drawn = [p for svg in svgs[:3] for p in svg.iter("{http://www.w3.org/2000/svg}path") if "L" in p.get("d", "")]
    assert len(drawn) >= 6  # each chart of Production has two lines


def test_the_page_fetches_nothing_and_never_holds_a_token():
    html = render_report(
        [TargetPage(f"T {TOKEN}", {"state": f"token_auth={TOKEN}"}, _samples(), CAPACITY)], secrets=[TOKEN]
    )
    assert TOKEN not in html
    for pattern in (
        r"<script",
        r"<link",
        r"<img",
        r"\ssrc=",
        r"\shref=",
        r"url\(",
        r"@import",
        r"https?://(?!www\.w3\.org/2000/svg)",
    ):
        assert not re.search(pattern, html), pattern


def test_a_ramp_adds_delivered_and_p95_against_the_offered_rate():
    charts = {chart.key: chart for chart in target_charts(_samples(), CAPACITY)}
    assert list(charts) == ["visits", "failures", "latency", "delivered", "ramp_p95"]
    assert "knee 60.0 hits/s, limited by p95" in charts["delivered"].title
    delivered = ET.fromstring(charts["delivered"].svg)
    names = [
        g.get("data-series") for g in delivered.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "series"
    ]
    assert names == ["delivered hits/s", "offered (all kept)", "knee 60.0 hits/s"]
    p95 = ET.fromstring(charts["ramp_p95"].svg)
    assert any(g.get("data-series") == "p95 limit 800 ms" for g in p95.iter("{http://www.w3.org/2000/svg}g"))
    html = render_report([TargetPage("R", {}, _samples(), CAPACITY)])
    assert 'data-chart="delivered"' in html and "<td>60.00</td>" in html and "<td>p95</td>" in html


def test_a_run_without_samples_still_renders_its_charts():
    charts = target_charts([], None)
    assert [chart.key for chart in charts] == ["visits", "failures", "latency"]
    assert all("no data yet" in chart.svg for chart in charts)
    assert [c.key for c in target_charts([], {"steps": [], "limited_by": None})] == [
        "visits",
        "failures",
        "latency",
        "delivered",
        "ramp_p95",
    ]
