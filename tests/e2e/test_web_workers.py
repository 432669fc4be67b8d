"""End to end: a target added through the web API reaches a worker started with no config (``-f -``).

The master runs with its web UI; the worker gets the config from the master (generation 0) and,
after ``POST /api/targets`` adds a target, the next generation at the next test start. The receiver
must then store visits for the new target, sent by the worker (the master runs no users).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from harness import locust_command

from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

TARGETS = """
defaults:
  traffic:
    pageviews: {{min: 1, max: 2}}
    dwell_seconds: {{min: 0.05, max: 0.1}}
    pause_between_visits: {{min: 0, max: 0.1}}
targets:
  - {{name: Alpha, url: "http://127.0.0.1:{port}/alpha/matomo.php", site_id: 1}}
"""
DELTA = {"name": "Delta", "site_id": 4}


def _wait_until(condition, seconds: float, what: str, processes: list[subprocess.Popen[str]], logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        for process, log in zip(processes, logs):
            assert process.poll() is None, f"{log.name} exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n".join(
            log.read_text()[-2000:] for log in logs
        )
        time.sleep(0.2)


def test_a_target_added_in_the_web_ui_runs_on_a_worker_started_without_config(tmp_path: Path):
    sink_port = free_port()
    sink_config = tmp_path / "sink.yaml"  # the receiver knows Delta's instance from the start
    sink_config.write_text(
        TARGETS.format(port=sink_port)
        + f'  - {{name: Delta, url: "http://127.0.0.1:{sink_port}/delta/matomo.php", site_id: 4}}\n'
    )
    config = tmp_path / "traffic.yaml"
    config.write_text(TARGETS.format(port=sink_port))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    for name in ("TRAFFICINATOR_CONFIG", "TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
        env.pop(name, None)
    sink = start_receiver(sink_config, sink_port, env)
    web_port, master_port = free_port(), free_port()
    logs = [tmp_path / "master.log", tmp_path / "worker.log"]
    master_cmd = [
        *locust_command(),
        "--traffic-config",
        str(config),
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(master_port),
        "--web-port",
        str(web_port),
        "--traffic-state",
        "",
        "--traffic-presets",
        str(tmp_path / "presets.sqlite3"),
    ]
    worker_cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        "-",
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(master_port),
    ]
    processes: list[subprocess.Popen[str]] = []
    try:
        for command, log in zip((master_cmd, worker_cmd), logs):
            with open(log, "w") as handle:
                processes.append(
                    subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
                )
        url = f"http://127.0.0.1:{web_port}"
        session = requests.Session()

        def ready() -> bool:
            try:
                return (
                    session.get(url + "/api/status", timeout=2).status_code == 200
                    and "has no traffic config" in logs[0].read_text()
                )
            except requests.ConnectionError:
                return False

        _wait_until(ready, 60, "the web UI and the worker's hello", processes, logs)
        added = session.post(
            url + "/api/targets", json={**DELTA, "url": f"http://127.0.0.1:{sink_port}/delta/matomo.php"}, timeout=10
        )
        assert added.status_code == 201, added.text
        started = session.post(url + "/swarm", data={"user_count": 4, "spawn_rate": 4}, timeout=10)
        assert started.status_code == 200 and started.json()["success"], started.text

        def delta_stored() -> bool:
            sites = receiver_stats(sink_port)["/delta"]["sites"]
            return sites.get("4", {}).get("visits", 0) >= 3

        _wait_until(delta_stored, 60, "visits of the added target", processes, logs)
        stored = receiver_stats(sink_port)
        assert stored["/alpha"]["sites"]["1"]["visits"] > 0 and stored["/delta"]["sites"]["4"]["invalid"] == {}
        master_log, worker_log = (log.read_text() for log in logs)
        assert "config generation 1 with 2 enabled targets" in master_log
        assert "Traceback" not in worker_log and "Traceback" not in master_log, worker_log[-3000:]
    finally:
        for process in processes:
            stop_process(process)
        stop_process(sink)
