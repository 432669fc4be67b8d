"""Loading the traffic YAML: defaults, interpolation, paths, weights, names, secrets."""

import json
from pathlib import Path

import pytest

from trafficinator_locust.core.config import load_config, slugify, tracker_url
from trafficinator_locust.core.errors import ConfigError
from trafficinator_locust.runtime.tally import VisitTally

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = ["demo.yaml", "multi-client.yaml", "multi-environment.yaml", "single-target.yaml"]
TOKEN = "tok-4b1d9e0f-do-not-print"


def target(config, name):
    (found,) = [t for t in config.targets if t.name == name]
    return found


# --- the shipped examples -----------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_config_loads(name):
    config = load_config(CONFIG_DIR / name, env={})
    assert config.enabled_targets
    for t in config.targets:
        assert t.url.startswith(("http://", "https://")) and t.url.endswith(".php")
        assert t.site_id >= 1
        assert t.traffic.pages


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_config_validates_through_cli(run_cli, name):
    result = run_cli("validate", CONFIG_DIR / name)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_multi_environment_example_values():
    config = load_config(CONFIG_DIR / "multi-environment.yaml", env={"MATOMO_PROD_TOKEN": TOKEN})
    assert [t.name for t in config.targets] == ["Development", "Staging", "Production"]
    assert [t.visits_per_day for t in config.targets] == [1000, 5000, 20000]
    assert [t.timezone for t in config.targets] == ["UTC", "UTC", "Europe/Stockholm"]
    assert [round(config.weight_share(t), 6) for t in config.targets] == [0.2, 0.3, 0.5]
    assert [t.has_token for t in config.targets] == [False, False, True]
    assert target(config, "Production").token_auth.get_secret_value() == TOKEN
    # urls.txt of the config folder was read: 24 pages below the site_url
    pages = target(config, "Staging").traffic.pages
    assert len(pages) == 24
    assert pages[0].url == "https://www.example.com/" and pages[0].title == "Home"
    assert pages[3].url == "https://www.example.com/products/widgets" and pages[3].title == "Widgets | Products"


# --- defaults -----------------------------------------------------------------------------------


DEFAULTS_YAML = """\
    defaults:
      url: https://shared.example/matomo.php
      site_id: 7
      timezone: Asia/Tokyo
      weight: 2
      traffic:
        site_url: https://www.shared.example
        pageviews: {min: 2, max: 5}
        dwell_seconds: {min: 3, max: 40}
        actions: {search: 0.5, event: 0.2}
    targets:
      - name: Inherits
      - name: Overrides
        url: https://own.example/matomo.php
        site_id: 9
        timezone: Europe/Paris
        weight: 3
        traffic:
          pageviews: {max: 9}
          actions: {search: 0.1}
"""


def test_defaults_apply_to_a_target_without_its_own_keys(write_yaml):
    config = load_config(write_yaml(DEFAULTS_YAML), env={})
    t = target(config, "Inherits")
    assert (t.url, t.site_id, t.timezone, t.weight) == ("https://shared.example/matomo.php", 7, "Asia/Tokyo", 2)
    assert (t.traffic.pageviews.min, t.traffic.pageviews.max) == (2, 5)
    assert (t.traffic.dwell_seconds.min, t.traffic.dwell_seconds.max) == (3, 40)
    assert t.traffic.site_url == "https://www.shared.example"
    assert (t.traffic.actions.search, t.traffic.actions.event) == (0.5, 0.2)


def test_target_keys_win_and_traffic_merges_key_by_key(write_yaml):
    config = load_config(write_yaml(DEFAULTS_YAML), env={})
    t = target(config, "Overrides")
    assert (t.url, t.site_id, t.timezone, t.weight) == ("https://own.example/matomo.php", 9, "Europe/Paris", 3)
    # pageviews: {max: 9} overrides one end and keeps the default min
    assert (t.traffic.pageviews.min, t.traffic.pageviews.max) == (2, 9)
    # untouched nested keys come from the defaults
    assert (t.traffic.dwell_seconds.min, t.traffic.dwell_seconds.max) == (3, 40)
    assert t.traffic.site_url == "https://www.shared.example"
    # actions merge key by key too: own search, default event
    assert (t.traffic.actions.search, t.traffic.actions.event) == (0.1, 0.2)


