"""Live changes to a running budget (the web UI's control plane): retarget a pace, pause a target.

The ledger runs on a fake clock (plain unix seconds); the broker/client pair runs on a local runner,
whose messages loop back synchronously. Nothing sleeps.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)
from locust import User, constant, task
from locust.env import Environment

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from trafficinator_locust.core.budget import Ledger, Pace, TargetBudget
from trafficinator_locust.core.config import load_config
from trafficinator_locust.runtime.broker import (
    MSG_LIMITS,
    PermitBroker,
    PermitClient,
    StateFile,
    build_budgets,
    default_state_path,
    restore_ledger,
    state_folder,
)

NOON = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0


def drive(ledger: Ledger, target: str, t0: float, t1: float, step: float = 1.0) -> int:
    """Ask for many permits every ``step`` seconds in ``[t0, t1)``; the total granted."""
    granted, t = 0, t0
    while t < t1:
        granted += ledger.budget(target).grant(10**6, t)
        t += step
    return granted


# --- the ledger ---------------------------------------------------------------------------------


def test_a_cap_lowered_below_what_is_granted_today_means_capped_never_negative():
    ledger = Ledger([TargetBudget("t", Pace(1000, "UTC"), paced=False)])
    assert ledger.budget("t").grant(600, NOON) == 600
    status = ledger.retarget("t", NOON, pace=Pace(400, "UTC"))
    assert (status.state, status.granted_today, status.cap_today, status.remaining_today) == ("capped", 600, 400, 0)
    assert ledger.budget("t").grant(5, NOON + 1) == 0
    # permits given back later are credited, but the day never drops below 0 and stays capped
    assert ledger.budget("t").credit(status.day, 100, NOON + 2) == 100
    assert ledger.status(NOON + 3)[0].state == "capped" and ledger.budget("t").grant(5, NOON + 3) == 0
    # raising it again grants exactly up to the new cap
    ledger.retarget("t", NOON + 4, pace=Pace(700, "UTC"))
    assert ledger.budget("t").grant(10**6, NOON + 5) == 200
    assert ledger.status(NOON + 6)[0].remaining_today == 0


def test_a_new_rate_applies_from_the_change_on():
    ledger = Ledger([TargetBudget("t", Pace(86_400, "UTC"))])  # 1 visit/s
    before = drive(ledger, "t", NOON, NOON + 600)
    assert before == pytest.approx(600, abs=2)
    ledger.retarget("t", NOON + 600, pace=Pace(86_400 * 3, "UTC"))  # 3 visits/s
    after = drive(ledger, "t", NOON + 600, NOON + 1200)
    assert after == pytest.approx(1800, abs=3)
    assert ledger.status(NOON + 1200)[0].current_rate == pytest.approx(3.0)


def test_a_lowered_rate_does_not_keep_the_old_burst():
    budget = TargetBudget("t", Pace(86_400 * 100, "UTC"))  # 100/s, burst 5 s = 500 tokens
    budget.grant(0, NOON)
    budget.grant(0, NOON + 10)  # the bucket is full: 500 tokens
    budget.retarget(NOON + 10, pace=Pace(86_400, "UTC"))  # 1/s: burst 5 tokens
    assert budget.grant(10**6, NOON + 10) <= 6


def test_a_paused_target_gets_nothing_and_resumes_without_a_burst():
    ledger = Ledger([TargetBudget("t", Pace(86_400, "UTC"))])
    assert drive(ledger, "t", NOON, NOON + 100) == pytest.approx(100, abs=2)
    status = ledger.retarget("t", NOON + 100, paused=True)
    assert status.state == "paused"
    assert drive(ledger, "t", NOON + 100, NOON + 3 * HOUR) == 0
    ledger.retarget("t", NOON + 3 * HOUR, paused=False)
    first = ledger.budget("t").grant(10**6, NOON + 3 * HOUR)
    assert first <= 1  # not hours of accrued tokens at once
    assert drive(ledger, "t", NOON + 3 * HOUR, NOON + 3 * HOUR + 100) == pytest.approx(100, abs=2)
    assert ledger.status(NOON + 3 * HOUR + 100)[0].state == "running"


def test_pausing_keeps_the_cap_a_hard_limit_across_a_resume():
    ledger = Ledger([TargetBudget("t", Pace(50, "UTC"), paced=False)])
    assert ledger.budget("t").grant(40, NOON) == 40
    ledger.retarget("t", NOON, paused=True)
    assert ledger.budget("t").grant(40, NOON + 1) == 0
    ledger.retarget("t", NOON + 2, paused=False)
    assert ledger.budget("t").grant(40, NOON + 3) == 10
    assert ledger.status(NOON + 4)[0].state == "capped"


def test_an_unpaced_target_given_a_rate_starts_with_an_empty_bucket_and_keeps_its_count():
    ledger = Ledger([TargetBudget("t", Pace(None, "UTC"))])
    assert ledger.budget("t").grant(300, NOON) == 300  # unpaced: everything, still counted
    ledger.retarget("t", NOON + 3 * HOUR, pace=Pace(400, "UTC"))
    status = ledger.status(NOON + 3 * HOUR)[0]
    assert (status.granted_today, status.cap_today, status.state) == (300, 400, "running")
    assert ledger.budget("t").grant(10**6, NOON + 3 * HOUR) <= 1
    # 9 hours at 400/day would accrue 150; the day's cap leaves room for 100 only
    drive(ledger, "t", NOON + 3 * HOUR, NOON + 12 * HOUR - 1, step=10)
    assert ledger.budget("t").granted == 400


def test_a_time_zone_change_or_an_unknown_target_is_refused():
    ledger = Ledger([TargetBudget("t", Pace(100, "UTC"))])
    with pytest.raises(ValueError, match="time zone"):
        ledger.retarget("t", NOON, pace=Pace(100, "Europe/Stockholm"))
    with pytest.raises(KeyError, match="nope"):
        ledger.retarget("nope", NOON, paused=True)


# --- the broker and its clients -----------------------------------------------------------------

CONFIG = """
defaults:
  traffic:
    pageviews: {min: 2, max: 4}
