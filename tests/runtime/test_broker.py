"""The permit broker and client inside Locust runners, without processes.

A local runner loops messages back synchronously, so most of the protocol is tested on one; the
master/worker path uses a real ``MasterRunner`` and ``WorkerRunner``s on loopback in this process.
The broker runs on a fake wall clock and the client on a fake monotonic clock, so expiry and pacing
are exact; waits are on gevent events with timeouts, never sleeps.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)
from locust import User, constant, task
from locust.dispatch import UsersDispatcher
from locust.env import Environment

import gevent
from gevent.event import Event

import argparse
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import StateError
from trafficinator_locust.runtime import broker as broker_module
from trafficinator_locust.runtime.broker import (
    MAX_WAIT,
    MSG_LEASE,
    MSG_REPORT,
    PermitBroker,
    PermitClient,
    StateFile,
    build_budgets,
    default_state_path,
    lease_margin,
    restore_ledger,
    state_file_for,
)
from trafficinator_locust.runtime.coordinator import Coordinator, shape_wanted
from trafficinator_locust.runtime.deployment import Deployment
from trafficinator_locust.runtime.shape import PoolDispatcher, TrafficShape, mean_visit_seconds, pool_size
from trafficinator_locust.runtime.summary import BudgetView, summarize, target_state
from trafficinator_locust.runtime.tally import VisitTally

NOON = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).timestamp()

CONFIG = """
defaults:
  traffic:
    pageviews: {min: 2, max: 4}
    dwell_seconds: {min: 1, max: 3}
    pause_between_visits: {min: 0, max: 1}
    actions: {search: 0, outlink: 0, download: 0, event: 0}
targets:
  - {name: Stress, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1, visits_per_day: 50}
  - {name: Paced, url: "http://127.0.0.1:9/b/matomo.php", site_id: 2, visits_per_day: 864000}
  - {name: Zero, url: "http://127.0.0.1:9/c/matomo.php", site_id: 3, visits_per_day: 0}
  - {name: Free, url: "http://127.0.0.1:9/d/matomo.php", site_id: 4}