def test_built_in_defaults_when_nothing_is_set(write_yaml):
    config = load_config(write_yaml("targets: [{name: A, url: 'https://a.example/', site_id: 1}]\n"), env={})
    (t,) = config.targets
    assert (t.weight, t.timezone, t.enabled, t.visits_per_day, t.token_auth) == (1.0, "UTC", True, None, None)
    assert (t.traffic.pageviews.min, t.traffic.pageviews.max) == (3, 6)
    assert t.traffic.dwell_seconds.max < 1800
    assert t.traffic.pages and all(p.url.startswith("https://www.example.com") for p in t.traffic.pages)


def test_missing_url_is_fine_when_defaults_give_one(write_yaml):
    path = write_yaml("""\
        defaults: {url: 'https://d.example/'}
        targets: [{name: A, site_id: 1}]
    """)
    assert load_config(path, env={}).targets[0].url == "https://d.example/matomo.php"


# --- ${VAR} interpolation -----------------------------------------------------------------------


INTERPOLATION_YAML = """\
    targets:
      - name: A
        url: https://${HOST}/matomo.php
        site_id: ${SITE:-4}
        token_auth: ${TOKEN_VAR}
        timezone: ${TZ_VAR:-Europe/Oslo}
        traffic:
          site_url: https://shop.example/$${literal}
"""


def test_env_interpolation_with_and_without_defaults(write_yaml):
    path = write_yaml(INTERPOLATION_YAML)
    config = load_config(path, env={"HOST": "m.example", "TOKEN_VAR": TOKEN})
    (t,) = config.targets
    assert t.url == "https://m.example/matomo.php"
    assert t.site_id == 4  # default used, and converted to a number
    assert t.token_auth.get_secret_value() == TOKEN
    assert t.timezone == "Europe/Oslo"
    assert t.traffic.site_url == "https://shop.example/${literal}"  # $$ is a literal $

    config = load_config(path, env={"HOST": "m.example", "TOKEN_VAR": TOKEN, "SITE": "12", "TZ_VAR": "UTC"})
    assert (config.targets[0].site_id, config.targets[0].timezone) == (12, "UTC")


def test_empty_variable_falls_back_to_its_default(write_yaml):
    config = load_config(write_yaml(INTERPOLATION_YAML), env={"HOST": "m.example", "TOKEN_VAR": "x", "SITE": ""})
    assert config.targets[0].site_id == 4


def test_empty_token_from_env_means_no_token(write_yaml):
    path = write_yaml("targets: [{name: A, url: 'https://a.example/', site_id: 1, token_auth: '${T:-}'}]\n")
    assert load_config(path, env={}).targets[0].has_token is False
    assert load_config(path, env={"T": TOKEN}).targets[0].has_token is True


def test_missing_variable_is_an_error_naming_it_and_its_line(write_yaml):
    path = write_yaml(INTERPOLATION_YAML)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"HOST": "m.example"})
    (problem,) = info.value.problems
    assert "TOKEN_VAR" in problem.message
    assert problem.line == 5
    assert problem.path == "targets[0].token_auth"
    assert problem.source == str(path)


def test_load_config_reads_os_environ_by_default(write_yaml, monkeypatch):
    monkeypatch.setenv("TRAFFICINATOR_TEST_SITE", "31")
    path = write_yaml("targets: [{name: A, url: 'https://a.example/', site_id: '${TRAFFICINATOR_TEST_SITE}'}]\n")
    assert load_config(path).targets[0].site_id == 31


# --- paths relative to the YAML file ------------------------------------------------------------