targets:
  - {name: Capped, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1, visits_per_day: 5}
  - {name: Free, url: "http://127.0.0.1:9/b/matomo.php", site_id: 2}
"""


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self) -> None:
        pass


class Pair:
    """A broker and a client on one local runner (messages loop back), the broker on a fixed clock."""

    def __init__(self, config: Any, state: StateFile | None = None):
        self.environment = Environment(user_classes=[Idle])
        self.runner = self.environment.create_local_runner()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        ledger = restore_ledger(build_budgets(config, False), None, NOON)
        self.broker = PermitBroker(ledger, send=self._send, state_file=state, clock=lambda: NOON)
        self.broker.attach(self.runner)
        limited = [t.name for t in config.enabled_targets if t.visits_per_day is not None]
        self.client = PermitClient(limited, send=self._send)
        self.client.attach(self.runner)

    def _send(self, msg_type: str, data: dict[str, Any], client_id: str | None) -> None:
        self.sent.append((msg_type, data))
        self.runner.send_message(msg_type, data, client_id=client_id)


@pytest.fixture()
def pair(write_yaml):
    made = Pair(load_config(write_yaml(CONFIG)))
    yield made
    made.runner.quit()


def test_pausing_an_unlimited_target_live_stops_its_permits(pair: Pair):
    assert all(pair.client.try_acquire("Free") for _ in range(20))
    assert pair.sent == []  # no rate, no cap: no message at all
    pair.broker.retarget("Free", paused=True)
    assert (MSG_LIMITS, {"targets": ["Capped", "Free"]}) in pair.sent
    assert not pair.client.try_acquire("Free")
    assert {s.name: s.state for s in pair.broker.status()}["Free"] == "paused"
    pair.broker.retarget("Free", paused=False)
    assert pair.client.try_acquire("Free")  # unpaced again: granted at once


def test_a_lowered_cap_reaches_the_clients_through_their_next_lease(pair: Pair):
    assert pair.client.try_acquire("Capped")
    pair.broker.retarget("Capped", pace=Pace(1, "UTC"))
    granted = pair.broker.status()[0].granted_today
    taken = 1 + sum(pair.client.try_acquire("Capped") for _ in range(10))
    # the permits of the batch already leased can still be used; nothing is granted past the cap
    assert taken == granted and pair.broker.status()[0].state == "capped"


def test_the_paused_target_does_not_keep_a_run_from_ending(pair: Pair):
    pair.broker.retarget("Free", pace=Pace(0, "UTC"))  # cap 0: spent at once
    pair.broker.retarget("Capped", paused=True)
    assert pair.broker.all_spent()  # only the paused one is left, and it may never resume
    pair.broker.retarget("Capped", paused=False)
    assert not pair.broker.all_spent()


def test_a_live_change_is_persisted_before_it_is_announced(write_yaml, tmp_path: Path):
    state = StateFile(tmp_path / "state.json")
    made = Pair(load_config(write_yaml(CONFIG)), state)
    try:
        assert made.client.try_acquire("Capped")
        made.broker.retarget("Capped", pace=Pace(2, "UTC"))
        saved = json.loads(state.path.read_text())
        assert saved["targets"]["Capped"]["granted"] >= 1
    finally:
        made.runner.quit()


def test_the_state_folder_is_shared_by_budget_state_and_presets():
    env = {"XDG_STATE_HOME": "/x/state"}
    assert state_folder(env) == Path("/x/state/trafficinator")
    assert default_state_path("no-such-file.yaml", env).parent == state_folder(env)
