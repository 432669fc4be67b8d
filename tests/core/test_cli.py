"""The ``trafficinator`` command: validate (good and bad configs), schema."""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TOKEN = "tok-9c2e51aa-never-print"
ENV_TOKEN = "envtok-77d0b3-never-print"
TOKEN_ENV = {"TRAFFICINATOR_TEST_TOKEN": ENV_TOKEN}

# A valid first target carrying both tokens, so every bad config below also holds a secret.
KEEP = f"""\
targets:
  - name: Keep
    url: https://keep.example/matomo.php
    site_id: 1
    token_auth: {TOKEN}
  - name: Env
    url: https://env.example/matomo.php
    site_id: 2
    token_auth: ${{TRAFFICINATOR_TEST_TOKEN}}
"""  # 9 lines: the next target is targets[2] and starts on line 10


@dataclass
class Bad:
    id: str
    text: str
    line: int | None
    path: str
    fragments: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)


BAD = [
    Bad(
        "duplicate-name-case-insensitive",
        KEEP
        + """\
  - name: KEEP
    url: https://other.example/
    site_id: 3
""",
        10,
        "targets[2].name",
        ("duplicate target name 'KEEP'", "targets[0]"),
    ),
    Bad(
        "same-class-name",
        KEEP
        + """\
  - name: Client A
    url: https://a.example/
    site_id: 3
  - name: Client-A
    url: https://a.example/
    site_id: 4
""",
        13,
        "targets[3].name",
        ("Target_Client_A",),
    ),
    Bad(
        "bad-timezone-with-hint",
        KEEP
        + """\
  - name: Stockholm
    url: https://s.example/
    site_id: 3
    timezone: Europe/Stokholm
""",
        13,
        "targets[2].timezone",
        ("'Europe/Stokholm'", "did you mean 'Europe/Stockholm'"),
    ),
    Bad(
        "weight-zero",
        KEEP
        + """\
  - name: Zero
    url: https://z.example/
    site_id: 3
    weight: 0
""",
        13,
        "targets[2].weight",
        ("greater than 0",),
    ),
    Bad(
        "weight-negative",
        KEEP
        + """\
  - name: Negative
    weight: -2
    url: https://n.example/
    site_id: 3
""",
        11,
        "targets[2].weight",
        ("greater than 0", "-2"),
    ),
    Bad(
        "unknown-top-level-key",
        "distrbution: weighted\n" + KEEP,
        1,
        "distrbution",
        ("unknown key 'distrbution'", "Did you mean 'distribution'"),
    ),
    Bad(
        "unknown-target-key-typo",
        KEEP
        + """\
  - name: Typo
    url: https://t.example/
    site_id: 3
    weigth: 2
""",
        13,
        "targets[2].weigth",
        ("unknown key 'weigth'", "Did you mean 'weight'"),
    ),
    Bad(
        "unknown-traffic-key",
        KEEP
        + """\
  - name: Traffic
    url: https://t.example/
    site_id: 3
    traffic:
      pageview: {min: 1, max: 2}
""",
        14,
        "targets[2].traffic.pageview",
        ("unknown key 'pageview'", "Did you mean 'pageviews'"),
    ),
    Bad(
        "unknown-defaults-key",
        "defaults:\n  timezone: UTC\n  sit_id: 4\n" + KEEP,
        3,
        "defaults.sit_id",
        ("unknown key 'sit_id'", "Did you mean 'site_id'"),
    ),
    Bad(
        "non-http-url",
        KEEP
        + """\
  - name: Ftp
    url: ftp://files.example/matomo.php
    site_id: 3
""",
        11,
        "targets[2].url",
        ("http://",),
    ),
    Bad(
        "url-with-query-string",
        KEEP
        + """\
  - name: Query
    url: https://q.example/matomo.php?idsite=3
    site_id: 3
""",
        11,
        "targets[2].url",
        ("query string",),
    ),
    Bad(
        "url-with-user-password",
        KEEP
        + """\
  - name: Basic
    site_id: 3
    url: https://admin:hunter2@b.example/matomo.php
""",
        12,
        "targets[2].url",
        ("user:password",),
    ),
    Bad(
        "missing-env-var",
        KEEP
        + """\
  - name: Missing
    url: https://m.example/
    site_id: 3
    token_auth: ${TRAFFICINATOR_TEST_UNSET_TOKEN}
""",
        13,
        "targets[2].token_auth",
        ("TRAFFICINATOR_TEST_UNSET_TOKEN", "not set"),
    ),
    Bad(
        "yaml-syntax-error",
        KEEP
        + """\
  - name: Broken
    url: https://b.example/
   site_id: 3
""",
        12,
        "<top level>",
        ("YAML syntax error",),
    ),
    Bad(
        "yaml-unclosed-flow-mapping",
        KEEP
        + """\
  - name: Broken
    url: https://b.example/
    site_id: 3
    traffic:
      pageviews: {min: 1, max: 2
    weight: 2
""",
        15,
        "<top level>",
        ("YAML syntax error",),
    ),
    Bad(
        "no-enabled-target",
        f"""\
# every target is switched off
targets:
  - name: Keep
    url: https://keep.example/matomo.php
    site_id: 1
    token_auth: {TOKEN}
    enabled: false
""",
        2,
        "targets",
        ("no enabled target",),
    ),
    Bad("empty-targets-list", "# nothing yet\n\ntargets: []\n", 3, "targets", ("no enabled target",)),
    Bad("empty-file", "", None, "<top level>", ("empty",)),
    Bad("comments-only-file", f"# token_auth: {TOKEN}\n\n", None, "<top level>", ("empty",)),
    Bad(
        "missing-url-no-default",
        KEEP
        + """\
  - name: NoUrl
    site_id: 3
""",
        10,
        "targets[2].url",
        ("missing 'url'",),
    ),
    Bad(
        "missing-site-id",
        "defaults:\n  url: https://d.example/\n" + KEEP + "  - name: NoSite\n",
        12,
        "targets[2].site_id",
        ("missing 'site_id'",),
    ),
    Bad(
        "missing-name",
        KEEP
        + """\
  - url: https://n.example/
    site_id: 3
""",
        10,
        "targets[2].name",
        ("missing",),
    ),
    Bad(
        "site-id-zero",
        KEEP
        + """\
  - name: Zero
    url: https://z.example/
    site_id: 0
""",
        12,
        "targets[2].site_id",
        ("greater than or equal to 1",),
    ),
    Bad(
        "site-id-not-a-number",
        KEEP
        + """\
  - name: Letters
    url: https://l.example/
    site_id: one
""",
        12,
        "targets[2].site_id",
        ("valid integer", "'one'"),
    ),
    Bad(
        "pageviews-min-above-max",
        KEEP
        + """\
  - name: Pages
    url: https://p.example/
    site_id: 3
    traffic:
      pageviews: {min: 7, max: 4}
""",
        14,
        "targets[2].traffic.pageviews",
        ("min (7)", "max (4)"),
    ),
    Bad(
        "pageviews-min-above-max-after-defaults",
        """\
defaults:
  traffic:
    pageviews: {min: 5}
"""
        + KEEP.replace("    site_id: 2\n", "    site_id: 2\n    traffic:\n      pageviews:\n        max: 3\n"),
        13,
        "targets[1].traffic.pageviews",
        ("min (5)", "max (3)", "defaults"),
    ),
    Bad(
        "pageviews-min-zero",
        KEEP
        + """\
  - name: Pages
    url: https://p.example/
    site_id: 3
    traffic:
      pageviews:
        min: 0
""",
        14,
        "targets[2].traffic.pageviews",
        ("at least one pageview",),
    ),
    Bad(
        "dwell-max-1800",
        KEEP
        + """\
  - name: Slow
    url: https://s.example/
    site_id: 3
    traffic:
      dwell_seconds: {min: 10, max: 1800}
""",
        14,
        "targets[2].traffic.dwell_seconds",
        ("1800", "30 minutes"),
    ),
    Bad(
        "action-share-above-one",
        KEEP
        + """\
  - name: Search
    url: https://s.example/
    site_id: 3
    traffic:
      actions:
        search: 1.5
""",
        15,
        "targets[2].traffic.actions.search",
        ("less than or equal to 1",),
    ),
    Bad(
        "negative-total-visits-per-day",
        "seed: 1\nvisits_per_day: -100\n" + KEEP,
        2,
        "visits_per_day",
        ("greater than or equal to 0",),
    ),
    Bad(
        "negative-target-visits-per-day",
        KEEP
        + """\
  - name: Rate
    url: https://r.example/
    site_id: 3
    visits_per_day: -1
""",
        13,
        "targets[2].visits_per_day",
        ("greater than or equal to 0",),
    ),
    Bad(
        "profile-hours-wrong-count",
        KEEP
        + """\
  - name: Profile
    url: https://p.example/
    site_id: 3
    profile:
      hours: [1, 2, 3]
""",
        14,
        "targets[2].profile.hours",
        ("24",),
    ),
    Bad("bad-distribution", KEEP + "distribution: fastest\n", 10, "distribution", ("'fastest'", "round-robin")),
    Bad(
        "urls-file-not-found",
        KEEP
        + """\
  - name: Pages
    url: https://p.example/
    site_id: 3
    traffic:
      urls: pages/missing.txt
""",
        14,
        "targets[2].traffic.urls",
        ("pages/missing.txt", "not found"),
    ),
    Bad(
        "empty-urls-list",
        KEEP
        + """\
  - name: Pages
    url: https://p.example/
    site_id: 3
    traffic:
      urls: []
""",
        14,
        "targets[2].traffic.urls",
        ("empty",),
    ),
    Bad(
        "urls-file-without-pages",
        KEEP
        + """\
  - name: Pages
    url: https://p.example/
    site_id: 3
    traffic:
      urls: blank.txt
""",
        14,
        "targets[2].traffic.urls",
        ("empty",),
        files={"blank.txt": "# only a comment\n\n"},
    ),
    Bad(
        "funnels-file-not-found",
        KEEP
        + """\
  - name: Funnels
    url: https://f.example/
    site_id: 3
    traffic:
      funnels: journeys.yaml
""",
        14,
        "targets[2].traffic.funnels",
        ("journeys.yaml", "not found"),
    ),
    Bad(
        "targets-not-a-list",
        f"""\
seed: 3
targets:
  name: Keep
  url: https://keep.example/matomo.php
  site_id: 1
  token_auth: {TOKEN}
""",
        2,
        "targets",
        ("valid list",),
    ),
    Bad("target-not-a-mapping", KEEP + "  - just-a-name\n", 10, "targets[2]", ("dictionary",)),
    Bad(
        "duplicate-yaml-key",
        KEEP
        + """\
  - name: Twice
    url: https://t.example/
    site_id: 3
    site_id: 4
""",
        13,
        "targets[2].site_id",
        ("duplicate key 'site_id'",),
    ),
    Bad(
        "top-level-is-a-list",
        f"""\
- name: Keep
  url: https://keep.example/matomo.php
  site_id: 1
  token_auth: {TOKEN}
""",
        1,
        "<top level>",
        ("mapping",),
    ),
    Bad(
        "yaml-merge-key",
        KEEP
        + """\
  - <<: {url: 'https://m.example/', site_id: 3}
    name: Merged
""",
        10,
        "targets[2]",
        ("merge keys",),
    ),
    Bad(
        "name-with-brackets",
        KEEP
        + """\
  - name: "[prod]"
    url: https://p.example/
    site_id: 3
""",
        10,
        "targets[2].name",
        ("square brackets",),
    ),
]


