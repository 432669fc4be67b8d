"""End to end: real ``locust`` processes (headless, and master + workers) against the receiver.

What a Matomo administrator needs to trust: every target gets its own ``[<name>] pageview`` stats,
the receiver stores exactly as many visits as the generator started (no visitor collapses into
another), no hit is invalid, and no token leaks into any output.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import locust_command

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

TOKENS = {"Alpha": "e2e-alpha-token-93jd7", "Beta Shop": "e2e-beta-token-k2k2k", "Gamma": "e2e-gamma-token-zz81q"}

CONFIG = """
defaults:
  traffic:
    pageviews: {{min: 2, max: 4}}
    dwell_seconds: {{min: 0.05, max: 0.3}}
    pause_between_visits: {{min: 0, max: 0.1}}
    visitors: {{returning: 0}}   # every visit a new visitor: unique visitors must equal visits
targets:
  - name: Alpha
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 1
    token_auth: {alpha}
    weight: 2
    timezone: UTC
  - name: Beta Shop
    url: http://127.0.0.1:{port}/beta
    site_id: 7
    token_auth: ${{BETA_TOKEN}}
    weight: 3
    timezone: America/New_York
  - name: Gamma
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 2
    token_auth: {gamma}
    weight: 5
    timezone: Asia/Tokyo
"""


@pytest.fixture()
def setup(tmp_path: Path):
    port = free_port()
    config_path = tmp_path / "traffic.yaml"
    config_path.write_text(CONFIG.format(port=port, alpha=TOKENS["Alpha"], gamma=TOKENS["Gamma"]), encoding="utf-8")
    env = {**os.environ, "BETA_TOKEN": TOKENS["Beta Shop"]}
    sink = start_receiver(config_path, port, env)
    yield config_path, port, env
    stop_process(sink)


def _locust(config_path: Path, workdir: Path, env: dict[str, str], *extra: str) -> list[str]:
    return [
        *locust_command(),
        "--traffic-config",
        str(config_path),
        "--traffic-report",
        str(workdir / "report.json"),
        "--csv",
        str(workdir / "run"),
        *extra,
    ]


def _check_run(config_path: Path, port: int, workdir: Path, env: dict[str, str], output: str) -> None:
    config = load_config(config_path, env=env)
    report = json.loads((workdir / "report.json").read_text())
    rows = {row["target"]: row for row in report["targets"]}
    stored = receiver_stats(port)
    with open(workdir / "run_stats.csv", newline="") as handle:
        names = {row["Name"]: row for row in csv.DictReader(handle)}
    for target in config.enabled_targets:
        assert f"[{target.name}] pageview" in names, f"no pageview stats row for {target.name}"
        assert int(names[f"[{target.name}] pageview"]["Request Count"]) > 0
        site = stored[instance_path(target.url)]["sites"][str(target.site_id)]
        sent = rows[target.name]
        assert sent["failures"] == 0, sent
        assert sent["visits_started"] > 0
        assert site["visits"] == sent["visits_started"], (
            f"{target.name}: receiver stored {site['visits']} visits, generator started {sent['visits_started']}"
        )
        assert site["unique_visitors"] == sent["visits_started"], (
            f"{target.name}: visitors collapsed into {site['unique_visitors']} of {sent['visits_started']}"
        )
        assert site["hits"] == sent["requests"], (
            f"{target.name}: receiver stored {site['hits']} of {sent['requests']} hits"
        )
        assert site["invalid"] == {}, site["invalid"]
        assert site["actions"]["pageview"] > 0
    everything = output + "".join(p.read_text(errors="replace") for p in workdir.iterdir() if p.is_file())
    for token in TOKENS.values():
        assert token not in everything, "a token leaked into Locust's output, CSV or report"


def test_headless_run_three_targets(setup, tmp_path: Path):
    config_path, port, env = setup
    workdir = tmp_path / "out"
    workdir.mkdir()
    command = _locust(config_path, workdir, env, "--headless", "-u", "15", "-r", "15", "-t", "6s")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trafficinator per-target summary" in result.stdout + result.stderr
    _check_run(config_path, port, workdir, env, result.stdout + result.stderr)
    # the run's own report, checked against what the receiver's Reporting API says it stored
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "trafficinator_locust.cli",
            "verify",
            str(config_path),
            "--report",
            str(workdir / "report.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not any(token in verify.stdout + verify.stderr for token in TOKENS.values())


def test_master_and_two_workers(setup, tmp_path: Path):
    config_path, port, env = setup
    workdir = tmp_path / "out"
    workdir.mkdir()
    master_port = free_port()
    master = subprocess.Popen(
        _locust(
            config_path,
            workdir,
            env,
            "--headless",
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            "2",
            "-u",
            "15",
            "-r",
            "15",
            "-t",
            "8s",
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    )
    worker_command = [
        *locust_command(),
        "--traffic-config",
        str(config_path),
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        str(master_port),
    ]
    workers = [
        subprocess.Popen(
            worker_command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir
        )
        for _ in range(2)
    ]
    try:
        output, _ = master.communicate(timeout=120)
        worker_output = "".join(w.communicate(timeout=60)[0] for w in workers)
    finally:
        for process in [master, *workers]:
            if process.poll() is None:
                process.kill()
    assert master.returncode == 0, output[-3000:]
    _check_run(config_path, port, workdir, env, output + worker_output)


def test_traffic_checks_set_the_exit_code(setup, tmp_path: Path):
    """CI thresholds per target: a passing rule keeps 0, a failing one gives 3 and names the target, a typo gives 2."""
    config_path, port, env = setup
    base = [
        *locust_command(),
        "--traffic-config",
        str(config_path),
        "--headless",
        "-u",
        "6",
        "-r",
        "6",
        "-t",
        "2s",
    ]
    passing = subprocess.run(
        base + ["--traffic-check", "fail_ratio<0.01,Alpha:requests>0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert passing.returncode == 0, passing.stderr[-2000:]
    failing = subprocess.run(
        base + ["--traffic-check", "Beta Shop:requests<1", "--traffic-report", str(tmp_path / "r.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert failing.returncode == 3, failing.stderr[-2000:]
    assert "FAIL [Beta Shop] requests<1" in failing.stdout + failing.stderr
    checks = json.loads((tmp_path / "r.json").read_text())["run"]["checks"]
    assert [(c["target"], c["passed"]) for c in checks] == [("Beta Shop", False)]
    typo = subprocess.run(
        base + ["--traffic-check", "latency<5"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert typo.returncode == 2 and "unknown metric 'latency'" in typo.stderr and "Traceback" not in typo.stderr


def test_master_refuses_a_worker_with_another_config(setup, tmp_path: Path):
    """A worker built from a different config would crash on unknown classes: the master refuses it, exit 2."""
    config_path, port, env = setup
    other = tmp_path / "other.yaml"
    other.write_text(config_path.read_text().replace("weight: 5", "weight: 6"))
    master_port = free_port()
    master = subprocess.Popen(
        [
            *locust_command(),
            "--traffic-config",
            str(config_path),
            "--headless",
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            "1",
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "30s",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    worker = subprocess.Popen(
        [
            *locust_command(),
            "--traffic-config",
            str(other),
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(master_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        output, _ = master.communicate(timeout=60)
        worker.communicate(timeout=60)
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
    assert master.returncode == 2, output[-3000:]
    assert "runs a different traffic config" in output and "Traceback" not in output
