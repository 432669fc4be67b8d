"""End to end: SIGTERM (a container stop, a CI timeout) ends a headless paced run gracefully, on a local
runner and on a master with a worker: the table, the report and the checks' exit code are written
within ``--stop-timeout``. Before the fix such a run exited 143 at once with nothing written."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import locust_command, receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats

CONFIG = """
defaults:
  visits_per_day: 200000
  traffic:
    pageviews: {{min: 1, max: 2}}
    dwell_seconds: {{min: 0.05, max: 0.2}}
targets:
  - {{name: Alpha, url: "http://127.0.0.1:{port}/alpha/matomo.php", site_id: 1, token_auth: e2e-term-tok-1}}
  - {{name: Beta, url: "http://127.0.0.1:{port}/beta/matomo.php", site_id: 2}}
"""
STOP_TIMEOUT = 5
# A check that fails for sure (no ratio is below 0): exit code 3 proves the
# checks ran after the SIGTERM.
CHECK = "fail_ratio<0"


def _stored_visits(port: int, config_path: Path, env: dict[str, str]) -> int:
    stats = receiver_stats(port)
    config = load_config(config_path, env=env)
    return sum(stats[instance_path(t.url)]["sites"][str(t.site_id)]["visits"] for t in config.targets)


def _wait_for_visits(port: int, config_path: Path, env: dict[str, str], processes: list[subprocess.Popen]) -> None:
    """Until the receiver stored a few visits (the run is under way), bounded."""
    deadline = time.monotonic() + 60
    while _stored_visits(port, config_path, env) < 5:
        assert all(p.poll() is None for p in processes), "a locust process ended before any load"
        assert time.monotonic() < deadline, "no visit arrived within 60 s"
        time.sleep(0.2)  # polling a condition, not synchronising on time


@pytest.mark.parametrize("mode", ["local", "master"])
def test_sigterm_mid_run_writes_the_table_the_report_and_the_check_code(tmp_path: Path, mode: str):
    report = tmp_path / "report.json"
    with receiver_for(tmp_path, CONFIG) as (port, config_path, env, _):
        base = (
            *(
                "--traffic-config",
                str(config_path),
                "--headless",
                "--only-summary",
                "--stop-timeout",
                str(STOP_TIMEOUT),
            ),
            *("--traffic-state", str(tmp_path / "budget.json"), "--traffic-report", str(report)),
            *("--traffic-check", CHECK),
        )
        logs = [open(tmp_path / f"locust{i}.log", "w+", encoding="utf-8") for i in range(2)]
        if mode == "local":
            processes = [subprocess.Popen(locust_command(*base), env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
        else:
            master_port = free_port()
            master = (*base, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port))
            worker = ("--traffic-config", str(config_path), "--worker", "--master-port", str(master_port))
            processes = [
                subprocess.Popen(
                    locust_command(*master, "--expect-workers", "1"), env=env, stdout=logs[0], stderr=subprocess.STDOUT
                ),
                subprocess.Popen(
                    locust_command(*worker, "--master-host", "127.0.0.1"),
                    env=env,
                    stdout=logs[1],
                    stderr=subprocess.STDOUT,
                ),
            ]
        try:
            _wait_for_visits(port, config_path, env, processes)
            sent_at = time.monotonic()
            processes[0].send_signal(signal.SIGTERM)
            code = processes[0].wait(timeout=STOP_TIMEOUT + 30)
            elapsed = time.monotonic() - sent_at
            for other in processes[1:]:
                other.wait(timeout=30)  # the master tells its worker to quit
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        logs[0].seek(0)
        output = logs[0].read()
    assert code == 3, output[-3000:]
    assert elapsed < STOP_TIMEOUT + 15, elapsed
    assert "Trafficinator per-target summary" in output and "Trafficinator checks" in output
    document = json.loads(report.read_text())
    assert {entry["target"] for entry in document["targets"]} == {"Alpha", "Beta"}
    assert sum(entry["visits_started"] for entry in document["targets"]) >= 5
    assert any(not check["passed"] for check in document["run"]["checks"])