def assert_clean_failure(result, *secrets):
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output


@pytest.fixture(scope="module")
def bad_results(run_cli, tmp_path_factory):
    """Each bad case written to its own folder and validated; the processes run in parallel."""

    def run(case):
        folder = tmp_path_factory.mktemp(case.id)
        for name, content in case.files.items():
            (folder / name).write_text(content, encoding="utf-8")
        path = folder / f"{case.id}.yaml"
        path.write_text(case.text, encoding="utf-8")
        return case.id, (path, run_cli("validate", path, env=TOKEN_ENV))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        return dict(pool.map(run, BAD))


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_config_is_reported_with_file_line_and_path(bad_results, case):
    path, result = bad_results[case.id]
    assert_clean_failure(result, TOKEN, ENV_TOKEN)
    assert result.stdout == ""
    where = f"{path}:{case.line}: " if case.line else f"{path}: "
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith(str(path))]
    assert lines, result.stderr
    assert lines[0].startswith(f"{where}{case.path}: "), result.stderr
    for fragment in case.fragments:
        assert fragment in lines[0], result.stderr


def test_bad_cases_are_distinct():
    assert len({case.id for case in BAD}) == len(BAD) >= 18
    assert len({case.text for case in BAD}) == len(BAD)


def test_nonexistent_config_file(run_cli, tmp_path):
    missing = tmp_path / "nope" / "traffic.yaml"
    result = run_cli("validate", missing)
    assert_clean_failure(result)
    assert str(missing) in result.stderr
    assert "not found" in result.stderr


