"""The control plane as an operator uses it: headless Chromium (Debian's ``chromium``, driven by
Playwright) against a real ``locust`` with its web UI and the embedded receiver.

Open Locust's page, follow the link to the Targets control page, see the 3 targets, validate them
all, disable one, start a run from Locust's form, watch the Targets tab mark it disabled with 0 visits while the
others count up (the receiver stores 0 visits for its site), save a preset, re-enable the target,
reload the page, apply the preset: the target is disabled again; then check a report of what was
sent against what the receiver stored (the ingestion check, report by report) and see the short rows
and the target the report says failed.

Chromium missing is a failure, not a skip: CI installs it (``.ci/run``), so must a developer.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_web_process import LocustProcess  # the real-locust launcher shared with the API tests

from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
TOKENS = {
    "DEMO_DEV_TOKEN": "browser-dev-token-1q2w",
    "DEMO_STAGING_TOKEN": "browser-staging-token-3e4r",
    "DEMO_PROD_TOKEN": "browser-prod-token-5t6y",
}
WAIT_MS = 30_000

# config/demo.yaml with bare ${VAR} tokens (a preset keeps only those) and quick visits
CONFIG = """\
defaults:
  traffic:
    urls: urls.txt
    pageviews: {{min: 1, max: 2}}
    dwell_seconds: {{min: 0.05, max: 0.2}}
    pause_between_visits: {{min: 0, max: 0.2}}
targets:
  - name: Development
    url: http://127.0.0.1:{port}/dev/matomo.php
    site_id: 1
    token_auth: ${{DEMO_DEV_TOKEN}}
    weight: 2
    timezone: UTC
  - name: Staging
    url: http://127.0.0.1:{port}/staging/matomo.php
    site_id: 2
    token_auth: ${{DEMO_STAGING_TOKEN}}
    weight: 3
    timezone: America/New_York
  - name: Production
    url: http://127.0.0.1:{port}/prod/matomo.php
    site_id: 1
    token_auth: ${{DEMO_PROD_TOKEN}}
    weight: 5
    timezone: Asia/Tokyo
"""


@contextmanager
def chromium_page(screenshot: Path | None = None, **page_options: Any) -> Iterator[Any]:
    """A page of Debian's Chromium (headless, Playwright), actions waiting up to ``WAIT_MS``; on leaving,
    a full-page screenshot to ``screenshot`` (when given), then the browser closes. A test that needs it
    fails, not skips, without Playwright or Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: install the test extra (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing ({CHROMIUM}): install it with 'apt-get install -y chromium' (.ci/run does this)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**page_options)
            page.set_default_timeout(WAIT_MS)
            try:
                yield page
            finally:
                if screenshot is not None:
                    page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()


@pytest.fixture()
def demo(tmp_path: Path):
    port = free_port()
    config_path = tmp_path / "traffic.yaml"
    config_path.write_text(CONFIG.format(port=port), encoding="utf-8")
    shutil.copy(REPO / "config" / "urls.txt", tmp_path / "urls.txt")
    env = {**os.environ, **TOKENS, "XDG_STATE_HOME": str(tmp_path / "state")}
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD", "TRAFFICINATOR_CONFIG"):
        env.pop(name, None)
    sink = start_receiver(config_path, port, env)
    yield config_path, port, env
    stop_process(sink)


def _visits(page, target: str) -> int:
    """Visits today from the Targets tab's row of ``target`` ("12 / -")."""
    text = page.locator("tr", has=page.get_by_role("cell", name=target, exact=True)).locator("td").nth(3).inner_text()
    return int(text.split("/")[0])


def test_disable_a_target_run_and_apply_a_preset_in_chromium(demo, tmp_path: Path):
    config_path, sink_port, env = demo
    run = LocustProcess(config_path, tmp_path, env)
    try:
        with chromium_page(tmp_path / "last.png") as page:
            _operate(page, run.url, sink_port, tmp_path)
    finally:
        output = run.stop()
    for token in TOKENS.values():
        assert token not in output


