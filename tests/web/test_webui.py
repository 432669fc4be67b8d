"""The web control plane: its JSON API on Locust's Flask app, in-process (Flask's test client) and
on a real ``locust`` process; the Targets tab; login; and the pure helpers behind them.

What an operator relies on: every change goes through the same loader as the YAML file (errors
name the config path), tokens never come back, a disabled target stops at once, and a change
that cannot apply live says so and waits for the next test start.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.event import Events

import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from trafficinator_locust.core.budget import Pace
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.plugin import Plugin, add_arguments
from trafficinator_locust.receiver.process import free_port, start_receiver, stop_process
from trafficinator_locust.runtime.deployment import Deployment
from trafficinator_locust.web.app import TAB_KEY
from trafficinator_locust.web.config_writer import backup_path, render_yaml
from trafficinator_locust.web.control import pending_changes
from trafficinator_locust.web.openapi import openapi_document
from trafficinator_locust.web.target_status import RecentRate, classify_health

ALPHA_TOKEN = "alpha-token-7Hq2xZ"
BETA_TOKEN = "beta-literal-token-P9sd"
TYPED_TOKEN = "typed-in-ui-token-Kk31"

CONFIG = """\
# yaml-language-server: $schema=trafficinator.schema.json
# Three targets for the control-plane tests (nothing listens on port 9).
defaults:
  traffic:
    pageviews: {min: 2, max: 3}
targets:
  - name: Alpha      # the paced one
    url: http://127.0.0.1:9/a/matomo.php
    site_id: 1
    token_auth: ${ALPHA_TOKEN}
    visits_per_day: 1000
  - name: Beta Shop
    url: http://127.0.0.1:9/b/matomo.php
    site_id: 2
    token_auth: BETA_LITERAL
    weight: 3
  - name: Gamma
    url: http://127.0.0.1:9/c/matomo.php
    site_id: 3
