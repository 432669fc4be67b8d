"""End to end: the full traffic model, single hits (master + workers) and bulk, against the receiver,
which stores and reports as Matomo 5 does. Every report the run says it sent is what the receiver
stored (read independently from its stats), ``--traffic-verify`` agrees row by row, and it catches
what a Matomo loses while answering 2xx.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from harness import locust_command, receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import ACTION_KINDS, instance_path
from trafficinator_locust.receiver.process import receiver_stats

CONFIG = """
seed: 11
defaults:
  transport: TRANSPORT
  bulk_size: 20
  traffic:
    pageviews: {{min: 1, max: 3}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
    bots: 0.1
    visitors: {{returning: 0.3, logged_in: 0.2, pool_size: 300}}
    actions: {{search: 0.3, outlink: 0.2, download: 0.2, event: 0.5, goal: 0.4, ping: 1}}
    goals: [{{id: 2, revenue: {{min: 5, max: 50}}}}, {{id: 1}}]
    ecommerce: {{product_view: 0.3, cart: 0.4, order: 0.2}}
    funnels:
      - name: checkout
        share: 0.2
        steps:
          - {{type: pageview, url: /cart}}
          - {{type: goal, id: 3, revenue: 2.5}}
          - {{type: goal, id: 3, revenue: 2.5}}
          - {{type: order}}
          - {{type: pageview, url: /thank-you}}
targets:
  - name: Tokyo
    url: "http://127.0.0.1:{port}/tokyo/matomo.php"
    site_id: 1
    token_auth: e2e-rep-tok-1
    timezone: Asia/Tokyo
  - name: York
    url: "http://127.0.0.1:{port}/york/matomo.php"
    site_id: 2
    token_auth: e2e-rep-tok-2
    timezone: America/New_York
  - {{name: Plain, url: "http://127.0.0.1:{port}/plain/matomo.php", site_id: 3, report_token_auth: e2e-rep-view-3}}
  - {{name: Anon, url: "http://127.0.0.1:{port}/anon/matomo.php", site_id: 4, weight: 0.5}}
"""
TOKENS = ("e2e-rep-tok-1", "e2e-rep-tok-2", "e2e-rep-view-3")


def _run(
    folder: Path, config_path: Path, env: dict[str, str], *extra: str, wait: str = "0"
) -> subprocess.CompletedProcess[str]:
    command = locust_command(
        *("--traffic-config", str(config_path), "--headless", "--traffic-pacing", "stress"),
        *("-u", "24", "-r", "24", "-t", "20s", "--only-summary", "--traffic-state", str(folder / "budget.json")),
        *("--traffic-report", str(folder / "report.json"), "--traffic-verify", wait, *extra),
    )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, cwd=folder)


def _sent(document: dict) -> dict[str, Counter]:
    """Per target, the report's figures summed over its days (money in cents)."""
    sums: dict[str, Counter] = {}
    for entry in document["targets"]:
        total: Counter = Counter()
        for day in entry["days"].values():
            reports = day["reports"]
            total.update(visits=day["visits"], actions=day["actions"], bot_visits=day["bot_visits"])
            for key in ("events", "orders", "abandoned_carts", "returning_visits", "pageviews", "searches"):
                total[key] += reports[key]
            total["revenue"] += round(reports["revenue"] * 100)
            for goal, figures in reports["goals"].items():
                total[f"goal {goal}"] += figures["conversions"]
                total[f"goal {goal} revenue"] += round(figures["revenue"] * 100)
            for kind, visits in reports.get("referrers", {}).items():
                total[f"referrer {kind}"] += visits
        sums[entry["target"]] = _fold_ai(total)
    return sums


def _fold_ai(total: Counter) -> Counter:
    """AI-assistant visits are websites (or, for Perplexity, search) in the receiver's Matomo 5.1 lists:
    compare those three together; every other referrer type on its own."""
    total["referrer website, search or ai"] = sum(
        total.pop(f"referrer {kind}", 0) for kind in ("website", "search", "ai")
    )
    return total


def _stored(port: int, config_path: Path, env: dict[str, str]) -> dict[str, Counter]:
    """Per target, what the receiver stored, from its own stats (not its Reporting API)."""
    stats = receiver_stats(port)
    stored = {}
    for target in load_config(config_path, env=env).targets:
        site = stats[instance_path(target.url)]["sites"][str(target.site_id)]
        actions = site["actions"]
        conversions = site["conversions"]
        total = Counter(
            visits=site["visits"],
            actions=sum(actions[kind] for kind in ACTION_KINDS),
            events=actions["event"],
            pageviews=actions["pageview"] + actions["product_view"],
            searches=actions["search"],
            returning_visits=site["returning_visits"],
            orders=conversions.get("ecommerceOrder", {}).get("conversions", 0),
            revenue=round(conversions.get("ecommerceOrder", {}).get("revenue", 0) * 100),
            abandoned_carts=conversions.get("ecommerceAbandonedCart", {}).get("conversions", 0),
        )
        for goal, figures in conversions.items():
            if goal.isdigit():
                total[f"goal {goal}"] = figures["conversions"]
                total[f"goal {goal} revenue"] = round(figures["revenue"] * 100)
        for kind, visits in site["referrer_types"].items():
            total[f"referrer {kind}"] = visits
        total["refused"] = sum(site["invalid"].values())
        stored[target.name] = _fold_ai(total)
    return stored


@pytest.fixture(scope="module", params=["single", "bulk"])
def full_run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"reports-{request.param}")
    template = CONFIG.replace("TRANSPORT", request.param)
    with receiver_for(folder, template) as (port, config_path, env, _):
        extra = ("--processes", "2") if request.param == "single" else ()
        result = _run(folder, config_path, env, *extra)
        stored = _stored(port, config_path, env)
        document = json.loads((folder / "report.json").read_text())
        full_run_verifications[request.param] = _verify_cli(folder, config_path, env, document)
    return request.param, result, document, stored