def _operate(page, url: str, sink_port: int, shots: Path) -> None:
    from playwright.sync_api import expect

    # Locust's page links to the control page, which lists the 3 targets
    page.goto(url + "/")
    page.click("#trafficinator-control-link")
    page.wait_for_url(re.compile(r"/trafficinator/$"))
    rows = page.locator("#targets tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.locator("td[data-col=name]")).to_have_text(["Development", "Staging", "Production"])
    staging = page.locator('#targets tr[data-target="Staging"]')

    # "validate all": one result per target, each reachable with a token that may write
    page.click("#validate-all")
    results = page.locator("#validation tbody tr")
    expect(results).to_have_count(3)
    expect(results.locator("td[data-col=result]")).to_have_text(["ok", "ok", "ok"])
    expect(results.first.locator("td[data-col=steps]")).to_contain_text("access")

    # disable Staging before the run
    staging.locator("button[data-action=toggle]").click()
    expect(staging.locator("td[data-col=state]")).to_have_text("disabled")
    expect(page.locator("#message")).to_contain_text("Staging: paused")

    # start a run from Locust's own form; its Targets tab shows the 3 rows, Staging disabled at 0 visits
    page.click("#back")
    page.fill("input[name=userCount]", "6")
    page.fill("input[name=spawnRate]", "6")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("tab", name="Targets").click()
    table = page.locator("table", has=page.get_by_role("columnheader", name="Visits today / cap"))
    expect(table.locator("tbody tr")).to_have_count(3)
    staging_row = table.locator("tr", has=page.get_by_role("cell", name="Staging", exact=True))
    expect(staging_row).to_contain_text("disabled")
    page.wait_for_function(
        """() => { const rows = [...document.querySelectorAll('tbody tr')];
                   const visits = (name) => { const row = rows.find(r => r.cells[0] && r.cells[0].innerText === name);
                                              return row ? parseInt(row.cells[3].innerText) : 0; };
                   return visits('Development') > 0 && visits('Production') > 0; }""",
        timeout=60_000,
    )
    page.screenshot(path=str(shots / "targets-tab.png"), full_page=True)
    assert _visits(page, "Staging") == 0
    page.get_by_role("button", name="Stop").click()
    stored = receiver_stats(sink_port)
    site = lambda path, site_id: (
        stored[instance_path(f"http://127.0.0.1:{sink_port}{path}")]["sites"].get(site_id, {}).get("visits", 0)
    )  # noqa: E731
    assert site("/staging/matomo.php", "2") == 0, "the receiver stored visits for the disabled target"
    assert site("/dev/matomo.php", "1") > 0 and site("/prod/matomo.php", "1") > 0

    # save a preset with Staging disabled, re-enable Staging, reload, apply the preset
    page.click("#trafficinator-control-link")
    page.fill("#preset-name", "without staging")
    page.get_by_role("button", name="Save the current config as a preset").click()
    expect(page.locator('#presets tr[data-preset="without staging"]')).to_have_count(1)
    staging.locator("button[data-action=toggle]").click()
    expect(staging.locator("td[data-col=state]")).not_to_have_text("disabled")
    page.reload()
    expect(staging.locator("td[data-col=state]")).not_to_have_text("disabled")
    page.locator('#presets tr[data-preset="without staging"] button[data-action=apply]').click()
    expect(page.locator("#message")).to_contain_text("applied preset without staging")
    expect(staging.locator("td[data-col=state]")).to_have_text("disabled")
    expect(staging.locator("button[data-action=toggle]")).to_have_text("Enable")

    # the ingestion check, one row per target, day and report: Staging stored none of the 5 visits the
    # report claims (short), Production none of a goal's revenue (money shown in currency units), and
    # Development agrees with what it stored but the report says it failed (a row of its own)
    day = (datetime.now(timezone.utc).date() - timedelta(days=3)).isoformat()  # before the run in every time zone
    sent = {
        "targets": [
            {"target": "Development", "status": "failed", "error": "stopped by hand", "days": {day: {"visits": 0}}},
            {"target": "Staging", "days": {day: {"visits": 5}}},
            {"target": "Production", "days": {day: {"visits": 0, "reports": {"goals": {"1": {"revenue": 12.5}}}}}},
        ]
    }
    (shots / "sent.json").write_text(json.dumps(sent))
    page.fill("#verify-path", "sent.json")  # relative to the config's folder
    page.get_by_role("button", name="Verify").click()
    message = page.locator("#message")  # 6 calls at the default 60 a minute: the answer takes 5 s and more
    expect(message).to_contain_text("target Development FAILED: the backfill failed: stopped by hand", timeout=WAIT_MS)
    expect(page.locator("#verification thead th")).to_have_text(["Target", "Day", "Report", "Sent", "Stored", "Result"])
    staging_rows = page.locator('#verification tr[data-target="Staging"]')
    expect(staging_rows.locator("td")).to_have_text(["Staging", day, "visits", "5", "0", "SHORT"])
    expect(staging_rows).to_have_class("bad")
    development = page.locator('#verification tr[data-target="Development"]')
    expect(development).to_have_count(2)
    expect(development.first.locator("td[data-col=result]")).to_have_text(
        "FAILED: the backfill failed: stopped by hand"
    )
    expect(development.first).to_have_class("bad")
    expect(development.nth(1).locator("td")).to_have_text(["Development", day, "visits", "0", "0", "ok"])
    expect(development.nth(1).locator("td[data-col=result]")).to_have_class("good")
    production = page.locator('#verification tr[data-target="Production"]')
    expect(production.locator("td[data-col=report]")).to_have_text(["visits", "goal 1 conversions", "goal 1 revenue"])
    expect(production.nth(2).locator("td")).to_have_text(
        ["Production", day, "goal 1 revenue", "12.50", "0.00", "SHORT"]
    )
    expect(message).to_contain_text(f"target Staging, {day}: visits 0 of 5")
    expect(message).to_contain_text(f"target Production, {day}: goal 1 revenue 0.00 of 12.50")
    page.screenshot(path=str(shots / "control-page.png"), full_page=True)
