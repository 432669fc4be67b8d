"""The single-target generator's environment variables: migration, ``trafficinator migrate``, discovery."""

from pathlib import Path

import pytest
import yaml

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import ConfigError
from trafficinator_locust.core.legacy import is_legacy_environment, legacy_config, migration_yaml, unmapped_variables

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SECRET = "some-secret"


def comparable(target):
    """What shapes the traffic of a target, token as its value."""
    data = target.model_dump(exclude={"token_auth"})
    data["token"] = target.token_auth.get_secret_value() if target.token_auth else None
    return data


# --- legacy_config ------------------------------------------------------------------------------


def test_legacy_env_becomes_one_target(legacy_env):
    config = legacy_config(legacy_env)
    (t,) = config.targets
    assert config.enabled_targets == (t,)
    assert t.name == "Default"
    assert t.url == "https://analytics.example.com/matomo.php"
    assert t.site_id == 1
    assert t.token_auth is None  # MATOMO_TOKEN_AUTH= is empty in the file
    assert t.visits_per_day == 20000
    assert t.timezone == "CET"
    assert (t.traffic.pageviews.min, t.traffic.pageviews.max) == (3, 6)
    assert (t.traffic.dwell_seconds.min, t.traffic.dwell_seconds.max) == (0.5, 2.0)
    actions = t.traffic.actions
    assert (actions.search, actions.outlink, actions.download) == (0.15, 0.10, 0.08)
    # click (0.25) and random (0.12) events are independent: a visit has at least one with 1 - 0.75 * 0.88
    assert actions.event == pytest.approx(0.34, abs=1e-4)
    assert config.weight_share(t) == 1.0
    assert config.source == "environment"


def test_legacy_token_and_name(legacy_env):
    config = legacy_config({**legacy_env, "MATOMO_TOKEN_AUTH": SECRET, "MATOMO_TARGET_NAME": "Shop"})
    (t,) = config.targets
    assert t.name == "Shop" and t.class_name == "Target_Shop"
    assert t.token_auth.get_secret_value() == SECRET
    assert SECRET not in repr(config) + config.model_dump_json()


def test_legacy_base_url_gets_matomo_php():
    config = legacy_config({"MATOMO_URL": "https://stats.example/analytics/", "MATOMO_SITE_ID": "4"})
    assert config.targets[0].url == "https://stats.example/analytics/matomo.php"


def test_legacy_urls_file_is_relative_to_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "pages.txt").write_text("/one\tOne\n/two\tTwo\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = legacy_config({"MATOMO_URL": "https://a.example/", "MATOMO_SITE_ID": "1", "URLS_FILE": "pages.txt"})
    assert [p.title for p in config.targets[0].traffic.pages] == ["One", "Two"]


def test_only_one_event_variable_is_its_share():
    config = legacy_config(
        {"MATOMO_URL": "https://a.example/", "MATOMO_SITE_ID": "1", "RANDOM_EVENTS_PROBABILITY": "0.2"}
    )
    assert config.targets[0].traffic.actions.event == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("MATOMO_SITE_ID", "abc", "integer"),
        ("MATOMO_SITE_ID", "0", "greater than or equal to 1"),
        ("MATOMO_SITE_ID", "1.5", "integer"),
        ("MATOMO_URL", "ftp://analytics.example.com/", "http"),
        ("TIMEZONE", "Europe/Stokholm", "Europe/Stockholm"),
        ("TARGET_VISITS_PER_DAY", "lots", "integer"),
        ("TARGET_VISITS_PER_DAY", "-3", "greater than or equal to 0"),
        ("SITESEARCH_PROBABILITY", "1.5", "less than or equal to 1"),
        ("OUTLINKS_PROBABILITY", "often", "number"),
        ("CLICK_EVENTS_PROBABILITY", "x", "number"),
        ("PAGEVIEWS_MIN", "zero", "integer"),
    ],
)
def test_bad_value_names_the_variable(legacy_env, variable, value, fragment):
    with pytest.raises(ConfigError) as info:
        legacy_config({**legacy_env, variable: value})
    (problem,) = info.value.problems
    assert problem.path == variable
    assert problem.source == "environment"
    assert fragment in problem.message
    assert str(problem).startswith(f"environment: {variable}: ")


