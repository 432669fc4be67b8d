"""The one HTTP stack outside Locust against small stand-in servers: the Reporting API client (the
token only in the POST body and masked in Matomo's messages, each failure named with its call and
URL) and the tracker poster (one kept-alive connection, what may be sent again)."""

from __future__ import annotations

import gevent
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

import json
from typing import Any

import pytest

from trafficinator_locust.core.config import Target, load_config
from trafficinator_locust.core.errors import ReportingApiError, SendError
from trafficinator_locust.ops.reporting_api import ReportingApi, matomo_error
from trafficinator_locust.ops.tracker_http import TrackerPoster, display_url
from trafficinator_locust.receiver.process import free_port

TOKEN = "http-test-token-5f0c1e"


@pytest.fixture
def server():
    """``server(answer) -> port``: a WSGI stand-in answering ``answer(environ, body) -> (status, bytes)``,
    keeping each request seen as ``(path, query, body, remote port)`` in ``server.seen``."""
    servers: list[WSGIServer] = []
    seen: list[tuple[str, str, str, str]] = []

    def start(answer) -> int:
        def app(environ, start_response):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length).decode() if length else ""
            seen.append((environ["PATH_INFO"], environ.get("QUERY_STRING", ""), body, environ["REMOTE_PORT"]))
            status, data = answer(environ, body)
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        wsgi = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
        wsgi.start()
        servers.append(wsgi)
        return wsgi.server_port

    start.seen = seen
    yield start
    for wsgi in servers:
        wsgi.stop()


@pytest.fixture
def target(write_yaml):
    """``target(port, token=TOKEN) -> Target`` whose tracker is ``http://127.0.0.1:PORT/m/matomo.php``."""

    def make(port: int, token: str | None = TOKEN) -> Target:
        line = f"token_auth: {token}" if token else ""
        path = write_yaml(f"""
            targets:
              - {{name: T, url: "http://127.0.0.1:{port}/m/matomo.php", site_id: 1, {line}}}
            """)
        return load_config(path).targets[0]

    return make


def test_the_token_travels_only_in_the_body_and_matomos_error_is_masked(server, target):
    said = f"token_auth={TOKEN} is not valid for {TOKEN}"
    port = server(lambda environ, body: ("200 OK", json.dumps({"result": "error", "message": said}).encode()))
    api = ReportingApi(target(port))
    with pytest.raises(ReportingApiError) as raised:
        api.call("SitesManager.getSiteFromId", idSite="1")
    assert str(raised.value) == "SitesManager.getSiteFromId: Matomo says: token_auth=*** is not valid for ***"
    [(path, query, body, _)] = server.seen
    assert path == "/m/index.php" and query == "" and f"token_auth={TOKEN}" in body
    assert "method=SitesManager.getSiteFromId" in body and "idSite=1" in body
    answer = api.answer("API.getMatomoVersion")  # the plain answer, for callers that word failures themselves
    assert (answer.status, answer.is_json, answer.error) == (200, True, "token_auth=*** is not valid for ***")


def test_each_failure_names_the_call_and_the_url(server, target):
    answers = iter([("500 Internal Server Error", b"{}"), ("200 OK", b"<html>"), ("200 OK", b"[]")])
    port = server(lambda environ, body: next(answers))
    api = ReportingApi(target(port, token=None))
    where = f"http://127.0.0.1:{port}/m/index.php"
    with pytest.raises(ReportingApiError, match=f"^VisitsSummary.get: HTTP 500 from {where}$"):
        api.call("VisitsSummary.get")
    with pytest.raises(ReportingApiError, match=r"the answer of .* is not JSON \(is it a Matomo\?\)$"):
        api.call("VisitsSummary.get")
    assert api.visits_summary(1, "2025-01-01") == (0, 0)  # Matomo's [] for a day without data
    assert "token_auth" not in server.seen[0][2]  # no token, no empty token_auth either
    closed = free_port()
    with pytest.raises(
        ReportingApiError, match=r"^API.getMatomoVersion: cannot reach http://127.0.0.1:\d+/m/index.php \("
    ):
        ReportingApi(target(closed)).call("API.getMatomoVersion")


def test_matomo_error_reads_only_matomos_error_answer():
    assert matomo_error({"result": "error", "message": "no"}) == "no"
    assert matomo_error({"result": "error"}) == "error"
    assert matomo_error({"result": "success"}) is None and matomo_error([]) is None and matomo_error(None) is None


def test_display_url_drops_credentials_query_and_fragment():
    assert display_url("https://user:pw@m.example:8443/m/matomo.php?x=1#f") == "https://m.example:8443/m/matomo.php"


def test_the_poster_keeps_one_connection_and_says_what_may_be_retried(server):
    port = server(lambda environ, body: ("200 OK", b'{"status": "success"}'))
    poster = TrackerPoster(f"http://127.0.0.1:{port}/m/matomo.php", timeout=5)
    try:
        assert poster.post(b'{"requests": []}', "application/json") == (200, b'{"status": "success"}')
        assert poster.post(b'{"requests": []}', "application/json")[0] == 200
    finally:
        poster.close()
    assert len({remote for *_, remote in server.seen}) == 1  # kept alive: one connection for both
    refused = TrackerPoster(f"http://127.0.0.1:{free_port()}/m/matomo.php", timeout=5)
    with pytest.raises(SendError, match="^cannot send to http://127.0.0.1:.*: connection refused$") as raised:
        refused.post(b"{}", "application/json")
    assert raised.value.retryable  # nothing arrived: Matomo cannot have stored it


def test_a_request_sent_but_not_answered_is_not_retried():
    def hang_up(connection: Any, address: Any) -> None:
        connection.recv(65536)
        connection.close()

    listener = StreamServer(("127.0.0.1", 0), hang_up)
    listener.start()
    try:
        poster = TrackerPoster(f"http://127.0.0.1:{listener.server_port}/matomo.php", timeout=5)
        with pytest.raises(SendError, match="^no answer from ") as raised:
            poster.post(b"{}", "application/json")
        assert not raised.value.retryable  # it may have been stored: sending it again could double it
    finally:
        listener.stop()
        gevent.sleep(0)
