"""A receiver with a capacity (``trafficinator sink --capacity N``): at most N tracked hits per second per
instance, a FIFO queue in front of the tracker, 503 once a request would wait longer than the queue bound.

No test here measures time: the queue runs on a fake clock and a fake sleep (:class:`FakeTime`), so
the schedule (each request's end, FIFO order, admission, the backlog) is checked exactly and at once;
the tests through the WSGI app assert statuses, counts and the order of events only. How close the
real receiver gets to its capacity is measured by ``bench/sink_capacity.py``."""

import gevent
import gevent.event
import gevent.pool

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from receiver_client import TOKEN

from trafficinator_locust.receiver import app as app_module
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.capacity import ServiceQueue, capacity_limits
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.process import receiver_command, wait_until_listening
from trafficinator_locust.receiver.server import serve
from trafficinator_locust.receiver.store import InstanceState

HANG_GUARD = 30.0
"""Seconds after which a test gives up waiting: a guard against a hang, never a speed check."""


class FakeTime:
    """A monotonic clock and a cooperative sleep for :class:`ServiceQueue`. By default a sleep moves
    the clock to the sleeper's wake-up time at once (time only passes while someone waits, as on an
    idle machine); once ``held``, sleepers wait until the test moves the clock with :meth:`advance`."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.held = False
        self.sleeps: list[float] = []
        self.queues = 0
        self._moved = gevent.event.Event()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + seconds
        if not self.held:
            self.now = max(self.now, wake)
            gevent.sleep(0)  # others run meanwhile, as during a real sleep
        while self.now < wake:
            self._moved.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        moved, self._moved = self._moved, gevent.event.Event()
        moved.set()

    def queue(self, hits_per_second: float, queue_seconds: float) -> ServiceQueue:
        """What the app builds for each limited instance (see the ``fake_time`` fixture)."""
        self.queues += 1
        return ServiceQueue(hits_per_second, queue_seconds, clock=self.clock, sleep=self.sleep)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Every ReceiverApp built in the test queues on one :class:`FakeTime`."""
    fake = FakeTime()
    monkeypatch.setattr(app_module, "ServiceQueue", fake.queue)
    return fake


@contextmanager
def _receiver(prefixes=("/dev",), **options):
    app = ReceiverApp([ReceiverInstance(prefix, {1: ReceiverSite(1)}, {TOKEN}) for prefix in prefixes], **options)
    server, port = serve(app, "127.0.0.1", 0)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _send(url, data=None, headers=None):
    """(status, body) of one request."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _hit(base, prefix, n, site=1):
    return _send(f"{base}{prefix}/matomo.php?idsite={site}&rec=1&cid={n:016x}&send_image=0")[0]


def _bulk(base, prefix, items):
    body = json.dumps({"requests": items}).encode()
    return _send(f"{base}{prefix}/matomo.php", body, {"Content-Type": "application/json"})


def _flood(base, prefix, workers, hits_each, first=0):
    """Start ``workers`` clients, each sending ``hits_each`` hits one after another; returns their pool."""
    pool = gevent.pool.Pool()
    statuses = []

    def worker(w):
        for i in range(hits_each):
            statuses.append(_hit(base, prefix, first + w * hits_each + i))

    for w in range(workers):
        pool.spawn(worker, w)
    return pool, statuses


def _wait_for_backlog(app, prefix, seconds):
    """Poll until the instance's queue holds ``seconds`` of work (on a held FakeTime it never drains)."""
    deadline = time.monotonic() + HANG_GUARD
    while app.stats(prefix)["capacity"]["backlog_seconds"] < seconds:
        assert time.monotonic() < deadline, "the queue never filled"
        gevent.sleep(0.005)


# --- the schedule, on a fake clock -------------------------------------------------------------


