"""The pictures of a run in Chromium (Debian's ``chromium``, driven by Playwright), end to end.

* ``--traffic-html``: a short paced run, and a short ramp run against a receiver with a capacity (20 hits/s),
  write a page that opens from ``file://`` without a single other request, with one chart section
  per target whose SVG charts have drawn lines (the ramp's delivered-vs-offered chart too), and no token;
* the control page of a running web UI draws each target's live charts, which change as the run goes.

Chromium missing is a failure, not a skip (see test_browser.py).
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import subprocess
from pathlib import Path

import pytest
from harness import locust_command, receiver_for
from test_browser import chromium_page
from test_web_process import LocustProcess

TOKEN = "charts-secret-token-9z8yXw"
CONFIG = """
seed: 5
defaults:
  traffic:
    pageviews: {{min: 1, max: 3}}
    dwell_seconds: {{min: 0.05, max: 0.3}}
    pause_between_visits: {{min: 0, max: 0.05}}
targets:
  - {{name: Alpha, url: "http://127.0.0.1:{port}/a/matomo.php", site_id: 1, visits_per_day: 200000,
      token_auth: "${{CHARTS_TOKEN}}"}}
  - {{name: Beta, url: "http://127.0.0.1:{port}/b/matomo.php", site_id: 2, visits_per_day: 100000}}
"""
NAMES = ["Alpha", "Beta"]
RUNS = {
    "paced": ("-t", "15s"),  # a 10 s window and the final one: two points a line
    "ramp": ("-t", "30s", "--traffic-pacing", "ramp", "--traffic-ramp", "start=10,factor=1.5,step=3s"),
}
WAIT_MS = 30_000
# a series' line with at least two points: "M x y L x y ..."
DRAWN_LINE = "g.series path[d*='L']"


@pytest.mark.parametrize("run", list(RUNS))
def test_the_html_report_opens_offline_with_a_chart_section_per_target(
    tmp_path: Path, run: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CHARTS_TOKEN", TOKEN)
    with receiver_for(tmp_path, CONFIG, "--capacity", "/a=20") as (_, config_path, env, _):
        html = tmp_path / "run.html"
        options = ("--traffic-config", str(config_path), "--headless", "--only-summary", "--traffic-state", "")
        command = locust_command(*options, *RUNS[run], "--traffic-html", str(html))
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = html.read_text(encoding="utf-8")
    assert TOKEN not in text and TOKEN not in done.stdout + done.stderr
    with chromium_page(tmp_path / f"report-{run}.png", viewport={"width": 1300, "height": 900}) as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(html.as_uri())
        page.wait_for_load_state("networkidle")
        assert requested == [html.as_uri()], requested  # nothing else: no CDN, no font, no image
        sections = page.locator("section.target")
        assert [sections.nth(i).get_attribute("data-target") for i in range(sections.count())] == NAMES
        for name in NAMES:
            section = page.locator(f'section.target[data-target="{name}"]')
            for chart in ("visits", "failures", "latency"):
                assert section.locator(f'figure[data-chart="{chart}"] svg').count() == 1, (name, chart)
            assert section.locator(f'figure[data-chart="visits"] {DRAWN_LINE}').count() >= 1, name
            assert section.locator(f'figure[data-chart="latency"] {DRAWN_LINE}').count() >= 1, name
            if run == "ramp":
                delivered = section.locator('figure[data-chart="delivered"]')
                assert delivered.locator('g.series[data-series="delivered hits/s"] path[d*="L"]').count() == 1
                assert section.locator(f'figure[data-chart="ramp_p95"] {DRAWN_LINE}').count() >= 1
                assert "knee" in section.inner_text()
            else:
                assert section.locator('figure[data-chart="delivered"]').count() == 0


def test_the_control_page_draws_live_charts_per_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHARTS_TOKEN", TOKEN)
    with receiver_for(tmp_path, CONFIG) as (_, config_path, env, _):
        for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
            env.pop(name, None)
        run = LocustProcess(config_path, tmp_path, env)
        try:
            started = run.session.post(run.url + "/swarm", data={"user_count": 4, "spawn_rate": 4}, timeout=10)
            assert started.status_code == 200, started.text
            with chromium_page(viewport={"width": 1300, "height": 900}) as page:
                _watch(page, run.url, tmp_path)
        finally:
            output = run.stop()
    assert TOKEN not in output


def _watch(page, url: str, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/trafficinator/")
    cards = page.locator("#charts .target-card")
    expect(cards).to_have_count(len(NAMES))
    for name in NAMES:
        card = page.locator(f'#charts .target-card[data-target="{name}"]')
        expect(card.locator("h3")).to_have_text(name)
        expect(card.locator('figure[data-chart="visits"] g.series path').first).to_be_attached()
        expect(card.locator(".cap-text")).to_contain_text("today's cap")
    visits = page.locator('#charts .target-card[data-target="Alpha"] figure[data-chart="visits"] g.series path').first
    before = visits.get_attribute("d")
    # the window in progress grows with every poll, and a first 10 s window is kept: the line changes
    page.wait_for_function(
        """(before) => { const path = document.querySelector(
             '#charts .target-card[data-target="Alpha"] figure[data-chart="visits"] g.series path');
           return path && path.getAttribute('d') !== before && path.getAttribute('d').includes('L'); }""",
        arg=before,
        timeout=40_000,
    )
    for name in NAMES:
        card = page.locator(f'#charts .target-card[data-target="{name}"]')
        expect(card.locator(f'figure[data-chart="visits"] {DRAWN_LINE}').first).to_be_attached()
        expect(card.locator(f'figure[data-chart="latency"] {DRAWN_LINE}').first).to_be_attached()
        assert int(card.get_attribute("data-samples") or 0) >= 2
        assert card.locator("progress").evaluate("bar => bar.value") > 0  # visits granted of today's cap
    page.locator("#charts").screenshot(path=str(shots / "live-charts.png"))
    page.screenshot(path=str(shots / "control-page.png"), full_page=True)