def test_relative_files_resolve_against_the_yaml_folder(tmp_path, write_yaml, monkeypatch):
    folder = tmp_path / "conf" / "nested"
    (folder / "pages").mkdir(parents=True)
    (folder / "pages" / "list.txt").write_text(
        "# comment\n/a\tPage A\n\n/b/c-d\nhttps://other.example/x\tX\n", encoding="utf-8"
    )
    (folder / "funnels.yaml").write_text(
        "journeys:\n  - name: Signup\n    share: 0.1\n    steps:\n      - {type: pageview, url: /signup}\n",
        encoding="utf-8",
    )
    (folder / "events.yaml").write_text("- {category: Video, action: Play}\n", encoding="utf-8")
    path = write_yaml(
        """\
        targets:
          - name: A
            url: https://a.example/
            site_id: 1
            traffic:
              site_url: https://site.example
              urls: pages/list.txt
              funnels: funnels.yaml
              events: ./events.yaml
        """,
        folder=folder,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    traffic = load_config(path, env={}).targets[0].traffic
    assert [(p.url, p.title) for p in traffic.pages] == [
        ("https://site.example/a", "Page A"),
        ("https://site.example/b/c-d", "C d"),
        ("https://other.example/x", "X"),
    ]
    assert [(j.name, j.steps[0].url) for j in traffic.journeys] == [("Signup", "https://site.example/signup")]
    assert [(e.category, e.action) for e in traffic.events] == [("Video", "Play")]


def test_relative_urls_file_resolves_from_another_cwd_through_cli(run_cli, tmp_path):
    result = run_cli("validate", CONFIG_DIR / "multi-environment.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_inline_url_list_with_titles(write_yaml):
    path = write_yaml("""\
        targets:
          - name: A
            url: https://a.example/
            site_id: 1
            traffic:
              site_url: https://s.example
              urls: [/x, {url: /y/z, title: Zed}, 'https://abs.example/p']
    """)
    pages = load_config(path, env={}).targets[0].traffic.pages
    assert [(p.url, p.title) for p in pages] == [
        ("https://s.example/x", "X"),
        ("https://s.example/y/z", "Zed"),
        ("https://abs.example/p", "P"),
    ]


# --- tracker URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://m.example", "https://m.example/matomo.php"),
        ("https://m.example/", "https://m.example/matomo.php"),
        ("https://m.example/analytics", "https://m.example/analytics/matomo.php"),
        ("https://m.example/analytics/", "https://m.example/analytics/matomo.php"),
        ("http://127.0.0.1:8080/matomo.php", "http://127.0.0.1:8080/matomo.php"),
        ("https://m.example/piwik.php", "https://m.example/piwik.php"),
        ("https://m.example/js/tracker.php", "https://m.example/js/tracker.php"),
    ],
)
def test_tracker_url(write_yaml, given, expected):
    assert tracker_url(given) == expected
    path = write_yaml(f"targets: [{{name: A, url: '{given}', site_id: 1}}]\n")
    assert load_config(path, env={}).targets[0].url == expected


# --- weights and rates --------------------------------------------------------------------------


WEIGHTS_YAML = """\
    defaults: {{url: 'https://a.example/', site_id: 1}}
    targets:
      - {{name: Dev, weight: {0}}}
      - {{name: Stage, weight: {1}}}
      - {{name: Prod, weight: {2}}}
      - {{name: Paused, weight: 100, enabled: false}}
"""


def test_weight_is_a_ratio(write_yaml):
    percent = load_config(write_yaml(WEIGHTS_YAML.format(20, 30, 50), name="a.yaml"), env={})
    ratio = load_config(write_yaml(WEIGHTS_YAML.format(2, 3, 5), name="b.yaml"), env={})
    fractional = load_config(write_yaml(WEIGHTS_YAML.format(0.4, 0.6, 1.0), name="c.yaml"), env={})
    for config in (percent, ratio, fractional):
        shares = {t.name: config.weight_share(t) for t in config.targets}
        assert shares == pytest.approx({"Dev": 0.2, "Stage": 0.3, "Prod": 0.5, "Paused": 0.0})


def test_disabled_targets_are_not_enabled_targets(write_yaml):
    config = load_config(write_yaml(WEIGHTS_YAML.format(1, 1, 1)), env={})
    assert [t.name for t in config.targets] == ["Dev", "Stage", "Prod", "Paused"]
    assert [t.name for t in config.enabled_targets] == ["Dev", "Stage", "Prod"]
    assert target(config, "Paused").enabled is False


def test_total_visits_per_day_split_by_weight(write_yaml):
    path = write_yaml("""\
        visits_per_day: 10000
        defaults: {url: 'https://a.example/', site_id: 1}
        targets:
          - {name: A, weight: 1}
          - {name: B, weight: 3}
    """)
    config = load_config(path, env={})
    assert [t.visits_per_day for t in config.targets] == [2500, 7500]


def test_total_visits_per_day_only_for_targets_without_their_own_rate(write_yaml):
    path = write_yaml("""\
        visits_per_day: 10000
        defaults: {url: 'https://a.example/', site_id: 1}
        targets:
          - {name: Own, weight: 5, visits_per_day: 2000}
          - {name: A, weight: 1}
          - {name: B, weight: 3}
          - {name: Paused, weight: 1, enabled: false}
    """)
    config = load_config(path, env={})
    rates = {t.name: t.visits_per_day for t in config.targets}
    assert rates["Own"] == 2000
    assert rates["A"] * 3 == rates["B"]
    assert rates["A"] + rates["B"] == 8000  # the total minus what Own claims
    assert rates["Paused"] is None
    assert config.visits_per_day == 10000


