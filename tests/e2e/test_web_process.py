"""The web control plane on real ``locust`` processes against the embedded receiver: the JSON API,
presets across a restart, and the login. ``LocustProcess`` is shared with the browser test."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from harness import locust_command

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process
from trafficinator_locust.web.app import TAB_KEY

ALPHA_TOKEN = "alpha-token-7Hq2xZ"
BETA_TOKEN = "beta-literal-token-P9sd"
TYPED_TOKEN = "typed-in-ui-token-Kk31"


def _no_secret(text: str) -> None:
    for token in (ALPHA_TOKEN, BETA_TOKEN, TYPED_TOKEN):
        assert token not in text, "a token was returned"


# --- a real locust process -----------------------------------------------------------------------


SINK_CONFIG = """\
defaults:
  traffic:
    pageviews: {{min: 2, max: 3}}
    dwell_seconds: {{min: 0.05, max: 0.2}}
    pause_between_visits: {{min: 0, max: 0.1}}
targets:
  - name: Alpha
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 1
    token_auth: ${{ALPHA_TOKEN}}
  - name: Beta Shop
    url: http://127.0.0.1:{port}/beta/matomo.php
    site_id: 2
    token_auth: {beta}
  - name: Gamma
    url: http://127.0.0.1:{port}/gamma/matomo.php
    site_id: 3
