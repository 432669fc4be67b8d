"""End to end: distribution modes that change where visits go.

``mirror``: three targets with the same cap, far more users than needed, one local Locust process:
each target stores the same number of visits, the same visitors (cids), and per visitor the same hit
sequence. ``random``: each visit's target is drawn by weight, whichever user sends it.
"""

from __future__ import annotations

import os
import subprocess

from harness import locust_command

from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CONFIG = """
distribution: mirror
defaults:
  visits_per_day: 40
  traffic:
    pageviews: {{min: 1, max: 4}}
    dwell_seconds: {{min: 0.01, max: 0.05}}
    pause_between_visits: {{min: 0, max: 0.01}}
    actions: {{search: 0.3, event: 0.3}}
targets:
  - {{name: One, url: "http://127.0.0.1:{port}/one/matomo.php", site_id: 1, timezone: UTC}}
  - {{name: Two, url: "http://127.0.0.1:{port}/two/matomo.php", site_id: 1, timezone: America/New_York,
      token_auth: mirror-token-2}}
  - {{name: Three, url: "http://127.0.0.1:{port}/three/matomo.php", site_id: 5, timezone: Asia/Tokyo}}
"""


def test_mirror_sends_identical_visits_to_every_target(tmp_path):
    port = free_port()
    config = tmp_path / "traffic.yaml"
    config.write_text(CONFIG.format(port=port))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    sink = start_receiver(config, port, env, "--record-hits")
    try:
        result = subprocess.run(
            [
                *locust_command(),
                "--traffic-config",
                str(config),
                "--headless",
                "--traffic-pacing",
                "stress",
                "-u",
                "30",
                "-r",
                "30",
                "-t",
                "60s",
                "--only-summary",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        stored = receiver_stats(port)
    finally:
        stop_process(sink)
    assert result.returncode == 0, result.stderr[-3000:]
    sites = [stored["/one"]["sites"]["1"], stored["/two"]["sites"]["1"], stored["/three"]["sites"]["5"]]
    assert [site["visits"] for site in sites] == [40, 40, 40]
    assert all(site["invalid"] == {} for site in sites)
    logs = [site["hit_log"] for site in sites]
    assert set(logs[0]) == set(logs[1]) == set(logs[2]), "the same visitors everywhere"
    for cid, hits in logs[0].items():
        assert hits == logs[1][cid] == logs[2][cid], f"visitor {cid} got different hits"
    assert sum(len(hits) for hits in logs[0].values()) > 80


RANDOM = """
distribution: random
defaults:
  traffic:
    pageviews: {{min: 1, max: 2}}
    dwell_seconds: {{min: 0.01, max: 0.03}}
    pause_between_visits: {{min: 0, max: 0.01}}
targets:
  - {{name: Light, url: "http://127.0.0.1:{port}/light/matomo.php", site_id: 1, weight: 1}}
  - {{name: Heavy, url: "http://127.0.0.1:{port}/heavy/matomo.php", site_id: 1, weight: 3}}
"""


def test_random_draws_each_visits_target_by_weight(tmp_path):
    port = free_port()
    config = tmp_path / "traffic.yaml"
    config.write_text(RANDOM.format(port=port))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    sink = start_receiver(config, port, env)
    try:
        result = subprocess.run(
            [
                *locust_command(),
                "--traffic-config",
                str(config),
                "--headless",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "5s",
                "--only-summary",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        stored = receiver_stats(port)
    finally:
        stop_process(sink)
    assert result.returncode == 0, result.stderr[-3000:]
    light, heavy = stored["/light"]["sites"]["1"]["visits"], stored["/heavy"]["sites"]["1"]["visits"]
    # one user per class; with 'weighted' each target would get about half the visits
    assert light + heavy > 100
    assert 0.65 < heavy / (light + heavy) < 0.85, (light, heavy)
