"""The web UI's guards (issue #14): it can start load, so every request is checked before any view.

What an operator relies on: a web page open in their browser cannot start, stop or change traffic
(Origin/Referer of another site: 403, Locust's own ``/swarm`` included); a DNS-rebound name cannot
even read the stats (Host not this UI's: 403); no request body, name or field can make the master
slow or the files huge (413/422); odd JSON and odd paths are 4xx, never 500; a report path is read
only when it is a small regular file, off the event loop; and a token reaches the YAML file only
as a bare ``${VAR}`` reference, as in a preset.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import gevent
from gevent import monkey

import inspect
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_webui import Harness

from trafficinator_locust.core import files
from trafficinator_locust.core.errors import UsageError
from trafficinator_locust.core.loopback import LOOPBACK_HOSTS
from trafficinator_locust.ops.verify import load_report
from trafficinator_locust.web import app as web_app
from trafficinator_locust.web import verify_api
from trafficinator_locust.web.app import MAX_BODY_BYTES, MAX_JSON_DEPTH, allowed_hosts
from trafficinator_locust.web.verify_api import REPORT_LIMIT
from trafficinator_locust.web.workspace import (
    MAX_DOCUMENT_BYTES,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    Workspace,
    document_size,
)

EVIL = "http://evil.example"
TARGET = {"name": "Delta", "url": "http://127.0.0.1:9/d/matomo.php", "site_id": 4}


def _wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.05)


def _report(*names: str) -> dict[str, Any]:
    return {"targets": [{"target": n, "days": {"2026-12-01": {"visits": 1}}} for n in names]}


# --- #3: Origin, Referer and Host on every route, Locust's included ---------------------------


def test_a_cross_origin_form_post_to_swarm_is_refused_and_starts_nothing(ui: Harness):
    form = {"user_count": 2, "spawn_rate": 2}
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Referer": f"{EVIL}/page.html"}):
        response = ui.client.post("/swarm", data=form, headers=headers)
        assert response.status_code == 403, (headers, response.get_data(as_text=True))
        assert "cross-origin" in response.get_json()["error"]
        gevent.sleep(0.2)  # Locust starts the runner in a greenlet
        assert ui.runner.state == "ready", headers  # nothing started
    for route in ("/stop", "/stats/reset"):
        assert ui.client.post(route, headers={"Origin": EVIL}).status_code == 403, route
    assert ui.client.post("/user", data=json.dumps({}), headers={"Origin": EVIL}).status_code == 403
    # the same form from the UI's own page, and from a client without Origin or Referer (curl)
    response = ui.client.post("/swarm", data=form, headers={"Origin": "http://localhost"})
    assert response.status_code == 200 and response.get_json()["success"], response.get_data(as_text=True)
    _wait_for(lambda: ui.runner.state in ("spawning", "running"))
    ui.runner.stop()
    response = ui.client.post("/swarm", data=form, headers={"Referer": "http://localhost/"})
    assert response.status_code == 200 and response.get_json()["success"]
    ui.runner.stop()
    assert ui.client.post("/stop").status_code == 200


def test_a_foreign_host_is_refused_on_reads_too(ui: Harness):
    for path in ("/stats/requests", "/", "/api/status", "/trafficinator/"):
        response = ui.client.get(path, headers={"Host": "evil.example:8089"})
        assert response.status_code == 403, path
        assert "loopback" in response.get_json()["error"], path
    for host in ("127.0.0.1:8089", "localhost", "[::1]:8089", "LOCALHOST:8089"):
        assert ui.client.get("/stats/requests", headers={"Host": host}).status_code == 200, host
    # a page of another site reading through Locust's CORS answer (Access-Control-Allow-Origin: *)
    assert ui.client.get("/stats/requests", headers={"Origin": EVIL}).status_code == 403
    assert ui.client.get("/stats/requests", headers={"Origin": "http://localhost"}).status_code == 200


def test_with_a_login_cross_origin_posts_are_still_refused(
    config_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("TRAFFICINATOR_WEB_USER", "operator")
    monkeypatch.setenv("TRAFFICINATOR_WEB_PASSWORD", "pw-Secret-1")
    harness = Harness(config_path, tmp_path / "p.sqlite3")
    try:
        auth = ("operator", "pw-Secret-1")
        form = {"user_count": 1, "spawn_rate": 1}
        assert harness.client.post("/swarm", data=form, auth=auth, headers={"Origin": EVIL}).status_code == 403
        assert harness.runner.state == "ready"
        login = {"username": "operator", "password": "pw-Secret-1"}
        assert harness.client.post("/trafficinator/login", data=login, headers={"Origin": EVIL}).status_code == 403
        # behind a login any Host is accepted (a reverse proxy's, a DNS name): the login stops a rebound page
        assert harness.client.get("/api/status", auth=auth, headers={"Host": "ui.example.org"}).status_code == 200
    finally:
        harness.close()


def test_allowed_hosts_are_the_loopback_names_and_the_bound_address_unless_a_login_guards():
    assert allowed_hosts("127.0.0.1", login=False) == LOOPBACK_HOSTS
    assert allowed_hosts("localhost", login=False) == LOOPBACK_HOSTS
    assert allowed_hosts("192.0.2.5", login=False) == LOOPBACK_HOSTS | {"192.0.2.5"}
    assert allowed_hosts("2001:db8::5", login=False) == LOOPBACK_HOSTS | {"[2001:db8::5]"}
    assert allowed_hosts("", login=False) is None  # --web-host '*': every name (a warning is logged)
    assert allowed_hosts("0.0.0.0", login=False) is None
    assert allowed_hosts("127.0.0.1", login=True) is None


# --- #4: sizes, depth, odd paths -------------------------------------------------------------


def test_a_body_over_the_cap_answers_413_on_every_route(ui: Harness):
    big = b"{" + b" " * MAX_BODY_BYTES + b"}"
    response = ui.client.post("/api/targets", data=big, content_type="application/json")
    assert response.status_code == 413 and "bytes" in response.get_json()["error"]
    response = ui.client.post("/swarm", data=b"user_count=1&x=" + b"a" * MAX_BODY_BYTES)
    assert response.status_code == 413 and ui.runner.state == "ready"
    assert ui.call("GET", "/api/targets")[1]["version"] == 1


def test_names_and_fields_have_length_caps(ui: Harness):
    status, body = ui.call("POST", "/api/targets", {**TARGET, "name": "N" * (MAX_NAME_LENGTH + 1)})
    assert status == 422 and body["problems"][0]["path"] == "name", body
    assert ui.call("POST", "/api/targets", {**TARGET, "name": "N" * MAX_NAME_LENGTH})[0] == 201
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"name": "G" * 5_000_000})
    assert status in (413, 422)
    long_url = "http://127.0.0.1:9/" + "p" * MAX_TEXT_LENGTH
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"url": long_url})
    assert status == 422 and body["problems"][0]["path"] == "url", body
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"traffic": {"urls": ["/a", "/" + "b" * MAX_TEXT_LENGTH]}})
    assert status == 422 and body["problems"][0]["path"] == "traffic.urls[1]", body
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"k" * (MAX_TEXT_LENGTH + 1): 1})
    assert status == 422
    status, body = ui.call("POST", "/api/presets", {"name": "p" * (MAX_NAME_LENGTH + 1)})
    assert status == 422
    status, body = ui.call("POST", "/api/presets", {"name": "p", "config": {"targets": [{**TARGET, "url": long_url}]}})
    assert status == 422 and body["problems"][0]["path"] == "config.targets[0].url", body
    assert [t["name"] for t in ui.call("GET", "/api/targets")[1]["targets"]][2] == "Gamma"


def test_the_config_cannot_grow_past_its_cap(ui: Harness, monkeypatch: pytest.MonkeyPatch):
    """Every change runs the loader on the whole document: its size bounds the time of every later change."""
    validated: list[int] = []  # the size of each document the loader ran on
    original = Workspace.validate

    def spy(self: Workspace, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        validated.append(document_size(data))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Workspace, "validate", spy)
    urls = ["/" + "u" * 1000 + str(i) for i in range(200)]  # ~200 KB a target, under the body cap
    added, status = 0, 201
    while status == 201 and added < 10:
        status, body = ui.call("POST", "/api/targets", {**TARGET, "name": f"Big {added}", "traffic": {"urls": urls}})
        added += status == 201
    assert status == 413 and "config" in body["error"], body
    assert 0 < added < 10 and added * 200_000 <= MAX_DOCUMENT_BYTES
    assert len(validated) == added and max(validated) <= MAX_DOCUMENT_BYTES  # the refused one was never loaded
    assert ui.call("PATCH", "/api/targets/Gamma", {"enabled": False})[0] == 200  # shrinking or equal: allowed
    assert len(validated) == added + 1 and validated[-1] <= MAX_DOCUMENT_BYTES
    assert ui.call("DELETE", "/api/targets/Big 0")[0] == 200


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_answers_400_before_validation(ui: Harness, depth: int):
    nested = '{"name": "Deep", "traffic": ' + "[" * depth + "]" * depth + "}"
    for method, path in (("POST", "/api/targets"), ("PATCH", "/api/targets/Gamma"), ("POST", "/api/presets")):
        status, body = ui.call(method, path, nested, content_type="application/json")
        assert status == 400 and "nested" in body["error"], (method, path, body)
    response = ui.client.post("/user", data="[" * depth + "]" * depth, content_type="application/json")
    assert response.status_code == 400  # Locust's own JSON route too


def test_json_at_the_depth_limit_is_validated_as_usual(ui: Harness):
    inner = MAX_JSON_DEPTH - 1  # the body object is the first level
    nested = '{"name": "Deep", "traffic": ' + "[" * inner + "]" * inner + "}"
    status, body = ui.call("POST", "/api/targets", nested, content_type="application/json")
    assert status == 422, body


@pytest.mark.parametrize(
    "path",
    [
        "/trafficinator/static/%00",
        "/trafficinator/static/a%00b.js",
        "/trafficinator/static/..%2f..%2fapp.py",
        "/trafficinator/static/%2e%2e/app.py",
        "/trafficinator/static/%ff",
        "/trafficinator/static/nope.js",
    ],
)
def test_odd_static_paths_answer_404(ui: Harness, path: str):
    assert ui.client.get(path).status_code in (400, 404)


# --- #2: a report path is read only when it is a small regular file ----------------------------


class _ReadSpy:
    """``os`` as core.files sees it, recording the file type (``stat.S_IFMT``) of every descriptor read."""

    def __init__(self) -> None:
        self.read_types: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def read(self, fd: int, size: int) -> bytes:
        self.read_types.append(stat.S_IFMT(os.fstat(fd).st_mode))
        return os.read(fd, size)


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> _ReadSpy:
    spy = _ReadSpy()
    monkeypatch.setattr(files, "os", spy)
    return spy


def _verify_path(ui: Harness, path: str) -> tuple[int, Any]:
    """POST /api/verify for ``path``; a call that blocks (e.g. on a FIFO's open) fails after 30 s,
    a guard against a hang, not a speed check."""
    with gevent.Timeout(30, AssertionError(f"/api/verify hung on {path}")):
        return ui.call("POST", "/api/verify", {"report_path": path})


def test_verify_refuses_a_device_path_without_reading_it(ui: Harness, file_reads: _ReadSpy):
    status, body = _verify_path(ui, "/dev/zero")
    assert status == 422 and "not a regular file" in body["error"], body
    assert body["problems"][0]["path"] == "report_path"
    assert file_reads.read_types == []  # not one byte of the device


def test_verify_refuses_a_fifo_and_a_folder_without_reading_them(ui: Harness, tmp_path: Path, file_reads: _ReadSpy):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)  # nobody writes: a plain open would wait forever
    for path in (fifo, tmp_path):
        status, body = _verify_path(ui, str(path))
        assert status == 422 and "not a regular file" in body["error"], body
    assert file_reads.read_types == []
    (tmp_path / "r.json").write_text(json.dumps(_report("Gamma")))
    assert _verify_path(ui, "r.json")[0] == 200
    assert set(file_reads.read_types) == {stat.S_IFREG}  # the spy sees reads: a regular file is read


def test_verify_refuses_a_report_over_the_cap(ui: Harness, tmp_path: Path):
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(REPORT_LIMIT + 1)  # sparse: costs no disk
    status, body = ui.call("POST", "/api/verify", {"report_path": "huge.json"})
    assert status == 422 and f"{REPORT_LIMIT:,}" in body["error"], body


def test_verify_reads_a_report_file_once_off_the_event_loop(
    ui: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "r.json").write_text(json.dumps(_report("Gamma")))
    real_ident = monkey.get_original("threading", "get_ident")
    reads: list[int] = []
    original = verify_api.read_small_text

    def spy(path: Any, limit: int, what: str) -> str:
        reads.append(real_ident())
        assert limit == REPORT_LIMIT
        return original(path, limit, what)

    monkeypatch.setattr(verify_api, "read_small_text", spy)
    status, body = ui.call("POST", "/api/verify", {"report_path": "r.json"})
    assert status == 200 and body["targets"][0]["status"] == "not verifiable", body
    assert len(reads) == 1 and reads[0] != real_ident(), "read on the event loop's thread"
    assert threading.current_thread() is threading.main_thread()


def test_the_cli_report_is_read_with_the_same_cap(tmp_path: Path):
    assert inspect.signature(load_report).parameters["limit"].default == REPORT_LIMIT
    with pytest.raises(UsageError, match="not a regular file"):
        load_report(Path("/dev/zero"))
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(REPORT_LIMIT + 1)
    with pytest.raises(UsageError, match=f"{REPORT_LIMIT:,}"):
        load_report(huge)
    with pytest.raises(UsageError, match="no such file"):
        load_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(UsageError, match="not readable JSON"):
        load_report(tmp_path / "bad.json")
    (tmp_path / "ok.json").write_text(json.dumps(_report("Alpha")))
    assert [t.name for t in load_report(tmp_path / "ok.json")] == ["Alpha"]


# --- #9: tokens reach the YAML file only as bare ${VAR} references ------------------------------

DEFAULT_TOKEN = "clear-default-token-Wq93"


def test_a_token_default_is_never_written_to_the_yaml_file(ui: Harness, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GAMMA_TOKEN", raising=False)
    reference = f"${{GAMMA_TOKEN:-{DEFAULT_TOKEN}}}"
    response = ui.client.patch("/api/targets/Gamma?save=1", json={"token_auth": reference})
    assert response.status_code == 422 and "Gamma" in response.get_json()["error"]
    assert DEFAULT_TOKEN not in response.get_data(as_text=True)
    assert DEFAULT_TOKEN not in ui.config_path.read_text()
    response = ui.client.patch("/api/targets/Gamma", json={"token_auth": reference})
    assert response.status_code == 200, response.get_data(as_text=True)  # the run may use it
    response = ui.client.post("/api/config/save")
    assert response.status_code == 422 and "${VAR}" in response.get_json()["error"]
    assert DEFAULT_TOKEN not in response.get_data(as_text=True) + ui.config_path.read_text()
    # the same policy as a preset's: a report_token_auth typed as a value is not written either
    response = ui.client.patch("/api/targets/Gamma", json={"token_auth": None, "report_token_auth": DEFAULT_TOKEN})
    assert response.status_code == 200
    assert ui.client.post("/api/config/save").status_code == 422
    assert DEFAULT_TOKEN not in ui.config_path.read_text()
    # a bare reference is written; a token the file itself holds (Beta's) is kept as it was
    monkeypatch.setenv("GAMMA_TOKEN", "gamma-token-from-the-environment")
    bare = {"token_auth": "${GAMMA_TOKEN}", "report_token_auth": None}
    response = ui.client.patch("/api/targets/Gamma?save=1", json=bare)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "${GAMMA_TOKEN}" in ui.config_path.read_text()


def test_the_web_module_reads_files_only_through_read_small_text():
    source = Path(web_app.__file__).parent
    for module in source.glob("*.py"):
        assert ".read_text(" not in module.read_text(), module.name


def test_a_report_token_is_write_only_like_token_auth(ui: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIEW_TOKEN", "view-token-from-the-environment")
    ui.config_path.write_text(
        ui.config_path.read_text().replace(
            "    site_id: 3\n", f"    site_id: 3\n    report_token_auth: {DEFAULT_TOKEN}\n"
        )
    )
    harness = Harness(ui.config_path, tmp_path / "other.sqlite3")
    harness.plugin.coordinator.stage_config = lambda config: None
    try:
        response = harness.client.get("/api/targets")
        assert DEFAULT_TOKEN not in response.get_data(as_text=True)
        gamma = response.get_json()["targets"][2]
        assert (gamma["report_token_auth"], gamma["report_token_env"]) == ("set", None)
        response = harness.client.put("/api/targets/Gamma", json=gamma)  # what a GET said, sent back: kept
        assert response.status_code == 200 and response.get_json()["target"]["report_token_auth"] == "set"
        response = harness.client.post("/api/config/save")  # the file's own token, kept as it was
        assert response.status_code == 200, response.get_data(as_text=True)
        assert f"report_token_auth: {DEFAULT_TOKEN}" in harness.config_path.read_text()
        response = harness.client.patch("/api/targets/Gamma", json={"report_token_auth": "${VIEW_TOKEN}"})
        target = response.get_json()["target"]
        assert (target["report_token_auth"], target["report_token_env"]) == ("set", "VIEW_TOKEN")
    finally:
        harness.close()


def test_the_openapi_document_states_the_limits_and_the_403():
    from trafficinator_locust.web.openapi import openapi_document

    document = openapi_document()
    text = document["info"]["description"]
    assert MAX_BODY_BYTES == 1 << 20 and "1 MiB" in text and f"{MAX_JSON_DEPTH} levels" in text
    assert f"most {MAX_NAME_LENGTH} characters" in text and f"text {MAX_TEXT_LENGTH}" in text
    assert MAX_DOCUMENT_BYTES == 512 << 10 and "512 KiB" in text
    post = document["paths"]["/api/targets"]["post"]["responses"]
    assert {"400", "403", "413"} <= set(post)