"""


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Idle(User):
    """A user class for runners that never run users in these tests."""

    wait_time = constant(1)

    @task
    def nothing(self) -> None:
        pass


@pytest.fixture()
def config(write_yaml):
    return load_config(write_yaml(CONFIG))


def limited(config) -> list[str]:
    return [t.name for t in config.enabled_targets if t.visits_per_day is not None]


class Local:
    """A local runner carrying one broker and one client, with the messages they exchanged."""

    def __init__(
        self, config, *, paced: bool = True, state: StateFile | None = None, ttl: float = 30.0, now: float = NOON
    ):
        self.environment = Environment(user_classes=[Idle])
        self.runner = self.environment.create_local_runner()
        self.wall = Clock(now)
        self.mono = Clock(1000.0)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        saved = state.load() if state else None
        ledger = restore_ledger(build_budgets(config, paced), saved, self.wall())
        self.broker = PermitBroker(ledger, send=self._to_client, state_file=state, ttl=ttl, clock=self.wall)
        self.broker.attach(self.runner)
        self.client = PermitClient(limited(config), send=self._to_broker, clock=self.mono)
        self.client.attach(self.runner)

    def _to_client(self, msg_type: str, data: dict[str, Any], client_id: str | None) -> None:
        self.sent.append((msg_type, data))
        self.runner.send_message(msg_type, data, client_id=client_id)

    def _to_broker(self, msg_type: str, data: dict[str, Any], client_id: str | None) -> None:
        self.sent.append((msg_type, data))
        self.runner.send_message(msg_type, data)

    def count(self, msg_type: str) -> int:
        return sum(1 for kind, _ in self.sent if kind == msg_type)

    def status(self, target: str):
        return {s.name: s for s in self.broker.status()}[target]

    def close(self) -> None:
        self.runner.quit()


@pytest.fixture()
def local(config):
    pair = Local(config)
    yield pair
    pair.close()


# --- the local runner's loop-back ---------------------------------------------------------------


def test_targets_without_a_rate_never_wait_and_send_no_message(local: Local):
    assert all(local.client.try_acquire("Free") for _ in range(100))
    assert local.sent == []


def test_a_paced_target_is_leased_in_batches_of_its_rate(local: Local):
    # The bucket starts empty: the first request gets nothing and a hint to come back in 1/rate s.
    assert not local.client.try_acquire("Paced")
    ((_, grant),) = [(k, d) for k, d in local.sent if k == "trafficinator:grant"]
    assert grant["count"] == 0 and grant["rate"] == pytest.approx(10.0) and grant["retry_after"] == pytest.approx(0.1)
    local.wall.advance(1.0)
    local.mono.advance(0.2)
    assert local.client.try_acquire("Paced")
    (lease,) = local.broker.ledger.leases()
    assert lease.count == 10  # what accrued in 1 s at 10/s, though the client asked for 1.5 s of it
    assert local.count(MSG_LEASE) == 2


def test_permits_are_refilled_below_the_low_water_mark_before_they_run_out(local: Local):
    local.client.try_acquire("Paced")
    local.wall.advance(1.0)
    local.mono.advance(0.2)
    assert local.client.try_acquire("Paced")
    low_water = math.ceil(10.0 * broker_module.LOW_WATER_SECONDS)
    requests_before = local.count(MSG_LEASE)
    local.wall.advance(0.3)
    local.mono.advance(0.3)  # past the broker's hint (1/rate) after a partial grant
    while local.client.snapshot()["Paced"]["available"] > low_water:
        assert local.client.try_acquire("Paced")
        assert local.count(MSG_LEASE) == requests_before  # no request while above the mark
    # Taking the permit that crosses the mark asks for more, long before the lease runs out.
    assert local.client.try_acquire("Paced")
    assert local.count(MSG_LEASE) == requests_before + 1
    (first, refill) = local.broker.ledger.leases()
    assert first.unused == low_water - 1 and refill.count == 3  # 0.3 s at 10/s
    assert local.client.snapshot()["Paced"]["available"] == low_water - 1 + 3


def test_no_budget_no_visit_and_the_user_waits_in_bounded_steps(local: Local):
    assert not local.client.try_acquire("Zero")
    assert local.broker.ledger.leases() == [] and local.count(MSG_LEASE) == 1
    assert not local.client.try_acquire("Zero")
    assert local.count(MSG_LEASE) == 1  # capped: the client waits retry_after before asking again
    waits: list[float] = []

    def wait(event: Event, timeout: float) -> None:
        waits.append(timeout)
        local.mono.advance(timeout)
        if len(waits) == 12:
            raise gevent.GreenletExit  # what Locust raises in a waiting user it stops

    with pytest.raises(gevent.GreenletExit):
        local.client.acquire("Zero", wait)
    assert all(0 < w <= MAX_WAIT for w in waits)
    assert local.count(MSG_LEASE) == 3  # asked again once per retry_after (5 s), never succeeded
    assert local.status("Zero").granted_today == 0


def test_use_is_reported_before_the_visit_and_the_rest_returned_at_stop(config, tmp_path: Path):
    pair = Local(config, paced=False, state=StateFile(tmp_path / "state.json"))
    try:
        for _ in range(3):
            assert pair.client.try_acquire("Stress")
        assert pair.count(MSG_REPORT) == 3  # one report per permit, before its visit
        status = pair.status("Stress")
        assert status.granted_today > 3 and status.outstanding_leased == status.granted_today - 3
        pair.client.return_all()
        assert pair.broker.ledger.leases() == []
        assert pair.status("Stress").granted_today == 3
        assert json.loads((tmp_path / "state.json").read_text())["targets"]["Stress"]["granted"] == 3
        assert not pair.client.try_acquire("Stress")  # stopped: nothing until the next test start
        pair.client.start()
        assert pair.client.try_acquire("Stress")
    finally:
        pair.close()


def test_a_stress_target_never_exceeds_its_cap(config):
    pair = Local(config, paced=False)
    try:
        taken = 0
        for _ in range(200):
            if pair.client.try_acquire("Stress"):
                taken += 1
            else:
                pair.mono.advance(broker_module.RETRY_CAPPED)
        assert taken == 50 and pair.status("Stress").state == "capped"
        assert pair.broker.all_spent() is False  # Paced and Free still have budget / no cap
    finally:
        pair.close()


def test_a_client_stops_using_a_lease_a_margin_before_its_ttl(config):
    pair = Local(config, paced=False, ttl=10.0)
    try:
        assert pair.client.try_acquire("Stress")
        (first,) = pair.broker.ledger.leases()
        pair.mono.advance(10.0 - lease_margin(10.0))  # measured from when the client asked
        pair.wall.advance(10.0 - lease_margin(10.0))
        assert pair.client.try_acquire("Stress")
        leases = pair.broker.ledger.leases()
        assert first.id not in {lease.id for lease in leases}  # given back with its use, unused part credited
        assert pair.status("Stress").granted_today == 1 + sum(lease.count for lease in leases)
    finally:
        pair.close()


def test_a_vanished_holders_unused_permits_come_back_only_at_expiry(config):
    grants: list[dict[str, Any]] = []
    wall = Clock(NOON)
    broker = PermitBroker(
        restore_ledger(build_budgets(config, False), None, NOON),
        send=lambda t, d, c: grants.append(d),
        ttl=30.0,
        clock=wall,
        alive=lambda holder: holder != "ghost",
    )
    broker.on_lease("ghost", {"req": 1, "target": "Stress", "want": 20})
    assert grants[-1]["count"] == 20
    broker.on_report("ghost", {"broker": broker.id, "used": {grants[-1]["lease"]: 7}})
    broker.on_report("ghost", {"broker": "an-earlier-master", "used": {grants[-1]["lease"]: 20}})  # ignored
    broker.tick()
    assert broker.ledger.leases()[0].released  # noted as gone, not credited
    wall.advance(10)
    broker.on_lease("w2", {"req": 1, "target": "Stress", "want": 100})
    assert grants[-1]["count"] == 30
    broker.on_report("w2", {"broker": broker.id, "used": {grants[-1]["lease"]: 30}})
    wall.advance(19.9)
    broker.tick()
    assert broker.status()[0].granted_today == 50
    wall.advance(0.1)
    broker.tick()
    assert broker.status()[0].granted_today == 50 - 13
    broker.on_lease("w2", {"req": 2, "target": "Stress", "want": 100})
    assert grants[-1]["count"] == 13 and broker.granted_in_run["Stress"] == 50


# --- the state file ----------------------------------------------------------------------------


def test_the_state_is_on_disk_before_each_grant_is_sent(config, tmp_path: Path):
    state = StateFile(tmp_path / "state.json")
    seen: list[tuple[str, int]] = []

    class Checked(Local):
        def _to_client(self, msg_type, data, client_id):
            if data.get("count"):
                saved = json.loads(state.path.read_text())
                assert data["lease"] in {lease["id"] for lease in saved["leases"]}
                seen.append((data["lease"], saved["targets"][data["target"]]["granted"]))
            super()._to_client(msg_type, data, client_id)

    pair = Checked(config, paced=False, state=state)
    try:
        for _ in range(20):
            assert pair.client.try_acquire("Stress")
        assert len(seen) >= 2 and seen == sorted(seen, key=lambda item: item[1])
    finally:
        pair.close()


def test_a_restarted_broker_continues_the_count_and_never_credits_old_leases(config, tmp_path: Path):
    state = StateFile(tmp_path / "state.json")
    first = Local(config, paced=False, state=state)
    for _ in range(12):
        assert first.client.try_acquire("Stress")
    granted = first.status("Stress").granted_today
    old_ids = {lease.id for lease in first.broker.ledger.leases()}
    assert granted > 12 and old_ids  # the master dies holding open leases (no return)
    first.runner.greenlet.kill(block=True)

    second = Local(config, paced=False, state=state, now=NOON + 60)
    try:
        assert second.broker.ledger.leases() == []  # settled as fully used: their holder may have used them
        assert second.status("Stress").granted_today == granted
        taken = 0
        while second.client.try_acquire("Stress"):
            taken += 1
        assert taken == 50 - granted
        assert all(int(lease.id) > max(map(int, old_ids)) for lease in second.broker.ledger.leases())
        second.wall.advance(3600)
        second.broker.tick()
        assert second.status("Stress").granted_today == 50  # old leases never expire into credit
    finally:
        second.close()


def test_an_unusable_state_file_is_refused(tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="unusable"):
        StateFile(path).load()
    path.write_text(json.dumps({"version": 99, "targets": {}, "leases": []}))
    with pytest.raises(StateError, match="version"):
        StateFile(path).load()
    assert StateFile(tmp_path / "missing.json").load() is None


def test_the_default_state_file_is_keyed_by_the_config_path(config, tmp_path: Path, monkeypatch):
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    path = default_state_path(config.source, env)
    assert path.parent == tmp_path / "xdg" / "trafficinator" and path.suffix == ".json"
    monkeypatch.chdir(Path(config.source).parent)
    assert default_state_path(Path(config.source).name, env) == path  # relative or absolute: one file
    assert default_state_path("environment", env) != path
    assert default_state_path(config.source, {}).parts[-4:-2] == (".local", "state")

    class Options:
        traffic_state = ""

    assert state_file_for(Options, config) is None
    Options.traffic_state = str(tmp_path / "mine.json")
    assert state_file_for(Options, config).path == tmp_path / "mine.json"


# --- master and workers in one process ---------------------------------------------------------


class Worker:
    def __init__(self, port: int, targets: list[str]):
        self.environment = Environment(user_classes=[Idle])
        self.runner = self.environment.create_worker_runner("127.0.0.1", port)
        self.mono = Clock(1000.0)
        self.client = PermitClient(targets, send=lambda t, d, c: self.runner.send_message(t, d), clock=self.mono)
        self.client.attach(self.runner)
        self.grants: list[dict[str, Any]] = []
        self.granted = Event()
        original = self.client.on_grant

        def on_grant(data: dict[str, Any]) -> None:
            original(data)
            self.grants.append(data)
            self.granted.set()

        self.client.on_grant = on_grant  # type: ignore[method-assign]

    def take(self, target: str) -> bool:
        """One permit, waiting for the broker's answer (a grant of 0 means no)."""
        for _ in range(3):
            self.granted.clear()
            if self.client.try_acquire(target):
                return True
            if not self.client.snapshot()[target]["pending"]:
                return False  # not asking: the last answer said no
            assert self.granted.wait(5), "no answer from the master"
            if not self.grants[-1]["count"]:
                return False
        return self.client.try_acquire(target)


