"""Helpers shared by tests of several folders (``tests`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


class Receiver(NamedTuple):
    """A receiver started for one test: its port, the traffic YAML it learned the targets from, and
    the environment for the processes of the test (state folder in tmp, no TRAFFICINATOR_CONFIG)."""

    port: int
    config_path: Path
    env: dict[str, str]
    process: subprocess.Popen


@contextmanager
def receiver_for(folder: Path, config_template: str, *sink_options: str) -> Iterator[Receiver]:
    """Write ``config_template.format(port=...)`` to ``folder/traffic.yaml``, start the embedded
    receiver for it on a free 127.0.0.1 port, stop it afterwards."""
    from trafficinator_locust.receiver.process import free_port, start_receiver, stop_process

    port = free_port()
    config_path = folder / "traffic.yaml"
    config_path.write_text(config_template.format(port=port), encoding="utf-8")
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state")}
    env.pop("TRAFFICINATOR_CONFIG", None)
    process = start_receiver(config_path, port, env, *sink_options)
    try:
        yield Receiver(port, config_path, env, process)
    finally:
        stop_process(process)


def locust_command(*options: str) -> list[str]:
    """``python -m locust -f <the packaged locustfile>`` with ``options``, run by this interpreter."""
    from trafficinator_locust.demo import LOCUSTFILE

    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *options]