def test_config_path_that_is_a_folder(run_cli, tmp_path):
    result = run_cli("validate", tmp_path)
    assert_clean_failure(result)
    assert str(tmp_path) in result.stderr


def test_config_file_that_is_not_utf8(run_cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("targets:\n  - name: Caf\xe9\n".encode("latin-1"))
    result = run_cli("validate", path)
    assert_clean_failure(result)
    assert str(path) in result.stderr


def test_every_problem_of_a_file_is_reported_one_line_each(run_cli, write_yaml):
    path = write_yaml(f"""\
distrbution: weighted
targets:
  - name: A
    url: ftp://a.example/
    site_id: 0
    token_auth: {TOKEN}
    weigth: 2
  - name: B
    url: https://b.example/
    site_id: 2
    timezone: Europe/Stokholm
    traffic:
      pageviews: {{min: 0, max: 2}}
      bogus: 1
""")
    result = run_cli("validate", path)
    assert_clean_failure(result, TOKEN)
    expected = [
        (1, "distrbution"),
        (4, "targets[0].url"),
        (5, "targets[0].site_id"),
        (7, "targets[0].weigth"),
        (11, "targets[1].timezone"),
        (13, "targets[1].traffic.pageviews"),
        (14, "targets[1].traffic.bogus"),
    ]
    reported = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith(str(path))]
    assert len(reported) == len(expected), result.stderr
    for line, dotted in expected:
        assert sum(r.startswith(f"{path}:{line}: {dotted}: ") for r in reported) == 1, (line, dotted, result.stderr)
    assert f"{len(expected)} problems" in result.stderr


