"""End to end: three targets with different traffic models, one real headless Locust run.

What the receiver stores must follow each target's own settings: ecommerce only where it is enabled,
`cip` only where the target has a token, every hit valid, and one stored visit per started visit.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from harness import locust_command

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CONFIG = """
seed: 11
defaults:
  traffic:
    pageviews: {{min: 2, max: 4}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
    visitors: {{returning: 0.3, pool_size: 50, logged_in: 0.2}}
    actions: {{search: 0, outlink: 0, download: 0, event: 0, goal: 0}}
targets:
  - name: Shop
    url: http://127.0.0.1:{port}/shop/matomo.php
    site_id: 1
    token_auth: e2e-shop-token-77
    traffic:
      countries: {{DE: 70, AT: 30}}
      actions: {{goal: 0.3}}
      goals: [{{id: 7, revenue: {{min: 5, max: 9}}}}]
      ecommerce: {{product_view: 0.5, cart: 0.4, order: 0.2, currency: EUR}}
  - name: Blog
    url: http://127.0.0.1:{port}/blog/matomo.php
    site_id: 2
    traffic:
      actions: {{event: 0.6, search: 0.3}}
  - name: Docs
    url: http://127.0.0.1:{port}/docs/matomo.php
    site_id: 3
    token_auth: e2e-docs-token-88
    traffic:
      actions: {{download: 0.5}}
      funnels:
        - name: Manual
          share: 0.3
          steps:
            - {{type: pageview, url: /manual, title: Manual}}
            - {{type: download, url: /files/manual.pdf}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("traffic")
    port = free_port()
    config_path = tmp_path / "traffic.yaml"
    config_path.write_text(CONFIG.format(port=port), encoding="utf-8")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    sink = start_receiver(config_path, port, env)
    try:
        command = [
            *locust_command(),
            "--traffic-config",
            str(config_path),
            "--headless",
            "-u",
            "12",
            "-r",
            "12",
            "-t",
            "6s",
            "--traffic-report",
            str(tmp_path / "report.json"),
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        stored = receiver_stats(port)
    finally:
        stop_process(sink)
    assert result.returncode == 0, result.stderr[-3000:]
    report = {row["target"]: row for row in json.loads((tmp_path / "report.json").read_text())["targets"]}
    config = load_config(config_path, env=env)
    sites = {t.name: stored[instance_path(t.url)]["sites"][str(t.site_id)] for t in config.targets}
    return report, sites, result.stdout + result.stderr


def test_each_target_gets_its_own_traffic_model(run):
    report, sites, output = run
    for name, site in sites.items():
        assert site["invalid"] == {}, (name, site["invalid"])
        assert site["visits"] == report[name]["visits_started"] > 10, (
            name,
            site["visits"],
            report[name]["visits_started"],
        )
        assert site["hits"] == report[name]["requests"], name
    shop, blog, docs = sites["Shop"]["actions"], sites["Blog"]["actions"], sites["Docs"]["actions"]
    assert shop["order"] > 0 and shop["cart"] > shop["order"] and shop["product_view"] > 0 and shop["goal"] > 0
    assert blog["order"] == blog["cart"] == blog["product_view"] == blog["goal"] == 0 == blog["download"]
    assert docs["order"] == docs["cart"] == docs["product_view"] == 0 and docs["event"] == 0
    assert blog["event"] > 0 and blog["search"] > 0 and shop["event"] == 0 == shop["search"]
    assert docs["download"] >= 0.5 * sites["Docs"]["visits"], "half the visits download, plus the Manual journey"
    visits = sites["Blog"]["visits"]
    assert 0.35 * visits < blog["event"] < 0.85 * visits, "about 60% of Blog visits send an event"


def test_cip_only_for_targets_with_a_token(run):
    _, sites, _ = run
    assert sites["Shop"]["ip_overrides"] == sites["Shop"]["hits"] > 0
    assert sites["Docs"]["ip_overrides"] == sites["Docs"]["hits"] > 0
    assert sites["Blog"]["ip_overrides"] == 0


def test_tokens_stay_out_of_output(run):
    _, _, output = run
    assert "e2e-shop-token-77" not in output and "e2e-docs-token-88" not in output
