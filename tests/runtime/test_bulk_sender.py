"""The live bulk sender: batches, order per visitor, answers checked by the delivery policy (resends,
refused hits), visits counted, token kept out; and the run summary's refused hits read from Locust's failures.

A fake session stands in for Locust's HTTP session and answers as Matomo does (one transaction per
request: a rolled-back batch stores nothing); the real end-to-end runs are in tests/e2e/test_bulk_runs.py
and tests/e2e/test_bulk_errors.py.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.stats import RequestStats

import gevent
from gevent.event import Event

import json
import time
from urllib.parse import parse_qs

import pytest

from trafficinator_locust.core.bulk import INVALID_REASON, RetryPolicy
from trafficinator_locust.core.config import load_config
from trafficinator_locust.runtime.bulk_sender import BulkSender
from trafficinator_locust.runtime.summary import summarize, summary_table
from trafficinator_locust.runtime.tally import VisitTally

TOKEN = "sender-secret-token-42"


class FakeResponse:
    def __init__(self, status: int, body: dict | None) -> None:
        self.status_code = status
        self.content = json.dumps(body).encode() if body is not None else b""
        self.failed: str | None = None
        self.succeeded = False

    def failure(self, message: str) -> None:
        self.failed = message

    def success(self) -> None:
        self.succeeded = True

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Records each bulk body and answers as Matomo does: success; or ``short`` fewer tracked than sent
    (invalid, without indices); ``fail`` requests (1-based) rolled back like a deadlock; an item containing a
    ``poison`` text rolls its request back (500); an item containing an ``invalid`` text is skipped and listed."""

    def __init__(
        self, short: int = 0, delay: float = 0.0, fail: tuple[int, ...] = (), poison: str = "", invalid: str = ""
    ) -> None:
        self.bodies: list[dict] = []
        self.responses: list[FakeResponse] = []
        self.short = short
        self.delay = delay
        self.fail, self.poison, self.invalid = fail, poison, invalid
        self.names: set[str] = set()
        self.stored: list[str] = []

    def post(self, url: str, data: bytes, headers: dict, name: str, catch_response: bool) -> FakeResponse:
        body = json.loads(data)
        self.bodies.append(body)
        self.names.add(name)
        if self.delay:
            gevent.sleep(self.delay)
        items = body["requests"]
        sent = len(items)
        poisoned = [n for n, item in enumerate(items) if self.poison and self.poison in item]
        if len(self.bodies) in self.fail:
            response = FakeResponse(500, {"status": "error", "tracked": 0})
        elif poisoned:
            response = FakeResponse(500, {"status": "error", "tracked": poisoned[0], "message": f"no! {TOKEN}"})
        else:
            skipped = [n for n, item in enumerate(items) if self.invalid and self.invalid in item]
            self.stored += [item for n, item in enumerate(items) if n not in skipped]
            answer = {"status": "success", "tracked": sent - self.short - len(skipped), "invalid": self.short}
            if skipped:
                answer.update(invalid=len(skipped), invalid_indices=skipped)
            response = FakeResponse(200, answer)
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


def test_a_shortfall_without_indices_is_reported_refused_and_never_resent(target):
    session, tally = FakeSession(short=1), VisitTally()
    sender = BulkSender(target, session, tally, max_delay=60, lanes=1)
    sender.start()
    for n in range(5):
        sender.add("v", f"?n={n}", ("2026-11-26", True) if n in (0, 3) else None, _never_waits)
    _until(lambda: len(session.responses) == 1)
    sender.stop(timeout=5)
    assert len(session.bodies) == 1  # stored: never resent
    assert session.responses[0].failed == (
        "refused 1 hit (unknown 1): Matomo tracked 4 of 5 hits and did not say which it refused"
    )
    assert tally.started["Bulky"] == 2 and tally.failed["Bulky"] == 0 and tally.hits["Bulky"] == 4


def _send_all(session, target, items, firsts=()):
    tally = VisitTally()
    sender = BulkSender(target, session, tally, max_delay=60, lanes=1, policy=RetryPolicy(retries=3, delay=0))
    sender.start()
    for n, item in enumerate(items):
        sender.add("v", item, ("2026-11-26", True) if n in firsts else None, _never_waits)
    sender.stop(timeout=10)
    return tally


def test_a_rolled_back_batch_is_resent_and_stored_once(target):
    session = FakeSession(fail=(1, 2))  # two deadlocks
    items = [f"?idsite=2&rec=1&n={n}" for n in range(5)]
    tally = _send_all(session, target, items, firsts=(0,))
    assert session.stored == items and len(session.bodies) == 3
    assert [r.failed for r in session.responses[:2]] == [
        "HTTP 500 status error, tracked 0; nothing stored, resent in 0.0 s (try 2)",
        "HTTP 500 status error, tracked 0; nothing stored, resent in 0.0 s (try 3)",
    ]
    assert session.responses[2].succeeded and session.responses[2].failed is None
    assert tally.hits["Bulky"] == 5 and tally.started["Bulky"] == 1 and tally.failed["Bulky"] == 0