def test_master_and_workers_lease_over_messages_and_a_dead_workers_permits_come_back_at_expiry(config, monkeypatch):
    monkeypatch.setattr("locust.runners.WORKER_REPORT_INTERVAL", 0.1)
    master = Environment(user_classes=[Idle]).create_master_runner("127.0.0.1", 0)
    wall = Clock(NOON)
    broker = PermitBroker(
        restore_ledger(build_budgets(config, False), None, NOON),
        send=lambda t, d, c: master.send_message(t, d, client_id=c),
        ttl=30.0,
        clock=wall,
    )
    broker.attach(master)
    reported = Event()
    on_report = broker.on_report

    def report_seen(holder: str, data: dict[str, Any]) -> None:
        on_report(holder, data)
        reported.set()

    broker.on_report = report_seen  # type: ignore[method-assign]
    a, b = Worker(master.server.port, limited(config)), Worker(master.server.port, limited(config))
    try:
        assert a.take("Stress")
        assert reported.wait(5)
        (lease_a,) = broker.ledger.leases(a.runner.client_id)
        assert lease_a.used == 1 and lease_a.unused >= 1
        # Worker a vanishes without returning anything.
        a.runner.greenlet.kill(block=True)
        a.runner.client.close(linger=0)
        taken_b = 0
        while b.take("Stress"):
            taken_b += 1
        assert taken_b == 50 - lease_a.count
        while broker.ledger.leases(b.runner.client_id):  # b's reports travel before anything expires
            reported.clear()
            assert reported.wait(5)
        wall.advance(30.0)
        broker.tick()  # a's lease expires: its unreported permits are credited
        b.mono.advance(broker_module.RETRY_CAPPED)  # b asks again after the broker's retry hint
        while b.take("Stress"):
            taken_b += 1
        assert 1 + taken_b == 50
        assert broker.status()[0].state == "capped"
    finally:
        master.quit()
        b.runner.quit()