def test_problems_of_several_targets_found_after_merging_are_all_reported(run_cli, write_yaml):
    path = write_yaml("""\
targets:
  - name: A
    site_id: 1
  - name: B
    url: https://b.example/
    site_id: 2
    traffic:
      urls: gone.txt
  - name: C
    url: https://c.example/
    site_id: 3
    traffic:
      pageviews: {min: 4, max: 2}
""")
    result = run_cli("validate", path)
    assert_clean_failure(result)
    assert f"{path}:2: targets[0].url: missing 'url'" in result.stderr
    assert f"{path}:8: targets[1].traffic.urls: " in result.stderr
    assert f"{path}:13: targets[2].traffic.pageviews: " in result.stderr


def test_duplicate_name_reported_together_with_schema_errors(run_cli, write_yaml):
    path = write_yaml(
        KEEP
        + """\
  - name: keep
    url: https://k.example/
    site_id: 3
  - name: Other
    url: https://o.example/
    site_id: 4
    timezone: Nowhere/Land
"""
    )
    result = run_cli("validate", path, env=TOKEN_ENV)
    assert_clean_failure(result, TOKEN, ENV_TOKEN)
    assert f"{path}:16: targets[3].timezone: " in result.stderr
    assert f"{path}:10: targets[2].name: " in result.stderr


def test_two_traffic_problems_of_one_target_are_both_reported(run_cli, write_yaml):
    path = write_yaml("""\
targets:
  - name: A
    url: https://a.example/
    site_id: 1
    traffic:
      pageviews: {min: 5, max: 2}
      dwell_seconds: {max: 4000}
""")
    result = run_cli("validate", path)
    assert_clean_failure(result)
    assert f"{path}:6: targets[0].traffic.pageviews: " in result.stderr
    assert f"{path}:7: targets[0].traffic.dwell_seconds: " in result.stderr


def test_token_in_a_rejected_url_is_not_printed(run_cli, write_yaml):
    token = "s3cr3t-q"
    path = write_yaml(f"""\
targets:
  - name: A
    url: https://a.example/matomo.php?token_auth={token}
    site_id: 1
""")
    result = run_cli("validate", path)
    assert f"{path}:3: targets[0].url: " in result.stderr
    assert_clean_failure(result, token, "token_auth=s3")


def test_password_in_a_rejected_url_is_not_printed(run_cli, write_yaml):
    path = write_yaml("""\
targets:
  - name: A
    url: https://admin:Pa55-w0rd-xyz@a.example/matomo.php
    site_id: 1
""")
    result = run_cli("validate", path)
    assert f"{path}:3: targets[0].url: " in result.stderr
    assert_clean_failure(result, "Pa55-w0rd-xyz")


# --- validate: the good path ----------------------------------------------------------------------


def table_rows(stdout):
    return {line.split()[0]: line for line in stdout.splitlines()[3:] if line.strip()}