def test_a_hit_matomo_refuses_is_isolated_reported_and_its_visit_counts_failed(target):
    session = FakeSession(poison="ca=1")
    items = ["?idsite=2&rec=1&n=0", "?idsite=2&rec=1&n=1", "?idsite=2&rec=1&idgoal=1&ca=1&n=2"]
    items += ["?idsite=2&rec=1&n=3", "?idsite=2&rec=1&n=4"]
    tally = _send_all(session, target, items, firsts=(0, 2))  # the goal hit opens the second visit
    assert session.stored == items[:2] + items[3:]
    failures = [r.failed for r in session.responses if r.failed and r.failed.startswith("refused")]
    assert failures == ["refused 1 hit (goal 1): HTTP 500 status error, tracked 0: no! *** (alone, 4 tries)"]
    assert all(TOKEN not in (r.failed or "") for r in session.responses)
    assert tally.started["Bulky"] == 1 and tally.failed["Bulky"] == 1 and tally.hits["Bulky"] == 4


def test_invalid_hits_are_refused_by_kind_and_the_summary_counts_them_from_lockers_failures(target, write_yaml):
    session = FakeSession(invalid="idsite=99")
    items = ["?idsite=2&rec=1&n=0", "?idsite=99&rec=1&n=1", "?idsite=99&rec=1&idgoal=1&n=2", "?idsite=2&rec=1&n=3"]
    _send_all(session, target, items)
    assert len(session.bodies) == 1 and session.stored == [items[0], items[3]]
    text = session.responses[0].failed
    assert (
        text == "refused 2 hits (goal 1, pageview 1): skipped by Matomo as invalid (unknown site or invalid parameter)"
    )
    stats = RequestStats()
    for _ in range(3):  # three such requests, as Locust collects them (also from workers)
        stats.log_request("POST", "[Bulky] bulk", 10, 100)
        stats.log_error("POST", "[Bulky] bulk", text)
    stats.log_request("POST", "[Bulky] bulk", 10, 100)  # a worker's failure reaches the master as a repr
    stats.log_error("POST", "[Bulky] bulk", "CatchResponseError('refused 1 hit (order 1): duplicate ec_id')")
    stats.log_request("POST", "[Bulky] bulk", 10, 100)
    stats.log_error("POST", "[Bulky] bulk", "HTTP 500 status error, tracked 0; nothing stored, resent in 1.0 s (try 2)")
    config = load_config(
        write_yaml(f"""
        targets:
          - {{name: Bulky, url: 'http://127.0.0.1:9/b/matomo.php', site_id: 2, token_auth: {TOKEN}, transport: bulk}}
    """)
    )
    row = summarize(config, stats, VisitTally())[0]
    assert row.refused_hits == {
        "total": 7,
        "by_kind": {"goal": 3, "order": 1, "pageview": 3},
        "sample": INVALID_REASON,
    }
    table = summary_table([row])
    assert "7 (goal 3, order 1, pageview 3)" in table and f"Bulky: {INVALID_REASON}" in table


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


class RaisingSession(FakeSession):
    """A session whose post raises (a bug, not a network error): the lane must survive and say so."""

    def __init__(self) -> None:
        super().__init__()
        self.request_event = locust.event.EventHook()
        self.fired: list[dict] = []
        self.request_event.add_listener(lambda **meta: self.fired.append(meta))
        self.raise_next = True

    def post(self, url: str, data: bytes, headers: dict, name: str, catch_response: bool) -> FakeResponse:
        if self.raise_next:
            self.raise_next = False
            raise ValueError("boom")
        return super().post(url, data, headers, name, catch_response)


def test_a_batch_that_raises_is_a_counted_failure_and_the_lane_keeps_sending(target):
    session, tally = RaisingSession(), VisitTally()
    sender = BulkSender(target, session, tally, max_delay=0.01, lanes=1)
    sender.start()
    sender.add("a", "?n=1", ("2026-11-26", True), _never_waits)
    _until(lambda: session.fired)
    sender.add("b", "?n=2", ("2026-11-26", True), _never_waits)
    sender.stop(timeout=5)
    [failure] = session.fired
    assert failure["name"] == "[Bulky] bulk" and "raised ValueError: boom" in str(failure["exception"])
    assert tally.failed["Bulky"] == 1 and tally.started["Bulky"] == 1 and len(session.bodies) == 1
