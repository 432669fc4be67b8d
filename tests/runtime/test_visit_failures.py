"""Failures that must not vanish: a visit that raises, and a 2xx answer that is not Matomo's, are
failures of their target in Locust's stats and the tally, with their message."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.env import Environment

import gevent
from gevent.pywsgi import WSGIServer

import time
from pathlib import Path

import pytest

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import tracker_answer_problem
from trafficinator_locust.runtime.tally import VisitTally
from trafficinator_locust.runtime.users import build_user_classes


class AlwaysPermit:
    def acquire(self, target, wait) -> None:
        return None


def _html_portal(environ, start_response):
    body = b"<html><body>Please log in</body></html>"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture()
def portal():
    server = WSGIServer(("127.0.0.1", 0), _html_portal, log=None)
    server.start()
    yield server.server_port
    server.stop()


def _run(classes: dict, seconds_until, tally: VisitTally) -> Environment:
    environment = Environment(user_classes=list(classes.values()), stop_timeout=2)
    for cls in classes.values():
        cls.permits = AlwaysPermit()
    runner = environment.create_local_runner()
    try:
        runner.start(len(classes), 100)
        deadline = time.monotonic() + 10
        while not seconds_until(environment):
            assert time.monotonic() < deadline, "nothing was counted within 10 s"
            gevent.sleep(0.05)
    finally:
        runner.quit()
    return environment


def _classes(tmp_path: Path, name: str, port: int, tally: VisitTally) -> dict:
    """The user class of one target whose tracker is ``port`` on loopback."""
    path = tmp_path / "t.yaml"
    path.write_text(
        f"targets:\n  - {{name: {name}, url: 'http://127.0.0.1:{port}/matomo.php', site_id: 1}}\n",
        encoding="utf-8",
    )
    return build_user_classes(load_config(path, env={}), tally)


def test_a_2xx_html_page_is_a_failure_of_its_target_not_a_stored_hit(tmp_path: Path, portal: int):
    tally = VisitTally()
    classes = _classes(tmp_path, "Portal", portal, tally)
    environment = _run(classes, lambda env: tally.failed["Portal"] >= 2, tally)
    assert tally.started["Portal"] == 0 and tally.reports == {}
    errors = [error for error in environment.stats.errors.values() if error.name.startswith("[Portal]")]
    assert errors and "not a Matomo tracker answer" in str(errors[0].error) and "text/html" in str(errors[0].error)


def test_a_visit_that_raises_is_a_counted_failure_with_its_message(tmp_path: Path, portal: int, monkeypatch):
    tally = VisitTally()
    classes = _classes(tmp_path, "Broken", portal, tally)
    broken = classes["Target_Broken"]

    def explode(number, ticket=None):
        raise ValueError("a price of nan")

    monkeypatch.setattr(broken.planner, "plan", explode)
    environment = _run(classes, lambda env: tally.failed["Broken"] >= 2, tally)
    entry = environment.stats.get("[Broken] error", "VISIT")
    assert entry.num_failures >= 2 and entry.num_requests == entry.num_failures
    [error] = [e for e in environment.stats.errors.values() if e.name == "[Broken] error"]
    assert "ValueError: a price of nan" in str(error.error)


def test_matomo_answers_are_204_or_a_gif_and_anything_else_2xx_is_named():
    assert tracker_answer_problem(204, "text/html", 0) is None
    assert tracker_answer_problem(200, "image/gif", 43) is None
    assert tracker_answer_problem(200, "", 0) is None
    assert tracker_answer_problem(400, "text/html", 411) is None  # not 2xx: an HTTP error, said elsewhere
    problem = tracker_answer_problem(200, "text/html; charset=UTF-8", 5120)
    assert problem is not None and "HTTP 200 text/html (5120 bytes)" in problem
