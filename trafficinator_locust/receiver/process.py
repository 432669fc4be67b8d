"""The receiver as a process of its own: start ``trafficinator sink``, wait until it listens, ask, stop.

What the demo, the end-to-end tests and the benchmarks share to run the receiver beside Locust.
The receiver runs in a child process (``python -m trafficinator_locust.cli sink``) so that it
never shares a core or an event loop with what it measures; processes are stopped by their own
handle, never by name. Everything here is on 127.0.0.1.

Example::

    port = free_port()
    process = start_receiver(Path("config/demo.yaml"), port, dict(os.environ), "--record-hits")
    try:
        receiver_stats(port)["/dev"]["sites"]["1"]["visits"]
    finally:
        stop_process(process)

    # a Matomo that serves 50 hits per second per instance, /prod 200, answering 503 beyond 1 s of queue
    start_receiver(config, port, env, "--capacity", "50", "--capacity", "/prod=200", "--capacity-queue", "1")
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["free_port", "receiver_command", "start_receiver", "wait_until_listening", "receiver_stats", "stop_process"]


def free_port() -> int:
    """A port the OS considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def receiver_command(*options: str) -> list[str]:
    """The command line of ``trafficinator sink`` with ``options``, run by this Python interpreter."""
    return [sys.executable, "-m", "trafficinator_locust.cli", "sink", *options]


def start_receiver(config_path: Path, port: int, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    """Start the receiver for the targets of ``config_path`` on ``port`` and return once it listens.

    ``options`` are more ``trafficinator sink`` options (``"--loss", "0.05"``, ``"--record-hits"``,
    ``"--capacity", "50"``).
    RuntimeError (the process killed) when it does not start.
    """
    command = receiver_command("--port", str(port), "--config", str(config_path), *options)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_listening(process)
    return process


def wait_until_listening(process: subprocess.Popen[str]) -> str:
    """Block until a started receiver prints its ``sink listening on ...`` line, and return the line.

    The receiver prints it once bound (after writing its ``--ready-file``). Anything else first,
    or the end of its output, kills it and raises RuntimeError with what it said on stderr.
    """
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        raise RuntimeError(f"the receiver did not start: {line}{process.stderr.read() if process.stderr else ''}")
    return line


def receiver_stats(port: int) -> dict[str, Any]:
    """``GET /sink/stats``: every instance's stats, keyed by prefix."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/sink/stats", timeout=10) as response:
        return json.load(response)


def stop_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 seconds; returns once the process has ended."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
