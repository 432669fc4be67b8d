import locust  # noqa: F401  (gevent monkey-patching must happen before urllib3/requests are imported)

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"
CLI_TIMEOUT = 60


@pytest.fixture
def write_yaml(tmp_path):
    """``write_yaml(text, name="traffic.yaml", folder=None) -> Path``: dedented text written under tmp_path."""

    def write(text: str, name: str = "traffic.yaml", folder: Path | None = None) -> Path:
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The current environment without any variable the tool reads, plus ``extra``."""
    drop = ("MATOMO_", "TRAFFICINATOR_", "TARGET_", "PAGEVIEWS_", "PAUSE_BETWEEN_", "URLS_FILE", "TIMEZONE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and not k.endswith("_PROBABILITY")}
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(*args, env=None, cwd=None) -> CompletedProcess``: ``python -m trafficinator_locust.cli``.

    Stateless, so session-scoped: module-scoped fixtures may use it (e.g. to run many cases in parallel).

    ``env`` is added to a copy of the environment from which every MATOMO_*/TRAFFICINATOR_* variable
    was removed, so the developer's shell cannot change the outcome.
    """

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "trafficinator_locust.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=_clean_env(env),
            cwd=str(cwd or REPO),
            timeout=CLI_TIMEOUT,
        )

    return run


@pytest.fixture
def legacy_env() -> dict[str, str]:
    """The variables of ``config/legacy.env`` as a dict."""
    env = {}
    for line in (CONFIG_DIR / "legacy.env").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


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
    from trafficinator_locust.demo import free_port, start_sink, stop_process

    port = free_port()
    config_path = folder / "traffic.yaml"
    config_path.write_text(config_template.format(port=port), encoding="utf-8")
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state")}
    env.pop("TRAFFICINATOR_CONFIG", None)
    process = start_sink(config_path, port, env, *sink_options)
    try:
        yield Receiver(port, config_path, env, process)
    finally:
        stop_process(process)
