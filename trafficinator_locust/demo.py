"""``trafficinator demo``: a real multi-target Locust run against the embedded receiver, end to end.

Starts ``trafficinator sink`` with the demo's three instances on a free loopback port, runs
``locust --headless`` with the demo config, stops the receiver, and prints, per target, what Locust
sent beside what the receiver stored. Exit code 0 only when every target sent requests without
failures and the receiver stored exactly the visits the generator started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from trafficinator_locust.core.config import Config, load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.core.table import render_table
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
"""The packaged locustfile (``locust -f``): what the demo and the end-to-end tests run."""
DEFAULT_DEMO_CONFIG = Path("config/demo.yaml")
PORT_VARIABLE = "TRAFFICINATOR_SINK_PORT"


def run_locust(
    config_path: Path, env: dict[str, str], run_time: str, users: int, workdir: Path
) -> tuple[int, dict[str, Any]]:
    """Run headless Locust; returns its exit code and the plugin's JSON report."""
    report = workdir / "report.json"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--traffic-config",
        str(config_path),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        run_time,
        "--only-summary",
        "--traffic-report",
        str(report),
        "--csv",
        str(workdir / "demo"),
    ]
    with open(workdir / "locust.log", "w", encoding="utf-8") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir).returncode
    if not report.exists():
        return code, {"targets": []}
    return code, json.loads(report.read_text(encoding="utf-8"))


def demo_rows(config: Config, report: dict[str, Any], stored: dict[str, Any]) -> tuple[list[list[Any]], bool]:
    """The table rows, and whether the demo proved what it should."""
    by_name = {row["target"]: row for row in report.get("targets", [])}
    rows, healthy = [], True
    for target in config.enabled_targets:
        sent = by_name.get(target.name, {})
        site = stored.get(instance_path(target.url), {}).get("sites", {}).get(str(target.site_id), {})
        started, kept = sent.get("visits_started", 0), site.get("visits", 0)
        invalid = sum(site.get("invalid", {}).values())
        ok = sent.get("requests", 0) > 0 and sent.get("failures", 1) == 0 and kept == started and invalid == 0
        healthy &= ok
        rows.append(
            [
                target.name,
                target.timezone,
                f"{100 * config.weight_share(target):.0f}%",
                sent.get("requests", 0),
                sent.get("failures", 0),
                started,
                kept,
                invalid,
                "ok" if ok else "CHECK",
            ]
        )
    return rows, healthy


def run_demo(config_path: str | None = None, run_time: str = "30s", users: int = 30, port: int = 0) -> int:
    """``trafficinator demo``: receiver, Locust, table; the exit code (0 healthy, 1 not, 2 no config).

    Example::

        run_demo(run_time="10s", users=12)  # from the repository folder (config/demo.yaml)
    """
    path = Path(config_path) if config_path else DEFAULT_DEMO_CONFIG
    if not path.is_file():
        print(
            f"trafficinator demo: {path} not found; run it from the repository folder or pass --config FILE",
            file=sys.stderr,
        )
        return 2
    port = port or free_port()
    env = {**os.environ, PORT_VARIABLE: str(port)}
    config = load_config(path.resolve(), env=env)
    with tempfile.TemporaryDirectory(prefix="trafficinator-demo-") as tmp:
        workdir = Path(tmp)
        receiver = start_receiver(path.resolve(), port, env)
        try:
            targets = ", ".join(t.name for t in config.enabled_targets)
            print(
                f"Receiver on http://127.0.0.1:{port} ({targets}); running Locust for {run_time} with {users} users...",
                flush=True,
            )
            code, report = run_locust(path.resolve(), env, run_time, users, workdir)
            stored = receiver_stats(port)
        finally:
            stop_process(receiver)
        if code != 0:
            print((workdir / "locust.log").read_text(encoding="utf-8")[-4000:], file=sys.stderr)
        rows, healthy = demo_rows(config, report, stored)
    headers = [
        "target",
        "timezone",
        "weight",
        "requests",
        "failures",
        "visits started",
        "visits stored",
        "invalid hits",
        "check",
    ]
    print("\n" + render_table(headers, rows))
    verdict = (
        "every target: requests sent, 0 failures, receiver stored every visit"
        if healthy
        else "some target did not pass (see 'check')"
    )
    print(f"\n{verdict}")
    return 0 if healthy and code == 0 else 1
