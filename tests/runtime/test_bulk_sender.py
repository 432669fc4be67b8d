"""The live bulk sender: batches, order per visitor, answers checked, visits counted, token kept out.

A fake session stands in for Locust's HTTP session and answers as Matomo does (or with a
shortfall); the real end-to-end run is in test_e2e_traffic.py.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)

import gevent
from gevent.event import Event

import json
import time
from urllib.parse import parse_qs

import pytest

from trafficinator_locust.core.config import load_config
from trafficinator_locust.runtime.bulk_sender import BulkSender
from trafficinator_locust.runtime.tally import VisitTally

TOKEN = "sender-secret-token-42"


class FakeResponse:
    def __init__(self, status: int, body: dict | None) -> None:
        self.status_code = status
        self.content = json.dumps(body).encode() if body is not None else b""
        self.failed: str | None = None

    def failure(self, message: str) -> None:
        self.failed = message

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Records each bulk body; answers success, or tracks ``short`` fewer hits than sent."""

    def __init__(self, short: int = 0, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.responses: list[FakeResponse] = []
        self.short = short
        self.delay = delay
        self.names: set[str] = set()

    def post(self, url: str, data: bytes, headers: dict, name: str, catch_response: bool) -> FakeResponse:
        body = json.loads(data)
        self.bodies.append(body)
        self.names.add(name)
        if self.delay:
            gevent.sleep(self.delay)
        sent = len(body["requests"])
        response = FakeResponse(200, {"status": "success", "tracked": sent - self.short, "invalid": self.short})
        self.responses.append(response)
        return response


@pytest.fixture
def target(write_yaml):
    path = write_yaml(f"""
        targets:
          - {{name: Bulky, url: 'http://127.0.0.1:9/b/matomo.php', site_id: 2, token_auth: {TOKEN},
              transport: bulk, bulk_size: 5}}
    """)
    return load_config(path).enabled_targets[0]


def _never_waits(event: Event, timeout: float) -> None:
    raise AssertionError("the lane should not be full")


def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        gevent.sleep(0.01)


def _items(body: dict) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(item[1:]).items()} for item in body["requests"]]


def test_full_batches_leave_at_once_in_order_with_the_token_only_at_the_top(target):
    session, tally = FakeSession(), VisitTally()
    sender = BulkSender(target, session, tally, max_delay=60, lanes=1)
    sender.start()
    for n in range(10):
        sender.add(
            "visitor-1",
            f"?idsite=2&rec=1&cid=0000000000000001&n={n}",
            ("2026-11-26", True) if n == 0 else None,
            _never_waits,
        )
    _until(lambda: len(session.bodies) == 2)  # two full batches of 5, long before max_delay
    sender.stop(timeout=5)
    assert [item["n"] for body in session.bodies for item in _items(body)] == [str(n) for n in range(10)]
    assert all(
        body["token_auth"] == TOKEN and all("token_auth" not in item for item in body["requests"])
        for body in session.bodies
    )
    assert session.names == {"[Bulky] bulk"}
    assert tally.started["Bulky"] == 1 and tally.hits["Bulky"] == 10 and tally.days["Bulky"]["2026-11-26"] == [1, 0]


def test_a_partial_batch_leaves_after_max_delay_and_stop_sends_the_rest(target):
    session, tally = FakeSession(), VisitTally()
    sender = BulkSender(target, session, tally, max_delay=0.05, lanes=2)
    sender.start()
    sender.add("a", "?n=1", ("2026-11-26", True), _never_waits)
    _until(lambda: len(session.bodies) == 1)
    sender.add("b", "?n=2", ("2026-11-26", True), _never_waits)
    sender.stop(timeout=5)
    assert sum(len(body["requests"]) for body in session.bodies) == 2 and sender.queued == 0
    assert tally.started["Bulky"] == 2


def test_a_shortfall_fails_the_request_and_the_visits_it_carried(target):
    session, tally = FakeSession(short=1), VisitTally()
    sender = BulkSender(target, session, tally, max_delay=60, lanes=1)
    sender.start()
    for n in range(5):
        sender.add("v", f"?n={n}", ("2026-11-26", True) if n in (0, 3) else None, _never_waits)
    _until(lambda: len(session.responses) == 1)
    sender.stop(timeout=5)
    assert "shortfall: sent 5 hits, Matomo tracked 4" in (session.responses[0].failed or "")
    assert TOKEN not in session.responses[0].failed
    assert tally.failed["Bulky"] == 2 and tally.started["Bulky"] == 0 and tally.hits["Bulky"] == 4


def test_a_full_lane_makes_the_adding_user_wait(target):
    session = FakeSession(delay=0.2)  # a slow tracker
    sender = BulkSender(target, session, VisitTally(), max_delay=60, lanes=1, capacity=5)
    waits: list[float] = []

    def wait(event: Event, timeout: float) -> None:
        waits.append(timeout)
        event.wait(timeout)

    sender.start()
    for n in range(12):
        sender.add("v", f"?n={n}", None, wait)
    assert waits, "the user never waited although the lane was full"
    sender.stop(timeout=5)
    assert sum(len(body["requests"]) for body in session.bodies) == 12


def test_one_visitor_always_uses_one_lane_so_its_hits_stay_in_order(target):
    session = FakeSession(delay=0.01)
    sender = BulkSender(target, session, VisitTally(), max_delay=0.02, lanes=4)
    sender.start()
    for n in range(40):
        for visitor in ("a", "b", "c"):
            sender.add(visitor, f"?cid={visitor}&n={n}", None, lambda event, timeout: event.wait(timeout))
    sender.stop(timeout=10)
    seen: dict[str, list[int]] = {}
    for body in session.bodies:
        for item in _items(body):
            seen.setdefault(item["cid"], []).append(int(item["n"]))
    assert seen == {visitor: list(range(40)) for visitor in ("a", "b", "c")}
