"""A receiver with a capacity (``trafficinator sink --capacity N``): at most N tracked hits per second per
instance, a FIFO queue in front of the tracker, 503 once a request would wait longer than the queue bound.

The timing tests run a real server on 127.0.0.1 with concurrent clients (greenlets: conftest patches
the standard library); their bounds are loose, these machines are noisy."""

import gevent
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

from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.capacity import ServiceQueue, capacity_limits
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.process import receiver_command, wait_until_listening
from trafficinator_locust.receiver.server import serve
from trafficinator_locust.receiver.store import InstanceState


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


def _wait_for_backlog(app, prefix, seconds, timeout=10.0):
    deadline = time.monotonic() + timeout
    while app.stats(prefix)["capacity"]["backlog_seconds"] < seconds:
        assert time.monotonic() < deadline, "the queue never filled"
        gevent.sleep(0.005)


def test_capacity_50_serves_150_hits_in_about_3_seconds_and_stores_them_all():
    with _receiver(capacity=50) as (app, base):
        started = time.monotonic()
        pool, statuses = _flood(base, "/dev", workers=10, hits_each=15)
        pool.join()
        elapsed = time.monotonic() - started
        stats = app.stats("/dev")
    assert 2.5 <= elapsed <= 6.0, elapsed  # 150 hits at 50 per second: 3 s of service time
    assert statuses == [204] * 150
    assert stats["sites"]["1"]["hits"] == 150 and stats["sites"]["1"]["visits"] == 150
    assert stats["saturated"] == 0 and "saturated" not in stats["sites"]["1"]
    assert stats["capacity"]["hits_per_second"] == 50 and stats["capacity"]["queue_seconds"] == 2


def test_without_capacity_nothing_waits_nor_is_refused():
    with _receiver() as (app, base):
        started = time.monotonic()
        pool, statuses = _flood(base, "/dev", workers=10, hits_each=15)
        pool.join()
        elapsed = time.monotonic() - started
        stats = app.stats("/dev")
    assert statuses == [204] * 150 and stats["sites"]["1"]["hits"] == 150
    assert elapsed < 2.5 and stats["saturated"] == 0 and "capacity" not in stats


def test_an_overload_beyond_a_tiny_queue_gets_503s_counted_and_not_stored():
    with _receiver(capacity=2, capacity_queue=0.05) as (app, base):
        pool, statuses = _flood(base, "/dev", workers=30, hits_each=1)
        pool.join()
        busy = gevent.spawn(_hit, base, "/dev", 998)
        _wait_for_backlog(app, "/dev", 0.4)  # one hit is 0.5 s of work
        unknown_site = _hit(base, "/dev", 999, site=7)  # refused before its site is checked
        statuses.append(busy.get(timeout=30))
        stats = app.stats("/dev")
    served = [status for status in statuses if status == 204]
    refused = [status for status in statuses if status == 503]
    assert len(served) + len(refused) == 31
    assert len(served) >= 2 and len(refused) >= 10, statuses  # 2 per second, at most 0.05 s of waiting
    assert unknown_site == 503
    assert stats["sites"]["1"]["hits"] == len(served) and stats["sites"]["1"]["visits"] == len(served)
    assert stats["sites"]["1"]["saturated"] == len(refused)
    assert stats["saturated"] == len(refused) + 1  # the instance counts every refused hit, its site's too
    assert stats["invalid"] == {}  # a refused hit is never checked


def test_a_bulk_request_of_20_items_costs_20_hits_and_the_reporting_api_is_not_limited():
    with _receiver(capacity=20, capacity_queue=0.5) as (app, base):
        bulk = json.dumps({"requests": [f"?idsite=1&rec=1&cid={n:016x}" for n in range(20)]}).encode()
        started = time.monotonic()
        answer = gevent.spawn(_send, f"{base}/dev/matomo.php", bulk, {"Content-Type": "application/json"})
        _wait_for_backlog(app, "/dev", 0.8)  # admitted: 20 hits are 1 s of work, most of it still ahead
        assert _hit(base, "/dev", 100) == 503  # it would wait > 0.5 s behind the bulk request
        api_started = time.monotonic()
        version = _send(f"{base}/dev/index.php?module=API&method=API.getMatomoVersion&format=json&token_auth={TOKEN}")
        stats_answer = _send(f"{base}/dev/sink/stats")
        api_took = time.monotonic() - api_started
        status, body = answer.get(timeout=30)
        bulk_took = time.monotonic() - started
        assert _hit(base, "/dev", 101) == 204  # the queue drained: served again
        stats = app.stats("/dev")
    assert status == 200 and json.loads(body) == {"status": "success", "tracked": 20, "invalid": 0}
    assert 0.9 <= bulk_took <= 5.0, bulk_took
    assert version[0] == 200 and stats_answer[0] == 200 and api_took < 0.5, api_took
    assert stats["sites"]["1"]["hits"] == 21 and stats["saturated"] == 1 and stats["sites"]["1"]["saturated"] == 1


