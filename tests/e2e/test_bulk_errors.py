"""End to end: bulk errors handled the way Matomo behaves (ADR 014), against the receiver's Matomo rules.

The receiver (a real process on 127.0.0.1) runs each bulk request in one transaction like Matomo:
``--fail-batches SHARE`` answers that share of bulk requests 500 ``{"status":"error","tracked":0}``
storing nothing (a deadlock; counted ``failed_batches``), an item Matomo refuses (a goal hit with
``ca=1``) rolls its whole request back with 500, and invalid items (unknown site, unknown goal) are
skipped and listed in ``invalid_indices`` while the rest is stored. Proved here:

* a live bulk run and a two-target backfill (CLI and inside Locust) into one receiver with
  ``--fail-batches 0.1`` store every planned hit exactly once;
* a batch with one hit Matomo refuses delivers all the others and reports the one (the backfill's
  :func:`~trafficinator_locust.ops.backfill.send_batch` and the live :class:`BulkSender`);
* a live run whose goal hits Matomo refuses (a goal the site does not have) reports them per kind in the
  run summary and as failures of ``[<target>] bulk``, and stores everything else.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.env import Environment

import csv
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from harness import receiver_for

from trafficinator_locust.core.backfill_days import BackfillVisitors, day_visits, day_window
from trafficinator_locust.core.bulk import HitFate, RetryPolicy, encode_item
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.core.visits import VisitPlanner
from trafficinator_locust.demo import LOCUSTFILE
from trafficinator_locust.ops.backfill import send_batch
from trafficinator_locust.ops.tracker_http import TrackerPoster
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process
from trafficinator_locust.runtime.bulk_sender import BulkSender, own_session
from trafficinator_locust.runtime.summary import refused_hits
from trafficinator_locust.runtime.tally import VisitTally

FAIL = ("--fail-batches", "0.1", "--fail-seed", "12")


def _site(stats, target):
    return stats[instance_path(target.url)]["sites"][str(target.site_id)]


def _instance(stats, target):
    return stats[instance_path(target.url)]


# --- live: every hit once although a tenth of the batches fail ---------------------------------------
LIVE = """
defaults:
  bulk_retry_delay: 0.2
  traffic:
    pageviews: {{min: 3, max: 3}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
targets:
  - {{name: Shop, url: "http://127.0.0.1:{port}/shop/matomo.php", site_id: 1, token_auth: e2e-shop-token-71,
      visits_per_day: 160, transport: bulk, bulk_size: 10}}
  - {{name: Blog, url: "http://127.0.0.1:{port}/blog/matomo.php", site_id: 2, token_auth: e2e-blog-token-72,
      visits_per_day: 90, transport: bulk, bulk_size: 10}}
"""
LIVE_CAPS = {"Shop": 160, "Blog": 90}


def _locust(tmp_path, config_path, env, *extra, timeout=150):
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--traffic-config", str(config_path)]
    command += ["--headless", "--only-summary", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_a_live_bulk_run_with_failing_batches_stores_every_hit_exactly_once(tmp_path):
    with receiver_for(tmp_path, LIVE, *FAIL) as (port, config_path, env, _):
        result = _locust(
            tmp_path,
            config_path,
            env,
            *("--traffic-pacing", "stress", "-u", "30", "-r", "30", "-t", "90s"),
            *("--traffic-report", "report.json", "--exit-code-on-error", "0"),
        )
        stored = receiver_stats(port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    config = load_config(config_path, env=env)
    report = {row["target"]: row for row in json.loads((tmp_path / "report.json").read_text())["targets"]}
    failed = 0
    for target in config.targets:
        site, cap = _site(stored, target), LIVE_CAPS[target.name]
        assert site["visits"] == cap, (target.name, site["visits"])
        assert site["actions"]["pageview"] == 3 * cap, (target.name, site["actions"])  # no hit lost, none twice
        assert site["invalid"] == {}, site["invalid"]
        row = report[target.name]
        assert row["visits_started"] == cap and row["visits_failed"] == 0
        assert row["refused_hits"]["total"] == 0, row["refused_hits"]
        assert row["hits"] == site["hits"] + sum(site["ignored"].values())  # what Matomo tracked, once
        failed += _instance(stored, target)["failed_batches"]
        assert row["failures"] == _instance(stored, target)["failed_batches"]  # each failed batch is a failure
    assert failed > 0, "no batch failed: the test proves nothing"
    assert "e2e-shop-token-71" not in output


# --- live: goal hits Matomo refuses are reported by kind, everything else is stored ------------------
GOALS = """
defaults:
  bulk_retry_delay: 0.1
  traffic:
    pageviews: {{min: 3, max: 3}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
{goals}
targets:
  - {{name: Shop, url: "http://127.0.0.1:{port}/shop/matomo.php", site_id: 1, token_auth: e2e-shop-token-81,
      visits_per_day: 120, transport: bulk, bulk_size: 10}}
"""


def test_live_hits_matomo_refuses_are_reported_by_kind_and_the_rest_is_stored(tmp_path):
    port = free_port()
    receiver_config = tmp_path / "receiver.yaml"  # the site as Matomo knows it: no goal 7
    receiver_config.write_text(GOALS.format(port=port, goals=""), encoding="utf-8")
    config_path = tmp_path / "traffic.yaml"  # the generator converts a goal the site does not have
    goals = "    actions: {goal: 0.4}\n    goals: [{id: 7}]"
    config_path.write_text(GOALS.format(port=port, goals=goals), encoding="utf-8")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("TRAFFICINATOR_CONFIG", None)
    receiver = start_receiver(receiver_config, port, env)
    try:
        result = _locust(
            tmp_path,
            config_path,
            env,
            *("--traffic-pacing", "stress", "-u", "20", "-r", "20", "-t", "90s"),
            *("--traffic-report", "report.json", "--csv", "run", "--exit-code-on-error", "0"),
        )
        stored = receiver_stats(port)
    finally:
        stop_process(receiver)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    target = load_config(config_path, env=env).targets[0]
    site = _site(stored, target)
    refused_by_matomo = site["invalid"].get("unknown_goal", 0)
    assert refused_by_matomo > 0 and set(site["invalid"]) == {"unknown_goal"}, site["invalid"]
    assert site["visits"] == 120 and site["actions"]["pageview"] == 360  # every other hit stored, once
    assert site["actions"].get("goal", 0) == 0
    row = json.loads((tmp_path / "report.json").read_text())["targets"][0]
    assert row["refused_hits"]["by_kind"] == {"goal": refused_by_matomo}
    assert row["refused_hits"]["total"] == refused_by_matomo and "invalid" in row["refused_hits"]["sample"]
    assert "refused by Matomo, e.g.:" in output and "e2e-shop-token-81" not in output
    with open(tmp_path / "run_failures.csv", newline="") as handle:
        failures = [row for row in csv.DictReader(handle) if row["Name"] == "[Shop] bulk"]
    assert failures and all("refused " in row["Error"] for row in failures), failures
    assert "goal" in failures[0]["Error"] and "e2e-shop-token-81" not in (tmp_path / "run_failures.csv").read_text()


# --- one hit Matomo refuses inside a batch: the others are delivered, the one reported ----------------
ONE = """
targets:
  - {{name: Shop, url: "http://127.0.0.1:{port}/shop/matomo.php", site_id: 1, token_auth: e2e-one-token-91,
      transport: bulk, bulk_size: 30, traffic: {{goals: [{{id: 1}}]}}}}
"""


def _hits(count: int, *, refused_at: int, refused: dict[str, str]) -> list[str]:
    """``count`` pageviews of different visitors (cdt an hour ago), the one at ``refused_at`` replaced."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 3600))
    items = []
    for n in range(count):
        params = {"idsite": "1", "rec": "1", "apiv": "1", "cid": f"{n + 1:016x}", "url": f"https://shop.example/p{n}"}
        params.update(action_name=f"Page {n}", cdt=when)
        if n == refused_at:
            params = {**params, **refused}
        items.append(encode_item(params))
    return items


CA_GOAL = {"idgoal": "1", "ca": "1", "revenue": "5"}  # goal 1 exists, but a conversion with ca=1 makes Matomo throw


@pytest.fixture()
def one(tmp_path):
    with receiver_for(tmp_path, ONE) as receiver:
        yield receiver


def test_the_backfill_delivers_a_batch_around_the_one_hit_matomo_refuses(one):
    port, config_path, env, _ = one
    target = load_config(config_path, env=env).targets[0]
    items = _hits(30, refused_at=17, refused=CA_GOAL)
    poster = TrackerPoster(target.url, timeout=10)
    try:
        delivery = send_batch(poster, items, target.token, RetryPolicy(retries=2, delay=0.05))
    finally:
        poster.close()
    assert delivery.halted is None and delivery.positions(HitFate.REFUSED) == [17]
    assert "alone, 3 tries" in delivery.reasons[17] and "e2e-one-token-91" not in delivery.reasons[17]
    stats = receiver_stats(port)
    site = _site(stats, target)
    assert site["hits"] == 29 and site["visits"] == 29 and site["actions"]["goal"] == 0  # all the others, once
    assert _instance(stats, target)["rolled_back_batches"] >= 1


def test_the_backfill_refuses_an_unknown_site_without_resending(one):
    port, config_path, env, _ = one
    target = load_config(config_path, env=env).targets[0]
    items = _hits(12, refused_at=4, refused={"idsite": "99"})
    poster = TrackerPoster(target.url, timeout=10)
    try:
        delivery = send_batch(poster, items, target.token, RetryPolicy(retries=2, delay=0.05))
    finally:
        poster.close()
    assert delivery.sends == 1 and delivery.positions(HitFate.REFUSED) == [4] and delivery.tracked == 11
    stats = receiver_stats(port)
    assert _site(stats, target)["hits"] == 11 and sum(_instance(stats, target)["invalid"].values()) == 1


def test_live_bulk_delivers_a_batch_around_the_one_hit_matomo_refuses(one):
    port, config_path, env, _ = one
    target = load_config(config_path, env=env).targets[0]
    environment = Environment(user_classes=[])
    environment.create_local_runner()
    tally = VisitTally()
    sender = BulkSender(
        target, own_session(environment, target, 10), tally, max_delay=60, lanes=1, policy=RetryPolicy(2, 0.05)
    )
    items = _hits(30, refused_at=0, refused=CA_GOAL)  # the first hit: no sign yet that Matomo takes anything
    sender.start()
    for item in items:
        sender.add("one lane", item, (date.today().isoformat(), True), lambda event, timeout: event.wait(timeout))
    sender.stop(timeout=30)
    site = _site(receiver_stats(port), target)
    assert site["hits"] == 29 and site["visits"] == 29 and site["actions"]["goal"] == 0
    assert tally.hits["Shop"] == 29 and tally.started["Shop"] == 29 and tally.failed["Shop"] == 1
    refused = refused_hits(environment.stats, "Shop")
    assert refused["by_kind"] == {"goal": 1} and "alone, 3 tries" in refused["sample"]
    assert "e2e-one-token-91" not in json.dumps(refused)
    environment.runner.quit()


# --- backfill: two targets of one Matomo, a tenth of the batches failing ------------------------------
BACKFILL = """
seed: 77
defaults:
  bulk_retry_delay: 0.1
  traffic:
    pageviews: {{min: 2, max: 5}}
    ecommerce: {{cart: 0.3, order: 0.3}}
    actions: {{search: 0.2, event: 0.3}}
targets:
  - {{name: Alpha, url: "http://127.0.0.1:{port}/one/matomo.php", site_id: 1, token_auth: e2e-alpha-token-1,
      visits_per_day: 60, timezone: Europe/Berlin}}
  - {{name: Beta, url: "http://127.0.0.1:{port}/one/matomo.php", site_id: 2, token_auth: e2e-alpha-token-1,
      visits_per_day: 45, timezone: Asia/Tokyo}}
"""


def _planned(config, first: date, days: int):
    """Per target: visits per local day and the hits of every planned visit (what Matomo must have)."""
    planned = {}
    for target in config.targets:
        pace, planner = target.pace(), VisitPlanner(target, config.seed)
        visitors = BackfillVisitors(planner, pace)
        visits, hits = {}, 0
        for n in range(days):
            day = first + timedelta(days=n)
            window = day_window(pace, day, time.time())
            planned_visits = list(day_visits(planner, pace, window, 0, visitors.tickets(window)))
            visits[day.isoformat()] = len(planned_visits)
            hits += sum(len(v.times) for v in planned_visits)
        planned[target.name] = (visits, hits)
    return planned


def _assert_every_hit_once(stored, config, planned):
    """Both targets are sites of one instance (one Matomo): returns its failed batches."""
    for target in config.targets:
        site = _site(stored, target)
        visits, hits = planned[target.name]
        assert site["visits_by_day"] == {day: n for day, n in visits.items() if n}, target.name
        assert site["invalid"] == {}, (target.name, site["invalid"])  # a resent order would be a duplicate ec_id
        assert site["hits"] + sum(site["ignored"].values()) == hits, (target.name, site["hits"], hits)
    failed = _instance(stored, config.targets[0])["failed_batches"]
    assert failed > 0, "no batch failed: the test proves nothing"
    return failed


def test_a_two_target_backfill_into_one_matomo_with_failing_batches_stores_every_hit_once(tmp_path):
    first = date.today() - timedelta(days=6)
    last = first + timedelta(days=3)
    with receiver_for(tmp_path, BACKFILL, *FAIL) as (port, config_path, env, _):
        command = [sys.executable, "-m", "trafficinator_locust.cli", "backfill", str(config_path)]
        command += ["--from", first.isoformat(), "--to", last.isoformat(), "--bulk-size", "20"]
        command += ["--checkpoint", str(tmp_path / "cp.json"), "--report", str(tmp_path / "report.json")]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        stored = receiver_stats(port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "backfill complete: 2 target(s), 4 day(s)" in output
    config = load_config(config_path, env=env)
    planned = _planned(config, first, 4)
    _assert_every_hit_once(stored, config, planned)
    report = json.loads((tmp_path / "report.json").read_text())
    for entry in report["targets"]:
        assert entry["status"] == "complete" and entry["refused_hits"]["total"] == 0
        days = entry["days"].values()
        assert sum(d["hits"] for d in days) == planned[entry["target"]][1]
        assert all(d["tracked"] == d["hits"] and d["invalid"] == 0 and d["complete"] for d in days)


def test_a_two_target_backfill_inside_locust_with_failing_batches_stores_every_hit_once(tmp_path):
    first = date.today() - timedelta(days=5)
    last = first + timedelta(days=2)
    with receiver_for(tmp_path, BACKFILL, *FAIL) as (port, config_path, env, _):
        result = _locust(
            tmp_path,
            config_path,
            env,
            *("--traffic-backfill", f"{first}:{last}", "--traffic-report", "report.json", "--csv", "run", "-t", "90s"),
            *("--exit-code-on-error", "0"),
        )
        stored = receiver_stats(port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "backfill complete: 2 target(s), 3 day(s)" in output
    config = load_config(config_path, env=env)
    failed = _assert_every_hit_once(stored, config, _planned(config, first, 3))
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["Aggregated"]["Failure Count"]) == failed  # each failed batch is a failure in Locust's stats
    assert "e2e-alpha-token-1" not in (tmp_path / "run_failures.csv").read_text()


def test_the_receiver_has_the_options_these_tests_need():
    """If this fails, the receiver's --fail-batches (another change) has not landed yet."""
    help_text = subprocess.run(
        [sys.executable, "-m", "trafficinator_locust.cli", "sink", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    ).stdout
    assert "--fail-batches" in help_text and "--fail-seed" in help_text
