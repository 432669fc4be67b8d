"""Preflight against the embedded receiver (as a process and in-process) and small stand-ins for
what is not a Matomo: each failure named by its step and reason, nothing tracked without probe,
exactly one named hit with it, the token never shown, and the answer bounded by the timeout."""

import locust  # noqa: F401  (gevent monkey-patching before anything imports urllib3/requests)

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from trafficinator_locust.core.config import Target, load_config
from trafficinator_locust.ops import preflight as pf
from trafficinator_locust.ops.preflight import PROBE_CID, Step, TargetResult, preflight, render_results
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process
from trafficinator_locust.receiver.server import serve
from trafficinator_locust.receiver.tracker import TRACKER_PAGE

GOOD_TOKEN = "preflight-good-token-7d1e0c"
WRONG_TOKEN = "preflight-wrong-token-55aa9f"
VIEW_TOKEN = "preflight-view-token-0b3c44"
WRITE_TOKEN = "preflight-write-token-e41f20"
ALL_TOKENS = (GOOD_TOKEN, WRONG_TOKEN, VIEW_TOKEN, WRITE_TOKEN)
STEPS_WITH_TOKEN = ["dns", "tcp", "tracker", "api", "token", "site", "access"]

CONFIG = """
targets:
  - name: Good
    url: http://127.0.0.1:{port}/dev/matomo.php
    site_id: 1
    token_auth: {token}
    timezone: Europe/Stockholm
  - name: Second
    url: http://127.0.0.1:{port}/prod/matomo.php
    site_id: 3
    token_auth: preflight-second-token-1234
"""


def _config(folder: Path, port: int) -> Path:
    path = folder / "traffic.yaml"
    path.write_text(CONFIG.format(port=port, token=GOOD_TOKEN), encoding="utf-8")
    return path


def _target(base: Target, **update) -> Target:
    if "token_auth" in update and isinstance(update["token_auth"], str):
        update["token_auth"] = SecretStr(update["token_auth"])
    return base.model_copy(update=update)


def _reset(port: int) -> None:
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/sink/reset", data=b"", method="POST"), timeout=10
    ).read()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    """A receiver process (hit log on) and the config it learned its instances and tokens from."""
    folder = tmp_path_factory.mktemp("preflight")
    port = free_port()
    path = _config(folder, port)
    process = start_receiver(path, port, dict(os.environ), "--record-hits")
    try:
        yield {"port": port, "config": load_config(path)}
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def slow_receiver(tmp_path_factory):
    """A receiver process started with ``--delay 5``: every tracker request waits 5 s."""
    folder = tmp_path_factory.mktemp("preflight-slow")
    port = free_port()
    path = _config(folder, port)
    process = start_receiver(path, port, dict(os.environ), "--delay", "5")
    try:
        yield {"port": port, "config": load_config(path)}
    finally:
        stop_process(process)


@pytest.fixture
def in_process():
    """``in_process(*instances) -> port``: the receiver app served on 127.0.0.1 in this process."""
    servers = []

    def start(*instances: ReceiverInstance) -> int:
        server, port = serve(ReceiverApp(list(instances)), "127.0.0.1", 0)
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def wsgi():
    """``wsgi(app) -> port``: any WSGI app on 127.0.0.1, for servers that are not a Matomo."""
    servers = []

    def start(app, ssl_context=None) -> int:
        server = WSGIServer(
            ("127.0.0.1", 0), app, log=None, error_log=None, **({"ssl_context": ssl_context} if ssl_context else {})
        )
        server.start()
        servers.append(server)
        return server.server_port

    yield start
    for server in servers:
        server.stop()


def _by_name(results: list[TargetResult]) -> dict[str, TargetResult]:
    return {result.target: result for result in results}


def _failed(result: TargetResult) -> Step:
    assert not result.ok, result
    step = result.failure
    assert step is not None and step is result.steps[-1], result
    return step