""".replace("BETA_LITERAL", BETA_TOKEN)


def _no_secret(text: str) -> None:
    for token in (ALPHA_TOKEN, BETA_TOKEN, TYPED_TOKEN):
        assert token not in text, "a token was returned"


class Harness:
    """A local runner with the plugin registered and the web UI built (not serving), in this process."""

    def __init__(
        self,
        config_path: Path | None,
        presets: Path,
        *extra: str,
        base_path: str = "",
        web_login: bool = False,
        config: Any = None,
    ):
        self.config_path = config_path
        config = config if config is not None else load_config(config_path)
        self.plugin = Plugin(Deployment.of(config))
        parser = get_parser()
        add_arguments(parser)
        self.options = parser.parse_args(["--traffic-state", "", "--traffic-presets", str(presets), *extra])
        self.environment = Environment(
            user_classes=list(self.plugin.user_classes.values()), parsed_options=self.options, events=Events()
        )
        self.runner = self.environment.create_local_runner()
        self.web_ui = self.environment.create_web_ui(
            "127.0.0.1", 0, web_base_path=base_path or None, web_login=web_login, delayed_start=True
        )
        self.plugin.register(self.environment)
        self.client = self.web_ui.app.test_client()
        self.base = base_path

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None and not isinstance(body, (str, bytes)):
            kwargs["json"] = body
        elif body is not None:
            kwargs["data"] = body
        response = getattr(self.client, method.lower())(self.base + path, **kwargs)
        text = response.get_data(as_text=True)
        _no_secret(text)
        return response.status_code, response.get_json(silent=True)

    def close(self) -> None:
        self.runner.quit()


@pytest.fixture()
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "argv", ["locust"])  # Locust's web UI parses the command line for its form
    monkeypatch.setenv("ALPHA_TOKEN", ALPHA_TOKEN)
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "traffic.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture()
def ui(config_path: Path, tmp_path: Path):
    harness = Harness(config_path, tmp_path / "presets.sqlite3")
    staged: list[Any] = []
    harness.plugin.coordinator.stage_config = staged.append  # the coordinator's staging, stood in for
    harness.staged = staged
    yield harness
    harness.close()


# --- options -------------------------------------------------------------------------------------


def test_the_web_ui_binds_to_loopback_unless_a_host_is_given(tmp_path: Path):
    parser = get_parser()
    add_arguments(parser)
    assert parser.parse_args([]).web_host == "127.0.0.1"
    assert parser.parse_args(["--web-host", "*"]).web_host == "*"
    assert parser.parse_args(["--traffic-presets", str(tmp_path / "p.db")]).traffic_presets == str(tmp_path / "p.db")


# --- targets -------------------------------------------------------------------------------------


def test_targets_are_listed_as_written_with_tokens_write_only(ui: Harness):
    status, body = ui.call("GET", "/api/targets")
    assert status == 200
    targets = {t["name"]: t for t in body["targets"]}
    assert list(targets) == ["Alpha", "Beta Shop", "Gamma"]
    assert (targets["Alpha"]["token_auth"], targets["Alpha"]["token_env"]) == ("set", "ALPHA_TOKEN")
    assert (targets["Beta Shop"]["token_auth"], targets["Beta Shop"]["token_env"]) == ("set", None)
    assert targets["Gamma"]["token_auth"] is None
    assert targets["Beta Shop"]["effective"]["weight_share"] == pytest.approx(0.6)
    status, one = ui.call("GET", "/api/targets/beta shop")  # names are case-insensitive
    assert status == 200 and one["target"]["name"] == "Beta Shop"


def test_adding_a_target_is_validated_like_the_file_and_staged_for_the_next_start(ui: Harness):
    status, body = ui.call(
        "POST",
        "/api/targets",
        {"name": "Delta", "url": "http://127.0.0.1:9/d", "site_id": 4, "token_auth": "${ALPHA_TOKEN}"},
    )
    assert status == 201, body
    assert body["target"]["effective"]["url"] == "http://127.0.0.1:9/d/matomo.php"
    assert body["applied"]["next_start"] == ["Delta: added"] and body["applied"]["staged"] is True
    assert [t.name for t in ui.staged[-1].targets] == ["Alpha", "Beta Shop", "Gamma", "Delta"]
    assert ui.call("GET", "/api/targets/Delta")[0] == 200


def test_invalid_targets_answer_422_with_the_config_path(ui: Harness):
    status, body = ui.call(
        "POST",
        "/api/targets",
        {"name": "Delta", "url": "ftp://x", "site_id": 0, "timezone": "Mars/Base", "colour": "red"},
    )
    assert status == 422
    paths = {p["path"] for p in body["problems"]}
    assert {"targets[3].url", "targets[3].site_id", "targets[3].timezone", "targets[3].colour"} <= paths, body
    status, body = ui.call("PATCH", "/api/targets/Alpha", {"weight": -1})
    assert status == 422 and body["problems"][0]["path"] == "targets[0].weight"
    status, body = ui.call("POST", "/api/targets", {"url": "http://127.0.0.1:9/x", "site_id": 1})
    assert status == 422 and "name" in body["error"]
    assert ui.call("GET", "/api/targets")[1]["version"] == 1  # nothing was committed


def test_duplicate_and_unknown_names_and_bad_json_are_clear_4xx(ui: Harness):
    status, body = ui.call("POST", "/api/targets", {"name": "gamma", "url": "http://127.0.0.1:9/x", "site_id": 9})
    assert status == 409 and "exists" in body["error"]
    status, body = ui.call("PUT", "/api/targets/Gamma", {"name": "ALPHA", "url": "http://127.0.0.1:9/x", "site_id": 9})
    assert status == 409
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        status, body = ui.call(method, "/api/targets/Nope", {} if method in ("PUT", "PATCH") else None)
        assert status == 404 and "Nope" in body["error"], (method, body)
    status, body = ui.call("POST", "/api/targets", "{not json", content_type="application/json")
    assert status == 400 and "JSON object" in body["error"]
    status, body = ui.call("POST", "/api/targets", [1, 2])
    assert status == 400
    status, body = ui.call("GET", "/api/nothing-here")
    assert status == 404 and "openapi" in body["error"]
    status, body = ui.call("PATCH", "/api/targets")
    assert status == 405 and "not allowed" in body["error"]


def test_disabling_a_target_pauses_its_budget_at_once(ui: Harness):
    broker = ui.plugin.coordinator.broker
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"enabled": False})
    assert status == 200 and body["applied"]["live"] == ["Gamma: paused"]
    assert broker.ledger.budget("Gamma").paused
    assert not ui.plugin.sender.permits.try_acquire("Gamma")  # unpaced at start, limited now
    rows = {r["name"]: r for r in ui.call("GET", "/api/status")[1]["targets"]}
    assert rows["Gamma"]["state"] == "disabled" and rows["Alpha"]["state"] != "disabled"
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"enabled": True})
    assert body["applied"]["live"] == ["Gamma: running"] and not broker.ledger.budget("Gamma").paused
    assert ui.plugin.sender.permits.try_acquire("Gamma")


def test_a_lowered_cap_applies_live_and_holds(ui: Harness):
    broker = ui.plugin.coordinator.broker
    budget = broker.ledger.budget("Alpha")
    budget.paced = False  # stress-like: only the cap limits, so the grants below are exact
    assert broker.ledger.lease("test", "Alpha", 300, time.time(), 30).count == 300
    status, body = ui.call("PATCH", "/api/targets/Alpha", {"visits_per_day": 200})
    assert status == 200 and body["applied"]["live"] == ["Alpha: running, 200 visits/day cap"]
    assert budget.pace == Pace(200, "UTC")
    row = {r["name"]: r for r in ui.call("GET", "/api/status")[1]["targets"]}["Alpha"]
    assert (row["state"], row["granted_today"], row["cap_today"]) == ("capped", 300, 200)
    assert broker.ledger.lease("test", "Alpha", 10, time.time(), 30).count == 0


def test_removing_a_target_pauses_it_now_and_drops_it_at_the_next_start(ui: Harness):
    status, body = ui.call("DELETE", "/api/targets/Beta%20Shop")
    assert status == 200 and body["deleted"] == "Beta Shop"
    assert (
        body["applied"]["live"] == ["Beta Shop: paused"]
        and "Beta Shop: removed (paused now)" in body["applied"]["next_start"]
    )
    assert [t.name for t in ui.staged[-1].targets] == ["Alpha", "Gamma"]


def test_a_token_typed_as_a_value_is_never_returned_saved_or_stored(ui: Harness, tmp_path: Path):
    status, body = ui.call(
        "PUT",
        "/api/targets/Gamma",
        {"name": "Gamma", "url": "http://127.0.0.1:9/c/matomo.php", "site_id": 3, "token_auth": TYPED_TOKEN},
    )
    assert status == 200 and body["target"]["token_auth"] == "set" and body["target"]["token_env"] is None
    assert ui.staged[-1].targets[2].token_auth.get_secret_value() == TYPED_TOKEN  # the run gets it
    status, body = ui.call("POST", "/api/config/save")
    assert status == 422 and "Gamma" in body["error"]
    assert TYPED_TOKEN not in ui.config_path.read_text()
    status, body = ui.call("POST", "/api/presets", {"name": "with typed token"})
    assert status == 201 and any("Gamma" in w for w in body["warnings"])
    assert "token_auth" not in body["preset"]["config"]["targets"][2]
    assert TYPED_TOKEN.encode() not in (tmp_path / "presets.sqlite3").read_bytes()
    # "set" keeps it, null removes it
    assert (
        ui.call("PATCH", "/api/targets/Gamma", {"token_auth": "set", "weight": 2})[1]["target"]["token_auth"] == "set"
    )
    assert ui.call("PATCH", "/api/targets/Gamma", {"token_auth": None})[1]["target"]["token_auth"] is None


def test_saving_writes_the_file_with_a_backup_comments_and_token_references(ui: Harness):
    original = ui.config_path.read_text()
    status, body = ui.call("PATCH", "/api/targets/Gamma?save=1", {"weight": 4, "enabled": False})
    assert status == 200, body
    saved = body["applied"]["saved"]
    assert Path(saved["backup"]).read_text() == original
    text = ui.config_path.read_text()
    assert "# the paced one" in text and "# yaml-language-server" in text
    assert "token_auth: ${ALPHA_TOKEN}" in text
    reloaded = load_config(ui.config_path)
    assert [(t.name, t.weight, t.enabled) for t in reloaded.targets][2] == ("Gamma", 4.0, False)
    status, body = ui.call("POST", "/api/config/save")
    assert status == 200 and Path(body["saved"]["backup"]).exists() and body["saved"]["backup"] != saved["backup"]


# --- validate, status, tab ----------------------------------------------------------------------


def test_validate_reports_each_target_and_refuses_bad_input(ui: Harness):
    status, body = ui.call("POST", "/api/validate", {"target": "Gamma", "timeout": 3})
    assert status == 200, body
    (result,) = body["results"]
    assert result["target"] == "Gamma" and result["ok"] is False and body["ok"] is False
    assert [s["name"] for s in result["steps"] if not s["ok"]] == ["tcp"]  # nothing listens on port 9
    status, body = ui.call("POST", "/api/validate", {"timeout": 3})
    assert status == 200 and [r["target"] for r in body["results"]] == ["Alpha", "Beta Shop", "Gamma"]
    assert ui.call("POST", "/api/validate", {"target": "Nope"})[0] == 404
    assert ui.call("POST", "/api/validate", {"timeout": -1})[0] == 422
    assert ui.call("POST", "/api/validate", {"probe": "yes"})[0] == 422
    assert ui.call("POST", "/api/validate", "[]", content_type="application/json")[0] == 400


def test_status_reports_per_target_figures_health_and_a_masked_last_error(ui: Harness):
    stats = ui.environment.stats
    for _ in range(18):
        stats.log_request("POST", "[Alpha] pageview", 120, 10)
    for _ in range(2):
        stats.log_request("POST", "[Alpha] pageview", 300, 0)
        stats.log_error("POST", "[Alpha] pageview", f"HTTP 400: bad token_auth={ALPHA_TOKEN}&idsite=1 ({BETA_TOKEN})")
    for _ in range(4):
        stats.log_request("POST", "[Gamma] ping", 50, 0)
        stats.log_error("POST", "[Gamma] ping", "no answer (ConnectionRefusedError)")
    ui.plugin.deployment.tally.visit_started("Alpha", True, Pace(1000).day_of(time.time()).isoformat())
    status, body = ui.call("GET", "/api/status")
    assert status == 200
    rows = {r["name"]: r for r in body["targets"]}
    alpha, gamma, beta = rows["Alpha"], rows["Gamma"], rows["Beta Shop"]
    assert (alpha["requests"], alpha["failures"], alpha["fail_pct"]) == (20, 2, 10.0)
    assert alpha["health"] == "degraded" and gamma["health"] == "failing" and beta["health"] is None
    assert beta["state"] == "idle" and not body["running"]  # no test running
    assert alpha["last_error"].startswith("[Alpha] pageview: HTTP 400: bad token_auth=***")
    assert (alpha["visits_today"], alpha["cap_today"]) == (1, 1000)
    assert alpha["expected_rate"] == pytest.approx(1000 / 86400, abs=1e-4) and beta["expected_rate"] is None
    assert body["health_thresholds"]["failing_fail_ratio"] == 0.5


def test_the_targets_tab_is_fed_with_the_stats(ui: Harness):
    args = ui.web_ui.template_args
    assert {"title": "Targets", "key": TAB_KEY} in args["extended_tabs"]
    (table,) = [t for t in args["extended_tables"] if t["key"] == TAB_KEY]
    response = ui.client.get("/stats/requests")
    (tab,) = [e for e in response.get_json()["extended_stats"] if e["key"] == TAB_KEY]
    assert [row["name"] for row in tab["data"]] == ["Alpha", "Beta Shop", "Gamma"]
    assert {column["key"] for column in table["structure"]} <= set(tab["data"][0])
    again = ui.client.get("/stats/requests").get_json()  # Locust caches this answer: no duplicate entry
    assert len([e for e in again["extended_stats"] if e["key"] == TAB_KEY]) == 1
    index = ui.client.get("/")
    assert index.status_code == 200 and b'src="trafficinator/static/tab.js"' in index.data
    page = ui.client.get("/trafficinator/")
    assert page.status_code == 200 and b"static/control.js" in page.data
    assert ui.client.get("/trafficinator/static/control.js").status_code == 200


# --- presets -------------------------------------------------------------------------------------


def test_presets_crud_versions_and_apply(ui: Harness):
    status, body = ui.call("POST", "/api/presets", {"name": "all three"})
    assert status == 201 and body["preset"]["version"] == 1 and body["warnings"]  # Beta's literal token omitted
    tokens = [t.get("token_auth") for t in body["preset"]["config"]["targets"]]
    assert tokens == ["${ALPHA_TOKEN}", None, None]
    assert ui.call("POST", "/api/presets", {"name": "ALL THREE"})[0] == 409
    assert ui.call("POST", "/api/presets", {"name": "a/b"})[0] == 422
    assert ui.call("POST", "/api/presets", {"name": ""})[0] == 422
    assert (
        ui.call("POST", "/api/presets", {"name": "x", "config": {"targets": [{"name": "T", "site_id": 1}]}})[0] == 422
    )  # no url
    ui.call("PATCH", "/api/targets/Gamma", {"enabled": False})
    status, body = ui.call("PUT", "/api/presets/all three", {"version": 7})
    assert status == 409 and "version 1" in body["error"]
    response = ui.client.get("/api/presets/all three")
    assert response.headers["ETag"] == '"1"'
    status, body = ui.call("PUT", "/api/presets/without gamma", {}, headers={})
    assert status == 201
    status, body = ui.call("PUT", "/api/presets/all three", {}, headers={"If-Match": '"1"'})
    assert status == 200 and body["preset"]["version"] == 2
    status, body = ui.call("GET", "/api/presets")
    assert [(p["name"], p["version"]) for p in body["presets"]] == [("all three", 2), ("without gamma", 1)]
    ui.call("PATCH", "/api/targets/Gamma", {"enabled": True})
    status, body = ui.call("POST", "/api/presets/without gamma/apply")
    assert status == 200 and body["applied"]["live"] == ["Gamma: paused"]
    assert [t["effective"]["enabled"] for t in body["targets"]] == [True, True, False]
    assert ui.call("DELETE", "/api/presets/all three", {"version": 1})[0] == 409
    assert ui.call("DELETE", "/api/presets/all three")[0] == 200
    for method, path in (
        ("GET", "/api/presets/all three"),
        ("DELETE", "/api/presets/all three"),
        ("POST", "/api/presets/all three/apply"),
    ):
        status, body = ui.call(method, path)
        assert status == 404 and "all three" in body["error"]


def test_applying_a_preset_whose_variable_is_unset_names_it(ui: Harness, monkeypatch: pytest.MonkeyPatch):
    config = {
        "targets": [{"name": "Solo", "url": "http://127.0.0.1:9/s", "site_id": 1, "token_auth": "${SOLO_TOKEN_UNSET}"}]
    }
    assert ui.call("POST", "/api/presets", {"name": "solo", "config": config})[0] == 201
    status, body = ui.call("POST", "/api/presets/solo/apply")
    assert status == 422 and "SOLO_TOKEN_UNSET" in body["problems"][0]["message"]


# --- openapi, base path, login, origin -----------------------------------------------------------


def test_every_api_route_is_described_in_the_openapi_document(ui: Harness):
    described = openapi_document()["paths"]
    routes = 0
    for rule in ui.web_ui.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        routes += 1
        path = rule.rule.replace("<name>", "{name}")
        assert path in described, f"{rule.rule} is not in openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in described[path], f"{method} {rule.rule} is not in openapi.json"
    assert routes >= 8
    assert ui.call("GET", "/api/openapi.json")[1]["openapi"].startswith("3.")


def test_routes_follow_the_web_base_path(config_path: Path, tmp_path: Path):
    harness = Harness(config_path, tmp_path / "p.sqlite3", base_path="/locust")
    try:
        assert harness.call("GET", "/api/targets")[0] == 200
        assert harness.client.get("/api/targets").status_code == 404
        assert harness.client.get("/locust/trafficinator/").status_code == 200
        assert harness.call("GET", "/api/openapi.json")[1]["servers"] == [{"url": "/locust"}]
    finally:
        harness.close()


def test_with_a_login_every_plugin_route_needs_it(config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAFFICINATOR_WEB_USER", "operator")
    monkeypatch.setenv("TRAFFICINATOR_WEB_PASSWORD", "pw-Secret-1")
    harness = Harness(config_path, tmp_path / "p.sqlite3")  # no --web-login: the variables suffice
    try:
        client = harness.client
        for path in ("/api/targets", "/api/status", "/api/presets", "/api/openapi.json"):
            response = client.get(path)
            assert response.status_code == 401 and "login" in response.get_json()["error"], path
        assert client.post("/api/validate", json={}).status_code == 401
        assert client.post("/api/verify", json={"report_path": "r.json"}).status_code == 401
        assert client.get("/trafficinator/").status_code == 302
        assert client.get("/trafficinator/static/control.js").status_code == 302
        assert client.get("/").status_code == 302  # Locust's own page too
        assert client.get("/api/targets", auth=("operator", "wrong")).status_code == 401
        assert client.get("/api/targets", auth=("operator", "pw-Secret-1")).status_code == 200
        bad = client.post("/trafficinator/login", data={"username": "operator", "password": "nope"})
        assert bad.status_code == 302 and "/login" in bad.headers["Location"]
        assert client.get("/api/status").status_code == 401
        good = client.post("/trafficinator/login", data={"username": "operator", "password": "pw-Secret-1"})
        assert good.status_code == 302
        assert client.get("/api/status").status_code == 200
        assert client.get("/trafficinator/").status_code == 200
    finally:
        harness.close()


def test_web_login_without_the_account_variables_exits_2(
    config_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exit_info:
        Harness(config_path, tmp_path / "p.sqlite3", "--web-login", web_login=True)
    assert exit_info.value.code == 2
    assert "TRAFFICINATOR_WEB_USER" in capsys.readouterr().err


def test_cross_site_and_rebinding_requests_are_refused(ui: Harness):
    status, body = ui.call(
        "POST",
        "/api/targets",
        {"name": "Evil", "url": "http://127.0.0.1:9/e", "site_id": 1},
        headers={"Origin": "http://evil.example"},
    )
    assert status == 403 and "cross-origin" in body["error"]
    status, body = ui.call("GET", "/api/status", headers={"Host": "evil.example:8089"})
    assert status == 403 and "loopback" in body["error"]
    assert ui.call("GET", "/api/status", headers={"Origin": "http://localhost"})[0] == 200


def test_a_config_from_the_legacy_variables_is_editable_but_not_savable(
    config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from trafficinator_locust.core.legacy import legacy_config

    legacy = {"MATOMO_URL": "http://127.0.0.1:9/matomo.php", "MATOMO_SITE_ID": "4", "MATOMO_TOKEN_AUTH": ALPHA_TOKEN}
    for name, value in legacy.items():
        monkeypatch.setenv(name, value)
    harness = Harness(None, tmp_path / "p.sqlite3", config=legacy_config(legacy))
    try:
        status, body = harness.call("GET", "/api/targets")
        (target,) = body["targets"]
        assert (target["name"], target["token_auth"], target["token_env"], body["file"]) == (
            "Default",
            "set",
            "MATOMO_TOKEN_AUTH",
            None,
        )
        assert harness.call("PATCH", "/api/targets/Default", {"weight": 2})[0] == 200
        status, body = harness.call("POST", "/api/config/save")
        assert status == 409 and "--traffic-config" in body["error"]
    finally:
        harness.close()


# --- pure helpers --------------------------------------------------------------------------------


def test_mask_secrets_hides_values_and_token_parameters():
    assert mask_secrets("x abcdef y token_auth=zzz&idsite=1", ["abcdef"]) == "x *** y token_auth=***&idsite=1"
    assert mask_secrets("nothing", []) == "nothing"


@pytest.mark.parametrize(
    ("requests", "failures", "p95", "visits_failing", "health"),
    [
        (0, 0, None, False, None),
        (100, 0, 100, False, "healthy"),
        (100, 4, 1999, False, "healthy"),
        (100, 5, 100, False, "degraded"),
        (100, 0, 2000, False, "degraded"),
        (100, 49, 100, False, "degraded"),
        (100, 50, 100, False, "failing"),
        (0, 0, None, True, "failing"),
    ],
)
def test_health_thresholds(requests: int, failures: int, p95: float | None, visits_failing: bool, health: str | None):
    assert classify_health(requests, failures, p95, visits_failing) == health


def test_recent_rate_follows_samples_and_restarts_with_a_new_run():
    rates = RecentRate(span=30)
    rates.add(100, {"A": 0})
    assert rates.rate("A") is None
    rates.add(110, {"A": 20})
    assert rates.rate("A") == pytest.approx(2.0)
    rates.add(150, {"A": 120})
    assert rates.rate("A") == pytest.approx(100 / 40)  # the oldest sample kept spans at least 30 s
    rates.add(152, {"A": 1})  # the tally was reset: a new run
    assert rates.rate("A") is None


def test_pending_changes_lists_what_waits_for_the_next_start(write_yaml):
    before = load_config(write_yaml(CONFIG.replace("${ALPHA_TOKEN}", "t")))
    after_text = (
        CONFIG.replace("${ALPHA_TOKEN}", "t")
        .replace("site_id: 3", "site_id: 4")
        .replace("weight: 3", "weight: 5")
        .replace("  - name: Gamma", "  - name: Delta")
    )
    after = load_config(write_yaml(after_text, name="after.yaml"))
    assert pending_changes(before, after) == [
        "Delta: added",
        "Gamma: removed (paused now)",
        "Beta Shop: weight (the split of users)",
    ]
    assert pending_changes(before, before) == []


def test_backups_never_overwrite_each_other(tmp_path: Path):
    path = tmp_path / "t.yaml"
    first = backup_path(path, 0)
    first.write_text("x")
    assert first.name == "t.yaml.19700101-000000.bak" and backup_path(path, 0).name == "t.yaml.19700101-000000-1.bak"


def test_render_yaml_keeps_comments_and_layout_of_unchanged_parts():
    original = (
        "# head\ntargets:\n- name: A  # keep me\n  url: http://x\n  site_id: 1\n"
        "- name: B\n  url: http://y\n  site_id: 2\n"
    )
    data = yaml.safe_load(original)
    data["targets"][1]["enabled"] = False
    data["targets"].insert(0, {"name": "C", "url": "http://z", "site_id": 3})
    text = render_yaml(original, data)
    assert yaml.safe_load(text) == data
    assert "# head" in text and "- name: A  # keep me" in text and "\n- name: C\n" in text


# --- verify: sent vs stored through each target's Reporting API --------------------------------------


VERIFY_CONFIG = """\
seed: 41
defaults:
  traffic:
    pageviews: {{min: 3, max: 6}}
    actions: {{search: 0.3, event: 0.4}}