def test_validate_prints_one_row_per_target(run_cli, write_yaml):
    path = write_yaml(f"""\
visits_per_day: 9000
defaults:
  url: https://m.example/
  site_id: 1
targets:
  - name: Dev
    weight: 2
    token_auth: {TOKEN}
    timezone: Asia/Tokyo
  - name: Stage
    weight: 3
    visits_per_day: 500
    token_auth: ${{TRAFFICINATOR_TEST_TOKEN}}
  - name: Prod
    weight: 5
    timezone: America/New_York
  - name: Paused
    weight: 10
    enabled: false
""")
    result = run_cli("validate", path, env=TOKEN_ENV)
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert ENV_TOKEN not in result.stdout + result.stderr
    assert "3 enabled target" in result.stdout
    rows = table_rows(result.stdout)
    assert set(rows) == {"Dev", "Stage", "Prod", "Paused"}
    cells = {name: row.split() for name, row in rows.items()}
    assert all(len(c) == 8 for c in cells.values()), rows  # target url site weight% visits/day timezone token enabled
    assert {n: c[3] for n, c in cells.items()} == {"Dev": "20.0", "Stage": "30.0", "Prod": "50.0", "Paused": "-"}
    # 9000 - 500 claimed by Stage = 8500, split 2:5 between Dev and Prod (whole visits)
    assert cells["Stage"][4] == "500"
    dev, prod = int(cells["Dev"][4]), int(cells["Prod"][4])
    assert dev + prod == 8500 and abs(dev - 8500 * 2 / 7) < 1 and abs(prod - 8500 * 5 / 7) < 1
    assert {n: c[5] for n, c in cells.items()} == {
        "Dev": "Asia/Tokyo",
        "Stage": "UTC",
        "Prod": "America/New_York",
        "Paused": "UTC",
    }
    assert {n: c[6:] for n, c in cells.items()} == {
        "Dev": ["yes", "yes"],
        "Stage": ["yes", "yes"],
        "Prod": ["no", "yes"],
        "Paused": ["no", "no"],
    }
    assert cells["Prod"][1] == "https://m.example/matomo.php" and cells["Prod"][2] == "1"


def test_validate_reads_trafficinator_config_variable(run_cli):
    result = run_cli("validate", env={"TRAFFICINATOR_CONFIG": str(CONFIG_DIR / "multi-client.yaml")})
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("Client ")]
    assert len(rows) == 2
    assert "Client A" in rows[0] and "66.7" in rows[0] and "8000" in rows[0] and "Europe/Berlin" in rows[0]
    assert "Client B" in rows[1] and "33.3" in rows[1] and "3000" in rows[1] and "America/New_York" in rows[1]


def test_validate_without_any_config_explains_what_to_give(run_cli, tmp_path):
    result = run_cli("validate", cwd=tmp_path)
    assert_clean_failure(result)
    assert "TRAFFICINATOR_CONFIG" in result.stderr


