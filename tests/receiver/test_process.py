"""The receiver as a child process (what the demo, e2e tests and benchmarks use): started for a
config's targets, asked for its stats, stopped by its handle; one that cannot start says why."""

import os
import urllib.request

import pytest

from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CONFIG = """
targets:
  - name: Shop
    url: http://127.0.0.1:{port}/shop/matomo.php
    site_id: 3
    token_auth: process-test-token-1
    timezone: Europe/Paris
    visits_per_day: 10
"""


def test_start_receiver_serves_the_targets_of_a_config_until_stopped(tmp_path):
    port = free_port()
    config = tmp_path / "traffic.yaml"
    config.write_text(CONFIG.format(port=port), encoding="utf-8")
    process = start_receiver(config, port, dict(os.environ), "--record-hits")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/shop/matomo.php?idsite=3&rec=1", timeout=10) as answer:
            assert answer.status == 200
        site = receiver_stats(port)["/shop"]["sites"]["3"]
        assert site["hits"] == 1 and site["hit_log"] == {"": [["pageview", ""]]}
    finally:
        stop_process(process)
    assert process.returncode == 0  # SIGTERM: a clean stop


def test_a_receiver_that_cannot_start_is_an_error_with_what_it_said(tmp_path):
    with pytest.raises(RuntimeError, match="the receiver did not start") as failed:
        start_receiver(tmp_path / "missing.yaml", free_port(), dict(os.environ))
    assert "missing.yaml" in str(failed.value)