# --- the shape and Locust's dispatcher ---------------------------------------------------------


class Small(User):
    wait_time = constant(60)
    fixed_count = 1

    @task
    def nothing(self) -> None:
        pass


class Large(User):
    wait_time = constant(60)
    fixed_count = 2

    @task
    def nothing(self) -> None:
        pass


def _spawn(runner, total: int) -> dict[str, int]:
    runner.start(total, 100)
    runner.spawning_greenlet.join(timeout=5)
    return dict(runner.user_classes_count)


@pytest.mark.parametrize(("dispatcher", "grows"), [(PoolDispatcher, True), (UsersDispatcher, False)])
def test_fixed_counts_grow_mid_run_only_with_the_pool_dispatcher(dispatcher, grows, monkeypatch):
    monkeypatch.setattr(Small, "fixed_count", 1)
    monkeypatch.setattr(Large, "fixed_count", 2)
    runner = Environment(user_classes=[Small, Large], dispatcher_class=dispatcher).create_local_runner()
    try:
        assert _spawn(runner, 3) == {"Small": 1, "Large": 2}
        monkeypatch.setattr(Large, "fixed_count", 5)
        monkeypatch.setattr(Small, "fixed_count", 2)
        counts = _spawn(runner, 7)
        assert (counts == {"Small": 2, "Large": 5}) is grows, counts
    finally:
        runner.quit()


