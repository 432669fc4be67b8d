"""End to end: ``--traffic-pacing ramp`` finds each Matomo's knee on its own, while the others are loaded.

Three instances of one receiver serve at most 60, 150 and 400 hits/s (``sink --capacity``): each
target's ramp must find its knee within 20 % of its capacity (Mid and Big start higher, from their
YAML ``ramp:`` keys over ``--traffic-ramp``), the small one must not hold back the big
one, the table and the report carry the figures, and ``--traffic-check knee>=100`` fails (exit 3) on
the small one only. Once on a local runner, once on a master with two workers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness import locust_command, receiver_for, wait_all

from trafficinator_locust.receiver.process import free_port

CAPACITIES = {"Small": 60, "Mid": 150, "Big": 400}
CONFIG = """
seed: 3
defaults:
  traffic:
    pageviews: {{min: 1, max: 3}}
    dwell_seconds: {{min: 0.05, max: 0.3}}
    pause_between_visits: {{min: 0, max: 0.05}}
    actions: {{ping: 1}}
targets:
  - {{name: Small, url: "http://127.0.0.1:{port}/small/matomo.php", site_id: 1}}
  - {{name: Mid, url: "http://127.0.0.1:{port}/mid/matomo.php", site_id: 2, ramp: {{start: 40}}}}
  - {{name: Big, url: "http://127.0.0.1:{port}/big/matomo.php", site_id: 3, ramp: {{start: 50, factor: 3}}}}
"""
SINK = ("--capacity", "/small=60", "--capacity", "/mid=150", "--capacity", "/big=400")
RAMP = ("--traffic-pacing", "ramp", "--traffic-ramp", "start=20,factor=2,step=3s")


def _options(folder: Path, config_path: Path) -> tuple[str, ...]:
    return (
        *("--traffic-config", str(config_path), "--headless", "-t", "240s", "--only-summary", *RAMP),
        *("--traffic-state", "", "--traffic-report", str(folder / "report.json"), "--traffic-check", "knee>=100"),
    )


@pytest.mark.parametrize("mode", ["local", "master"])
def test_each_target_finds_its_own_knee_and_the_check_names_the_small_one(tmp_path: Path, mode: str):
    with receiver_for(tmp_path, CONFIG, *SINK) as (_, config_path, env, _):
        log = open(tmp_path / "locust.log", "w+", encoding="utf-8")
        options = _options(tmp_path, config_path)
        if mode == "local":
            processes = [subprocess.Popen(locust_command(*options), env=env, stdout=log, stderr=subprocess.STDOUT)]
        else:
            port = free_port()
            master = (*options, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port))
            worker = ("--traffic-config", str(config_path), "--worker", "--master-host", "127.0.0.1")
            processes = [
                subprocess.Popen(
                    locust_command(*master, "--expect-workers", "2"), env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                *(
                    subprocess.Popen(
                        locust_command(*worker, "--master-port", str(port)),
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for _ in range(2)
                ),
            ]
        code = wait_all(processes, 300)
        log.seek(0)
        output = log.read()
    assert code == 3, output[-4000:]  # knee>=100 fails for Small only
    checks = [line for line in output.splitlines() if "knee>=100" in line]
    assert [line.split()[0] for line in checks] == ["FAIL", "PASS", "PASS"] and "[Small]" in checks[0], checks
    assert "Capacity (--traffic-pacing ramp)" in output
    document = json.loads((tmp_path / "report.json").read_text())
    for entry in document["targets"]:
        capacity, expected = entry["capacity"], CAPACITIES[entry["target"]]
        knee = capacity["knee_hits_per_second"]
        assert knee is not None and 0.8 * expected <= knee <= 1.2 * expected, (entry["target"], capacity)
        assert capacity["limited_by"] in ("p95", "failures", "saturation") and capacity["steps"]
        assert capacity["knee_visits_per_second"] > 0
    specs = {entry["target"]: entry["capacity"]["spec"] for entry in document["targets"]}
    assert specs["Small"].startswith("start=20,factor=2,step=3s") and specs["Big"].startswith(
        "start=50,factor=3,step=3s"
    )
    # independent: the big one climbed past where the small one stopped
    big = next(e for e in document["targets"] if e["target"] == "Big")["capacity"]
    assert max(step["rate_hits_per_second"] for step in big["steps"]) > 2 * CAPACITIES["Small"]
