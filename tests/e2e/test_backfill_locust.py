"""End to end: ``locust --traffic-backfill FROM:TO`` sends the same backfill as the CLI, seen in Locust's stats.

The receiver must store exactly each target's planned visits per local day, every bulk request
must show up as ``[<target>] bulk`` in Locust's CSV, the test must end by itself, and the report
must satisfy ``trafficinator verify``. A range reaching into the future is refused before Locust
starts anything (exit 2).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date, timedelta

import pytest
from harness import locust_command, receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import receiver_stats

CONFIG = """
defaults:
  traffic: {{pageviews: {{min: 2, max: 4}}}}
targets:
  - {{name: Alpha, url: "http://127.0.0.1:{port}/a/matomo.php", site_id: 1, token_auth: bfl-alpha-token-1,
      visits_per_day: 40}}
  - {{name: Beta, url: "http://127.0.0.1:{port}/b/matomo.php", site_id: 2, token_auth: bfl-beta-token-2,
      visits_per_day: 25, timezone: Asia/Tokyo}}
"""


@pytest.fixture()
def setup(tmp_path):
    with receiver_for(tmp_path, CONFIG) as (port, config_path, env, _):
        yield tmp_path, port, config_path, env


def _locust(tmp_path, config_path, env, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        *locust_command(),
        "--traffic-config",
        str(config_path),
        "--headless",
        "--only-summary",
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_a_backfill_inside_locust_stores_the_planned_days_and_shows_in_the_stats(setup):
    tmp_path, port, config_path, env = setup
    first, last = date.today() - timedelta(days=5), date.today() - timedelta(days=3)
    result = _locust(
        tmp_path,
        config_path,
        env,
        "--traffic-backfill",
        f"{first}:{last}",
        "--traffic-report",
        "report.json",
        "--csv",
        "run",
        "-t",
        "90s",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "backfill complete: 2 target(s), 3 day(s)" in output and "Shape test stopping" in output
    config = load_config(config_path, env=env)
    stored = receiver_stats(port)
    for target in config.enabled_targets:
        site = stored[instance_path(target.url)]["sites"][str(target.site_id)]
        assert site["visits"] == 3 * target.visits_per_day and site["invalid"] == {}, (target.name, site)
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"[Alpha] bulk", "[Beta] bulk", "Aggregated"}
    assert all(int(row["Failure Count"]) == 0 and int(row["Request Count"]) > 0 for row in rows.values())
    assert "bfl-alpha-token-1" not in output and "bfl-alpha-token-1" not in (tmp_path / "run_stats.csv").read_text()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "trafficinator_locust.cli",
            "verify",
            str(config_path),
            "--report",
            str(tmp_path / "report.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_backfill_range_in_the_future_is_refused_before_anything_starts(setup):
    tmp_path, port, config_path, env = setup
    later = date.today() + timedelta(days=3)
    result = _locust(tmp_path, config_path, env, "--traffic-backfill", f"{date.today()}:{later}", "-t", "30s")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--traffic-backfill:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "backfill-checkpoint.json").exists()
    bad = _locust(tmp_path, config_path, env, "--traffic-backfill", "last week", "-t", "30s")
    assert bad.returncode == 2 and "is not a day range like 2026-01-01:2026-01-31" in bad.stderr
    assert sum(site["hits"] for instance in receiver_stats(port).values() for site in instance["sites"].values()) == 0
