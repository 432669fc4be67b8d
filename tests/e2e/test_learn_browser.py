""" "Learn from a target" as an operator uses it: headless Chromium against a real ``locust`` web UI and
the embedded receiver holding two instances, Prod (which already has traffic) and Staging (none).

Hits go into Prod first, straight to the receiver's tracker (40 visits: three pages, half of them from
a search engine). On the control page: Learn on Staging's row, pick Prod; Preview with the default
days (the 30 up to yesterday) says there is nothing to learn; with the days that hold the hits,
Preview: the YAML shows Prod's pages and channels and nothing changed; Apply: Staging's ``traffic`` is
the learned model (read back through the API, validated by the loader); Save as preset: the preset
is listed and holds the model. No token appears in the page or in Locust's output.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from harness import receiver_for
from test_browser import chromium_page
from test_web_process import LocustProcess

from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import receiver_stats

pytestmark = pytest.mark.e2e

TOKENS = {"LEARN_PROD_TOKEN": "learn-prod-token-8u7y", "LEARN_STAGING_TOKEN": "learn-staging-token-6t5r"}
CONFIG = """\
defaults:
  traffic:
    pageviews: {{min: 1, max: 2}}
targets:
  - name: Prod
    url: http://127.0.0.1:{port}/prod/matomo.php
    site_id: 1
    token_auth: ${{LEARN_PROD_TOKEN}}
    timezone: UTC
  - name: Staging
    url: http://127.0.0.1:{port}/staging/matomo.php
    site_id: 1
    token_auth: ${{LEARN_STAGING_TOKEN}}
    timezone: UTC
"""
SITE = "https://www.example.com"
PAGES = ("/products", "/products/widgets", "/")
VISITS = 40
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"  # not a bot: Matomo stores it


def _send_prod_traffic(port: int) -> None:
    """40 visits into Prod in one bulk request (its token lets ``cid`` set each visitor, as in Matomo):
    1 to 3 pageviews each, every other one from Google."""
    hits = []
    for visit in range(VISITS):
        visitor = f"{visit + 1:016x}"
        for page in PAGES[: 1 + visit % 3]:
            params = {"idsite": "1", "rec": "1", "cid": visitor, "url": SITE + page, "action_name": page.strip("/")}
            if visit % 2 == 0:
                params["urlref"] = "https://www.google.com/search?q=widgets"
            hits.append("?" + urlencode(params))
    body = {"requests": hits, "token_auth": TOKENS["LEARN_PROD_TOKEN"]}
    answer = requests.post(
        f"http://127.0.0.1:{port}/prod/matomo.php", json=body, headers={"User-Agent": BROWSER}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    stored = receiver_stats(port)[instance_path(f"http://127.0.0.1:{port}/prod/matomo.php")]["sites"]["1"]
    assert stored["visits"] == VISITS, stored


def test_learn_staging_from_prod_preview_apply_and_save_as_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, token in TOKENS.items():
        monkeypatch.setenv(name, token)  # the receiver's and locust's environment (receiver_for copies it)
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with receiver_for(tmp_path, CONFIG) as sink:
        env = sink.env
        _send_prod_traffic(sink.port)
        run = LocustProcess(sink.config_path, tmp_path, env)
        try:
            with chromium_page(tmp_path / "learn.png") as page:
                _learn_in_the_page(page, run)
        finally:
            output = run.stop()
    for token in TOKENS.values():
        assert token not in output


def _learn_in_the_page(page, run: LocustProcess) -> None:
    from playwright.sync_api import expect

    page.goto(run.url + "/trafficinator/")
    staging = page.locator('#targets tr[data-target="Staging"]')
    expect(staging).to_have_count(1)
    staging.locator("button[data-action=learn]").click()
    expect(page.locator("#learn")).to_be_visible()
    expect(page.locator("#learn-title")).to_contain_text("for Staging")
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    expect(page.locator("#learn-to")).to_have_value(yesterday.isoformat())  # the default: 30 days to yesterday
    expect(page.locator("#learn-from")).to_have_value((yesterday - timedelta(days=29)).isoformat())
    page.select_option("#learn-source", "Prod")
    page.click("#learn-preview")  # the default days hold none of today's hits: the source's answer says so
    expect(page.locator("#learn-message")).to_contain_text("cannot learn from target 'Prod': no visits between")
    expect(page.locator("#learn-message")).to_have_class("error")
    expect(page.locator("#learn-preview-panel")).to_be_hidden()
    today = datetime.now(timezone.utc).date()  # the hits are today's (site time zone UTC)
    page.fill("#learn-from", (today - timedelta(days=6)).isoformat())
    page.fill("#learn-to", today.isoformat())
    page.click("#learn-preview")

    # the preview: Prod's pages and channels in read-only YAML; nothing changed yet
    preview = page.locator("#learn-yaml")
    expect(preview).to_contain_text("/products/widgets")
    expect(preview).to_contain_text("target Prod")
    expect(preview).to_contain_text("search: 50.0")
    expect(page.locator("#learn-summary")).to_contain_text("Staging: learned from Prod")
    expect(page.locator("#learn-target-keys-text")).to_contain_text("visits/day")
    status, target = run.call("GET", "/api/targets/Staging")
    assert status == 200 and "traffic" not in target["target"]

    # apply: the existing PATCH of the target
    page.click("#learn-apply")
    expect(page.locator("#learn-message")).to_contain_text("applied the learned model to Staging")
    status, target = run.call("GET", "/api/targets/Staging")
    traffic = target["target"]["traffic"]
    assert [entry["url"] for entry in traffic["urls"]] == ["/products", "/products/widgets", "/"]
    assert traffic["channels"]["search"] == 50.0 and traffic["channels"]["direct"] == 50.0
    assert "visits_per_day" not in target["target"]  # the target keys only when asked

    # save as preset: the existing preset route
    page.fill("#learn-preset-name", "staging like prod")
    page.click("#learn-save-preset")
    expect(page.locator("#learn-message")).to_contain_text("saved preset staging like prod")
    expect(page.locator('#presets tr[data-preset="staging like prod"]')).to_have_count(1)
    status, preset = run.call("GET", "/api/presets/staging like prod")
    assert status == 200 and preset["preset"]["config"]["targets"][1]["traffic"] == traffic
    content = page.content()
    for token in TOKENS.values():
        assert token not in content
