"""End to end: returning visitors are returning for a Matomo-like receiver, and logged-in visitors on
a target without a token never take over another visit.

The receiver decides "returning" from its own history of the visitor id, as Matomo 5 does, and looks
``uid`` requests up by visitor id, else by fingerprint: so its counts prove what Matomo would report.
Two runs share one state folder: the first warms the visitor history (a fresh site's first visits are
all new), the second is measured, and also proves that a restart keeps the visitors already seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.demo import LOCUSTFILE
from trafficinator_locust.receiver.process import receiver_stats

RETURNING = 0.3
CONFIG = """
defaults:
  traffic:
    pageviews: {{min: 1, max: 2}}
    dwell_seconds: {{min: 0.02, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.05}}
    bots: 0
    visitors: {{returning: 0.3, logged_in: 0.4, pool_size: 300}}
    actions: {{ping: 1}}   # every visit ends with a ping: the hit log shows where a visit ended
targets:
  - {{name: Token, url: "http://127.0.0.1:{port}/token/matomo.php", site_id: 1, token_auth: e2e-returning-tok-9}}
  - {{name: Plain, url: "http://127.0.0.1:{port}/plain/matomo.php", site_id: 2}}
"""


def _run(folder: Path, config_path: Path, env: dict[str, str], report: Path) -> None:
    command = [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--traffic-config", str(config_path)),
        *("--headless", "--traffic-pacing", "stress", "-u", "24", "-r", "24", "-t", "25s", "--only-summary"),
        *("--traffic-state", str(folder / "budget.json"), "--traffic-report", str(report)),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=folder)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("returning")
    with receiver_for(folder, CONFIG, "--record-hits") as (port, config_path, env, _):
        config = load_config(config_path, env=env)

        def sites() -> dict[str, dict]:
            stored = receiver_stats(port)
            return {t.name: stored[instance_path(t.url)]["sites"][str(t.site_id)] for t in config.targets}

        _run(folder, config_path, env, folder / "first.json")
        warm = sites()
        for site in warm.values():
            site["first_run_log"] = site.pop("hit_log")
        _run(folder, config_path, env, folder / "second.json")
        measured = sites()
        for site in measured.values():
            site.pop("hit_log")
    reports = [
        {row["target"]: row for row in json.loads((folder / name).read_text())["targets"]}
        for name in ("first.json", "second.json")
    ]
    return folder, warm, measured, reports


def test_returning_visits_are_the_configured_share_once_the_history_holds_visitors(runs):
    _, warm, measured, _ = runs
    for name in ("Token", "Plain"):
        visits = measured[name]["visits"] - warm[name]["visits"]
        returning = measured[name]["returning_visits"] - warm[name]["returning_visits"]
        print(f"{name}: {returning} returning of {visits} visits after warm-up = {returning / visits:.3f}")
        assert visits > 500, (name, visits)
        assert abs(returning / visits - RETURNING) < 0.03, (name, returning, visits)
        assert warm[name]["returning_visits"] > 0, "the first run's returning visitors came back within it"


def test_the_visitor_history_survives_a_restart(runs):
    folder, _, _, _ = runs
    (history,) = folder.glob("budget.visitors-*.json")
    books = json.loads(history.read_text())
    assert set(books) == {"Token", "Plain"} and all(book["pool"] for book in books.values())


def test_every_visit_sent_is_stored_as_its_own_visit_also_for_logged_in_visitors_without_a_token(runs):
    """A logged-in visitor whose fingerprint matched a concurrent visit would take it over: one visit fewer."""
    _, warm, measured, reports = runs
    for name in ("Token", "Plain"):
        sent = reports[0][name]["visits_started"] + reports[1][name]["visits_started"]
        assert measured[name]["visits"] == sent, (name, measured[name]["visits"], sent)


def test_no_visitor_was_ever_in_two_visits_at_once(runs):
    """In the first run's hit log (its cut visits only at the end), a returning visit (``new_visit=1``)
    begins only after the visitor's previous visit closed with its ping: never in the middle of it."""
    _, warm, _, _ = runs
    for name, site in warm.items():
        log, returns = site["first_run_log"], 0
        for visitor, hits in log.items():
            for before, hit in zip(hits, hits[1:]):
                if hit[-1] == "new_visit":
                    returns += 1
                    assert before[0] == "ping", f"{name}: visitor {visitor} started a visit inside another: {hits}"
        assert returns > 100, (name, returns)
