"""End to end: ``transport: bulk`` targets beside a single-hit target, in real Locust runs.

The receiver checks every item of a bulk request as Matomo does (cdt, token for cip, ...), so
"stored == cap, 0 invalid" proves the batched hits are valid hits, dated and counted.
"""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
from harness import locust_command, receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import receiver_stats

CONFIG = """
defaults:
  traffic:
    pageviews: {{min: 2, max: 4}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
targets:
  - {{name: Single, url: "http://127.0.0.1:{port}/single/matomo.php", site_id: 1, visits_per_day: 120}}
  - {{name: Bulk Token, url: "http://127.0.0.1:{port}/bulk/matomo.php", site_id: 2, token_auth: e2e-bulk-token-31,
      visits_per_day: 150, transport: bulk, bulk_size: 20}}
  - {{name: Bulk Plain, url: "http://127.0.0.1:{port}/plain/matomo.php", site_id: 3, visits_per_day: 90,
      transport: bulk}}
"""
CAPS = {"Single": 120, "Bulk Token": 150, "Bulk Plain": 90}


@pytest.fixture(scope="module", params=["local", "processes"])
def run(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(f"bulk-{request.param}")
    with receiver_for(tmp_path, CONFIG) as (port, config_path, env, _):
        command = [
            *locust_command(),
            "--traffic-config",
            str(config_path),
            "--headless",
            "--traffic-pacing",
            "stress",
            "-u",
            "30",
            "-r",
            "30",
            "-t",
            "60s",
            "--only-summary",
            "--traffic-report",
            str(tmp_path / "report.json"),
            "--csv",
            str(tmp_path / "run"),
        ]
        if request.param == "processes":
            command += ["--processes", "2"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        stored = receiver_stats(port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    config = load_config(config_path, env=env)
    sites = {t.name: stored[instance_path(t.url)]["sites"][str(t.site_id)] for t in config.targets}
    report = {row["target"]: row for row in json.loads((tmp_path / "report.json").read_text())["targets"]}
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        requests = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(handle)}
    return request.param, sites, report, requests, output


def test_bulk_targets_store_exactly_their_caps_with_valid_hits(run):
    mode, sites, report, requests, output = run
    assert {name: site["visits"] for name, site in sites.items()} == CAPS, output[-2000:]
    for name, site in sites.items():
        assert site["invalid"] == {}, (name, site["invalid"])
    assert "every target's daily budget is spent" in output
    if mode == "local":  # with --processes the workers' last tallies may miss the final report
        assert {name: row["visits_started"] for name, row in report.items()} == CAPS


def test_bulk_hits_travel_in_batches_and_are_counted_as_hits(run):
    mode, sites, report, requests, _ = run
    for name in ("Bulk Token", "Bulk Plain"):
        batches, hits = requests[f"[{name}] bulk"], sites[name]["hits"]
        assert not any(key.startswith(f"[{name}] ") and key != f"[{name}] bulk" for key in requests), (
            "a bulk target sent single hits"
        )
        assert hits > 3 * batches, f"{name}: {hits} hits in {batches} requests"
        if mode == "local":  # the CSV is written before the last batches of the stop flush; the report after
            assert report[name]["hits"] == hits and report[name]["requests"] >= batches
    assert report["Single"]["hits"] == sites["Single"]["hits"] == report["Single"]["requests"]
    assert not any(key.startswith("[Single] bulk") for key in requests)


def test_cip_and_token_only_where_the_target_has_one(run):
    _, sites, _, _, output = run
    assert sites["Bulk Token"]["ip_overrides"] == sites["Bulk Token"]["hits"] > 0
    assert sites["Bulk Plain"]["ip_overrides"] == 0
    assert "e2e-bulk-token-31" not in output