def test_each_request_ends_its_hits_over_the_capacity_after_the_one_before():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=2.0, clock=fake.clock)  # 0.25 s per hit
    hits = [1, 2, 0, 4, 1]  # 0 items (a malformed bulk body) still costs a hit
    turns = [queue.admit(n) for n in hits]
    assert [turn.done_at for turn in turns] == [100.25, 100.75, 101.0, 102.0, 102.25]
    assert [turn.waited for turn in turns] == [0.0, 0.25, 0.75, 1.0, 2.0]
    assert queue.backlog() == 2.25


def test_the_queue_refuses_exactly_when_the_wait_would_exceed_its_bound():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=1.0, clock=fake.clock)
    turns = [queue.admit(1) for _ in range(5)]  # waits 0, 0.25, 0.5, 0.75 and 1.0: the bound itself is admitted
    assert [turn.waited for turn in turns] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert queue.admit(1) is None and queue.admit(20) is None  # 1.25 s of waiting
    assert queue.backlog() == 1.25  # a refusal reserves nothing
    fake.advance(0.25)
    admitted = queue.admit(1)  # 1.0 s of waiting again
    assert admitted.waited == 1.0 and admitted.done_at == turns[-1].done_at + 0.25
    assert queue.admit(1) is None


def test_the_backlog_drains_with_the_clock_and_idle_time_is_not_banked():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=1.0, clock=fake.clock)
    assert queue.backlog() == 0.0
    assert queue.admit(4).done_at == 101.0
    fake.advance(0.25)
    assert queue.backlog() == 0.75
    assert queue.admit(1).waited == 0.75
    fake.advance(10.0)
    assert queue.backlog() == 0.0
    later = queue.admit(1)  # starts now, not at the end of the old work
    assert later.waited == 0.0 and later.done_at == fake.now + 0.25


def test_a_bulk_request_longer_than_the_bound_is_admitted_by_an_idle_queue():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=1.0, clock=fake.clock)
    bulk = queue.admit(20)  # 5 s of work, but nothing to wait for
    assert bulk.waited == 0 and bulk.done_at == 105.0
    assert queue.admit(1) is None and queue.backlog() == 5.0


def test_entering_a_turn_sleeps_until_its_done_at_and_a_due_turn_does_not_sleep():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=1.0, clock=fake.clock, sleep=fake.sleep)
    with queue.admit(2) as turn:
        assert fake.now == turn.done_at == 100.5 and fake.sleeps == [0.5]
    due = queue.admit(1)
    fake.advance(1.0)
    with due:
        assert fake.sleeps == [0.5]


def test_turns_are_served_first_in_first_out_whatever_order_they_are_entered():
    fake = FakeTime()
    queue = ServiceQueue(4, queue_seconds=1.0, clock=fake.clock, sleep=fake.sleep)
    turns = [queue.admit(1) for _ in range(5)]
    order = []

    def serve(n):
        with turns[n]:
            order.append((n, fake.now))

    gevent.joinall([gevent.spawn(serve, n) for n in reversed(range(5))], timeout=HANG_GUARD)
    assert [n for n, _ in order] == [0, 1, 2, 3, 4]
    assert all(served_at >= turns[n].done_at for n, served_at in order)  # never before its service is over


def test_two_queues_are_independent():
    fake = FakeTime()
    small = ServiceQueue(20, queue_seconds=2.0, clock=fake.clock, sleep=fake.sleep)
    big = ServiceQueue(200, queue_seconds=2.0, clock=fake.clock, sleep=fake.sleep)
    alone = ServiceQueue(200, queue_seconds=2.0, clock=fake.clock, sleep=fake.sleep)  # what big does by itself
    pending = small.admit(41)  # 2.05 s of work, never entered: not served
    assert small.admit(1) is None
    big_turns = [big.admit(1) for _ in range(20)]
    assert [t.done_at for t in big_turns] == [alone.admit(1).done_at for _ in range(20)]
    assert big_turns[0].waited == 0.0 and small.backlog() == pytest.approx(2.05) and small.admit(1) is None

    def serve_all():
        for turn in big_turns:
            with turn:
                pass
        return fake.now

    assert gevent.spawn(serve_all).get(timeout=HANG_GUARD) == big_turns[-1].done_at  # not behind small's
    assert small.backlog() == pending.done_at - fake.now  # big's service took nothing of small's


