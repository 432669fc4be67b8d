"""Hostile configs: every one is a clear error (file, line, config path, what to do), exit 2, no traceback,
in bounded time and memory (issue #14: alias bombs, deep nesting, devices, huge counts, inf/nan, bad URLs).

The limits are named constants (docs/limits.md lists them; a test below keeps the two in step).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from trafficinator_locust import cli
from trafficinator_locust.core import config as config_module
from trafficinator_locust.core import errors as errors_module
from trafficinator_locust.core import traffic as traffic_module
from trafficinator_locust.core import yaml_source
from trafficinator_locust.core.config import MAX_SITE_ID, MAX_TARGETS, load_config
from trafficinator_locust.core.errors import MAX_SHOWN_PROBLEMS, ConfigError
from trafficinator_locust.core.legacy import legacy_config
from trafficinator_locust.core.traffic import MAX_PAGES
from trafficinator_locust.core.yaml_source import MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

REPO = Path(__file__).resolve().parents[2]
BASE = """\
targets:
  - name: A
    url: https://m.example/matomo.php
    site_id: 1
"""  # 4 lines: a key added below the target starts on line 5


@pytest.fixture
def validate(capsys):
    """``validate(path) -> (exit code, stdout, stderr)``: ``trafficinator validate`` in this process."""

    def run(path: str | Path) -> tuple[int, str, str]:
        code = cli.main(["validate", str(path)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def refused(path: Path, env: dict[str, str] | None = None) -> list:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.problems


def assert_clean_exit_2(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 2, out + err
    assert "Traceback" not in out + err
    return err


def _by_path(rows: list[tuple]) -> list:
    """Parameters named by their config path (the second item), numbered when a path repeats."""
    seen: dict[str, int] = {}
    params = []
    for row in rows:
        name = row[1].removeprefix("targets[0].")
        seen[name] = seen.get(name, 0) + 1
        params.append(pytest.param(*row, id=name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return params


# --- YAML structure: aliases, loops, depth ----------------------------------------------------------


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_node_limit(write_yaml, validate):
    levels = ["l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    for level in range(1, 7):  # 10**7 values once expanded; a few hundred bytes of YAML
        levels.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    path = write_yaml(BASE + "    bomb:\n" + "".join(f"      {line}\n" for line in levels))
    (problem,) = refused(path)
    assert problem.source == str(path)
    assert problem.line is not None and 6 <= problem.line <= 12
    assert problem.path.startswith("targets[0].bomb.l")
    assert f"{MAX_YAML_NODES:,}" in problem.message and "alias" in problem.message
    assert f"{MAX_YAML_NODES:,}" in assert_clean_exit_2(validate(path))


def test_a_self_referencing_anchor_is_refused(write_yaml, validate):
    path = write_yaml("targets: &loop\n  - *loop\n")
    (problem,) = refused(path)
    assert (problem.line, problem.path) == (2, "targets[0]")
    assert "*loop" in problem.message and "inside its own anchor" in problem.message
    assert "inside its own anchor" in assert_clean_exit_2(validate(path))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("targets: " + "[" * 5000 + "]" * 5000 + "\n", id="flow-5000"),
        pytest.param("targets:\n" + "".join(" " * depth + "k:\n" for depth in range(1, 1000)), id="block-1000"),
    ],
)
def test_deep_nesting_is_refused_at_the_limit(write_yaml, validate, text):
    path = write_yaml(text)
    (problem,) = refused(path)
    assert problem.line is not None
    # libyaml meets its own limit (1000 levels) first when the nesting is on one line: no path then
    assert problem.path.startswith("targets") or (problem.line, problem.path) == (1, "")
    assert f"deeper than {MAX_YAML_DEPTH} levels" in problem.message
    assert f"deeper than {MAX_YAML_DEPTH}" in assert_clean_exit_2(validate(path))


def test_aliases_cannot_nest_deeper_than_the_depth_limit(write_yaml):
    chain = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_YAML_DEPTH + 5)]
    path = write_yaml(BASE + "    chain:\n" + "".join(f"      {line}\n" for line in chain))
    (problem,) = refused(path)
    assert problem.path.startswith("targets[0].chain.a")
    assert f"deeper than {MAX_YAML_DEPTH} levels" in problem.message


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("2020-13-45", "not a valid date"),
        ("!!python/object:os.system x", "tag"),
        ("!!binary '*not base64*'", "binary"),
        ("!!float abc", "!!float"),
        ("!!timestamp x", "not a valid date"),
        ("9" * 5000, "digits"),
    ],
    ids=["bad-date", "python-tag", "bad-binary", "bad-float", "bad-timestamp", "5000-digits"],
)
def test_a_scalar_yaml_cannot_build_is_a_problem_on_its_line(write_yaml, validate, value, fragment):
    path = write_yaml(BASE + f"    seed: {value}\n")
    problems = refused(path)
    assert (problems[0].line, problems[0].path) == (5, "targets[0].seed")
    assert fragment in problems[0].message
    assert_clean_exit_2(validate(path))


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("targets: &loop\n  - *loop\n", 2, "inside its own anchor"),
        ("targets: " + "[" * 5000 + "]" * 5000 + "\n", 1, f"deeper than {MAX_YAML_DEPTH} levels"),
        (BASE + "    seed: " + "9" * 5000 + "\n", 5, "digits"),
        ("targets:\n  - name: \x07\n", 2, "U+0007"),
    ],
    ids=["loop", "deep", "5000-digits", "control-character"],
)
def test_the_pure_python_parser_has_the_same_bounds(write_yaml, monkeypatch, text, line, fragment):
    """Without libyaml (PyYAML built without it) the same limits hold, with the same messages."""
    monkeypatch.setattr(yaml_source, "_Loader", yaml_source._PyLoader)
    (problem, *_) = refused(write_yaml(text))
    assert problem.line == line and fragment in problem.message


def test_the_pure_python_parser_refuses_an_alias_bomb(write_yaml, monkeypatch):
    monkeypatch.setattr(yaml_source, "_Loader", yaml_source._PyLoader)
    levels = ["l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 7)]
    (problem,) = refused(write_yaml(BASE + "    bomb:\n" + "".join(f"      {line}\n" for line in levels)))
    assert problem.path.startswith("targets[0].bomb.l") and f"{MAX_YAML_NODES:,}" in problem.message


# --- files: devices, FIFOs, sizes -------------------------------------------------------------------


def test_a_config_that_is_a_device_is_refused(validate):
    err = assert_clean_exit_2(validate("/dev/zero"))
    assert "/dev/zero" in err and "not a regular file" in err


def test_a_config_larger_than_the_limit_is_refused(tmp_path, validate):
    path = tmp_path / "big.yaml"
    path.write_text(BASE)
    os.truncate(path, MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    (problem,) = refused(path)
    assert problem.source == str(path) and f"{MAX_CONFIG_BYTES:,}" in problem.message
    assert f"{MAX_CONFIG_BYTES:,}" in assert_clean_exit_2(validate(path))


def test_yaml_text_larger_than_the_limit_is_refused():
    with pytest.raises(ConfigError, match=f"{MAX_CONFIG_BYTES:,}"):
        yaml_source.load_yaml_text("#" * (MAX_CONFIG_BYTES + 1), "web")


@pytest.mark.parametrize("key", ["urls", "events", "funnels", "extra_funnels"])
def test_an_included_file_that_is_a_device_is_refused(write_yaml, validate, key):
    path = write_yaml(BASE + f"    traffic:\n      {key}: /dev/zero\n")
    (problem,) = refused(path)
    assert (problem.source, problem.line, problem.path) == (str(path), 6, f"targets[0].traffic.{key}")
    assert "/dev/zero" in problem.message and "not a regular file" in problem.message
    assert "not a regular file" in assert_clean_exit_2(validate(path))


@pytest.mark.parametrize("key", ["urls", "events"])
def test_an_included_fifo_never_blocks(write_yaml, tmp_path, key):
    os.mkfifo(tmp_path / "pipe")
    path = write_yaml(BASE + f"    traffic:\n      {key}: pipe\n")
    (problem,) = refused(path)
    assert problem.path == f"targets[0].traffic.{key}" and "not a regular file" in problem.message


def test_an_included_file_larger_than_its_limit_is_refused(write_yaml, tmp_path):
    (tmp_path / "urls.txt").write_text("/a\n")
    os.truncate(tmp_path / "urls.txt", traffic_module.MAX_URLS_FILE_BYTES + 1)
    (tmp_path / "events.yaml").write_text("- {category: a, action: b}\n")
    os.truncate(tmp_path / "events.yaml", MAX_CONFIG_BYTES + 1)
    path = write_yaml(BASE + "    traffic:\n      urls: urls.txt\n      events: events.yaml\n")
    problems = refused(path)
    assert {p.path for p in problems} == {"targets[0].traffic.urls", "targets[0].traffic.events"}
    assert all("bytes" in p.message for p in problems)


# --- counts and numbers -----------------------------------------------------------------------------

HUGE = "9" * 400


@pytest.mark.parametrize(
    "yaml_text, path, limit",
    _by_path(
        [
            (f"    visits_per_day: {HUGE}\n", "targets[0].visits_per_day", config_module.MAX_VISITS_PER_DAY),
            (f"    seed: {HUGE}\n", "targets[0].seed", config_module.MAX_SEED),
            ("    traffic:\n      pageviews: {max: 1000000000}\n", "targets[0].traffic.pageviews", 500),
            ("    traffic:\n      pageviews: {min: 1.0e+9}\n", "targets[0].traffic.pageviews", 500),
            (
                "    traffic:\n      visitors: {pool_size: 1000000000000}\n",
                "targets[0].traffic.visitors.pool_size",
                None,
            ),
            (
                "    traffic:\n      pause_between_visits: {max: 1.0e+12}\n",
                "targets[0].traffic.pause_between_visits",
                None,
            ),
            (
                "    traffic:\n      ecommerce: {quantity: {max: 1000000000}}\n",
                "targets[0].traffic.ecommerce.quantity",
                None,
            ),
            ("    traffic:\n      ecommerce: {items: {max: 1000000}}\n", "targets[0].traffic.ecommerce.items", None),
            ("    traffic:\n      ecommerce: {shipping: [1.0e+12]}\n", "targets[0].traffic.ecommerce.shipping", None),
            (
                "    traffic:\n      ecommerce: {products: [{sku: a, name: b, price: 1.0e+12}]}\n",
                "targets[0].traffic.ecommerce.products[0].price",
                None,
            ),
            ("    traffic:\n      goals: [{id: 2147483648}]\n", "targets[0].traffic.goals[0].id", None),
            (
                "    traffic:\n      goals: [{id: 1, revenue: {max: 1.0e+12}}]\n",
                "targets[0].traffic.goals[0].revenue",
                None,
            ),
            (
                "    traffic:\n      events: [{category: a, action: b, weight: 1.0e+300}]\n",
                "targets[0].traffic.events",
                None,
            ),
            (
                "    traffic:\n      funnels: [{name: j, share: 0.1, steps: "
                "[{type: pageview, url: /, delay: {min: 1.0e+9}}]}]\n",
                "targets[0].traffic.funnels",
                None,
            ),
            ("    weight: 1.0e+300\n", "targets[0].weight", None),
        ]
    ),
)
def test_counts_and_amounts_have_maxima(write_yaml, validate, yaml_text, path, limit):
    config_path = write_yaml(BASE + yaml_text)
    problems = refused(config_path)
    assert problems[0].path.startswith(path), problems
    assert problems[0].line is not None and problems[0].line >= 5
    if limit is not None:
        assert f"{limit:,}" in problems[0].message or str(limit) in problems[0].message, problems[0].message
    assert_clean_exit_2(validate(config_path))


def test_top_level_visits_per_day_has_a_maximum(write_yaml):
    (problem,) = refused(write_yaml(BASE + f"visits_per_day: {HUGE}\n"))
    assert (problem.path, problem.line) == ("visits_per_day", 5)


def test_the_largest_matomo_site_id_is_accepted_and_one_more_is_not(write_yaml):
    config = load_config(write_yaml(BASE.replace("site_id: 1", f"site_id: {MAX_SITE_ID}")), env={})
    assert config.targets[0].site_id == 4294967295
    (problem,) = refused(write_yaml(BASE.replace("site_id: 1", f"site_id: {MAX_SITE_ID + 1}")))
    assert (problem.line, problem.path) == (4, "targets[0].site_id") and "4,294,967,295" in problem.message


@pytest.mark.parametrize(
    "yaml_text, path",
    _by_path(
        [
            ("    weight: .inf\n", "targets[0].weight"),
            ("    bulk_retry_delay: .nan\n", "targets[0].bulk_retry_delay"),
            ("    profile: {weekdays: [.inf, 1, 1, 1, 1, 1, 1]}\n", "targets[0].profile.weekdays[0]"),
            ("    traffic:\n      zipf_exponent: .nan\n", "targets[0].traffic.zipf_exponent"),
            ("    traffic:\n      devices: {desktop: .inf}\n", "targets[0].traffic.devices.desktop"),
            ("    traffic:\n      channels: {direct: .inf}\n", "targets[0].traffic.channels.direct"),
            ("    traffic:\n      languages: {en-US: .inf}\n", "targets[0].traffic.languages.en-US"),
            ("    traffic:\n      countries: {US: .nan}\n", "targets[0].traffic.countries.US"),
            ("    traffic:\n      dwell_seconds: {min: .nan}\n", "targets[0].traffic.dwell_seconds.min"),
            ("    traffic:\n      ecommerce: {tax_rate: .nan}\n", "targets[0].traffic.ecommerce.tax_rate"),
            ("    traffic:\n      ecommerce: {shipping: [0, .inf]}\n", "targets[0].traffic.ecommerce.shipping[1]"),
            (
                "    traffic:\n      ecommerce: {products: [{sku: a, name: b, category: c, price: .inf}]}\n",
                "targets[0].traffic.ecommerce.products[0].price",
            ),
            ("    traffic:\n      goals: [{id: 1, weight: .inf}]\n", "targets[0].traffic.goals[0].weight"),
            ("    traffic:\n      goals: [{id: 1, revenue: {max: .inf}}]\n", "targets[0].traffic.goals[0].revenue.max"),
            (
                "    traffic:\n      events: [{category: a, action: b, weight: .nan}]\n",
                "targets[0].traffic.events[0].weight",
            ),
            (
                "    traffic:\n      funnels: [{name: j, share: .nan, steps: [{type: pageview, url: /}]}]\n",
                "targets[0].traffic.funnels[0].share",
            ),
            (
                "    traffic:\n      funnels: [{name: j, share: 0.1, steps: [{type: event, category: a, action: b, "
                "value: -.inf}]}]\n",
                "targets[0].traffic.funnels[0].steps[0].value",
            ),
        ]
    ),
)
def test_numbers_must_be_finite(write_yaml, validate, yaml_text, path):
    config_path = write_yaml(BASE + yaml_text)
    problems = refused(config_path)
    assert problems[0].path == path, problems
    assert "finite" in problems[0].message
    assert_clean_exit_2(validate(config_path))


def test_more_targets_than_the_limit_is_one_problem(write_yaml):
    targets = "".join(f"  - {{name: T{i}, url: 'https://m.example/', site_id: 1}}\n" for i in range(MAX_TARGETS + 1))
    (problem,) = refused(write_yaml("targets:\n" + targets))
    assert problem.path == "targets" and f"{MAX_TARGETS:,}" in problem.message


def test_an_inline_list_longer_than_its_limit_is_one_problem(write_yaml):
    path = write_yaml(BASE + "    traffic:\n      urls: [" + ", ".join(["/a"] * (MAX_PAGES + 1)) + "]\n")
    (problem,) = refused(path)
    assert problem.path == "targets[0].traffic.urls" and f"{MAX_PAGES:,}" in problem.message


def test_a_url_file_with_more_pages_than_the_limit_is_refused(write_yaml, tmp_path):
    (tmp_path / "urls.txt").write_text("/a\n" * (MAX_PAGES + 1))
    (problem,) = refused(write_yaml(BASE + "    traffic:\n      urls: urls.txt\n"))
    assert problem.path == "targets[0].traffic.urls" and f"{MAX_PAGES:,}" in problem.message


def test_shared_lists_resolved_for_every_target_are_bounded_in_total(write_yaml, tmp_path, monkeypatch):
    monkeypatch.setattr(traffic_module, "MAX_RESOLVED_ENTRIES", 100)
    (tmp_path / "urls.txt").write_text("".join(f"/p{i}\n" for i in range(30)))
    targets = "".join(
        f"  - {{name: T{i}, traffic: {{site_url: 'https://s{i}.example'}}}}\n" for i in range(5)
    )  # each target its own site: its own 30 pages
    shared = "defaults:\n  url: https://m.example/\n  site_id: 1\n  traffic: {urls: urls.txt}\n"
    problems = refused(write_yaml(shared + "targets:\n" + targets))
    assert len(problems) == 1 and problems[0].path.startswith("targets[3]")
    assert "100" in problems[0].message
    # the same pages under the same site_url are built once for every target that shares them
    same_site = "".join(f"  - {{name: T{i}}}\n" for i in range(20))
    config = load_config(write_yaml(shared + "targets:\n" + same_site), env={})
    first, last = config.targets[0].traffic.pages, config.targets[19].traffic.pages
    assert len(config.targets) == 20 and all(a is b for a, b in zip(first, last, strict=True))


# --- URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://m.example:99999/matomo.php", "port"),
        ("https://m.example:abc/matomo.php", "port"),
        ("https://m.example:0/matomo.php", "port"),
        ("https://m.exa mple/matomo.php", "space"),
        ("https://m.example/mat omo.php", "space"),
        ('"https://m.example/\\x07matomo.php"', "control character"),
        ('"https://m.example/matomo.php\\t"', "space"),
        ("http://[::1/matomo.php", "IPv6"),
        ("https://m.ex<ample/matomo.php", "host"),
        ("https://m.example/" + "a" * 5000, "4,096"),
    ],
    ids=["port-99999", "port-abc", "port-0", "space-host", "space-path", "bell", "tab", "ipv6", "host-chars", "long"],
)
def test_tracker_urls_are_checked_before_any_visit(write_yaml, validate, url, fragment):
    path = write_yaml(BASE.replace("https://m.example/matomo.php", url))
    (problem,) = refused(path)
    assert (problem.line, problem.path) == (3, "targets[0].url")
    assert fragment in problem.message
    assert fragment in assert_clean_exit_2(validate(path))


def test_site_and_inline_page_urls_are_checked_too(write_yaml):
    path = write_yaml(
        BASE
        + "    traffic:\n      site_url: 'https://w.example:65536'\n"
        + "  - name: C\n    url: https://m.example/\n    site_id: 3\n    traffic:\n"
        + "      urls: ['/x', {url: 'https://y.example:abc/'}, '/a b']\n"
        + "      funnels: [{name: j, share: 0.1, steps: [{type: outlink, url: 'https://o.example/a b'}]}]\n"
    )
    problems = refused(path)
    where = {(p.line, p.path) for p in problems}
    assert where == {
        (6, "targets[0].traffic.site_url"),
        (11, "targets[1].traffic.urls[1].url"),
        (11, "targets[1].traffic.urls[2].url"),
        (12, "targets[1].traffic.funnels[0].steps[0].url"),
    }, problems
    assert "port" in problems[0].message


def test_a_url_file_names_each_bad_line(write_yaml, tmp_path):
    (tmp_path / "urls.txt").write_text(
        "/fine\tFine\n/has space\tBad\nhttps://x.example:70000/p\n\tno url\n/ok\tbell\x07\n/last\n"
    )
    path = write_yaml(BASE + "    traffic:\n      urls: urls.txt\n")
    problems = refused(path)
    assert [(Path(p.source).name, p.line, p.path) for p in problems] == [
        ("urls.txt", line, "targets[0].traffic.urls") for line in (2, 3, 4, 5)
    ], problems
    assert ["space" in problems[0].message, "port" in problems[1].message, "no URL" in problems[2].message] == [
        True,
        True,
        True,
    ]


# --- ${VAR} defaults that nest -----------------------------------------------------------------------


NESTED = BASE.replace("https://m.example/matomo.php", "https://${A:-${B:-fallback.example}}/matomo.php")


def test_a_nested_default_is_expanded(write_yaml):
    path = write_yaml(NESTED)
    assert load_config(path, env={}).targets[0].url == "https://fallback.example/matomo.php"
    assert load_config(path, env={"B": "b.example"}).targets[0].url == "https://b.example/matomo.php"
    assert load_config(path, env={"A": "a.example", "B": "b.example"}).targets[0].url == "https://a.example/matomo.php"


def test_an_unset_variable_inside_a_default_is_reported_only_when_needed(write_yaml):
    path = write_yaml(BASE.replace("https://m.example/matomo.php", "https://${A:-${B}}/matomo.php"))
    assert load_config(path, env={"A": "a.example"}).targets[0].url == "https://a.example/matomo.php"
    (problem,) = refused(path)
    assert problem.path == "targets[0].url" and "B is not set" in problem.message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("https://${A:-x.example/", "is not closed"),
        ("https://${A-x.example}/", "${A:-default}"),
        ("https://" + "${A:-" * 20 + "x" + "}" * 20, "nest deeper than"),
    ],
    ids=["unclosed", "no-colon", "too-deep"],
)
def test_a_malformed_reference_is_a_clear_error(write_yaml, validate, text, fragment):
    path = write_yaml(BASE.replace("https://m.example/matomo.php", f"'{text}'"))
    (problem,) = refused(path)
    assert (problem.line, problem.path) == (3, "targets[0].url") and fragment in problem.message
    assert_clean_exit_2(validate(path))


# --- crashes of documented-valid input --------------------------------------------------------------


def test_a_product_without_category_is_valid(write_yaml, validate):
    path = write_yaml(BASE + "    traffic:\n      ecommerce:\n        products: [{sku: a, name: Widget, price: 3}]\n")
    (product,) = load_config(path, env={}).targets[0].traffic.ecommerce.products
    assert (product.sku, product.category, product.price) == ("a", "", 3.0)
    code, out, err = validate(path)
    assert code == 0, err


def test_a_range_of_nulls_means_no_range(write_yaml):
    path = write_yaml(BASE + "    traffic:\n      goals: [{id: 1, revenue: {min: null, max: null}}]\n")
    assert load_config(path, env={}).targets[0].traffic.goals[0].revenue is None


@pytest.mark.parametrize(
    "yaml_text",
    [
        "    timezone: null\n",
        "    weight: null\n    transport: null\n    bulk_size: null\n",
        "    profile: {hours: null, weekdays: null}\n",
        "    traffic:\n      visitors: {returning: null}\n      actions: {search: null}\n",
        "    traffic:\n      ecommerce: {cart: null, order: 0.1, currency: null}\n",
    ],
    ids=["timezone", "target-fields", "profile", "visitors-actions", "ecommerce"],
)
def test_null_means_not_set(write_yaml, yaml_text):
    defaults = "defaults:\n  timezone: Asia/Tokyo\n  weight: 3\n"
    (target,) = load_config(write_yaml(defaults + BASE + yaml_text), env={}).targets
    assert (target.timezone, target.weight) == ("Asia/Tokyo", 3.0)  # what defaults say, or the built-in default


@pytest.mark.parametrize("key", ["Atargets", "Targets", "PageSpec", "str"])
def test_an_unknown_key_that_looks_like_a_type_name_is_named(write_yaml, validate, key):
    path = write_yaml(f"{key}: 1\n" + BASE)
    (problem,) = refused(path)
    assert (problem.line, problem.path) == (1, key) and f"unknown key '{key}'" in problem.message
    assert_clean_exit_2(validate(path))


def test_an_infinite_legacy_rate_is_a_clear_error():
    with pytest.raises(ConfigError) as info:
        legacy_config({"MATOMO_URL": "https://m.example/", "MATOMO_SITE_ID": "1", "TARGET_VISITS_PER_DAY": "1e999"})
    assert info.value.problems[0].path == "TARGET_VISITS_PER_DAY"


# --- many problems ---------------------------------------------------------------------------------


def test_a_file_with_100000_problems_is_checked_fast_and_printed_capped(write_yaml, tmp_path, validate):
    (tmp_path / "urls.txt").write_text("".join(f"https://x.example:99999/p{i}\n" for i in range(MAX_PAGES)))
    path = write_yaml(BASE + "    traffic:\n      urls: urls.txt\n")
    problems = refused(path)
    assert len(problems) == MAX_PAGES and problems[-1].line == MAX_PAGES
    err = assert_clean_exit_2(validate(path))
    lines = err.splitlines()
    assert lines[0] == f"trafficinator: {MAX_PAGES:,} problems in the traffic config (the first 50 shown):"
    assert len([line for line in lines if "urls.txt:" in line]) == MAX_SHOWN_PROBLEMS == 50
    assert lines[-1].strip() == f"... and {MAX_PAGES - 50:,} more problems; fix these and validate again"


def test_a_few_problems_are_all_printed(write_yaml, validate):
    path = write_yaml(BASE.replace("site_id: 1", "site_id: 0") + "    weight: -1\n")
    err = assert_clean_exit_2(validate(path))
    assert err.splitlines()[0] == "trafficinator: 2 problems in the traffic config:"
    assert len(err.splitlines()) == 3


# --- the limits are documented ---------------------------------------------------------------------


def _limit_constants() -> dict[str, int | float]:
    found = {}
    for module in (yaml_source, traffic_module, config_module, errors_module):
        for name, value in vars(module).items():
            if name.startswith("MAX_") and isinstance(value, (int, float)) and not isinstance(value, bool):
                found[name] = value
    return found


def test_limits_doc_names_every_limit_with_its_value():
    text = (REPO / "docs" / "limits.md").read_text(encoding="utf-8")
    constants = _limit_constants()
    assert len(constants) >= 25
    for name, value in constants.items():
        rows = [line for line in text.splitlines() if f"`{name}`" in line]
        assert rows, f"docs/limits.md does not name {name}"
        shown = {f"{value:,}", f"{value:g}", str(value), f"{value:,.0f}" if float(value).is_integer() else ""}
        assert any(re.search(rf"(?<![\d,.]){re.escape(s)}(?!\d|[,.]\d)", rows[0]) for s in shown if s), (
            f"docs/limits.md: the row of {name} does not show its value {value:,}"
        )


def test_readme_links_the_limits_doc():
    assert "docs/limits.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_example_configs_stay_within_the_limits():
    for name in ("demo.yaml", "multi-client.yaml", "multi-environment.yaml", "single-target.yaml"):
        load_config(REPO / "config" / name, env={})