targets:
  - name: Alpha
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 1
    token_auth: ${{ALPHA_TOKEN}}
    timezone: Europe/Paris
    visits_per_day: 40
  - name: Beta Shop
    url: http://127.0.0.1:{port}/beta/matomo.php
    site_id: 2
    token_auth: {beta}
    timezone: America/New_York
    visits_per_day: 30
"""
FAST = 6000  # Reporting API calls per minute: the receiver has no rate limit


@pytest.fixture(scope="module", params=[0.0, 0.05], ids=["exact", "loss"])
def backfilled(request, tmp_path_factory):
    """A receiver (without or with a silent loss of 5 % of the hits) holding a 3-day backfill of two targets."""
    from trafficinator_locust.ops.backfill import BackfillOptions, run_backfill

    folder = tmp_path_factory.mktemp("verify")
    port = free_port()
    config_path = folder / "traffic.yaml"
    config_path.write_text(VERIFY_CONFIG.format(port=port, beta=BETA_TOKEN), encoding="utf-8")
    env = {**os.environ, "ALPHA_TOKEN": ALPHA_TOKEN, "XDG_STATE_HOME": str(folder / "state")}
    sink = start_receiver(config_path, port, env, "--loss", str(request.param), "--loss-seed", "3")
    try:
        last = datetime.now(timezone.utc).date() - timedelta(days=2)
        report = folder / "report.json"
        options = BackfillOptions(
            first=last - timedelta(days=2), last=last, checkpoint=folder / "cp.json", report=report, progress_every=0.2
        )
        with open(os.devnull, "w") as quiet:
            assert run_backfill(load_config(config_path, env=env), options, out=quiet, err=quiet) == 0
        yield {"loss": request.param, "config": config_path, "report": report}
    finally:
        stop_process(sink)


@pytest.fixture()
def verify_ui(backfilled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "argv", ["locust"])
    monkeypatch.setenv("ALPHA_TOKEN", ALPHA_TOKEN)
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    harness = Harness(backfilled["config"], tmp_path / "presets.sqlite3")
    yield harness
    harness.close()


def _stored_by_the_receiver(target: Any, day: str) -> tuple[int, int]:
    """Visits and actions of one day, asked of the receiver directly (not through the code under test)."""
    import json
    import urllib.parse
    import urllib.request

    form = {
        "module": "API",
        "format": "JSON",
        "method": "VisitsSummary.get",
        "idSite": target.site_id,
        "period": "day",
        "date": day,
        "token_auth": target.token_auth.get_secret_value(),
    }
    url = target.url.rsplit("/", 1)[0] + "/index.php"
    with urllib.request.urlopen(url, data=urllib.parse.urlencode(form).encode(), timeout=10) as response:
        data = json.load(response)
    return (data["nb_visits"], data["nb_actions"]) if data else (0, 0)


def _sent_rows(counts: dict[str, Any]) -> dict[str, float]:
    """A report day's figures as the answer's rows name them (money in currency units)."""
    from trafficinator_locust.core.reports import MONEY_KEYS, flat

    figures = {"visits": counts["visits"], "actions": counts["actions"], **flat(counts["reports"])}
    money = lambda key: key in MONEY_KEYS or key.endswith(":revenue")  # noqa: E731
    return {key: value / 100 if money(key) else value for key, value in figures.items()}


def test_verify_compares_every_report_per_target_and_day(backfilled, verify_ui: Harness):
    import json

    from trafficinator_locust.ops.verify import agrees

    report = json.loads(backfilled["report"].read_text())
    sent_days = {(e["target"], day): counts for e in report["targets"] for day, counts in e["days"].items()}
    body = (
        {"report": report, "calls_per_minute": FAST}
        if backfilled["loss"]
        else {"report_path": "report.json", "calls_per_minute": FAST}
    )
    status, answer = verify_ui.call("POST", "/api/verify", body)
    assert status == 200, answer
    config = load_config(backfilled["config"])
    assert [t["target"] for t in answer["targets"]] == ["Alpha", "Beta Shop"]
    assert answer["threshold"] == 0.99 and answer["report"] in ("the request body", str(backfilled["report"]))
    seen = set()
    expected_problems = []
    for entry, target in zip(answer["targets"], config.targets):
        assert entry["error"] is None and entry["failed"] is None and len(entry["days"]) == 3, entry
        for day in entry["days"]:
            seen.add((entry["target"], day["day"]))
            rows = {row["report"]: row for row in day["rows"]}
            assert {key: row["sent"] for key, row in rows.items()} == _sent_rows(
                sent_days[(entry["target"], day["day"])]
            )
            stored = (rows["visits"]["stored"], rows["actions"]["stored"])
            assert stored == _stored_by_the_receiver(target, day["day"])
            for row in rows.values():
                assert row["ok"] is agrees(round(row["sent"] * 100), round(row["stored"] * 100), 0.99), row
            assert day["ok"] is all(row["ok"] for row in rows.values())
            off = [row for row in day["rows"] if not row["ok"]]
            if off:
                shown = lambda row, v: f"{v:.2f}" if isinstance(row["sent"], float) else str(v)  # noqa: E731
                named = ", ".join(f"{r['label']} {shown(r, r['stored'])} of {shown(r, r['sent'])}" for r in off)
                expected_problems.append(f"target {entry['target']}, {day['day']}: {named}")
        assert entry["short_days"] == [d["day"] for d in entry["days"] if not d["ok"]]
        assert entry["status"] == ("short" if entry["short_days"] else "ok")
        assert entry["ok"] is not entry["short_days"]
    assert seen == set(sent_days)
    assert answer["problems"] == expected_problems
    if not backfilled["loss"]:
        assert answer["ok"] is True and answer["problems"] == []
        assert all(row["stored"] == row["sent"] for t in answer["targets"] for d in t["days"] for row in d["rows"])
        return
    assert answer["ok"] is False
    assert answer["problems"], "a 5 % loss of hits must leave some report of some target short"


def test_verify_one_target_of_the_report(backfilled, verify_ui: Harness):
    status, answer = verify_ui.call(
        "POST",
        "/api/verify",
        {"report_path": str(backfilled["report"]), "target": "beta shop", "calls_per_minute": FAST, "threshold": 0.5},
    )
    assert status == 200, answer
    (only,) = answer["targets"]
    assert only["target"] == "Beta Shop" and answer["threshold"] == 0.5 and only["error"] is None
    assert answer["ok"] is only["ok"] is (only["status"] == "ok")
    if not backfilled["loss"]:  # with a loss, a report of 1 or 2 may lose half of itself: no threshold hides that
        assert only["ok"], answer["problems"]


def _report(*entries: tuple[str, int]) -> dict[str, Any]:
    """A report of ``(target, days)`` entries, 10 visits a day, ending two days ago."""
    last = datetime.now(timezone.utc).date() - timedelta(days=2)
    return {
        "targets": [
            {
                "target": name,
                "days": {(last - timedelta(days=n)).isoformat(): {"visits": 10, "hits": 30} for n in range(days)},
            }
            for name, days in entries
        ]
    }


def test_verify_refuses_bad_input_with_clear_4xx(ui: Harness, tmp_path: Path):
    good = _report(("Alpha", 1))

    def refused(body: Any, status: int, *words: str, **kwargs: Any) -> dict[str, Any]:
        code, answer = ui.call("POST", "/api/verify", body, **kwargs)
        assert code == status, (body, answer)
        for word in words:
            assert word in answer["error"], (word, answer)
        return answer

    refused("{not json", 400, "JSON object", content_type="application/json")
    refused("[]", 400, "JSON object", content_type="application/json")
    refused({}, 422, "report_path")
    refused({"report": good, "report_path": "r.json"}, 422, "either")
    refused({"report_path": "missing.json"}, 422, "report_path", "no such file")
    (tmp_path / "broken.json").write_text("{oops")
    refused({"report_path": "broken.json"}, 422, "not readable JSON")  # relative to the config's folder
    refused({"report": {"days": {}}}, 422, "report", "'targets'")
    answer = refused(
        {"report": {"targets": [{"target": "Alpha", "days": {"2025-01-01": {"visits": -1}}}]}},
        422,
        "targets[0].days[2025-01-01].visits",
    )
    assert answer["problems"][0]["path"] == "report"
    refused({"report": {"targets": []}}, 422, "no target")
    refused({"report": _report(("Zeta", 1))}, 422, "'Zeta'", "Alpha, Beta Shop, Gamma")  # a report of another config
    status, answer = ui.call("POST", "/api/verify", {"report": _report(("Gamma", 1))})  # no token: nothing asked
    assert status == 200 and answer["ok"] is True and answer["targets"][0]["status"] == "not verifiable", answer
    other_site = {"targets": [{**good["targets"][0], "site_id": 7}]}
    refused({"report": other_site}, 422, "another config", "site 7")
    other_url = {"targets": [{**good["targets"][0], "url": "http://127.0.0.1:9/elsewhere/matomo.php"}]}
    refused({"report": other_url}, 422, "another config", "/elsewhere/")
    refused({"report": good, "target": "Nope"}, 404, "Nope")
    refused({"report": good, "target": "Beta Shop"}, 422, "no days for target")
    for key, value in (
        ("threshold", 1.5),
        ("threshold", 0),
        ("threshold", "0.9"),
        ("calls_per_minute", 0),
        ("calls_per_minute", True),
        ("timeout", 500),
    ):
        answer = refused({"report": good, key: value}, 422, key)
        assert answer["problems"][0]["path"] == key
    answer = refused(
        {"report": _report(("Alpha", 400)), "calls_per_minute": 60}, 422, "401 Reporting API calls", "calls_per_minute"
    )


def test_verify_answers_within_the_timeout_when_a_matomo_is_silent(ui: Harness):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections open, nothing ever answers
    try:
        port = silent.getsockname()[1]
        assert ui.call("PATCH", "/api/targets/Alpha", {"url": f"http://127.0.0.1:{port}/a/matomo.php"})[0] == 200
        status, answer = ui.call(
            "POST",
            "/api/verify",
            {"report": _report(("Alpha", 2), ("Beta Shop", 1)), "timeout": 1, "calls_per_minute": FAST},
        )
    finally:
        silent.close()
    assert status == 200 and answer["ok"] is False
    alpha, beta = answer["targets"]
    assert alpha["target"] == "Alpha" and "timed out" in alpha["error"] and alpha["days"] == []
    assert beta["target"] == "Beta Shop" and "cannot reach" in beta["error"]  # checked beside the silent one
    assert f"target Alpha: {alpha['error']}" in answer["problems"]


class TricklingServer:
    """Answers every connection with an endless header, one byte every 0.2 s: no single read ever
    times out, so only a deadline over the whole call can end it (a broken proxy, a tarpit).
    With ``reply`` it answers that once and closes instead (a server that speaks no HTTP)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        import socket
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.connections: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: Any) -> None:
        try:
            if self.reply is not None:
                connection.sendall(self.reply)
                connection.close()
                return
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not self.stopped.wait(0.2):
                connection.sendall(b"a")
        except OSError:
            pass

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for connection in self.connections:
            connection.close()