# --- acceptance: the embedded receiver ---------------------------------------------------------------
def test_each_target_passes_or_fails_with_its_own_reason_concurrently_within_the_timeout(receiver, slow_receiver):
    good = receiver["config"].targets[0]
    closed = free_port()
    targets = [
        good,
        _target(good, name="Wrong token", token_auth=WRONG_TOKEN),
        _target(good, name="Wrong site", site_id=99),
        _target(good, name="Closed port", url=f"http://127.0.0.1:{closed}/dev/matomo.php"),
        _target(slow_receiver["config"].targets[0], name="Slow"),
    ]
    _reset(receiver["port"])
    started = time.monotonic()
    results = _by_name(preflight(targets, timeout=2))
    elapsed = time.monotonic() - started

    assert list(results) == ["Good", "Wrong token", "Wrong site", "Closed port", "Slow"]
    passed = results["Good"]
    assert passed.ok and [s.name for s in passed.steps] == STEPS_WITH_TOKEN and passed.warnings == ()
    assert "Matomo 5.2.0" in passed.steps[3].detail and passed.steps[-1].detail == "admin access to site 1"

    token = _failed(results["Wrong token"])
    assert token.name == "token" and token.detail.startswith("token_auth rejected")
    site = _failed(results["Wrong site"])
    assert site.name == "site" and site.detail.startswith(
        "site 99 not found or not visible to this token (it sees sites: 1)"
    )
    refused = _failed(results["Closed port"])
    assert (refused.name, refused.detail) == (
        "tcp",
        f"connection refused on 127.0.0.1:{closed} (nothing listens on that port)",
    )
    slow = _failed(results["Slow"])
    assert slow.name == "tracker" and slow.detail.startswith("timed out after 2 s waiting for GET http://127.0.0.1:")
    # The slow receiver answers only after 5 s: returning before proves nobody waited for it.
    assert elapsed < 5 and all(result.seconds < 5 for result in results.values())

    stored = receiver_stats(receiver["port"])
    for instance in stored.values():
        assert instance["invalid"] == {} and instance["ignored"] == {}
        for counters in instance["sites"].values():
            assert (counters["hits"], counters["visits"], counters["invalid"], counters["ignored"]) == (0, 0, {}, {})


def test_probe_sends_exactly_one_named_test_hit(receiver):
    _reset(receiver["port"])
    [result] = preflight([receiver["config"].targets[0]], timeout=5, probe=True)
    assert result.ok and [s.name for s in result.steps] == STEPS_WITH_TOKEN + ["probe"]
    assert "trafficinator preflight probe" in result.steps[-1].detail and PROBE_CID in result.steps[-1].detail
    stored = receiver_stats(receiver["port"])
    site = stored["/dev"]["sites"]["1"]
    assert (site["hits"], site["visits"], site["actions"]["pageview"]) == (1, 1, 1)
    assert site["hit_log"] == {PROBE_CID: [["pageview", "/trafficinator-preflight-probe", "new_visit"]]}
    assert stored["/prod"]["sites"]["3"]["hits"] == 0


def test_targets_are_checked_with_their_own_instance(receiver):
    results = preflight(receiver["config"].targets, timeout=5)
    assert [r.ok for r in results] == [True, True]
    assert results[1].steps[5].detail.startswith("site 3 ")


def _roles_instance() -> ReceiverInstance:
    """One site with an admin token, a view-only token and a write token."""
    return ReceiverInstance(
        "/dev", {1: ReceiverSite(1, "Europe/Stockholm")}, {GOOD_TOKEN}, roles={VIEW_TOKEN: "view", WRITE_TOKEN: "write"}
    )


def test_a_view_only_token_fails_the_write_check_and_a_write_token_passes(in_process, receiver):
    port = in_process(_roles_instance())
    url = f"http://127.0.0.1:{port}/dev/matomo.php"
    good = _target(receiver["config"].targets[0], url=url)
    results = _by_name(
        preflight(
            [
                _target(good, name="View", token_auth=VIEW_TOKEN),
                _target(good, name="Write", token_auth=WRITE_TOKEN),
                good,
            ],
            timeout=5,
        )
    )
    view = _failed(results["View"])
    assert view.name == "access" and view.detail.startswith(
        "the token has only view access to site 1; tracking needs write or admin access"
    )
    assert [s.name for s in results["View"].steps] == STEPS_WITH_TOKEN  # it could read the site, not write to it
    assert results["Write"].ok and results["Write"].steps[-1].detail == "write access to site 1"
    assert results["Good"].ok and results["Good"].steps[-1].detail == "admin access to site 1"


