"""Paced rates per target over minutes, and isolation from failing targets.

Why: a Matomo administrator sets ``visits_per_day`` per target and expects that pace, whatever the
other targets do. This runs real ``locust`` (paced, the shape sizing the users) for several minutes
against the embedded receiver with three healthy targets at different rates, plus one target on a
closed port and one behind a receiver that answers after 5 s, and prints per target the visits the
receiver stored beside the visits expected at the target's pace over the run's own window
(``expected_visits`` of the plugin's report). Healthy targets should be within 2 %.
Prints figures, asserts nothing. Only 127.0.0.1.

    .venv/bin/python bench/rates.py [--minutes 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trafficinator_locust.core.table import render_table
from trafficinator_locust.demo import LOCUSTFILE
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CONFIG = """
defaults:
  traffic:
    pageviews: {{min: 2, max: 4}}
    dwell_seconds: {{min: 0.5, max: 1.5}}
    pause_between_visits: {{min: 0, max: 0.2}}
    visitors: {{returning: 0}}
targets:
  - {{name: Fast, url: "http://127.0.0.1:{port}/fast/matomo.php", site_id: 1, visits_per_day: 864000, timezone: UTC}}
  - {{name: Medium, url: "http://127.0.0.1:{port}/medium/matomo.php", site_id: 2, visits_per_day: 259200,
      timezone: America/New_York}}
  - {{name: Slow, url: "http://127.0.0.1:{port}/slow/matomo.php", site_id: 3, visits_per_day: 43200,
      timezone: Asia/Tokyo}}
  - {{name: Refusing, url: "http://127.0.0.1:{closed}/down/matomo.php", site_id: 1, visits_per_day: 172800}}
  - {{name: Delayed, url: "http://127.0.0.1:{slow_port}/lag/matomo.php", site_id: 1, visits_per_day: 172800}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rates-bench-") as tmp:
        workdir = Path(tmp)
        port, slow_port, closed = free_port(), free_port(), free_port()
        config = workdir / "traffic.yaml"
        config.write_text(CONFIG.format(port=port, slow_port=slow_port, closed=closed))
        env = {**os.environ, "XDG_STATE_HOME": str(workdir / "state")}
        sink = start_receiver(config, port, env)
        lagging = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trafficinator_locust.cli",
                "sink",
                "--port",
                str(slow_port),
                "--instance",
                "/lag",
                "--delay",
                "5",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert lagging.stdout is not None and "listening" in lagging.stdout.readline()
        try:
            report_path = workdir / "report.json"
            command = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--traffic-config",
                str(config),
                "--headless",
                "-t",
                f"{int(args.minutes * 60)}s",
                "--traffic-report",
                str(report_path),
                "--only-summary",
                "--exit-code-on-error",
                "0",
            ]
            subprocess.run(
                command,
                env=env,
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=args.minutes * 60 + 120,
            )
            stored = receiver_stats(port)
            lag_stored = receiver_stats(slow_port)
        finally:
            stop_process(sink)
            stop_process(lagging)
        report = json.loads(report_path.read_text())
    rows = []
    for entry in report["targets"]:
        name = entry["target"]
        source = lag_stored if name == "Delayed" else stored
        site = (
            source.get("/lag" if name == "Delayed" else f"/{name.lower()}", {})
            .get("sites", {})
            .get(str(entry["site_id"]), {})
        )
        kept = site.get("visits", 0)
        expected = entry.get("expected_visits") or 0
        error = f"{100 * (kept - expected) / expected:+.2f} %" if expected else "-"
        rows.append([name, f"{expected:.1f}", entry["visits_started"], kept, error, entry["failures"], entry["state"]])
    seconds = report.get("run", {}).get("seconds", 0)
    print(f"paced run of {seconds:.0f} s; expected = the target's pace integrated over the run window")
    print(
        render_table(
            ["target", "expected", "started", "stored", "stored vs expected", "failed requests", "state"], rows
        )
    )
    print("goal: healthy targets (Fast, Medium, Slow) within 2 % while Refusing and Delayed fail on their own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