def test_validate_never_prints_a_token_of_a_valid_config(run_cli):
    result = run_cli("validate", CONFIG_DIR / "demo.yaml", env={"DEMO_PROD_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    for default_token in ("demo-dev-token-5f1c", "demo-staging-token-8a2e"):
        assert default_token not in result.stdout + result.stderr


# --- validate --online (preflight) ------------------------------------------------------------------
ONLINE_CONFIG = """\
targets:
  - name: Good
    url: http://127.0.0.1:{port}/dev/matomo.php
    site_id: 1
    token_auth: {token}
  - name: Paused
    url: http://127.0.0.1:{closed}/paused/matomo.php
    site_id: 2
    enabled: false
"""


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """A receiver process that knows TOKEN for site 1 of /dev, a config of it (plus a disabled
    target on a closed port), and the same config with a wrong token."""
    from trafficinator_locust.receiver.process import free_port, start_receiver, stop_process

    folder = tmp_path_factory.mktemp("online")
    port, closed = free_port(), free_port()
    good = folder / "good.yaml"
    good.write_text(ONLINE_CONFIG.format(port=port, closed=closed, token=TOKEN), encoding="utf-8")
    wrong = folder / "wrong.yaml"
    wrong.write_text(ONLINE_CONFIG.format(port=port, closed=closed, token=ENV_TOKEN), encoding="utf-8")
    process = start_receiver(good, port, dict(os.environ), "--record-hits")
    try:
        yield {"port": port, "closed": closed, "good": good, "wrong": wrong}
    finally:
        stop_process(process)


def _preflight_rows(stdout: str) -> dict[str, list[str]]:
    """The preflight table's rows by target, cells split (after its 'Preflight of' line)."""
    lines = stdout.split("Preflight of", 1)[1].splitlines()[3:]
    return {line.split()[0]: line.split()[1:] for line in lines if line and line.split()[0] in ("Good", "Paused")}


def test_validate_online_passes_a_good_target_exit_0_and_tracks_nothing(run_cli, online):
    from trafficinator_locust.receiver.process import receiver_stats

    result = run_cli("validate", online["good"], "--online", "--timeout", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK, 1 enabled target(s)" in result.stdout  # the offline table comes first
    assert "Preflight of 1 target(s), 5 s each, no tracking data sent:" in result.stdout
    rows = _preflight_rows(result.stdout)  # dns tcp tls tracker api token site access result seconds
    assert set(rows) == {"Good"} and rows["Good"][:9] == ["ok", "ok", "-", "ok", "ok", "ok", "ok", "ok", "ok"]
    assert result.stdout.rstrip().endswith("preflight: all 1 target(s) passed")
    assert TOKEN not in result.stdout + result.stderr
    assert receiver_stats(online["port"])["/dev"]["sites"]["1"]["hits"] == 0


def test_validate_online_exit_1_names_the_failed_step_without_the_token(run_cli, online):
    result = run_cli("validate", online["wrong"], "--online", "--timeout", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert _preflight_rows(result.stdout)["Good"][:9] == ["ok", "ok", "-", "ok", "ok", "FAIL", "-", "-", "FAIL"]
    assert "Good: token FAILED: token_auth rejected" in result.stdout
    assert "preflight: 1 of 1 target(s) failed: Good" in result.stdout
    assert "Traceback" not in result.stderr and ENV_TOKEN not in result.stdout + result.stderr


def test_validate_online_target_picks_one_even_disabled_and_probe_sends_one_hit(run_cli, online):
    from trafficinator_locust.receiver.process import receiver_stats

    paused = run_cli("validate", online["good"], "--online", "--target", "paused", "--timeout", "3")
    assert paused.returncode == 1, paused.stdout + paused.stderr
    assert set(_preflight_rows(paused.stdout)) == {"Paused"}
    assert f"Paused: tcp FAILED: connection refused on 127.0.0.1:{online['closed']}" in paused.stdout

    before = receiver_stats(online["port"])["/dev"]["sites"]["1"]["hits"]
    probed = run_cli("validate", online["good"], "--online", "--target", "Good", "--probe")
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert "one test hit per target ('trafficinator preflight probe')" in probed.stdout
    assert _preflight_rows(probed.stdout)["Good"][:10] == ["ok", "ok", "-", "ok", "ok", "ok", "ok", "ok", "ok", "ok"]
    assert receiver_stats(online["port"])["/dev"]["sites"]["1"]["hits"] == before + 1
    assert TOKEN not in paused.stdout + paused.stderr + probed.stdout + probed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--probe",), "--probe only work(s) with --online"),
        (("--timeout", "5", "--target", "Good"), "--timeout, --target only work(s) with --online"),
        (("--online", "--timeout", "0"), "--timeout 0: must be > 0 and <= 600 seconds"),
        (("--online", "--target", "Nope"), "--target: no target named 'Nope'; the config has: Good, Paused"),
    ],
)
def test_validate_online_usage_errors_exit_2(run_cli, online, args, message):
    result = run_cli("validate", online["good"], *args)
    assert_clean_failure(result, TOKEN)
    assert message in result.stderr
    assert "Preflight of" not in result.stdout


# --- schema -------------------------------------------------------------------------------------


def test_schema_is_json_with_the_top_level_keys(run_cli):
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert {"targets", "defaults", "distribution", "visits_per_day"} <= set(schema["properties"])
    assert schema["required"] == ["targets"]
    assert schema.get("additionalProperties") is False


def test_schema_describes_target_fields(run_cli):
    schema = json.loads(run_cli("schema").stdout)
    definitions = schema.get("$defs", {})
    target = definitions["TargetSpec"]
    assert {"name", "url", "site_id", "token_auth", "weight", "timezone", "traffic"} <= set(target["properties"])
    assert target.get("additionalProperties") is False
    assert "weighted" in json.dumps(definitions["Distribution"])


def test_unknown_command_is_a_usage_error(run_cli):
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