def test_little_law_sizes_each_pool():
    assert pool_size(0.0, 10) == 1
    assert pool_size(10.0, 2.0) == 31  # 10/s x 2 s x 1.5 + 1
    assert pool_size(0.01, 30) == 2


def _shape(
    config, paced: bool = True, run_time: float | None = None
) -> tuple[TrafficShape, PermitBroker, Clock, dict[str, type]]:
    wall = Clock(NOON)
    broker = PermitBroker(
        restore_ledger(build_budgets(config, paced), None, NOON), send=lambda t, d, c: None, clock=wall
    )
    broker.start_run()
    classes = {
        t.name: type(t.class_name, (User,), {"abstract": False, "wait_time": constant(1), "__module__": __name__})
        for t in config.enabled_targets
    }
    return (
        TrafficShape(broker, config.enabled_targets, classes, run_time=lambda: run_time, clock=wall),
        broker,
        wall,
        classes,
    )


def test_the_shape_sizes_pools_from_rates_and_sets_fixed_counts(config):
    shape, _, _, classes = _shape(config)
    users, spawn_rate = shape.tick()
    paced = config.enabled_targets[1]
    visit = mean_visit_seconds(paced)
    assert visit == pytest.approx(3 * 2 + 0.5)  # 3 pageviews x 2 s dwell (+ no actions) + 0.5 s pause
    expected = {"Stress": pool_size(50 / 86400, visit), "Paced": pool_size(10.0, visit), "Zero": 1, "Free": 1}
    assert shape.pools == expected and {name: cls.fixed_count for name, cls in classes.items()} == expected
    assert users == sum(expected.values()) and spawn_rate == min(users, 100)


def test_the_shape_grows_a_pool_whose_permits_wait_unused(config):
    shape, broker, wall, _ = _shape(config)
    shape.tick()
    before = shape.pools["Paced"]
    shape.start_time -= 60  # a minute into the run ...
    wall.advance(60)  # ... and not one permit of Paced's 600 was asked for
    shape.tick()
    assert shape.pools["Paced"] == math.ceil(before * 1.25)
    assert shape.pools["Stress"] == pool_size(
        50 / 86400, mean_visit_seconds(config.enabled_targets[0])
    )  # on pace: unchanged
    wall.advance(1)
    shape.tick()
    assert shape.pools["Paced"] == math.ceil(before * 1.25)  # at most every few seconds
    for _ in range(40):
        wall.advance(10)
        shape.start_time -= 10
        shape.tick()
    assert shape.pools["Paced"] == math.ceil(pool_size(10.0, mean_visit_seconds(config.enabled_targets[1])) * 4)


