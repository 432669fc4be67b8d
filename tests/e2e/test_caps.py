"""End to end: daily caps and paced rates hold across real ``locust`` processes and restarts.

Every run sends to the embedded receiver, which counts what it stored per target: the numbers a
Matomo administrator would see. Caps of 200 / 50 / 0 must be stored *exactly* whether users run in
one process, in ``--processes 2`` or in two worker processes of a master, and the run must end by
itself once the budgets are spent. A worker killed mid-run and a restarted master must never push a
target past its cap. Paced runs get their users from the shape and deliver the pace.

Each test gets its own receiver and its own ``XDG_STATE_HOME`` (the default state file lives
there), so no count leaks from one test into another.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from harness import locust_command, wait_all

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process
from trafficinator_locust.runtime.shape import mean_visit_seconds, pool_size

CONFIG = """
defaults:
  traffic:
    pageviews: {{min: {pv_min}, max: 3}}
    dwell_seconds: {{min: {dwell_min}, max: {dwell_max}}}
    pause_between_visits: {{min: 0, max: 0.02}}
targets:
  - name: Alpha
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 1
    weight: 2
    visits_per_day: {alpha}
    timezone: {alpha_zone}
  - name: Beta Shop
    url: http://127.0.0.1:{port}/beta/matomo.php
    site_id: 2
    weight: 1
    visits_per_day: {beta}
    timezone: {beta_zone}
  - name: Gamma
    url: http://127.0.0.1:{port}/gamma/matomo.php
    site_id: 3
    weight: 1
    visits_per_day: {gamma}
    timezone: Asia/Tokyo
"""
CAPS = {"Alpha": 200, "Beta Shop": 50, "Gamma": 0}
RUN_TIMEOUT = 90


class Receiver:
    """The receiver of one test, its config file and the environment every process gets."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.config_path = tmp_path / "traffic.yaml"
        self.env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
        self.env.pop("TRAFFICINATOR_CONFIG", None)
        self.process = None

    def start(
        self,
        alpha: int,
        beta: int,
        gamma: int,
        dwell: tuple[float, float] = (0.01, 0.05),
        zones: tuple[str, str] = ("UTC", "America/New_York"),
        pv_min: int = 1,
    ) -> None:
        text = CONFIG.format(
            port=self.port,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            dwell_min=dwell[0],
            dwell_max=dwell[1],
            alpha_zone=zones[0],
            beta_zone=zones[1],
            pv_min=pv_min,
        )
        self.config_path.write_text(text, encoding="utf-8")
        self.process = start_receiver(self.config_path, self.port, self.env)

    def stored(self) -> dict[str, int]:
        """Visits the receiver stored per target name."""
        stats = receiver_stats(self.port)
        config = load_config(self.config_path, env=self.env)
        return {t.name: stats[instance_path(t.url)]["sites"][str(t.site_id)]["visits"] for t in config.enabled_targets}

    def command(self, *extra: str) -> list[str]:
        return [
            *locust_command(),
            "--traffic-config",
            str(self.config_path),
            *extra,
        ]

    def run(self, *extra: str, timeout: float = RUN_TIMEOUT) -> tuple[subprocess.CompletedProcess[str], float]:
        began = time.monotonic()
        result = subprocess.run(
            self.command(*extra), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.tmp_path
        )
        return result, time.monotonic() - began

    def spawn(self, *extra: str, log: str) -> subprocess.Popen[str]:
        handle = open(self.tmp_path / log, "w", encoding="utf-8")
        return subprocess.Popen(
            self.command(*extra), env=self.env, stdout=handle, stderr=subprocess.STDOUT, text=True, cwd=self.tmp_path
        )

    def spawn_bare(self, *args: str, log: str) -> subprocess.Popen[str]:
        """``locust`` with only ``args``: no locustfile or traffic config of ours."""
        handle = open(self.tmp_path / log, "w", encoding="utf-8")
        return subprocess.Popen(
            [sys.executable, "-m", "locust", *args],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.tmp_path,
        )

    def log(self, name: str) -> str:
        return (self.tmp_path / name).read_text(encoding="utf-8", errors="replace")


@pytest.fixture()
def receiver(tmp_path: Path):
    receiver = Receiver(tmp_path)
    yield receiver
    if receiver.process is not None:
        stop_process(receiver.process)


def _stress(*extra: str) -> tuple[str, ...]:
    return ("--headless", "--traffic-pacing", "stress", "-u", "60", "-r", "60", "-t", "60s", "--only-summary", *extra)


def _report(receiver: Receiver) -> dict[str, dict]:
    document = json.loads((receiver.tmp_path / "report.json").read_text())
    return {row["target"]: row for row in document["targets"]}