def test_time_zone_currency_and_ecommerce_differences_are_warnings_not_failures(in_process, write_yaml):
    port = in_process(
        ReceiverInstance(
            "/shop", {4: ReceiverSite(4, "America/New_York", "EUR", ecommerce=False, name="Shop")}, {GOOD_TOKEN}
        )
    )
    config = load_config(
        write_yaml(f"""
        targets:
          - name: Shop
            url: http://127.0.0.1:{port}/shop/matomo.php
            site_id: 4
            token_auth: {GOOD_TOKEN}
            timezone: Europe/Paris
            traffic: {{ecommerce: {{cart: 0.3, order: 0.1, currency: SEK}}}}
          - name: Plain
            url: http://127.0.0.1:{port}/shop/matomo.php
            site_id: 4
            token_auth: {GOOD_TOKEN}
            timezone: America/New_York
    """)
    )
    shop, plain = preflight(config.targets, timeout=5)
    assert shop.ok and len(shop.warnings) == 3
    zone, money, ecommerce = shop.warnings
    assert zone.startswith("site 4 is in time zone America/New_York in Matomo, the config says Europe/Paris")
    assert money == "site 4 reports money in EUR in Matomo, the config says SEK"
    assert ecommerce.startswith("site 4 is not an ecommerce site in Matomo")
    assert plain.ok and plain.warnings == ()  # same zone, and no money sent: the currency does not matter


def test_report_token_auth_is_the_reporting_apis_and_token_auth_still_needs_write_access(in_process, receiver):
    port = in_process(_roles_instance())
    good = _target(receiver["config"].targets[0], url=f"http://127.0.0.1:{port}/dev/matomo.php")
    results = _by_name(
        preflight(
            [
                _target(good, name="ViewOnly", token_auth=None, report_token_auth=SecretStr(VIEW_TOKEN)),
                _target(good, name="Both", token_auth=SecretStr(WRITE_TOKEN), report_token_auth=SecretStr(VIEW_TOKEN)),
                _target(
                    good,
                    name="ViewAsTracker",
                    token_auth=SecretStr(VIEW_TOKEN),
                    report_token_auth=SecretStr(VIEW_TOKEN),
                ),
            ],
            timeout=5,
        )
    )
    view_only = results["ViewOnly"]
    assert view_only.ok and "access" not in [s.name for s in view_only.steps]  # no tracking token: nothing to check
    assert any(w.startswith("no token_auth: hits are tracked without a token") for w in view_only.warnings)
    assert results["Both"].ok and results["Both"].steps[-1].detail == "write access to site 1"  # asked with token_auth
    assert _failed(results["ViewAsTracker"]).name == "access"
    for result in results.values():
        assert VIEW_TOKEN not in str(result.as_dict()) and WRITE_TOKEN not in str(result.as_dict())


def test_a_target_without_token_passes_the_checks_it_can_make_and_says_what_it_skipped(receiver):
    [result] = preflight([_target(receiver["config"].targets[0], token_auth=None)], timeout=5)
    assert result.ok and [s.name for s in result.steps] == ["dns", "tcp", "tracker", "api"]
    assert len(result.warnings) == 1 and result.warnings[0].startswith("no token_auth: the site, the token's access")


def test_a_path_without_a_tracker_and_another_application_fail_the_tracker_step(receiver, wsgi):
    def other_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>Welcome to nginx!</html>"]

    port = wsgi(other_app)
    good = receiver["config"].targets[0]
    missing, other = preflight(
        [
            _target(good, name="Missing", url=f"http://127.0.0.1:{receiver['port']}/nowhere/matomo.php"),
            _target(good, name="Other", url=f"http://127.0.0.1:{port}/matomo.php"),
        ],
        timeout=5,
    )
    assert (
        _failed(missing).name == "tracker"
        and "answered HTTP 404: no Matomo tracker at this path" in _failed(missing).detail
    )
    assert (
        _failed(other).name == "tracker" and "answered HTTP 200 without Matomo's tracker page" in _failed(other).detail
    )