def test_the_shape_ends_the_run_when_every_budget_is_spent_or_at_run_time(write_yaml):
    capped_only = load_config(write_yaml(CONFIG.split("  - {name: Paced")[0], name="stress-only.yaml"))
    shape, broker, wall, _ = _shape(capped_only, paced=False)
    assert shape.tick() is not None
    lease = broker.ledger.lease("w", "Stress", 50, wall(), 30)
    assert shape.tick() is not None  # granted, not yet used
    broker.on_report("w", {"broker": broker.id, "used": {lease.id: 50}})
    assert shape.tick() is None and "budget" in shape.stop_reason
    shape, _, _, _ = _shape(capped_only, run_time=30)
    assert shape.tick() is not None
    shape.start_time -= 31
    assert shape.tick() is None and "run-time" in shape.stop_reason


def test_a_spent_run_waits_for_the_visits_in_progress_before_it_ends(write_yaml):
    capped_only = load_config(write_yaml(CONFIG.split("  - {name: Paced")[0], name="stress-only.yaml"))
    shape, broker, wall, _ = _shape(capped_only, paced=False)
    busy = [2]
    shape.settled = lambda: busy[0] == 0
    running = shape.tick()
    lease = broker.ledger.lease("w", "Stress", 50, wall(), 30)
    broker.on_report("w", {"broker": broker.id, "used": {lease.id: 50}})
    assert shape.tick() == running, "spent, but two visits are still being sent: keep their users"
    busy[0] = 0
    assert shape.tick() is None and "budget" in shape.stop_reason


def test_the_coordinator_counts_visits_in_flight_here_and_on_workers_and_gives_up_after_the_stop_timeout(
    write_yaml, monkeypatch
):
    options = argparse.Namespace(
        traffic_state="", traffic_pacing="stress", traffic_shape=False, traffic_check=None, num_users=10
    )
    deployment = Deployment.of(load_config(write_yaml(CONFIG)))
    environment = Environment(user_classes=list(deployment.user_classes.values()), parsed_options=options)
    environment.stop_timeout = 10.0
    runner = environment.create_local_runner()
    coordinator = Coordinator(deployment, environment)
    now = [1000.0]
    monkeypatch.setattr("trafficinator_locust.runtime.coordinator.time.monotonic", lambda: now[0])
    coordinator.tally.in_flight = 1
    coordinator.on_worker_report("w1", {"trafficinator_in_flight": 2})
    assert coordinator.visits_in_flight() == 3 and not coordinator._settled()
    coordinator.tally.in_flight = 0
    coordinator.on_worker_report("w1", {"trafficinator_in_flight": 0})
    assert coordinator._settled()
    coordinator._spent_since, coordinator.tally.in_flight = None, 1
    assert not coordinator._settled()
    now[0] += 10.0
    assert coordinator._settled(), "a visit that never ends must not keep the run alive past --stop-timeout"
    runner.quit()


def test_the_shape_is_on_for_paced_runs_without_a_user_count(config):
    class Options:
        traffic_pacing = "paced"
        traffic_shape = None
        num_users = None

    assert shape_wanted(Options, config)
    Options.num_users = 10
    assert not shape_wanted(Options, config)
    Options.traffic_shape = True
    assert shape_wanted(Options, config)
    Options.traffic_pacing = "stress"
    assert not shape_wanted(Options, config)
    Options.traffic_pacing, Options.traffic_shape, Options.num_users = "paced", False, None
    assert not shape_wanted(Options, config)


# --- report ------------------------------------------------------------------------------------


