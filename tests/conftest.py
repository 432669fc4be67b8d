import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
