"""Helpers shared by tests of several folders (``tests`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple


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


def wait_all(processes: list[subprocess.Popen], timeout: float) -> int | None:
    """Wait for every process within ``timeout`` seconds in all; kill whatever still runs (a hung test
    never leaves a locust behind). Returns the first process's exit code (``None`` if it was killed)."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return processes[0].returncode


def small_site_day(method: str, params: Mapping[str, str], extra: Mapping[str, Any] | None = None) -> Any:
    """One day of a small site as Matomo's Reporting API answers it (for tests of the profiler): 50
    visits, two pages, three channels, one goal; ``extra`` answers more methods; every other report empty."""
    if extra and method in extra:
        return extra[method]
    if method == "VisitsSummary.get":
        return {"nb_visits": 50, "nb_actions": 150, "bounce_count": 10}
    if method == "Actions.get":
        return {"nb_pageviews": 150, "nb_searches": 5}
    if method == "VisitFrequency.get":
        return {"nb_visits_returning": 10, "nb_visits_new": 40}
    if method == "Actions.getPageUrls":
        return [
            {"label": "/index", "url": "https://prod.example/", "nb_hits": 100, "nb_visits": 50},
            {"label": "/pricing", "url": "https://prod.example/pricing", "nb_hits": 50, "nb_visits": 30},
        ]
    if method == "Referrers.getReferrerType":
        return [
            {"label": "Direct Entry", "segment": "referrerType==direct", "nb_visits": 25},
            {"label": "Search Engines", "segment": "referrerType==search", "nb_visits": 20},
            {"label": "Campaigns", "segment": "referrerType==campaign", "nb_visits": 5},
        ]
    if method == "Goals.get":
        return {"nb_conversions": 2, "revenue": 10} if params.get("idGoal") == "1" else []
    return []


def cli_in_fresh_interpreter(argv: list[str], env: Mapping[str, str], cwd: Path | None = None) -> str:
    """Run ``trafficinator *argv`` in a fresh interpreter; its stderr, ending with the sorted list of the
    heavy modules (locust, gevent, geventhttpclient, flask) the command loaded (``[]``: none)."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['trafficinator', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('trafficinator_locust.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('locust', 'gevent', 'geventhttpclient', 'flask')\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=cwd, env=dict(env)
    )
    return result.stderr