def test_token_never_in_a_legacy_error(legacy_env):
    with pytest.raises(ConfigError) as info:
        legacy_config({**legacy_env, "MATOMO_TOKEN_AUTH": SECRET, "MATOMO_SITE_ID": "x"})
    assert SECRET not in str(info.value)


def test_missing_site_id_names_its_variable():
    with pytest.raises(ConfigError) as info:
        legacy_config({"MATOMO_URL": "https://a.example/"})
    (problem,) = info.value.problems
    assert problem.path == "MATOMO_SITE_ID"


@pytest.mark.parametrize(
    ("low", "high", "value"),
    [("PAGEVIEWS_MIN", "PAGEVIEWS_MAX", "9"), ("PAUSE_BETWEEN_PVS_MIN", "PAUSE_BETWEEN_PVS_MAX", "5")],
)
def test_range_error_names_the_variables(legacy_env, low, high, value):
    with pytest.raises(ConfigError) as info:
        legacy_config({**legacy_env, low: value})
    (problem,) = info.value.problems
    assert low in problem.path or high in problem.path
    assert "MATOMO_URL" not in problem.path


def test_is_legacy_environment():
    assert is_legacy_environment({"MATOMO_URL": "https://a.example/"})
    assert not is_legacy_environment({"MATOMO_URL": ""})
    assert not is_legacy_environment({"MATOMO_SITE_ID": "1"})


# --- migration_yaml -----------------------------------------------------------------------------


def test_migrated_yaml_loads_to_an_equivalent_target(legacy_env, tmp_path):
    env = {**legacy_env, "MATOMO_TOKEN_AUTH": SECRET}
    text = migration_yaml(env)
    assert SECRET not in text
    data = yaml.safe_load(text)
    (raw,) = data["targets"]
    assert raw["token_auth"] == "${MATOMO_TOKEN_AUTH}"
    path = tmp_path / "migrated.yaml"
    path.write_text(text, encoding="utf-8")
    migrated = load_config(path, env={"MATOMO_TOKEN_AUTH": SECRET})
    (before,), (after,) = legacy_config(env).targets, migrated.targets
    assert comparable(after) == comparable(before)


def test_migrated_yaml_without_token_loads_without_token(legacy_env, tmp_path):
    text = migration_yaml(legacy_env)
    assert "token_auth" not in yaml.safe_load(text)["targets"][0]
    path = tmp_path / "migrated.yaml"
    path.write_text(text, encoding="utf-8")
    (after,) = load_config(path, env={}).targets
    assert comparable(after) == comparable(legacy_config(legacy_env).targets[0])


def test_migration_refuses_an_invalid_environment(legacy_env):
    with pytest.raises(ConfigError):
        migration_yaml({**legacy_env, "MATOMO_SITE_ID": "abc"})


def test_unmapped_variables_are_listed_as_comments(legacy_env):
    env = {
        **legacy_env,
        "CONCURRENCY": "50",
        "AUTO_STOP_AFTER_HOURS": "4",
        "ECOMMERCE_ORDER_PROBABILITY": "0.05",
        "BACKFILL_DAYS": "7",
        "UNRELATED": "1",
    }
    notes = unmapped_variables(env)
    assert set(notes) == {"CONCURRENCY", "AUTO_STOP_AFTER_HOURS", "ECOMMERCE_ORDER_PROBABILITY", "BACKFILL_DAYS"}
    text = migration_yaml(env)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    for var in notes:
        assert any(var in line for line in comments), var
        assert all(var not in line for line in text.splitlines() if not line.startswith("#"))
    assert "UNRELATED" not in text
    assert any("-u/--users" in line for line in comments if "CONCURRENCY" in line)