def test_a_redirect_is_reported_with_where_it_leads(receiver, wsgi):
    def redirect(environ, start_response):
        start_response("301 Moved Permanently", [("Location", "https://analytics.example/matomo.php")])
        return [b""]

    [result] = preflight(
        [_target(receiver["config"].targets[0], url=f"http://127.0.0.1:{wsgi(redirect)}/matomo.php")], timeout=5
    )
    assert _failed(result).detail.endswith(
        "answered HTTP 301, a redirect to https://analytics.example/matomo.php: "
        "put the final URL in the config (tracking POSTs are not redirected)"
    )


def test_a_reporting_api_that_is_not_matomo_fails_the_api_step(receiver, wsgi):
    def tracker_only(environ, start_response):
        if environ["PATH_INFO"].endswith("matomo.php"):
            start_response("200 OK", [("Content-Type", "text/html")])
            return [TRACKER_PAGE]
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"not here"]

    [result] = preflight(
        [_target(receiver["config"].targets[0], url=f"http://127.0.0.1:{wsgi(tracker_only)}/m/matomo.php")], timeout=5
    )
    step = _failed(result)
    assert (
        step.name == "api"
        and "/m/index.php (API.getMatomoVersion) answered HTTP 404 without JSON: not Matomo's Reporting API"
        in step.detail
    )