def test_total_visits_per_day_split_in_whole_visits_adds_up(write_yaml):
    path = write_yaml("""\
        visits_per_day: 1000
        defaults: {url: 'https://a.example/', site_id: 1}
        targets:
          - {name: A, weight: 1}
          - {name: B, weight: 1}
          - {name: C, weight: 1}
          - {name: D, weight: 0.5}
    """)
    rates = [t.visits_per_day for t in load_config(path, env={}).targets]
    exact = [1000 / 3.5, 1000 / 3.5, 1000 / 3.5, 500 / 3.5]
    assert sum(rates) == 1000
    assert all(isinstance(r, int) and abs(r - e) < 1 for r, e in zip(rates, exact)), rates


def test_without_total_targets_without_rate_stay_unpaced(write_yaml):
    path = write_yaml("""\
        defaults: {url: 'https://a.example/', site_id: 1}
        targets:
          - {name: A, visits_per_day: 50}
          - {name: B}
    """)
    assert [t.visits_per_day for t in load_config(path, env={}).targets] == [50, None]


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Client A", "Client_A"),
        ("Production", "Production"),
        ("dev-eu 2", "dev_eu_2"),
        ("Café Zürich", "Cafe_Zurich"),
        ("  x..y  ".strip(), "x_y"),
    ],
)
def test_slugs_and_class_names(write_yaml, name, slug):
    assert slugify(name) == slug
    path = write_yaml(f"targets: [{{name: '{name}', url: 'https://a.example/', site_id: 1}}]\n")
    t = load_config(path, env={}).targets[0]
    assert t.slug == slug
    assert t.class_name == f"Target_{slug}"
    assert t.class_name.isidentifier()


def test_slug_of_a_name_without_ascii_letters_is_an_identifier_and_stable():
    first, second = slugify("日本"), slugify("日本")
    assert first == second
    assert f"Target_{first}".isidentifier()
    assert slugify("日本") != slugify("中国")


def test_class_names_are_stable_across_loads(write_yaml):
    path = write_yaml(CONFIG_DIR.joinpath("multi-client.yaml").read_text(), name="multi-client.yaml")
    (path.parent / "urls.txt").write_text((CONFIG_DIR / "urls.txt").read_text())
    first = [t.class_name for t in load_config(path, env={}).targets]
    second = [t.class_name for t in load_config(CONFIG_DIR / "multi-client.yaml", env={}).targets]
    assert first == second == ["Target_Client_A", "Target_Client_B"]


# --- secrets ------------------------------------------------------------------------------------


SECRET_YAML = """\
    targets:
      - name: A
        url: https://a.example/
        site_id: 1
        token_auth: ${TOK}
      - name: B
        url: https://b.example/
        site_id: 2
"""


def test_fingerprint_changes_with_the_token_but_never_shows_it(write_yaml):
    path = write_yaml(SECRET_YAML)
    one = load_config(path, env={"TOK": TOKEN})
    same = load_config(path, env={"TOK": TOKEN})
    other = load_config(path, env={"TOK": TOKEN + "-rotated"})
    assert one.fingerprint() == same.fingerprint()
    assert one.fingerprint() != other.fingerprint()
    assert TOKEN not in one.fingerprint()


def test_fingerprint_changes_with_traffic_settings(write_yaml):
    base = load_config(write_yaml(SECRET_YAML, name="a.yaml"), env={"TOK": TOKEN})
    changed = load_config(
        write_yaml(SECRET_YAML.replace("site_id: 2", "site_id: 3"), name="b.yaml"), env={"TOK": TOKEN}
    )
    assert base.fingerprint() != changed.fingerprint()


def test_fingerprint_ignores_the_file_location(tmp_path, write_yaml):
    a = load_config(write_yaml(SECRET_YAML, name="a.yaml"), env={"TOK": TOKEN})
    b = load_config(write_yaml(SECRET_YAML, name="b.yaml", folder=tmp_path / "other"), env={"TOK": TOKEN})
    assert a.fingerprint() == b.fingerprint()


def test_token_never_in_repr_str_or_json(write_yaml):
    config = load_config(write_yaml(SECRET_YAML), env={"TOK": TOKEN})
    t = config.targets[0]
    assert t.token_auth.get_secret_value() == TOKEN
    for text in (
        repr(config),
        str(config),
        repr(t),
        str(t),
        config.model_dump_json(),
        t.model_dump_json(),
        json.dumps(config.model_dump(mode="json")),
    ):
        assert TOKEN not in text


# --- single-target layout -----------------------------------------------------------------------