def test_no_unmapped_comment_block_when_nothing_is_unmapped(legacy_env):
    assert unmapped_variables(legacy_env) == {}
    assert "without a config key" not in migration_yaml(legacy_env)


# --- trafficinator migrate ----------------------------------------------------------------------


def test_cli_migrate_from_environment(run_cli, legacy_env, tmp_path):
    result = run_cli("migrate", env={**legacy_env, "MATOMO_TOKEN_AUTH": SECRET, "CONCURRENCY": "20"})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "${MATOMO_TOKEN_AUTH}" in result.stdout
    assert any(line.startswith("#") and "CONCURRENCY" in line for line in result.stdout.splitlines())
    path = tmp_path / "out.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    (t,) = load_config(path, env={"MATOMO_TOKEN_AUTH": SECRET}).targets
    assert (t.url, t.site_id, t.visits_per_day, t.timezone) == (
        "https://analytics.example.com/matomo.php",
        1,
        20000,
        "CET",
    )
    assert t.token_auth.get_secret_value() == SECRET


def test_cli_migrate_with_bad_environment(run_cli, legacy_env):
    result = run_cli("migrate", env={**legacy_env, "MATOMO_TOKEN_AUTH": SECRET, "MATOMO_SITE_ID": "abc"})
    assert result.returncode == 2
    assert "MATOMO_SITE_ID" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_migrate_without_anything(run_cli, tmp_path):
    result = run_cli("migrate", cwd=tmp_path)
    assert result.returncode == 2
    assert "MATOMO_URL" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_migrate_single_target_yaml(run_cli, tmp_path):
    result = run_cli("migrate", CONFIG_DIR / "single-target.yaml", env={"MATOMO_TOKEN_AUTH": SECRET})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    data = yaml.safe_load(result.stdout)
    (raw,) = data["targets"]
    assert raw["name"] == "Default"
    assert raw["token_auth"].startswith("${MATOMO_TOKEN_AUTH")
    # written next to the original, the output loads to the same target
    path = CONFIG_DIR / "single-target.yaml"
    copy = tmp_path / "multi.yaml"
    copy.write_text(result.stdout, encoding="utf-8")
    (tmp_path / "urls.txt").write_text((CONFIG_DIR / "urls.txt").read_text(encoding="utf-8"), encoding="utf-8")
    env = {"MATOMO_TOKEN_AUTH": SECRET}
    (before,), (after,) = load_config(path, env=env).targets, load_config(copy, env=env).targets
    assert comparable(after) == comparable(before)


def test_cli_migrate_replaces_a_clear_text_token(run_cli, tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(f"url: https://a.example/\nsite_id: 2\ntoken_auth: {SECRET}\n", encoding="utf-8")
    result = run_cli("migrate", path)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert yaml.safe_load(result.stdout)["targets"][0]["token_auth"] == "${MATOMO_TOKEN_AUTH}"


def test_cli_migrate_multi_target_yaml_changes_nothing(run_cli):
    result = run_cli("migrate", CONFIG_DIR / "multi-environment.yaml")
    assert result.returncode == 0, result.stderr
    assert "already a multi-target config" in result.stdout


def test_cli_migrate_invalid_yaml(run_cli, tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(f"url: https://a.example/\nsite_id: 0\ntoken_auth: {SECRET}\n", encoding="utf-8")
    result = run_cli("migrate", path)
    assert result.returncode == 2
    assert f"{path}:2: site_id: " in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_validate_legacy_environment(run_cli, legacy_env, tmp_path):
    result = run_cli("validate", env={**legacy_env, "MATOMO_TOKEN_AUTH": SECRET}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("Default")]
    assert "20000" in row and "CET" in row and "100.0" in row