def test_the_stats_show_the_capacity_the_bound_and_the_backlog():
    fake = FakeTime()
    queue = ServiceQueue(3, queue_seconds=0.5, clock=fake.clock)
    assert queue.stats() == {"hits_per_second": 3.0, "queue_seconds": 0.5, "backlog_seconds": 0.0}
    queue.admit(1)
    assert queue.stats()["backlog_seconds"] == 0.333  # rounded to the millisecond
    fake.advance(1.0)
    assert queue.stats()["backlog_seconds"] == 0.0


def test_a_request_killed_while_waiting_never_holds_up_the_ones_after_it():
    fake = FakeTime()
    fake.held = True
    queue = ServiceQueue(10, queue_seconds=5.0, clock=fake.clock, sleep=fake.sleep)
    first, second = queue.admit(10), queue.admit(1)  # 1 s of work, then 0.1 s

    def serve(turn):
        with turn:
            return "served"

    waiting = gevent.spawn(serve, first)
    after = gevent.spawn(serve, second)
    deadline = time.monotonic() + HANG_GUARD
    while len(fake.sleeps) < 2:  # both asleep on the held clock
        assert time.monotonic() < deadline, "never slept"
        gevent.sleep(0)
    waiting.kill()  # e.g. server.stop() while it waits
    fake.advance(2.0)  # second's service is over; first will never be served
    assert after.get(timeout=HANG_GUARD) == "served"


# --- through the WSGI app: statuses, counts and order ----------------------------------------


def test_capacity_50_stores_all_150_hits_of_10_clients_after_3_seconds_of_service(fake_time):
    with _receiver(capacity=50) as (app, base):
        pool, statuses = _flood(base, "/dev", workers=10, hits_each=15)
        pool.join(timeout=HANG_GUARD)
        stats = app.stats("/dev")
    assert statuses == [204] * 150  # at most 10 waiting hits: 0.2 s of queue, well under 2 s
    assert fake_time.now == pytest.approx(103.0)  # 150 hits at 50 per second, served back to back
    assert stats["sites"]["1"]["hits"] == 150 and stats["sites"]["1"]["visits"] == 150
    assert stats["saturated"] == 0 and "saturated" not in stats["sites"]["1"]
    assert stats["capacity"] == {"hits_per_second": 50, "queue_seconds": 2, "backlog_seconds": 0}


def test_without_capacity_nothing_is_queued_nor_refused(fake_time):
    with _receiver() as (app, base):
        pool, statuses = _flood(base, "/dev", workers=10, hits_each=15)
        pool.join(timeout=HANG_GUARD)
        stats = app.stats("/dev")
    assert statuses == [204] * 150 and stats["sites"]["1"]["hits"] == 150
    assert fake_time.queues == 0 and fake_time.sleeps == []
    assert stats["saturated"] == 0 and "capacity" not in stats


def test_an_overload_beyond_a_tiny_queue_gets_503s_counted_and_not_stored(fake_time):
    fake_time.held = True
    with _receiver(capacity=2, capacity_queue=0.05) as (app, base):
        busy = gevent.spawn(_hit, base, "/dev", 998)
        _wait_for_backlog(app, "/dev", 0.5)  # admitted: one hit is 0.5 s of work
        pool, statuses = _flood(base, "/dev", workers=30, hits_each=1)
        pool.join(timeout=HANG_GUARD)
        unknown_site = _hit(base, "/dev", 999, site=7)  # refused before its site is checked
        assert not busy.ready()  # still in its turn
        fake_time.advance(0.5)
        served = busy.get(timeout=HANG_GUARD)
        stats = app.stats("/dev")
    assert statuses == [503] * 30 and unknown_site == 503 and served == 204
    assert stats["sites"]["1"]["hits"] == 1 and stats["sites"]["1"]["visits"] == 1
    assert stats["sites"]["1"]["saturated"] == 30
    assert stats["saturated"] == 31  # the instance counts every refused hit, its site's too
    assert stats["invalid"] == {}  # a refused hit is never checked