def _master_and_workers(
    receiver: Receiver, master_args: tuple[str, ...], workers: int = 2, shipped: bool = False
) -> tuple[subprocess.Popen[str], list[subprocess.Popen[str]]]:
    """A master and its workers; ``shipped``: workers started as ``locust -f - --worker`` with no config at all."""
    port = free_port()
    master = receiver.spawn(
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
        *master_args,
        log="master.log",
    )
    worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    if shipped:  # one `locust -f - --worker --processes N`: forked workers, none with the YAML
        return master, [receiver.spawn_bare("-f", "-", *worker_args, "--processes", str(workers), log="worker0.log")]
    return master, [receiver.spawn(*worker_args, log=f"worker{i}.log") for i in range(workers)]


@pytest.mark.parametrize("mode", ["local", "processes"])
def test_caps_are_stored_exactly_and_the_run_ends_by_itself(receiver: Receiver, mode: str):
    receiver.start(**{"alpha": 200, "beta": 50, "gamma": 0})
    extra = ("--processes", "2") if mode == "processes" else ()
    result, elapsed = receiver.run(*_stress("--traffic-report", str(receiver.tmp_path / "report.json"), *extra))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert receiver.stored() == CAPS
    assert "every target's daily budget is spent" in output
    assert elapsed < 45, f"the run should end once the budgets are spent, not at -t (took {elapsed:.0f}s)"
    rows = _report(receiver)
    for name, cap in CAPS.items():
        assert rows[name]["cap_today"] == cap and rows[name]["granted_today"] == cap
        assert rows[name]["state"] == "capped"
    if mode == "local":  # workers' last tallies may miss the master's final report; the receiver is the truth
        assert {name: row["visits_started"] for name, row in rows.items()} == CAPS


@pytest.mark.parametrize("shipped", [False, True], ids=["two-workers-with-yaml", "f-dash-worker-processes-2"])
def test_caps_are_stored_exactly_with_a_master_and_two_worker_processes(receiver: Receiver, shipped: bool):
    receiver.start(alpha=200, beta=50, gamma=0)
    master, workers = _master_and_workers(receiver, _stress(), shipped=shipped)
    wait_all([master, *workers], RUN_TIMEOUT)
    output = receiver.log("master.log")
    assert master.returncode == 0, output[-3000:]
    assert receiver.stored() == CAPS, output[-3000:] + receiver.log("worker0.log")[-2000:]
    assert "every target's daily budget is spent" in output
    if shipped:  # the workers really ran without the YAML: they took the master's config
        assert "has no traffic config; it gets the master's" in output
        assert "Traceback" not in receiver.log("worker0.log"), receiver.log("worker0.log")[-3000:]


def test_a_worker_killed_mid_run_never_pushes_a_target_past_its_cap(receiver: Receiver):
    # Longer visits so the run lasts a few seconds and the kill lands mid-run.
    receiver.start(alpha=200, beta=50, gamma=0, dwell=(0.2, 0.4))
    master, workers = _master_and_workers(
        receiver,
        ("--headless", "--traffic-pacing", "stress", "-u", "40", "-r", "40", "-t", "90s", "--traffic-lease-ttl", "6"),
    )
    try:
        deadline = time.monotonic() + 60
        while receiver.stored()["Alpha"] < 40:
            assert time.monotonic() < deadline, "no traffic reached the receiver"
            assert master.poll() is None, receiver.log("master.log")[-3000:]
            time.sleep(0.1)
        workers[0].send_signal(signal.SIGKILL)
        killed_at = receiver.stored()
        wait_all([master, workers[1]], RUN_TIMEOUT)
    finally:
        wait_all([workers[0]], 5)
    stored = receiver.stored()
    output = receiver.log("master.log")
    assert master.returncode is not None
    assert killed_at["Alpha"] < CAPS["Alpha"], f"the kill came too late to test anything: {killed_at}"
    for name, cap in CAPS.items():
        assert stored[name] <= cap, f"{name}: stored {stored[name]} > cap {cap} after a worker was killed"
    assert "every target's daily budget is spent" in output, output[-3000:]
    print(f"stored at the kill {killed_at}, at the end {stored}")


def test_a_restarted_master_continues_the_days_count(receiver: Receiver):
    # Visits of 2-3 pageviews 0.5 s apart (about 1.5 s each): 30 users store about 35 in 3 s, far from 100.
    receiver.start(alpha=100, beta=0, gamma=0, dwell=(0.5, 0.5), pv_min=2)
    first, _ = receiver.run(
        "--headless", "--traffic-pacing", "stress", "-u", "30", "-r", "30", "-t", "3s", "--only-summary"
    )
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    after_first = receiver.stored()["Alpha"]
    assert 0 < after_first < 100, f"the first run should stop early, it stored {after_first}"
    budgets = (receiver.tmp_path / "state" / "trafficinator").glob("*.json")
    (state_file,) = [path for path in budgets if ".visitors-" not in path.name]  # not the visitor books
    saved = json.loads(state_file.read_text())
    assert saved["targets"]["Alpha"]["granted"] == after_first and saved["leases"] == []

    second, elapsed = receiver.run(*_stress())
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert receiver.stored()["Alpha"] == 100, f"first run {after_first}, both runs {receiver.stored()['Alpha']}"
    assert elapsed < 45
    assert json.loads(state_file.read_text())["targets"]["Alpha"]["granted"] == 100
    print(f"first run stored {after_first}, both runs {receiver.stored()['Alpha']} of 100")