# --- secrets -----------------------------------------------------------------------------------------
def test_the_token_is_never_in_a_result_even_when_a_server_echoes_it(receiver, wsgi):
    """A Matomo stand-in that quotes the whole request body, token included, in its error message."""

    def echo(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode() if length else ""
        if environ["PATH_INFO"].endswith("matomo.php"):
            start_response("200 OK" if not body else "400 Bad Request", [("Content-Type", "text/html")])
            return [TRACKER_PAGE if not body else f"bad request {body}".encode()]
        start_response("200 OK", [("Content-Type", "application/json")])
        if "getMatomoVersion" in body:
            return [json.dumps({"value": "5.0.0"}).encode()]
        if "AtLeastView" in body:
            return [json.dumps([1]).encode()]
        return [json.dumps({"result": "error", "message": f"cannot serve {body}"}).encode()]

    port = wsgi(echo)
    good = receiver["config"].targets[0]
    results = preflight(
        [
            _target(good, name="Echo", url=f"http://127.0.0.1:{port}/e/matomo.php", token_auth=WRONG_TOKEN),
            _target(good, name="Wrong", token_auth=WRONG_TOKEN),
            _target(good, name="View", token_auth=VIEW_TOKEN),
            good,
        ],
        timeout=5,
        probe=True,
    )
    echoed = _failed(results[0])
    assert echoed.name == "site" and "token_auth=***" in echoed.detail
    text = json.dumps([result.as_dict() for result in results]) + render_results(results, timeout=5, probe=True)
    assert not [token for token in ALL_TOKENS if token in text]


# --- bounds and failures before HTTP -----------------------------------------------------------------
def test_a_lookup_that_never_answers_still_gives_an_answer_at_the_timeout(receiver, monkeypatch):
    """The stuck lookup returns only when released (by the test, or 4 s later so that a preflight
    that waits for it fails instead of hanging): answering "timed out" first proves the bound."""
    release = gevent.event.Event()
    gevent.spawn_later(4, release.set)
    real = socket.getaddrinfo

    def stuck(host, *args, **kwargs):
        if host == "stuck.example":
            release.wait()
            raise socket.gaierror(socket.EAI_NONAME, "released")  # never a real lookup
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    good = receiver["config"].targets[0]
    try:
        stuck_result, fine = preflight(
            [_target(good, name="Stuck", url="http://stuck.example/matomo.php"), good], timeout=1
        )
        assert not release.is_set()
    finally:
        release.set()
    assert (_failed(stuck_result).name, _failed(stuck_result).detail) == ("dns", "timed out after 1 s (dns step)")
    assert fine.ok


def test_a_name_that_does_not_resolve_fails_the_dns_step(receiver, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "matomo.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    [result] = preflight([_target(receiver["config"].targets[0], url="https://matomo.invalid/matomo.php")], timeout=5)
    assert (_failed(result).name, _failed(result).detail) == (
        "dns",
        "cannot resolve matomo.invalid: Name or service not known",
    )


def test_https_to_a_plain_http_port_fails_the_tls_step(receiver):
    [result] = preflight(
        [_target(receiver["config"].targets[0], url=f"https://127.0.0.1:{receiver['port']}/dev/matomo.php")], timeout=5
    )
    step = _failed(result)
    assert step.name == "tls" and step.detail.startswith(f"TLS handshake with 127.0.0.1:{receiver['port']} failed (")
    assert step.detail.endswith("): is it an https port?")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return {"cert": str(cert), "context": context}


def test_https_checks_the_certificate_and_then_talks_tls_to_matomo(certificate, wsgi, monkeypatch, receiver):
    app = ReceiverApp([ReceiverInstance("/tls", {1: ReceiverSite(1, "Europe/Stockholm")}, {GOOD_TOKEN})])
    port = wsgi(app, certificate["context"])
    target = _target(receiver["config"].targets[0], url=f"https://127.0.0.1:{port}/tls/matomo.php")
    [untrusted] = preflight([target], timeout=5)
    step = _failed(untrusted)
    assert step.name == "tls" and step.detail.startswith("the certificate of 127.0.0.1 is not trusted: self")
    monkeypatch.setenv("SSL_CERT_FILE", certificate["cert"])  # trust it, as a company CA would be
    [trusted] = preflight([target], timeout=5, probe=True)
    assert trusted.ok and [s.name for s in trusted.steps] == ["dns", "tcp", "tls", *STEPS_WITH_TOKEN[2:], "probe"]
    assert trusted.steps[2].detail.startswith("TLSv1.") and trusted.steps[2].detail.endswith(
        "certificate valid for 127.0.0.1"
    )
    assert app.stats("/tls")["sites"]["1"]["hits"] == 1


# --- API of the module -------------------------------------------------------------------------------
def test_results_as_dicts_are_json_ready():
    result = TargetResult("A", False, (Step("dns", True, "a"), Step("tcp", False, "refused")), ("w",), 0.12345)
    assert json.loads(json.dumps(result.as_dict())) == {
        "target": "A",
        "ok": False,
        "seconds": 0.123,
        "warnings": ["w"],
        "steps": [{"name": "dns", "ok": True, "detail": "a"}, {"name": "tcp", "ok": False, "detail": "refused"}],
    }


def test_render_results_marks_each_step_and_explains_failures_and_warnings():
    results = [
        TargetResult(
            "Good", True, tuple(Step(name, True, "") for name in STEPS_WITH_TOKEN), ("site 1 is in time zone X",), 0.05
        ),
        TargetResult(
            "Closed", False, (Step("dns", True, ""), Step("tcp", False, "connection refused on 127.0.0.1:9")), (), 0.01
        ),
    ]
    text = render_results(results, timeout=10, probe=False)
    lines = text.splitlines()
    assert lines[0] == "Preflight of 2 target(s), 10 s each, no tracking data sent:"
    assert lines[1].split() == [
        "target",
        "dns",
        "tcp",
        "tls",
        "tracker",
        "api",
        "token",
        "site",
        "access",
        "result",
        "seconds",
    ]
    assert lines[3].split() == ["Good", "ok", "ok", "-", "ok", "ok", "ok", "ok", "ok", "ok", "0.05"]
    assert lines[4].split() == ["Closed", "ok", "FAIL", "-", "-", "-", "-", "-", "-", "FAIL", "0.01"]
    assert lines[5:] == [
        "Good: warning: site 1 is in time zone X",
        "Closed: tcp FAILED: connection refused on 127.0.0.1:9",
        "preflight: 1 of 2 target(s) failed: Closed",
    ]
    assert "probe" in render_results(results, timeout=2, probe=True).splitlines()[1]


def test_no_targets_no_results_and_the_timeout_must_be_positive():
    assert preflight([], timeout=1) == []
    with pytest.raises(ValueError, match="timeout must be > 0"):
        preflight([], timeout=0)


def test_the_web_api_can_rely_on_the_step_names():
    assert pf.STEP_NAMES == ("dns", "tcp", "tls", "tracker", "api", "token", "site", "access", "probe")