full_run_verifications: dict[str, tuple] = {}


def _verify_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "trafficinator_locust.cli", "verify", str(config_path), "--calls-per-minute", "6000"]


def _verify_cli(folder: Path, config_path: Path, env: dict[str, str], document: dict) -> tuple:
    """``trafficinator verify`` on the run's report, and on a copy claiming 10 more events on one day."""
    command = [
        sys.executable,
        "-m",
        "trafficinator_locust.cli",
        "verify",
        str(config_path),
        "--calls-per-minute",
        "6000",
    ]
    exact = subprocess.run(
        [*command, "--report", str(folder / "report.json")], env=env, capture_output=True, text=True, timeout=60
    )
    tokyo = next(entry for entry in document["targets"] if entry["target"] == "Tokyo")
    day = max(tokyo["days"], key=lambda d: tokyo["days"][d]["visits"])
    tokyo["days"][day]["reports"]["events"] += 10
    (folder / "doctored.json").write_text(json.dumps(document))
    doctored = subprocess.run(
        [*command, "--report", str(folder / "doctored.json")], env=env, capture_output=True, text=True, timeout=60
    )
    tokyo["days"][day]["reports"]["events"] -= 10
    return exact, doctored, day


def test_every_report_sent_is_what_the_receiver_stored(full_run):
    mode, result, document, stored = full_run
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for token in TOKENS:
        assert token not in output and token not in json.dumps(document)
    sent = _sent(document)
    for name, figures in sent.items():
        assert stored[name]["refused"] == 0, (mode, name)
        entry = next(e for e in document["targets"] if e["target"] == name)
        assert entry["refused_hits"]["total"] == 0
        assert figures["visits"] > 20 and figures["bot_visits"] > 0, (mode, name, figures)
        for key in ("goal 2", "goal 3", "orders", "abandoned_carts", "events", "returning_visits"):
            assert figures[key] > 0, (mode, name, key, figures)  # the model sends each kind: none is vacuous
        assert figures["goal 3"] == figures["goal 3 revenue"] // 250  # twice per checkout, converted once
        differences = {
            key: (figures[key], stored[name][key])
            for key in set(figures) | set(stored[name])
            if key not in ("bot_visits", "refused") and figures[key] != stored[name][key]
        }
        assert not differences, (mode, name, differences)


def test_traffic_verify_checks_every_report_row_after_the_summary(full_run):
    _, result, document, _ = full_run
    verdict = document["verify"]
    assert verdict["ok"] is True
    statuses = {entry["target"]: entry["status"] for entry in verdict["targets"]}
    # Plain: verified with its report_token_auth; Anon has no token at all
    assert statuses == {"Tokyo": "ok", "York": "ok", "Plain": "ok", "Anon": "not verifiable"}
    reports = {row["report"] for entry in verdict["targets"] for day in entry["days"] for row in day["rows"]}
    assert {"visits", "actions", "events", "orders", "revenue", "abandoned_carts", "returning_visits"} <= reports
    assert {"goal:2:conversions", "goal:2:revenue", "goal:3:conversions"} <= reports
    summary_at = result.stdout.index("Trafficinator per-target summary")
    assert result.stdout.index("Trafficinator verify (what each Matomo stored)") > summary_at
    assert "verify OK: 3 target(s)" in result.stdout and "Anon: not verifiable" in result.stdout


def test_verify_names_the_goal_row_a_matomo_lost_and_exits_4(tmp_path):
    template = CONFIG.replace("TRANSPORT", "single")
    with receiver_for(tmp_path, template, "--lose", "goal=0.05", "--lose-seed", "4") as (port, config_path, env, _):
        result = _run(tmp_path, config_path, env, wait="5")
        stats = receiver_stats(port)
        cli = subprocess.run(
            [*_verify_command(config_path), "--report", str(tmp_path / "report.json")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    sites = [site for instance in stats.values() for site in instance["sites"].values()]
    lost = sum(site.get("lost_by_kind", {}).get("goal", 0) for site in sites)
    output = result.stdout + result.stderr
    assert lost > 0, output[-3000:]
    assert result.returncode == 4, output[-4000:]
    assert result.stdout.index("Trafficinator verify (what") > result.stdout.index("Trafficinator per-target summary")
    verdict = json.loads((tmp_path / "report.json").read_text())["verify"]
    short = {
        (entry["target"], day["day"], row["label"])
        for entry in verdict["targets"]
        for day in entry["days"]
        for row in day["rows"]
        if not row["ok"]
    }
    assert short and all(" conversions" in label or " revenue" in label for _, _, label in short), short
    assert all(label.startswith("goal ") for _, _, label in short), short
    assert cli.returncode == 1, (cli.stdout + cli.stderr)[-3000:]
    for target, day, label in short:
        assert f"target {target}, {day}: " in cli.stderr and label in cli.stderr


def test_verify_passes_on_the_report_and_fails_on_the_events_row_of_a_doctored_one(full_run):
    mode, _, _, _ = full_run
    exact, doctored, day = full_run_verifications[mode]
    assert exact.returncode == 0, (exact.stdout + exact.stderr)[-3000:]
    assert "verify OK: 3 target(s)" in exact.stdout
    assert doctored.returncode == 1, (doctored.stdout + doctored.stderr)[-3000:]
    assert f"target Tokyo, {day}: events " in doctored.stderr
    short = [line for line in doctored.stdout.splitlines() if "TOO MANY" in line or "SHORT" in line]
    assert len(short) == 1 and " events " in short[0] and "SHORT" in short[0], short  # claimed more than stored