"""


class LocustProcess:
    """``locust`` with its web UI on a free loopback port (not headless), and an HTTP session to it."""

    def __init__(self, config_path: Path, workdir: Path, env: dict[str, str], *extra: str, base_path: str = ""):
        import requests

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{base_path}"
        self.log = workdir / f"locust-{self.port}.log"
        command = [
            *locust_command(),
            "--traffic-config",
            str(config_path),
            "--web-port",
            str(self.port),
            "--traffic-state",
            "",
            "--traffic-presets",
            str(workdir / "presets.sqlite3"),
            *extra,
        ]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, text=True
            )
        self.session = requests.Session()
        try:
            self._wait_until(lambda: self._answers(), 60, "the web UI to answer")
        except BaseException:
            stop_process(self.process)  # never leave a locust behind
            raise

    def _answers(self) -> bool:
        import requests

        if self.process.poll() is not None:
            raise AssertionError(f"locust exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return self.session.get(self.url + "/api/openapi.json", timeout=2).status_code in (200, 401)
        except requests.ConnectionError:
            return False

    @staticmethod
    def _wait_until(condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        response = self.session.request(method, self.url + path, json=body, timeout=30, **kwargs)
        _no_secret(response.text)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def stop(self) -> str:
        stop_process(self.process)
        return self.log.read_text()


@pytest.fixture()
def sink_setup(tmp_path: Path):
    port = free_port()
    config_path = tmp_path / "traffic.yaml"
    config_path.write_text(SINK_CONFIG.format(port=port, beta=BETA_TOKEN), encoding="utf-8")
    env = {**os.environ, "ALPHA_TOKEN": ALPHA_TOKEN, "XDG_STATE_HOME": str(tmp_path / "state")}
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD", "TRAFFICINATOR_CONFIG"):
        env.pop(name, None)
    sink = start_receiver(config_path, port, env)
    yield config_path, port, env
    stop_process(sink)


def test_the_api_on_a_real_locust_process_and_presets_across_a_restart(sink_setup, tmp_path: Path):
    config_path, sink_port, env = sink_setup
    locust_run = LocustProcess(config_path, tmp_path, env)
    try:
        status, body = locust_run.call("GET", "/api/targets")
        assert status == 200 and [t["token_auth"] for t in body["targets"]] == ["set", "set", None]
        assert locust_run.call("GET", "/api/targets/Nope")[0] == 404
        assert (
            locust_run.call("POST", "/api/targets", {"name": "alpha", "url": "http://127.0.0.1:9/x", "site_id": 1})[0]
            == 409
        )
        status, body = locust_run.call(
            "POST",
            "/api/targets",
            {"name": "Delta", "url": "http://127.0.0.1:9/x", "site_id": 1, "timezone": "Nowhere/City"},
        )
        assert status == 422 and body["problems"][0]["path"] == "targets[3].timezone"
        status, body = locust_run.call(
            "POST", "/api/targets", data="{oops", headers={"Content-Type": "application/json"}
        )
        assert status == 400
        delta = {"name": "Delta", "url": "http://127.0.0.1:9/d", "site_id": 4, "token_auth": TYPED_TOKEN}
        assert locust_run.call("POST", "/api/targets", delta)[0] == 201
        status, body = locust_run.call("PUT", "/api/targets/Delta", {**delta, "site_id": 5, "token_auth": "set"})
        assert status == 200 and body["target"]["site_id"] == 5 and body["target"]["token_auth"] == "set"
        assert locust_run.call("POST", "/api/config/save")[0] == 422  # Delta's token was typed as a value
        assert locust_run.call("DELETE", "/api/targets/Delta")[0] == 200
        assert [locust_run.call(m, "/api/targets/Delta", {})[0] for m in ("GET", "PUT", "PATCH", "DELETE")] == [404] * 4
        status, body = locust_run.call("POST", "/api/config/save")
        assert status == 200 and Path(body["saved"]["backup"]).is_file()
        assert load_config(config_path, env=env).targets[2].name == "Gamma"
        status, body = locust_run.call("PATCH", "/api/targets/Gamma", {"enabled": False})
        assert status == 200 and body["applied"]["live"] == ["Gamma: paused"]
        status, body = locust_run.call("POST", "/api/validate", {"target": "Alpha", "timeout": 5})
        assert status == 200 and body["results"][0]["ok"] is True, body
        yesterday = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
        status, body = locust_run.call(
            "POST",
            "/api/verify",
            {
                "report": {"targets": [{"target": "Alpha", "days": {yesterday: {"visits": 0}}}]},
                "calls_per_minute": 6000,
            },
        )
        assert status == 200 and body["ok"] is True, body
        assert body["targets"][0]["days"][0]["rows"] == [
            {"report": "visits", "label": "visits", "sent": 0, "stored": 0, "money": False, "ok": True}
        ], body
        assert locust_run.call("POST", "/api/verify", {"report_path": "nope.json"})[0] == 422
        status, body = locust_run.call("POST", "/api/presets", {"name": "no gamma"})
        assert status == 201
        assert locust_run.call("POST", "/api/presets", {"name": "no gamma"})[0] == 409
        assert locust_run.call("POST", "/api/presets", {"name": "scratch"})[0] == 201
        assert locust_run.call("GET", "/api/presets/scratch")[1]["preset"]["version"] == 1
        assert locust_run.call("PUT", "/api/presets/scratch", {"version": 5})[0] == 409
        assert locust_run.call("PUT", "/api/presets/scratch", {"version": 1})[0] == 200
        assert locust_run.call("DELETE", "/api/presets/scratch")[0] == 200
        assert [locust_run.call(m, "/api/presets/scratch")[0] for m in ("GET", "DELETE")] == [404, 404]
        assert locust_run.call("POST", "/api/presets/scratch/apply")[0] == 404
        # the guards of every route, on the real server: another site's form cannot start load, a
        # rebound DNS name cannot read the stats, a device is never read, a huge body is refused
        swarm = {"user_count": 6, "spawn_rate": 6}
        evil = {"Origin": "http://evil.example"}
        assert (
            locust_run.session.post(locust_run.url + "/swarm", data=swarm, headers=evil, timeout=10).status_code == 403
        )
        rebound = {"Host": f"evil.example:{locust_run.port}"}
        assert (
            locust_run.session.get(locust_run.url + "/stats/requests", headers=rebound, timeout=10).status_code == 403
        )
        assert locust_run.session.get(locust_run.url + "/stats/requests", timeout=10).json()["state"] == "ready"
        # refused by its file type, unread (tests/web/test_security.py spies on the reads); call's 30 s
        # timeout is a guard against a hang, not a speed check
        status, body = locust_run.call("POST", "/api/verify", {"report_path": "/dev/zero"})
        assert status == 422 and "not a regular file" in body["error"], body
        huge = b'{"name": "' + b"x" * (1 << 20) + b'"}'
        response = locust_run.session.post(
            locust_run.url + "/api/targets", data=huge, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert response.status_code == 413, response.text[:200]
        # a run, started as Locust's page does (its own Origin): Gamma, disabled before the start, sends nothing
        own = {"Origin": f"http://127.0.0.1:{locust_run.port}"}
        started = locust_run.session.post(locust_run.url + "/swarm", data=swarm, headers=own, timeout=10)
        assert started.status_code == 200 and started.json()["success"], started.text

        def sent_by_both() -> bool:
            rows = {r["name"]: r for r in locust_run.call("GET", "/api/status")[1]["targets"]}
            return rows["Alpha"]["visits_started"] > 0 and rows["Beta Shop"]["visits_started"] > 0

        LocustProcess._wait_until(sent_by_both, 60, "visits of Alpha and Beta Shop")
        status, body = locust_run.call("GET", "/api/status")
        rows = {r["name"]: r for r in body["targets"]}
        assert body["running"] and rows["Gamma"]["state"] == "disabled" and rows["Gamma"]["requests"] == 0
        assert (rows["Alpha"]["state"], rows["Alpha"]["health"]) == ("running", "healthy") and rows["Alpha"][
            "p95_ms"
        ] > 0
        stats = locust_run.session.get(locust_run.url + "/stats/requests", timeout=10).json()
        (tab,) = [e for e in stats["extended_stats"] if e["key"] == TAB_KEY]
        assert len(tab["data"]) == 3
        assert locust_run.session.post(locust_run.url + "/stop", timeout=10).json()["success"]
        stored = receiver_stats(sink_port)
        assert (
            stored[instance_path(f"http://127.0.0.1:{sink_port}/gamma/matomo.php")]["sites"]
            .get("3", {})
            .get("visits", 0)
            == 0
        )
        assert stored[instance_path(f"http://127.0.0.1:{sink_port}/alpha/matomo.php")]["sites"]["1"]["visits"] > 0
        assert locust_run.call("GET", "/api/openapi.json")[0] == 200
    finally:
        output = locust_run.stop()
    _no_secret(output)
    again = LocustProcess(config_path, tmp_path, env)  # a restart: the presets are still there
    try:
        status, body = again.call("GET", "/api/presets")
        assert status == 200 and [p["name"] for p in body["presets"]] == ["no gamma"]
        status, body = again.call("POST", "/api/presets/no gamma/apply")
        assert status == 200 and body["applied"]["live"] == ["Gamma: paused"]
    finally:
        _no_secret(again.stop())


def test_a_real_locust_process_with_a_login(sink_setup, tmp_path: Path):
    config_path, _, env = sink_setup
    env = {**env, "TRAFFICINATOR_WEB_USER": "operator", "TRAFFICINATOR_WEB_PASSWORD": "pw-Secret-2"}
    locust_run = LocustProcess(config_path, tmp_path, env, "--web-login", "--web-base-path", "/lt", base_path="/lt")
    try:
        assert locust_run.call("GET", "/api/targets")[0] == 401
        assert locust_run.call("GET", "/api/targets", auth=("operator", "pw-Secret-2"))[0] == 200
        page = locust_run.session.get(locust_run.url + "/trafficinator/", allow_redirects=False, timeout=10)
        assert page.status_code == 302 and "/lt/login" in page.headers["Location"]
        login = locust_run.session.post(
            locust_run.url + "/trafficinator/login",
            data={"username": "operator", "password": "pw-Secret-2"},
            timeout=10,
        )
        assert login.status_code == 200  # redirected to Locust's page, logged in
        assert locust_run.call("GET", "/api/status")[0] == 200
    finally:
        locust_run.stop()
