"""The capacity ramp of ``trafficinator_locust.core.ramp``: parsing, verdicts, and the search driven by
a simulated Matomo of known capacity. Pure and fast: no clock, no network."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from trafficinator_locust.core.errors import UsageError
from trafficinator_locust.core.ramp import (
    KNEE_PRECISION,
    Ramp,
    RampSpec,
    StepResult,
    judge,
    parse_ramp,
)

# ---------------------------------------------------------------------------------------------
# Parsing


def test_defaults():
    spec = RampSpec()
    assert (spec.start, spec.factor, spec.step, spec.p95, spec.fail, spec.after) == (
        10.0,
        1.5,
        30.0,
        800.0,
        0.01,
        "hold",
    )
    assert parse_ramp("") == spec
    assert parse_ramp(" , ") == spec
    assert RampSpec.from_mapping({}, "targets[0].ramp") == spec


def test_every_key():
    spec = parse_ramp("start=20, factor=2 ,step=45s,p95=1200,fail=0.05,after=stop")
    assert spec == RampSpec(start=20, factor=2, step=45, p95=1200, fail=0.05, after="stop")
    assert isinstance(spec.start, float) and isinstance(spec.step, float)


def test_only_some_keys_keep_the_other_defaults():
    assert parse_ramp("factor=1.2") == RampSpec(factor=1.2)
    assert parse_ramp("after=STOP").after == "stop"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("1.5m", 90.0), ("1h", 3600.0), ("45 s", 45.0), ("1", 1.0)],
)
def test_step_units(text: str, seconds: float):
    assert parse_ramp(f"step={text}").step == seconds


def test_to_text_reads_back():
    for spec in (RampSpec(), RampSpec(start=0.25, factor=1.05, step=90, p95=250.5, fail=0, after="stop")):
        assert parse_ramp(spec.to_text()) == spec
    assert RampSpec().to_text() == "start=10,factor=1.5,step=30s,p95=800,fail=0.01,after=hold"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("start=0", ["start", "'0'", "> 0 and <= 1000000"]),
        ("start=-5", ["start", "'-5'", "> 0"]),
        ("start=2000000", ["start", "'2000000'", "<= 1000000"]),
        ("start=ten", ["start", "'ten'", "a number"]),
        ("start=nan", ["start", "'nan'"]),
        ("start=inf", ["start", "'inf'"]),
        ("factor=1", ["factor", "'1'", "> 1 and <= 10"]),
        ("factor=11", ["factor", "'11'", "<= 10"]),
        ("step=0.5", ["step", "'0.5'", "from 1 s to 1 h"]),
        ("step=2h", ["step", "'2h'", "1 h"]),
        ("step=30ms", ["step", "'30ms'", "30s, 2m"]),
        ("step=", ["step", "''"]),
        ("p95=0", ["p95", "'0'", "milliseconds > 0"]),
        ("p95=1e9", ["p95", "'1e9'", "<= 600000"]),
        ("fail=1", ["fail", "'1'", ">= 0 and < 1"]),
        ("fail=-0.1", ["fail", "'-0.1'", ">= 0"]),
        ("after=pause", ["after", "'pause'", "hold or stop"]),
    ],
)
def test_each_bad_value_names_the_key_the_value_and_what_is_allowed(text: str, fragments: list[str]):
    with pytest.raises(UsageError) as caught:
        parse_ramp(text)
    message = str(caught.value)
    assert message.startswith("--traffic-ramp ")
    for fragment in fragments:
        assert fragment in message


def test_unknown_key_duplicate_and_missing_equals():
    with pytest.raises(UsageError, match=r"unknown key 'facter' \(with value '2'\).*start, factor, step"):
        parse_ramp("facter=2")
    with pytest.raises(UsageError, match=r"factor is given twice \('factor=1.5' and 'factor=2'\)"):
        parse_ramp("factor=1.5,factor=2")
    with pytest.raises(UsageError, match=r"'fast' is not key=value"):
        parse_ramp("fast")
    with pytest.raises(UsageError, match=r"^--ramp-x factor: "):
        parse_ramp("factor=0", where="--ramp-x")


def test_mapping_form():
    spec = RampSpec.from_mapping({"start": 5, "factor": 2, "step": "1m", "p95": 500, "fail": 0.02, "after": "stop"})
    assert spec == RampSpec(start=5, factor=2, step=60, p95=500, fail=0.02, after="stop")
    assert RampSpec.from_mapping({"step": 20, "start": "7.5"}).step == 20.0


@pytest.mark.parametrize(
    ("mapping", "fragments"),
    [
        ({"factor": 0.5}, ["targets[2].ramp.factor: ", "> 1 and <= 10", "got 0.5", "factor: 1.5"]),
        ({"factor": True}, ["targets[2].ramp.factor: ", "got True"]),
        ({"step": "soon"}, ["targets[2].ramp.step: ", "got 'soon'"]),
        ({"step": [30]}, ["targets[2].ramp.step: ", "got [30]"]),
        ({"fail": 1.0}, ["targets[2].ramp.fail: ", "< 1"]),
        ({"after": 1}, ["targets[2].ramp.after: ", "hold or stop", "got 1"]),
        ({"speed": 3}, ["targets[2].ramp: unknown key 'speed'", "with value 3", "start, factor"]),
    ],
)
def test_mapping_messages_name_where(mapping: dict, fragments: list[str]):
    with pytest.raises(UsageError) as caught:
        RampSpec.from_mapping(mapping, "targets[2].ramp")
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_mapping_must_be_a_mapping_and_direct_construction_is_checked():
    with pytest.raises(UsageError, match=r"targets\[1\].ramp: must be a mapping like \{start: 10"):
        RampSpec.from_mapping("start=10", "targets[1].ramp")
    with pytest.raises(UsageError, match=r"RampSpec.factor: .*got 1"):
        RampSpec(factor=1)


# ---------------------------------------------------------------------------------------------
# Verdicts


def result(offered=40.0, delivered=40.0, p95=300.0, fail=0.0, seconds=30.0, **counts) -> StepResult:
    return StepResult(offered, delivered, p95 / 3, p95, fail, seconds, **counts)


def test_judge_passes_within_every_limit_inclusive():
    spec = RampSpec()
    assert judge(spec, result()) is None
    assert judge(spec, result(delivered=36.0, p95=800.0, fail=0.01)) is None  # exactly on each limit


def test_judge_each_criterion():
    spec = RampSpec()
    assert judge(spec, result(p95=801)) == "p95"
    assert judge(spec, result(fail=0.011)) == "failures"
    assert judge(spec, result(delivered=35.9)) == "saturation"


def test_judge_order_when_several_fail():
    spec = RampSpec()
    assert judge(spec, result(delivered=10, p95=5000, fail=0.5)) == "saturation"
    assert judge(spec, result(p95=5000, fail=0.5)) == "failures"


def test_judge_counts_win_over_rates_and_nothing_offered_is_saturation():
    spec = RampSpec()
    assert judge(spec, result(delivered=30.0, offered_hits=1000, delivered_hits=950)) is None
    assert judge(spec, result(delivered=40.0, offered_hits=1000, delivered_hits=850)) == "saturation"
    assert judge(spec, result(offered=0, delivered=0)) == "saturation"
    assert judge(spec, result(offered_hits=0, delivered_hits=0)) == "saturation"


def test_judge_with_the_asked_rate_catches_a_generator_that_fell_short():
    # Matomo delivered all 40 hits/s offered, but the ramp asked for 100: that proves nothing about 100.
    assert judge(RampSpec(), result(), rate=40.0) is None
    assert judge(RampSpec(), result(), rate=100.0) == "saturation"


def test_step_result_refuses_nonsense():
    with pytest.raises(ValueError, match="fail_ratio"):
        result(fail=1.5)
    with pytest.raises(ValueError, match="p95_ms"):
        StepResult(40, 40, 100, math.nan, 0, 30)
    with pytest.raises(ValueError, match="offered_hits"):
        result(offered_hits=-1, delivered_hits=0)


# ---------------------------------------------------------------------------------------------
# A simulated Matomo


def matomo(capacity: float) -> Callable[[float, float], StepResult]:
    """A Matomo that keeps up with ``capacity`` hits/s: above it, hits queue and p95 jumps steeply."""

    def measure(rate: float, seconds: float) -> StepResult:
        delivered = min(rate, capacity)
        load = rate / capacity
        p95 = 100 + 100 * load if load <= 1 else 2000 + 10_000 * (load - 1)
        fail = 0.0 if load <= 1.25 else min(0.9, load - 1.25)  # refusals only well past the knee
        return StepResult(rate, delivered, p95 / 2, p95, fail, seconds)

    return measure


def drive(ramp: Ramp, measure: Callable[[float, float], StepResult], limit: int = 60) -> int:
    """Run steps until the search is over; the number of steps taken."""
    taken = 0
    while not ramp.done:
        assert taken < limit, "the ramp never settled"
        ramp.record(measure(ramp.rate, ramp.step_seconds))
        taken += 1
    return taken


def passed_rates(ramp: Ramp) -> list[float]:
    return [step.rate for step in ramp.steps if step.verdict is None]


@pytest.mark.parametrize("capacity", [60.0, 150.0, 400.0])
def test_the_ramp_finds_the_knee_within_10_percent_below_capacity(capacity: float):
    ramp = Ramp(parse_ramp("start=10,factor=1.5"))
    taken = drive(ramp, matomo(capacity))
    knee = ramp.knee_hits_per_second
    assert knee is not None and knee <= capacity and capacity / knee <= KNEE_PRECISION
    assert knee == max(passed_rates(ramp))
    assert taken <= 20
    assert ramp.limited_by == "p95"  # 10 % over: fewer than 10 % queue (delivered >= 90 %), no 1 % failures yet
    assert ramp.lowest_failing_hits_per_second / knee <= KNEE_PRECISION
    assert ramp.phase == "holding" and ramp.rate == knee
    assert not ramp.knee_is_lower_bound


def test_the_ramp_climbs_by_factor_then_refines_with_shorter_steps():
    ramp = Ramp(RampSpec(start=10, factor=2, step=30))
    measure = matomo(50.0)
    seen = []
    while not ramp.done:
        seen.append((ramp.phase, ramp.rate, ramp.step_seconds))
        ramp.record(measure(ramp.rate, ramp.step_seconds))
    assert seen[:4] == [("ramping", 10, 30), ("ramping", 20, 30), ("ramping", 40, 30), ("ramping", 80, 30)]
    assert seen[4] == ("refining", pytest.approx(math.sqrt(40 * 80)), 15)
    assert all(phase == "refining" and seconds == 15 for phase, _, seconds in seen[4:])


@pytest.mark.parametrize(("step", "refining"), [(30.0, 15.0), (8.0, 5.0), (4.0, 4.0), (3600.0, 1800.0)])
def test_refining_steps_are_half_as_long_but_at_least_5s_and_at_most_the_step(step: float, refining: float):
    ramp = Ramp(RampSpec(step=step))
    ramp.record(matomo(1.0)(ramp.rate, ramp.step_seconds))
    assert ramp.phase == "refining" and ramp.step_seconds == refining


def test_after_hold_keeps_the_knee_and_only_counts_later_steps():
    ramp = Ramp(RampSpec())
    measure = matomo(150.0)
    drive(ramp, measure)
    knee, searched = ramp.knee_hits_per_second, len(ramp.steps)
    for _ in range(5):
        ramp.record(measure(ramp.rate, ramp.step_seconds))
    ramp.record(matomo(50.0)(ramp.rate, ramp.step_seconds))  # Matomo got slower while held
    assert (ramp.phase, ramp.rate, ramp.knee_hits_per_second, len(ramp.steps)) == ("holding", knee, knee, searched)
    assert (ramp.held_steps, ramp.held_failures) == (6, 1)
    ramp.finish()
    assert ramp.phase == "stopped" and ramp.rate == 0 and ramp.knee_hits_per_second == knee
    assert not ramp.knee_is_lower_bound


def test_after_stop_stops_at_the_knee():
    ramp = Ramp(RampSpec(after="stop"))
    drive(ramp, matomo(150.0))
    assert ramp.phase == "stopped" and ramp.rate == 0.0
    assert 150 / KNEE_PRECISION <= ramp.knee_hits_per_second <= 150
    ramp.record(matomo(150.0)(10, 5))  # a late step, cut short by the stop: ignored
    assert ramp.held_steps == 0


@pytest.mark.parametrize("capacity", [7.0, 3.0, 0.5])
def test_a_first_step_that_fails_searches_below_start(capacity: float):
    ramp = Ramp(RampSpec(start=10, factor=1.5))
    taken = drive(ramp, matomo(capacity))
    knee = ramp.knee_hits_per_second
    assert knee is not None and knee <= capacity and capacity / knee <= KNEE_PRECISION
    assert ramp.steps[0].rate == 10 and ramp.steps[0].verdict is not None
    assert ramp.steps[1].rate == pytest.approx(10 / 1.5) and ramp.steps[1].result.seconds == 15
    assert taken <= 20
    assert ramp.phase == "holding"


def test_nothing_passing_down_to_start_over_100_stops_without_a_knee():
    ramp = Ramp(RampSpec(start=10, factor=10))
    drive(ramp, matomo(0.01))
    assert [step.rate for step in ramp.steps] == pytest.approx([10, 1, 0.1])
    assert ramp.done and ramp.phase == "stopped" and ramp.knee_hits_per_second is None
    assert ramp.limited_by == "saturation" and ramp.lowest_failing_hits_per_second == pytest.approx(0.1)
    assert ramp.as_dict()["knee_hits_per_second"] is None


def test_a_run_that_ends_before_any_failure_gives_a_lower_bound_limited_by_none():
    ramp = Ramp(RampSpec())
    measure = matomo(10_000.0)
    for _ in range(4):
        ramp.record(measure(ramp.rate, ramp.step_seconds))
    assert not ramp.done and ramp.knee_hits_per_second is None and ramp.limited_by is None
    ramp.finish()
    assert ramp.done and ramp.phase == "stopped" and ramp.rate == 0
    assert ramp.knee_hits_per_second == pytest.approx(10 * 1.5**3)
    assert ramp.limited_by == "none" and ramp.knee_is_lower_bound
    capacity = ramp.as_dict(hits_per_visit=5)
    assert capacity["knee_is_lower_bound"] is True and capacity["limited_by"] == "none"
    assert capacity["knee_visits_per_second"] == pytest.approx(10 * 1.5**3 / 5)
    ramp.finish()
    assert ramp.knee_hits_per_second == pytest.approx(10 * 1.5**3)


def test_a_run_that_ends_mid_refinement_keeps_the_bracket():
    ramp = Ramp(RampSpec())
    measure = matomo(60.0)
    while ramp.phase != "refining":
        ramp.record(measure(ramp.rate, ramp.step_seconds))
    ramp.finish()
    assert ramp.knee_is_lower_bound and ramp.limited_by == "saturation"  # 75.9 hits/s offered, 60 delivered
    assert ramp.lowest_failing_hits_per_second / ramp.knee_hits_per_second > KNEE_PRECISION


def test_a_run_that_ends_before_the_first_step_has_no_knee():
    ramp = Ramp()
    ramp.finish()
    assert ramp.knee_hits_per_second is None and ramp.limited_by == "none" and ramp.as_dict()["steps"] == []


def test_as_dict_is_the_reports_capacity_object():
    ramp = Ramp(RampSpec(start=10, factor=2))
    drive(ramp, matomo(50.0))
    capacity = ramp.as_dict(hits_per_visit=4)
    assert capacity["knee_hits_per_second"] == ramp.knee_hits_per_second
    assert capacity["knee_visits_per_second"] == pytest.approx(ramp.knee_hits_per_second / 4)
    assert capacity["limited_by"] == ramp.limited_by and capacity["knee_is_lower_bound"] is False
    assert capacity["spec"] == "start=10,factor=2,step=30s,p95=800,fail=0.01,after=hold"
    steps = capacity["steps"]
    assert len(steps) == len(ramp.steps)
    first = steps[0]
    assert {
        "offered_hits_per_second",
        "delivered_hits_per_second",
        "p50_ms",
        "p95_ms",
        "fail_ratio",
        "passed",
        "limited_by",
    } <= set(first)
    assert first["passed"] is True and first["limited_by"] is None and first["phase"] == "ramping"
    assert steps[3]["passed"] is False and steps[3]["limited_by"] == "saturation" and steps[3]["phase"] == "ramping"
    assert all(step["phase"] == "refining" for step in steps[4:])
    assert Ramp().as_dict()["knee_visits_per_second"] is None
    with pytest.raises(ValueError, match="hits_per_visit"):
        ramp.as_dict(hits_per_visit=0)


# ---------------------------------------------------------------------------------------------
# The invariant, for any Matomo


def check_invariant(ramp: Ramp) -> None:
    """The knee passed; after the first failure every rate lies strictly inside the bracket so far."""
    passing, failing = 0.0, math.inf
    for step in ramp.steps:
        if failing < math.inf:
            assert passing < step.rate < failing
        if step.verdict is None:
            assert step.rate > passing
            passing = step.rate
        else:
            failing = min(failing, step.rate)
    knee = ramp.knee_hits_per_second
    if knee is not None:
        assert any(step.rate == knee and step.verdict is None for step in ramp.steps)
        assert knee == max(passed_rates(ramp))
    if ramp.done and not ramp.knee_is_lower_bound and knee is not None and failing < math.inf:
        assert failing / knee <= KNEE_PRECISION * (1 + 1e-9)


def test_the_invariant_holds_for_any_sequence_of_verdicts_property():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        start=st.floats(0.1, 1000),
        factor=st.floats(1.01, 10),
        passes=st.lists(st.booleans(), max_size=80),
    )
    def run(start: float, factor: float, passes: list[bool]) -> None:
        ramp = Ramp(RampSpec(start=start, factor=factor))
        for ok in passes:
            if ramp.done:
                break
            rate = ramp.rate
            ramp.record(StepResult(rate, rate if ok else 0.0, 50, 100, 0.0, ramp.step_seconds))
            check_invariant(ramp)
        ramp.finish()
        check_invariant(ramp)

    run()


def test_the_knee_is_found_for_any_capacity_and_spec_property():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        capacity=st.floats(0.5, 50_000),
        start=st.floats(1, 1000),
        factor=st.floats(1.01, 10),
        step=st.floats(1, 3600),
    )
    def run(capacity: float, start: float, factor: float, step: float) -> None:
        ramp = Ramp(RampSpec(start=start, factor=factor, step=step))
        drive(ramp, matomo(capacity), limit=3000)
        check_invariant(ramp)
        knee = ramp.knee_hits_per_second
        if knee is None:  # even the lowest rate tried, within a factor above start / 100, was too much
            assert capacity < start / 100 * factor and ramp.phase == "stopped"
        else:
            assert knee <= capacity and capacity / knee <= KNEE_PRECISION * (1 + 1e-9)

    run()


# --- the YAML's ``ramp:`` key ---------------------------------------------------------------------

RAMP_YAML = """
defaults: {ramp: {p95: 500}}
targets:
  - {name: A, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1, ramp: {start: 50, step: 1m, after: stop}}
  - {name: B, url: "http://127.0.0.1:9/b/matomo.php", site_id: 2}