def _daytime_zones(count: int) -> list[str]:
    """Zones where it is now between 02:00 and 22:00, so no local midnight falls inside a test."""
    candidates = [
        "UTC",
        "America/New_York",
        "Asia/Tokyo",
        "Europe/Stockholm",
        "America/Los_Angeles",
        "Australia/Sydney",
        "Asia/Kolkata",
    ]
    chosen = [zone for zone in candidates if 2 <= datetime.now(ZoneInfo(zone)).hour < 22]
    return chosen[:count]


def test_a_paced_run_gets_users_from_the_shape_and_keeps_the_pace(receiver: Receiver):
    # 864000/day = 10 visits/s and 432000/day = 5 visits/s; no -u, so the shape sizes the users.
    receiver.start(alpha=864000, beta=432000, gamma=0)
    report = receiver.tmp_path / "report.json"
    result, elapsed = receiver.run("--headless", "-t", "5s", "--traffic-report", str(report), "--only-summary")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "--run-time limit reached" in output and elapsed < 30
    config = load_config(receiver.config_path, env=receiver.env)
    expected_users = {
        t.class_name: pool_size(t.visits_per_day / 86400, mean_visit_seconds(t)) if t.visits_per_day else 1
        for t in config.enabled_targets
    }
    spawned = json.loads(re.search(r"All users spawned: (\{.*?\})", output).group(1))
    assert spawned == expected_users
    stored, rows = receiver.stored(), _report(receiver)
    for name in ("Alpha", "Beta Shop"):
        expected = rows[name]["expected_visits"]
        assert expected > 10
        # The bucket starts empty and hands out a permit as soon as a fraction accrued: +-2 visits.
        assert abs(stored[name] - expected) <= 0.1 * expected + 2, f"{name}: stored {stored[name]}, pace {expected}"
        assert rows[name]["visits_started"] == stored[name] and rows[name]["state"] == "running"
    assert stored["Gamma"] == 0 and rows["Gamma"]["state"] == "capped"


def test_the_shape_ends_a_paced_run_when_the_rest_of_the_day_is_spent(receiver: Receiver):
    # A state file from earlier today leaves 12 and 6 visits; at 10/s and 5/s they go in about a second.
    zones = _daytime_zones(2)
    if len(zones) < 2:
        pytest.skip("no two daytime zones right now")
    receiver.start(alpha=864000, beta=432000, gamma=0, zones=(zones[0], zones[1]))
    state_path = receiver.tmp_path / "budget.json"
    days = {name: datetime.now(ZoneInfo(zone)).date().isoformat() for name, zone in zip(("Alpha", "Beta Shop"), zones)}
    state = {
        "version": 1,
        "next_lease": 500,
        "leases": [],
        "targets": {
            "Alpha": {"day": days["Alpha"], "granted": 864000 - 12},
            "Beta Shop": {"day": days["Beta Shop"], "granted": 432000 - 6},
        },
    }
    state_path.write_text(json.dumps(state))
    result, elapsed = receiver.run("--headless", "-t", "60s", "--traffic-state", str(state_path), "--only-summary")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "every target's daily budget is spent" in output and elapsed < 30
    assert receiver.stored() == {"Alpha": 12, "Beta Shop": 6, "Gamma": 0}
    saved = json.loads(state_path.read_text())
    assert saved["targets"]["Alpha"]["granted"] == 864000 and saved["targets"]["Beta Shop"]["granted"] == 432000


def test_a_target_that_refuses_connections_fails_alone(receiver: Receiver):
    receiver.start(alpha=120, beta=40, gamma=5)
    dead = free_port()  # nothing listens there
    text = receiver.config_path.read_text().replace(f"127.0.0.1:{receiver.port}/gamma", f"127.0.0.1:{dead}/gamma")
    receiver.config_path.write_text(text)
    report = receiver.tmp_path / "report.json"
    result, elapsed = receiver.run(*_stress("--traffic-report", str(report), "--exit-code-on-error", "0"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    stored, rows = receiver.stored(), _report(receiver)
    assert (stored["Alpha"], stored["Beta Shop"], stored["Gamma"]) == (120, 40, 0)
    assert (
        rows["Gamma"]["state"] == "failing"
        and rows["Gamma"]["visits_failed"] == 5
        and rows["Gamma"]["visits_started"] == 0
    )
    assert rows["Alpha"]["failures"] == 0 and rows["Alpha"]["state"] == "capped"
    assert elapsed < 45