def test_a_bulk_request_of_20_items_costs_20_hits_and_the_reporting_api_is_not_queued(fake_time):
    fake_time.held = True
    with _receiver(capacity=20, capacity_queue=0.5) as (app, base):
        answer = gevent.spawn(_bulk, base, "/dev", [f"?idsite=1&rec=1&cid={n:016x}" for n in range(20)])
        _wait_for_backlog(app, "/dev", 1.0)  # admitted: 20 hits are 1 s of work
        assert app.stats("/dev")["capacity"]["backlog_seconds"] == 1.0
        assert _hit(base, "/dev", 100) == 503  # it would wait 1 s > 0.5 s behind the bulk request
        version = _send(f"{base}/dev/index.php?module=API&method=API.getMatomoVersion&format=json&token_auth={TOKEN}")
        stats_answer = _send(f"{base}/dev/sink/stats")
        assert not answer.ready()  # the API and the stats answered while the queue was full
        fake_time.advance(1.0)
        status, body = answer.get(timeout=HANG_GUARD)
        fake_time.held = False
        assert _hit(base, "/dev", 101) == 204  # the queue drained: served again
        stats = app.stats("/dev")
    assert status == 200 and json.loads(body) == {"status": "success", "tracked": 20, "invalid": 0}
    assert version[0] == 200 and stats_answer[0] == 200
    assert stats["sites"]["1"]["hits"] == 21 and stats["saturated"] == 1 and stats["sites"]["1"]["saturated"] == 1


def test_a_refused_bulk_request_counts_each_item_on_its_site(fake_time):
    fake_time.held = True
    with _receiver(capacity=20, capacity_queue=0.5) as (app, base):
        items = [f"?idsite={site}&rec=1&cid={n:016x}" for n, site in enumerate([1] * 15 + [9] * 5)]
        first = gevent.spawn(_bulk, base, "/dev", items)
        _wait_for_backlog(app, "/dev", 1.0)
        status, body = _bulk(base, "/dev", items)
        fake_time.advance(1.0)
        assert first.get(timeout=HANG_GUARD)[0] == 200
        stats = app.stats("/dev")
    assert status == 503 and b"capacity" in body
    assert stats["saturated"] == 20 and stats["sites"]["1"]["saturated"] == 15  # site 9 is not one of /dev's
    assert stats["sites"]["1"]["hits"] == 15 and stats["invalid"] == {"unknown_site": 5}


def test_two_instances_have_independent_queues(fake_time):
    fake_time.held = True
    with _receiver(("/small", "/big"), capacity={"/small": 20, "/big": 200}) as (app, base):
        small = gevent.spawn(_bulk, base, "/small", [f"?idsite=1&rec=1&cid={n:016x}" for n in range(41)])
        _wait_for_backlog(app, "/small", 2.05)  # 41 hits at 20 per second: over the 2 s bound
        assert _hit(base, "/small", 500) == 503
        big = gevent.spawn(_hit, base, "/big", 1000)
        _wait_for_backlog(app, "/big", 0.005)  # admitted at once: /small's queue is not /big's
        fake_time.advance(0.01)  # /big's hit is due, /small's bulk request is not
        assert big.get(timeout=HANG_GUARD) == 204 and not small.ready()  # served first, though it came later
        fake_time.advance(2.05)
        small_status, small_body = small.get(timeout=HANG_GUARD)
        stats = app.stats()
    assert small_status == 200 and json.loads(small_body)["tracked"] == 41
    assert stats["/small"]["sites"]["1"]["hits"] == 41 and stats["/small"]["saturated"] == 1
    assert stats["/big"]["sites"]["1"]["hits"] == 1 and stats["/big"]["saturated"] == 0
    assert stats["/small"]["capacity"]["hits_per_second"] == 20 and stats["/big"]["capacity"]["hits_per_second"] == 200


