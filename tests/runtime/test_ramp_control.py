"""RampControl drives each target's ramp through the broker: warm-up, a measured step, a pause after
a failed step (the backlog must drain), the next rate; each target on its own; done when all knees are
known. A fake clock, a fake broker and Locust's own stats stand in for a run."""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.stats import RequestStats

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.ramp import parse_ramp
from trafficinator_locust.runtime import ramp_control
from trafficinator_locust.runtime.ramp_control import RampControl, settle_seconds, warm_up_seconds
from trafficinator_locust.runtime.step_window import WindowFigures

CONFIG = """
targets:
  - {name: Small, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1}
  - {name: Big, url: "http://127.0.0.1:9/b/matomo.php", site_id: 2}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Broker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None, bool | None]] = []

    def retarget(self, name, *, pace=None, paused=None):
        self.calls.append((name, None if pace is None else pace.visits_per_day, paused))


class Planner:
    def plan(self, number):
        return SimpleNamespace(hits=[1, 2, 3, 4])  # 4 hits a visit


class FakeWindow:
    """A Matomo of ``capacity`` hits/s: above it, it delivers the capacity and answers slowly."""

    capacity: dict[str, float] = {}
    offered: dict[str, float] = {}

    def __init__(self, stats, name, lag=0.0):
        self.name = name

    def mark(self) -> None:
        pass

    def measure(self) -> WindowFigures:
        rate, capacity = self.offered[self.name], self.capacity[self.name]
        delivered = min(rate, capacity)
        slow = rate > capacity
        return WindowFigures(10.0, int(delivered * 10), 0, 900 if slow else 20, 2000 if slow else 50)


def _control(tmp_path: Path, monkeypatch, capacity: dict[str, float]):
    path = tmp_path / "t.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path, env={})
    monkeypatch.setattr(ramp_control, "TargetWindow", FakeWindow)
    FakeWindow.capacity = capacity
    clock, broker = Clock(), Broker()
    environment = SimpleNamespace(stats=RequestStats(), runner=None)
    tally = SimpleNamespace(hits=Counter())
    spec = parse_ramp("start=10,factor=2,step=10s")
    control = RampControl(
        config, broker, environment, tally, {"Small": spec, "Big": spec}, {"Small": Planner(), "Big": Planner()}, clock
    )
    return control, clock, broker


def _run(control: RampControl, clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds)):
        for name, state in control.targets.items():
            FakeWindow.offered[name] = state.ramp.rate
        clock.now += 1
        control.tick()


def test_warm_up_and_settle_figures():
    assert warm_up_seconds(30) == 2.0 and warm_up_seconds(4) == 1.0
    assert warm_up_seconds(30, lag=4.0) == 6.0  # a master waits for its workers' reports too
    failed = ramp_control.StepResult(80, 60, 900, 2000, 0.0, 6)
    assert settle_seconds(failed, 6.0) == 4.0 and settle_seconds(failed, 3.0) == 3.0


def test_each_target_climbs_on_its_own_and_pauses_after_a_failed_step(tmp_path: Path, monkeypatch):
    control, clock, broker = _control(tmp_path, monkeypatch, {"Small": 30.0, "Big": 500.0})
    control.start()
    assert {name: state.ramp.rate for name, state in control.targets.items()} == {"Small": 10, "Big": 10}
    assert broker.calls[-1] == ("Big", 10 / 4 * 86400, False)  # hits/s -> visits a day at 4 hits a visit
    _run(control, clock, 2 + 10)  # warm-up, then one step: both passed
    assert {state.ramp.rate for state in control.targets.values()} == {20}
    _run(control, clock, 2 * 12)  # Small fails at 40 > 30: paused to settle; Big went on to 40 and 80
    small, big = control.targets["Small"], control.targets["Big"]
    assert small.settle_until is not None and ("Small", None, True) in broker.calls
    assert small.ramp.phase == "refining" and big.ramp.rate == 80
    _run(control, clock, 34)  # 70 s in all
    assert small.ramp.done and 27 <= small.ramp.knee_hits_per_second <= 30
    assert not big.ramp.done and big.ramp.rate > 4 * 30  # the big one is not held back: it climbs on
    _run(control, clock, 400)
    assert control.done and 450 <= big.ramp.knee_hits_per_second <= 500
    capacity = control.capacity("Big")
    assert (
        capacity["limited_by"] == "p95" and capacity["knee_visits_per_second"] == capacity["knee_hits_per_second"] / 4
    )


def test_the_capacity_table_gives_each_targets_knee_what_limited_it_and_the_p95_there():
    from trafficinator_locust.core.ramp import Ramp, StepResult
    from trafficinator_locust.runtime.summary import capacity_table

    ramp = Ramp(parse_ramp("start=40,factor=2"))
    ramp.record(StepResult(40, 40, 10, 120, 0.0, 30))
    ramp.record(StepResult(80, 60, 900, 2000, 0.0, 30))  # saturated: refine
    while not ramp.done:
        ramp.record(
            StepResult(ramp.rate, ramp.rate, 10, 300, 0.0, 15)
            if ramp.rate <= 60
            else StepResult(ramp.rate, 60, 900, 2000, 0.0, 15)
        )
    found = SimpleNamespace(target="Prod", capacity=ramp.as_dict(hits_per_visit=4.0))  # a summary row's fields
    unknown = SimpleNamespace(target="Other", capacity=None)
    header, _, prod, other = capacity_table([found, unknown]).splitlines()
    assert header.split()[:3] == ["target", "knee", "hits/s"]
    knee = ramp.knee_hits_per_second
    assert prod.split() == ["Prod", f"{knee:.1f}", f"{knee / 4:.2f}", "p95", "300", str(len(ramp.steps))]
    assert other.split() == ["Other", "-", "-", "-", "-", "0"]
