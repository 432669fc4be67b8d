"""The locustfile's config discovery: --traffic-config, TRAFFICINATOR_CONFIG, locust.conf, legacy variables."""

import locust  # noqa: F401  (first: gevent monkey-patching)

from pathlib import Path

import pytest

from trafficinator_locust.core.errors import ConfigError
from trafficinator_locust.plugin import discover_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SECRET = "some-secret"


def test_discover_from_command_line_option(legacy_env):
    config = discover_config(
        ["-f", "locustfile.py", "--traffic-config", str(CONFIG_DIR / "multi-client.yaml"), "--headless"], env=legacy_env
    )
    assert [t.name for t in config.targets] == ["Client A", "Client B"]  # the file wins over legacy variables


def test_discover_from_equals_form_option():
    config = discover_config([f"--traffic-config={CONFIG_DIR / 'demo.yaml'}"], env={})
    assert [t.name for t in config.targets] == ["Development", "Staging", "Production"]


def test_discover_option_wins_over_variable():
    env = {"TRAFFICINATOR_CONFIG": str(CONFIG_DIR / "demo.yaml")}
    config = discover_config(["--traffic-config", str(CONFIG_DIR / "multi-client.yaml")], env=env)
    assert config.targets[0].name == "Client A"


def test_discover_from_environment_variable(legacy_env):
    env = {
        **legacy_env,
        "TRAFFICINATOR_CONFIG": str(CONFIG_DIR / "multi-environment.yaml"),
        "MATOMO_PROD_TOKEN": SECRET,
    }
    config = discover_config([], env=env)
    assert [t.name for t in config.targets] == ["Development", "Staging", "Production"]
    assert config.targets[2].token_auth.get_secret_value() == SECRET  # interpolated from the given env


def test_discover_from_legacy_environment(legacy_env):
    config = discover_config(["--headless"], env=legacy_env)
    (t,) = config.targets
    assert (t.name, t.site_id, t.visits_per_day) == ("Default", 1, 20000)


def test_discover_without_any_config_is_an_error():
    with pytest.raises(ConfigError) as info:
        discover_config(["--headless"], env={})
    message = str(info.value)
    assert "--traffic-config" in message and "TRAFFICINATOR_CONFIG" in message and "MATOMO_URL" in message


def test_discover_without_config_but_asking_for_help_returns_none():
    assert discover_config(["--help"], env={}) is None


def test_discover_reports_problems_of_the_given_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("targets:\n  - name: A\n    url: https://a.example/\n    site_id: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        discover_config(["--traffic-config", str(path)], env={})
    (problem,) = info.value.problems
    assert (problem.source, problem.line, problem.path) == (str(path), 4, "targets[0].site_id")