def test_a_refused_request_counts_its_hits_on_the_instance_and_known_sites():
    state = InstanceState(ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN}), "/dev")
    state.count_saturated([{"idsite": "1"}, {"idsite": "1"}, {"idsite": "3"}, {}])
    state.count_saturated([])  # a malformed bulk body still costs a hit
    stats = state.stats()
    assert stats["saturated"] == 5 and stats["sites"]["1"]["saturated"] == 2
    state.reset()
    assert state.stats()["saturated"] == 0 and "saturated" not in state.stats()["sites"]["1"]


@pytest.mark.parametrize(
    ("options", "queue", "expected"),
    [
        (["20"], 2.0, {"/small": 20.0, "/big": 20.0}),
        (["/big=200", "20"], 2.0, {"/small": 20.0, "/big": 200.0}),
        (["big/=200"], 2.0, {"/big": 200.0}),
        (["5", "1.5"], 0.5, {"/small": 1.5, "/big": 1.5}),
        ([], 2.0, {}),
    ],
)
def test_capacity_options_give_each_instance_its_limit(options, queue, expected):
    assert capacity_limits(options, ["/small", "/big"], queue) == expected


@pytest.mark.parametrize(
    ("options", "queue", "named"),
    [
        (["0"], 2.0, "--capacity '0'"),
        (["-5"], 2.0, "--capacity '-5'"),
        (["nan"], 2.0, "--capacity 'nan'"),
        (["inf"], 2.0, "--capacity 'inf'"),
        (["/big=fast"], 2.0, "--capacity '/big=fast'"),
        (["/nope=5"], 2.0, "no instance /nope"),
        (["5"], 0.0, "--capacity-queue"),
        (["5"], float("inf"), "--capacity-queue"),
        (["5"], float("nan"), "--capacity-queue"),
    ],
)
def test_capacity_options_refuse_what_is_not_a_finite_number_above_0(options, queue, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        capacity_limits(options, ["/small", "/big"], queue)


@pytest.mark.parametrize(
    "options",
    [
        {"capacity": 0},
        {"capacity": float("inf")},
        {"capacity": {"/dev": float("nan")}},
        {"capacity": {"/nope": 5}},
        {"capacity": 5, "capacity_queue": 0},
        {"capacity_queue": -1},
    ],
)
def test_receiver_app_refuses_a_bad_capacity(options):
    with pytest.raises(ValueError, match="capacity"):
        ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)})], **options)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--capacity", "0"], "--capacity"),
        (["--capacity", "/prod=inf"], "--capacity"),
        (["--capacity", "5", "--capacity-queue", "0"], "--capacity-queue"),
        (["--capacity-queue", "soon"], "--capacity-queue"),
    ],
)
def test_sink_command_refuses_a_bad_capacity(options, named):
    result = subprocess.run(receiver_command(*options, "--port", "0"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr


def test_sink_command_serves_each_instance_at_its_capacity(tmp_path):
    ready = tmp_path / "port"
    options = ("--instance", "/dev", "--instance", "/prod", "--capacity", "5", "--capacity", "/prod=50")
    process = subprocess.Popen(
        receiver_command("--port", "0", "--ready-file", str(ready), *options, "--capacity-queue", "0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(process)
        base = f"http://127.0.0.1:{int(ready.read_text())}"
        pool = gevent.pool.Pool()
        statuses = pool.map(lambda n: _hit(base, "/dev", n), range(10))  # 0.2 s per hit, 0.1 s of queue
        assert 204 in statuses and 503 in statuses
        stats = json.loads(_send(f"{base}/sink/stats")[1])
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()
        process.stderr.close()
    assert stats["/dev"]["capacity"]["hits_per_second"] == 5 and stats["/prod"]["capacity"]["hits_per_second"] == 50
    assert stats["/dev"]["capacity"]["queue_seconds"] == 0.1
    assert stats["/dev"]["saturated"] == statuses.count(503) and stats["/prod"]["saturated"] == 0