def test_a_refused_bulk_request_counts_each_item_on_its_site():
    with _receiver(capacity=20, capacity_queue=0.5) as (app, base):
        items = [f"?idsite={site}&rec=1&cid={n:016x}" for n, site in enumerate([1] * 15 + [9] * 5)]
        bulk = json.dumps({"requests": items}).encode()
        first = gevent.spawn(_send, f"{base}/dev/matomo.php", bulk, {"Content-Type": "application/json"})
        _wait_for_backlog(app, "/dev", 0.8)
        status, body = _send(f"{base}/dev/matomo.php", bulk, {"Content-Type": "application/json"})
        assert first.get(timeout=30)[0] == 200
        stats = app.stats("/dev")
    assert status == 503 and b"capacity" in body
    assert stats["saturated"] == 20 and stats["sites"]["1"]["saturated"] == 15  # site 9 is not one of /dev's
    assert stats["sites"]["1"]["hits"] == 15 and stats["invalid"] == {"unknown_site": 5}


def test_two_instances_have_independent_queues():
    with _receiver(("/small", "/big"), capacity={"/small": 20, "/big": 200}) as (app, base):
        small_started = time.monotonic()
        pool, small_statuses = _flood(base, "/small", workers=30, hits_each=2)  # 60 hits: 3 s at 20 per second
        _wait_for_backlog(app, "/small", 0.5)
        latencies = []
        for n in range(20):
            started = time.monotonic()
            assert _hit(base, "/big", 1000 + n) == 204
            latencies.append(time.monotonic() - started)
        small_still_busy = app.stats("/small")["capacity"]["backlog_seconds"]
        pool.join()
        small_took = time.monotonic() - small_started
        stats = app.stats()
    assert small_still_busy > 0  # /big was served while /small was saturated...
    assert max(latencies) < 0.5 and sum(latencies) < 2.0, latencies  # ...without waiting behind /small's 1.5 s
    assert small_statuses == [204] * 60 and 2.5 <= small_took <= 8.0, small_took
    assert stats["/small"]["sites"]["1"]["hits"] == 60 and stats["/big"]["sites"]["1"]["hits"] == 20
    assert stats["/small"]["capacity"]["hits_per_second"] == 20 and stats["/big"]["capacity"]["hits_per_second"] == 200


def test_the_queue_admits_up_to_its_bound_and_serves_first_in_first_out():
    now = [100.0]
    queue = ServiceQueue(4, queue_seconds=1.0, clock=lambda: now[0])  # 0.25 s per hit
    turns = [queue.admit(1) for _ in range(5)]  # waits 0, 0.25, 0.5, 0.75, 1.0: all within 1 s
    assert [turn.waited for turn in turns] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert queue.admit(1) is None and queue.backlog() == 1.25  # a refusal reserves nothing
    assert queue.admit(20) is None
    now[0] += 1.25  # everything admitted is due
    order = []

    def serve(n):
        with turns[n]:
            order.append(n)

    gevent.joinall([gevent.spawn(serve, n) for n in reversed(range(5))])  # entered last first
    assert order == [0, 1, 2, 3, 4]
    bulk = queue.admit(20)  # idle again: a bulk request of 20 items is 5 s of work
    assert bulk.waited == 0 and bulk.done_at == now[0] + 5.0
    assert queue.admit(1) is None and queue.backlog() == 5.0


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


def test_a_request_killed_while_waiting_never_holds_up_the_ones_after_it():
    queue = ServiceQueue(10, queue_seconds=5.0)
    first, second = queue.admit(10), queue.admit(1)  # 1 s of work, then 0.1 s

    def serve(turn):
        with turn:
            return "served"

    waiting = gevent.spawn(serve, first)
    after = gevent.spawn(serve, second)
    gevent.sleep(0.05)
    waiting.kill()  # e.g. server.stop() while it waits
    assert after.get(timeout=5) == "served"