"""


def test_a_targets_ramp_keys_win_over_defaults_and_the_command_line(tmp_path):
    from trafficinator_locust.core.config import load_config

    path = tmp_path / "ramp.yaml"
    path.write_text(RAMP_YAML, encoding="utf-8")
    a, b = load_config(path, env={}).targets
    base = parse_ramp("start=20,factor=2")
    assert a.ramp_spec(base) == RampSpec(start=50, factor=2, step=60, p95=500, after="stop")
    assert b.ramp_spec(base) == RampSpec(start=20, factor=2, p95=500)


def test_a_bad_ramp_key_in_the_yaml_names_its_path_and_what_is_allowed(tmp_path):
    from trafficinator_locust.core.config import load_config
    from trafficinator_locust.core.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(
        'targets:\n  - {name: A, url: "http://127.0.0.1:9/a/matomo.php", site_id: 1,\n'
        "     ramp: {start: 0, factor: .inf, after: later, stepp: 3}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = "\n".join(str(problem) for problem in caught.value.problems)
    assert "targets[0].ramp.start:" in text and "> 0 and <= 1000000 (e.g. start: 10)" in text
    assert "targets[0].ramp.factor:" in text and "targets[0].ramp.after:" in text and "hold or stop" in text
    assert "unknown key 'stepp'. Did you mean 'step'?" in text
