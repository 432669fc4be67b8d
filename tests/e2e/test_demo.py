"""The README's demo, as a new user runs it (shorter): three targets, all checks ok, no token shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "demo.yaml"


def _demo_tokens() -> list[str]:
    """The demo's default tokens, read from the file (``${VAR:-token}``)."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    return [target["token_auth"].split(":-", 1)[1].rstrip("}") for target in raw["targets"]]


def test_demo_prints_three_healthy_targets_and_no_token():
    result = subprocess.run(
        [sys.executable, "-m", "trafficinator_locust.cli", "demo", "--run-time", "5s", "--users", "12"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in {"Development", "Staging", "Production"}
    ]
    assert len(rows) == 3, result.stdout
    for row in rows:
        cells = row.split()
        requests, failures, started, stored, invalid, check = cells[-6:]
        assert int(requests) > 0 and int(failures) == 0 and int(invalid) == 0, row
        assert int(stored) == int(started) > 0, row
        assert check == "ok", row
    tokens = _demo_tokens()
    assert len(tokens) == 3 and all(len(t) > 8 for t in tokens)
    for token in tokens:
        assert token not in output
