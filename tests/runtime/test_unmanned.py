"""A target whose weight leaves it no user with ``-u`` is named at start, not left to send nothing."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)

from pathlib import Path

from trafficinator_locust.core.config import load_config
from trafficinator_locust.runtime.coordinator import unmanned

CONFIG = """
distribution: {distribution}
targets:
  - {{name: Big, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1, weight: 100}}
  - {{name: Other, url: "http://127.0.0.1:9/b/matomo.php", site_id: 2, weight: 100}}
  - {{name: Tiny, url: "http://127.0.0.1:9/c/matomo.php", site_id: 3, weight: 0.5}}
"""


def _config(tmp_path: Path, distribution: str = "weighted"):
    path = tmp_path / "t.yaml"
    path.write_text(CONFIG.format(distribution=distribution), encoding="utf-8")
    return load_config(path, env={})


def test_a_tiny_weight_with_few_users_is_named_with_the_fix(tmp_path: Path):
    [warning] = unmanned(_config(tmp_path), 10)
    assert warning.startswith("target Tiny gets no user: 10 user(s)") and "-u 401" in warning
    assert unmanned(_config(tmp_path), 1000) == []


def test_round_robin_and_random_distributions(tmp_path: Path):
    assert [w.split(":")[0] for w in unmanned(_config(tmp_path, "round-robin"), 2)] == ["target Tiny gets no user"]
    assert unmanned(_config(tmp_path, "round-robin"), 3) == []
    assert unmanned(_config(tmp_path, "random"), 1) == []  # any user sends any target's visits


def test_a_running_paced_target_far_behind_its_pace_is_stalled_not_running():
    from datetime import date

    from trafficinator_locust.core.budget import TargetStatus
    from trafficinator_locust.runtime.summary import target_state

    running = TargetStatus("A", date(2026, 12, 3), 0, None, None, 1.0, 0, "running")
    assert target_state(running, 0, 0, 60.0) == "stalled"  # its users sat on a worker that died
    assert target_state(running, 31, 0, 60.0) == "running"
    assert target_state(running, 0, 0, 9.0) == "running"  # too early to tell
    assert target_state(running, 0, 0, None) == "running"  # stress: no pace to be behind
    assert target_state(running, 0, 40, 60.0) == "failing"  # the tracker is the problem