def test_single_target_layout_is_one_target_named_default(write_yaml):
    path = write_yaml("""\
        url: https://one.example/
        site_id: 5
        token_auth: ${TOK}
        timezone: Asia/Tokyo
        visits_per_day: 300
        seed: 11
        traffic:
          pageviews: {min: 1, max: 2}
    """)
    config = load_config(path, env={"TOK": TOKEN})
    (t,) = config.targets
    assert (t.name, t.url, t.site_id, t.timezone, t.visits_per_day) == (
        "Default",
        "https://one.example/matomo.php",
        5,
        "Asia/Tokyo",
        300,
    )
    assert t.token_auth.get_secret_value() == TOKEN
    assert (t.traffic.pageviews.min, t.traffic.pageviews.max) == (1, 2)
    assert config.enabled_targets == (t,)


def test_single_target_example_matches_its_comment():
    config = load_config(CONFIG_DIR / "single-target.yaml", env={})
    (t,) = config.targets
    assert (t.name, t.site_id, t.timezone, t.visits_per_day) == ("Default", 1, "CET", 20000)
    assert len(t.traffic.pages) == 24


@pytest.mark.parametrize(
    ("text", "line", "path"),
    [
        ("url: https://one.example/\nsite_id: 0\n", 2, "site_id"),
        ("url: https://one.example/\nsite_id: 1\ntimezone: Mars/Olympus\n", 3, "timezone"),
        ("site_id: 1\nurl: ftp://one.example/\n", 2, "url"),
        pytest.param(
            "url: https://one.example/\nsite_id: 1\ntraffic:\n  pageviews: {min: 0}\n", 4, "traffic.pageviews"
        ),
    ],
    ids=["site_id", "timezone", "url", "nested-traffic-key"],
)
def test_single_target_errors_name_keys_as_written(write_yaml, text, line, path):
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(text), env={})
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (line, path)
    assert "targets" not in str(problem)


def test_single_target_typo_gets_a_hint(write_yaml):
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml("url: https://one.example/\nsite_id: 1\nweigth: 2\n"), env={})
    (problem,) = info.value.problems
    assert problem.line == 3
    assert "Did you mean 'weight'" in problem.message


def test_boolean_site_id_is_rejected(write_yaml):
    with pytest.raises(ConfigError):
        load_config(write_yaml("targets: [{name: A, url: 'https://a.example/', site_id: yes}]\n"), env={})


def test_distribution_round_robin_gives_equal_user_weights(write_yaml):
    from trafficinator_locust.runtime.users import build_user_classes

    path = write_yaml("""\
        distribution: round-robin
        targets:
          - {name: A, url: "https://a.example/", site_id: 1, weight: 20}
          - {name: B, url: "https://b.example/", site_id: 1, weight: 80}
        """)
    classes = build_user_classes(load_config(path, env={}), VisitTally())
    assert {name: cls.weight for name, cls in classes.items()} == {"Target_A": 1.0, "Target_B": 1.0}


def test_distribution_random_routes_each_visit_by_weight(write_yaml):
    import random as stdlib_random

    from trafficinator_locust.runtime.users import build_user_classes

    path = write_yaml("""\
        distribution: random
        targets:
          - {name: A, url: "https://a.example/", site_id: 1, weight: 1}
          - {name: B, url: "https://b.example/", site_id: 1, weight: 3}
        """)
    classes = build_user_classes(load_config(path, env={}), VisitTally())
    stdlib_random.seed(5)
    routed = [classes["Target_A"].route().target.name for _ in range(20_000)]
    assert abs(routed.count("B") / len(routed) - 0.75) < 0.01, "a user of A's class sends 3 of 4 visits to B"
    weighted = build_user_classes(
        load_config(path.parent / path.name, env={}).model_copy(update={"distribution": "weighted"}), VisitTally()
    )
    assert weighted["Target_A"].route() is weighted["Target_A"]


@pytest.mark.parametrize("wrapped", [False, True])
def test_errors_inside_a_funnels_file_name_that_file_and_line(write_yaml, tmp_path, wrapped):
    journeys = "- name: Signup\n  share: 0.1\n  steps:\n    - {type: pageview, title: no url}\n"
    if wrapped:
        journeys = "journeys:\n" + "".join("  " + line + "\n" for line in journeys.splitlines())
    path = write_yaml("""\
        targets:
          - name: A
            url: https://a.example/
            site_id: 1
            traffic: {funnels: funnels.yaml}
        """)
    (path.parent / "funnels.yaml").write_text(journeys)
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    problem = error.value.problems[0]
    assert problem.source.endswith("funnels.yaml")
    assert problem.line == (5 if wrapped else 4)
    assert problem.path.startswith("[0].steps[0]") and "needs url" in problem.message