def test_the_tally_keeps_local_days_across_worker_reports():
    worker, master = VisitTally(), VisitTally()
    worker.visit_started("A", True, "2026-03-10")
    worker.visit_started("A", False, "2026-03-10")
    worker.visit_started("A", True, "2026-03-11")
    master.merge(worker.drain())
    worker.visit_started("A", True, "2026-03-11")
    master.merge(worker.drain())
    assert master.started["A"] == 3 and master.failed["A"] == 1
    assert master.days == {"A": {"2026-03-10": [1, 1], "2026-03-11": [2, 0]}}
    assert worker.days == {} and worker.started == {}


def test_summaries_show_cap_pace_and_state_per_target_and_day(config):
    from locust.stats import RequestStats

    broker = PermitBroker(
        restore_ledger(build_budgets(config, True), None, NOON), send=lambda t, d, c: None, clock=Clock(NOON)
    )
    tally = VisitTally()
    for _ in range(3):
        tally.visit_started("Zero", False, "2026-03-10")
    tally.visit_started("Paced", True, "2026-03-10")
    view = BudgetView(
        paces={name: broker.ledger.budget(name).pace for name in broker.ledger.targets},
        statuses={s.name: s for s in broker.status()},
        window=(NOON - 3600, NOON + 600),
    )
    rows = {row.target: row for row in summarize(config, RequestStats(), tally, view)}
    paced = rows["Paced"]
    assert paced.cap_today == 864000 and paced.expected_visits == pytest.approx(4200 * 10.0)
    assert [(d.day, d.visits_started, d.cap) for d in paced.days] == [("2026-03-10", 1, 864000)]
    assert rows["Zero"].state == "failing" and rows["Free"].state == "running" and rows["Free"].cap_today is None
    assert rows["Stress"].state == "running" and rows["Stress"].expected_visits == pytest.approx(
        4200 * 50 / 86400, abs=0.01
    )
    assert target_state(None, 10, 1) == "running"


# --- users ---------------------------------------------------------------------------------------


def test_users_without_permits_send_nothing_and_stop_at_once(config):
    import time

    from trafficinator_locust.runtime.users import build_user_classes, set_permits, set_timeouts

    tally = VisitTally()
    classes = build_user_classes(config, tally)
    zero = classes["Target_Zero"]  # cap 0: no permit ever
    environment = Environment(user_classes=[zero], stop_timeout=10)
    runner = environment.create_local_runner()
    broker = PermitBroker(
        restore_ledger(build_budgets(config, True), None, time.time()),
        send=lambda t, d, c: runner.send_message(t, d, client_id=c),
    )
    broker.attach(runner)
    client = PermitClient(limited(config), send=lambda t, d, c: runner.send_message(t, d))
    client.attach(runner)
    set_permits(classes, client)
    set_timeouts(classes, 2.5)
    assert zero.network_timeout == zero.connection_timeout == 2.5
    requests: list[str] = []
    environment.events.request.add_listener(lambda name, **_: requests.append(name))
    try:
        runner.start(5, 100)
        runner.spawning_greenlet.join(timeout=5)
        deadline = time.monotonic() + 5
        while client.snapshot()["Zero"]["waiting"] < 5:  # every user is waiting for a permit
            assert time.monotonic() < deadline
            gevent.sleep(0.01)
        began = time.monotonic()
        runner.stop()
        assert time.monotonic() - began < 1.0  # waiting users are stopped at once, not after stop_timeout
        assert runner.user_count == 0 and requests == [] and tally.started == {} and tally.failed == {}
    finally:
        runner.quit()


def test_write_atomic_replaces_whole_files_and_never_swallows_an_error(tmp_path):
    """The one atomic writer behind the state file, the backfill checkpoint and the ready file."""
    from trafficinator_locust.core.files import write_atomic

    target = tmp_path / "deep" / "state.json"
    write_atomic(target, "first")
    write_atomic(target, "second", durable=True)
    assert target.read_text() == "second" and [p.name for p in target.parent.iterdir()] == ["state.json"]
    blocked = tmp_path / "taken"
    blocked.mkdir()
    with pytest.raises(OSError):
        write_atomic(blocked, "text")  # the rename onto a folder fails: the error must surface
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [], "the temp file is removed"