def test_verify_answers_at_its_deadline_when_a_matomo_never_finishes_answering(ui: Harness):
    server = TricklingServer()
    try:
        assert ui.call("PATCH", "/api/targets/Alpha", {"url": f"http://127.0.0.1:{server.port}/a/matomo.php"})[0] == 200
        status, answer = ui.call(
            "POST",
            "/api/verify",
            {"report": _report(("Alpha", 2), ("Beta Shop", 1)), "timeout": 1, "calls_per_minute": FAST},
        )
    finally:
        server.close()
    assert status == 200 and answer["ok"] is False
    alpha, beta = answer["targets"]
    assert (
        alpha["error"]
        == f"timed out after 1 s of waiting for http://127.0.0.1:{server.port}/a/index.php; 0 of 2 day(s) checked"
    )
    assert "cannot reach" in beta["error"]


def test_verify_reports_a_server_that_speaks_no_http_as_that_targets_failure(ui: Harness):
    server = TricklingServer(reply=b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        assert ui.call("PATCH", "/api/targets/Alpha", {"url": f"http://127.0.0.1:{server.port}/a/matomo.php"})[0] == 200
        status, answer = ui.call("POST", "/api/verify", {"report": _report(("Alpha", 1)), "calls_per_minute": FAST})
    finally:
        server.close()
    assert status == 200 and answer["ok"] is False
    assert (
        answer["targets"][0]["error"]
        == f"http://127.0.0.1:{server.port}/a/index.php gave no usable answer (BadStatusLine)"
    )
