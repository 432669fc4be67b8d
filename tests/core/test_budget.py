"""Rates, daily caps, leases and persistence of ``trafficinator_locust.core.budget``, on a fake clock.

Instants are plain unix seconds built from zone-aware datetimes; nothing sleeps.
"""

import json
import random
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from trafficinator_locust.core.budget import (
    DayProfile,
    Ledger,
    Pace,
    TargetBudget,
    WeekProfile,
    parse_state,
    state_json,
    weight_shares,
)

GENEROUS = 10**9


def at(zone: str, *parts: int) -> float:
    """Unix seconds of a local wall-clock time in ``zone``."""
    return datetime(*parts, tzinfo=ZoneInfo(zone)).timestamp()


def drive(budget: TargetBudget, t0: float, t1: float, step: float, want: int = GENEROUS) -> list[tuple[float, int]]:
    """Ask ``budget`` for ``want`` permits every ``step`` seconds in ``[t0, t1)``; the non-zero grants."""
    grants = []
    i = 0
    while (t := t0 + i * step) < t1:
        granted = budget.grant(want, t)
        if granted:
            grants.append((t, granted))
        i += 1
    return grants


def total(grants: list[tuple[float, int]]) -> int:
    return sum(n for _, n in grants)


def day_bounds(pace: Pace, day: date) -> tuple[int, int]:
    plan = pace.plan(day)
    return plan.start, plan.end


# ---------------------------------------------------------------------------------------------
# A full day, caps, modes


def test_paced_full_day_delivers_exactly_the_cap_and_not_one_more():
    pace = Pace(1000, "UTC")
    budget = TargetBudget("t", pace)
    start, end = day_bounds(pace, date(2026, 3, 10))
    grants = drive(budget, start, end, step=30)
    assert total(grants) == 1000
    assert budget.grant(GENEROUS, end - 0.001) == 0
    assert budget.status(end - 1).state == "capped"
    assert budget.status(end - 1).remaining_today == 0
    # the next local day is a fresh day, and its first permit is not a leftover burst
    assert budget.grant(GENEROUS, end) == 0
    assert budget.grant(GENEROUS, end + 90) == 1
    assert budget.granted_today(end + 90) == 1


def test_paced_permits_are_spread_evenly_over_the_day():
    pace = Pace(240, "UTC")  # one permit every 6 minutes
    budget = TargetBudget("t", pace)
    start, end = day_bounds(pace, date(2026, 3, 10))
    grants = drive(budget, start, end, step=10)
    per_hour = [sum(n for t, n in grants if start + h * 3600 <= t < start + (h + 1) * 3600) for h in range(24)]
    assert per_hour == [10] * 24


def test_several_permits_per_call_at_a_high_rate_still_total_the_cap():
    hours = [0.0] * 24
    hours[12] = 1.0  # 20,000 visits in one hour: ~5.6 per second
    pace = Pace(20000, "Europe/Stockholm", hours=DayProfile(tuple(hours)))
    budget = TargetBudget("t", pace, burst_seconds=2)
    noon = at("Europe/Stockholm", 2026, 6, 2, 12)
    grants = drive(budget, noon - 3600, noon + 7200, step=1)
    assert total(grants) == 20000
    assert max(n for _, n in grants) <= 7
    assert all(noon <= t <= noon + 3600 for t, _ in grants)


def test_stress_mode_applies_only_the_daily_cap():
    pace = Pace(1000, "UTC")
    budget = TargetBudget("t", pace, paced=False)
    t = at("UTC", 2026, 3, 10, 0, 0, 1)
    assert budget.grant(600, t) == 600
    assert budget.grant(600, t) == 400
    assert budget.grant(1, t + 3600) == 0
    status = budget.status(t)
    assert (status.state, status.granted_today, status.cap_today, status.current_rate) == ("capped", 1000, 1000, None)


def test_unpaced_target_without_rate_grants_everything_and_has_no_cap():
    budget = TargetBudget("t", Pace(None, "UTC"))
    t = at("UTC", 2026, 3, 10, 12)
    assert budget.grant(10**6, t) == 10**6
    assert budget.grant(5, t) == 5
    status = budget.status(t)
    assert (status.state, status.granted_today, status.cap_today, status.remaining_today, status.current_rate) == (
        "unpaced",
        10**6 + 5,
        None,
        None,
        None,
    )
    assert Pace(None).expected_visits(t, t + 3600) == 0.0


def test_stress_mode_grants_everything_up_to_the_cap_at_once():
    budget = TargetBudget("t", Pace(500, "UTC"), paced=False)
    t = at("UTC", 2026, 3, 10, 23, 59)
    assert budget.status(t).state == "unpaced"
    assert budget.grant(GENEROUS, t) == 500


@pytest.mark.parametrize("paced", [True, False])
def test_cap_zero_never_grants(paced):
    pace = Pace(0, "Asia/Tokyo")
    budget = TargetBudget("t", pace, paced=paced)
    start, _ = day_bounds(pace, date(2026, 3, 10))
    assert drive(budget, start, start + 3 * 86400, step=600) == []
    status = budget.status(start)
    assert (status.state, status.cap_today, status.remaining_today) == ("capped", 0, 0)
    assert pace.expected_visits(start, start + 86400) == 0.0


def test_negative_want_and_bad_settings_are_refused():
    with pytest.raises(ValueError):
        TargetBudget("t", Pace(10)).grant(-1, 0.0)
    with pytest.raises(ValueError):
        Pace(-1)
    with pytest.raises(ValueError):
        TargetBudget("t", Pace(10), burst_seconds=0)
    with pytest.raises(ValueError):
        DayProfile((1.0,) * 23)
    with pytest.raises(ValueError):
        DayProfile((0.0,) * 24)
    with pytest.raises(ValueError):
        WeekProfile((1, 1, 1, 1, 1, 1, -1))
    from zoneinfo import ZoneInfoNotFoundError

    with pytest.raises(ZoneInfoNotFoundError):
        Pace(10, "Mars/Olympus_Mons")


# ---------------------------------------------------------------------------------------------
# Local days


@pytest.mark.parametrize(
    ("zone", "local_day", "next_midnight"),
    [
        ("UTC", date(2026, 3, 10), datetime(2026, 3, 11, 0, 0)),
        ("America/New_York", date(2026, 3, 10), datetime(2026, 3, 11, 4, 0)),  # EDT since 03-08: UTC-4
        ("Asia/Tokyo", date(2026, 3, 11), datetime(2026, 3, 11, 15, 0)),  # already 00:30 on 03-11
    ],
)
def test_day_rolls_over_at_local_midnight(zone, local_day, next_midnight):
    instant = at("UTC", 2026, 3, 10, 15, 30)
    midnight = next_midnight.replace(tzinfo=ZoneInfo("UTC")).timestamp()
    budget = TargetBudget(zone, Pace(100, zone), paced=False)
    assert budget.grant(GENEROUS, instant) == 100
    assert budget.status(instant).day == local_day
    assert budget.grant(GENEROUS, midnight - 1) == 0
    assert budget.grant(GENEROUS, midnight) == 100
    assert budget.status(midnight).day == local_day + timedelta(days=1)


def test_one_instant_is_a_different_local_day_per_target():
    instant = at("UTC", 2026, 3, 10, 15, 30)
    zones = {"utc": "UTC", "ny": "America/New_York", "tokyo": "Asia/Tokyo"}
    ledger = Ledger(TargetBudget(name, Pace(10, zone)) for name, zone in zones.items())
    days = {status.name: status.day for status in ledger.status(instant)}
    assert days == {"utc": date(2026, 3, 10), "ny": date(2026, 3, 10), "tokyo": date(2026, 3, 11)}


def test_clock_stepping_back_across_midnight_keeps_counting_the_later_day():
    budget = TargetBudget("t", Pace(100, "UTC"), paced=False)
    after = at("UTC", 2026, 3, 11, 0, 0, 10)
    assert budget.grant(60, after) == 60
    assert budget.grant(GENEROUS, after - 20) == 40  # 23:59:50 of 03-10: still counted on 03-11
    assert budget.status(after - 20).day == date(2026, 3, 11)


# ---------------------------------------------------------------------------------------------
# Rate, profiles, expected visits


def test_greedy_paced_granting_for_two_hours_matches_expected_visits():
    hours = tuple(float(h % 7 + 1) for h in range(24))
    pace = Pace(50000, "America/New_York", hours=DayProfile(hours))
    budget = TargetBudget("t", pace)
    t0 = at("America/New_York", 2026, 5, 20, 10, 17, 3)
    t1 = t0 + 7200
    got = total(drive(budget, t0, t1 + 1, step=1))
    expected = pace.expected_visits(t0, t1)
    assert expected > 1000
    assert abs(got - expected) <= 1


def test_rate_follows_the_hourly_profile():
    hours = [1.0] * 24
    hours[9] = 3.0
    pace = Pace(2600, "Europe/Stockholm", hours=DayProfile(tuple(hours)))  # total weight 26
    nine = at("Europe/Stockholm", 2026, 6, 2, 9, 30)
    ten = at("Europe/Stockholm", 2026, 6, 2, 10, 30)
    assert pace.rate(nine) == pytest.approx(300 / 3600)
    assert pace.rate(ten) == pytest.approx(100 / 3600)
    assert pace.expected_visits(nine - 1800, nine + 1800) == pytest.approx(300)
    # across midnight: last half hour of one day + first half hour of the next
    midnight = at("Europe/Stockholm", 2026, 6, 3)
    assert pace.expected_visits(midnight - 1800, midnight + 1800) == pytest.approx(100)


def test_expected_visits_over_many_days_sums_the_caps():
    week = WeekProfile((3, 3, 3, 3, 3, 1, 1))
    pace = Pace(1000, "America/New_York", week=week)
    start = pace.plan(date(2026, 3, 2)).start
    end = pace.plan(date(2026, 3, 16)).start
    caps = sum(pace.cap(date(2026, 3, 2) + timedelta(days=i)) for i in range(14))
    assert pace.expected_visits(start, end) == pytest.approx(caps)
    assert pace.expected_visits(end, start) == 0.0


def test_zero_weight_hours_are_paused_and_the_day_still_totals_the_cap():
    hours = [1.0] * 24
    for h in (0, 1, 2, 3, 4, 5, 22, 23):
        hours[h] = 0.0
    pace = Pace(2400, "America/New_York", hours=DayProfile(tuple(hours)))
    budget = TargetBudget("t", pace)
    start, end = day_bounds(pace, date(2026, 5, 20))
    grants = drive(budget, start, end, step=10)
    assert total(grants) == 2400
    for paused_hour in (0, 3, 5, 22, 23):
        hour_start = start + paused_hour * 3600
        assert [n for t, n in grants if hour_start < t < hour_start + 3600] == []
    # at most the permit already accrued at the very end of hour 21 is granted at 22:00 sharp
    assert sum(n for t, n in grants if t == start + 22 * 3600) <= 1
    budget2 = TargetBudget("t", pace)
    assert budget2.status(start + 3 * 3600).state == "paused"
    assert budget2.status(start + 3 * 3600).current_rate == 0.0
    assert budget2.grant(GENEROUS, start + 4 * 3600) == 0
    assert budget2.status(start + 12 * 3600).state == "running"
    assert budget2.status(start + 12 * 3600).current_rate == pytest.approx(2400 / 16 / 3600)


def test_weekday_factors_have_mean_one_and_set_each_days_cap():
    week = WeekProfile((2, 2, 2, 2, 2, 1, 1))  # sum 12: factors 7/6 on weekdays, 7/12 on weekends
    assert [week.factor(d) for d in range(7)] == [Fraction(7, 6)] * 5 + [Fraction(7, 12)] * 2
    assert sum(week.factor(d) for d in range(7)) == 7
    pace = Pace(1000, "UTC", week=week)
    monday, saturday = date(2026, 3, 9), date(2026, 3, 14)
    assert pace.cap(monday) == 1167  # round(1166.67)
    assert pace.cap(saturday) == 583  # round(583.33)
    assert sum(pace.cap(monday + timedelta(days=i)) for i in range(7)) == 7001  # per-day rounding
    for day in (monday, saturday):
        start, end = day_bounds(pace, day)
        assert pace.expected_visits(start, end) == pytest.approx(pace.cap(day))
        stress = TargetBudget("s", pace, paced=False)
        assert stress.grant(GENEROUS, start + 5) == pace.cap(day)
    paced = TargetBudget("p", pace)
    start, end = day_bounds(pace, saturday)
    assert total(drive(paced, start, end, step=60)) == 583


def test_weekday_caps_round_half_up():
    pace = Pace(1, "UTC", week=WeekProfile((1.5, 1, 1, 1, 1, 1, 0.5)))
    assert pace.cap(date(2026, 3, 9)) == 2  # Monday: 1.5
    assert pace.cap(date(2026, 3, 15)) == 1  # Sunday: 0.5 rounds up, not to even
    assert Pace(1000, "UTC", week=WeekProfile((1, 1, 1, 1, 1, 1, 0.01))).cap(date(2026, 3, 15)) == 12  # 11.65


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Stockholm", date(2026, 3, 29), 23),
        ("Europe/Stockholm", date(2026, 10, 25), 25),
        ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),  # a 30-minute shift
    ],
)
def test_dst_days_still_deliver_the_cap(zone, day, hours):
    profile = DayProfile(tuple(float(1 + (h >= 8) + (h >= 18)) for h in range(24)))
    pace = Pace(1000, zone, hours=profile)
    start, end = day_bounds(pace, day)
    assert (end - start) / 3600 == hours
    assert pace.expected_visits(start, end) == pytest.approx(1000, abs=1e-6)
    budget = TargetBudget("t", pace)
    assert total(drive(budget, start, end, step=30)) == 1000
    assert TargetBudget("s", pace, paced=False).grant(GENEROUS, start + 1) == 1000


def test_spring_forward_skips_the_missing_hour_and_fall_back_repeats_one():
    pace = Pace(2300, "America/New_York")  # 23-hour day on 2026-03-08: 100 per existing hour
    hours = [segment.hour for segment in pace.plan(date(2026, 3, 8)).segments]
    assert 2 not in hours and len(hours) == 23
    assert pace.rate(at("America/New_York", 2026, 3, 8, 3, 30)) == pytest.approx(100 / 3600)
    fall = Pace(2500, "America/New_York").plan(date(2026, 11, 1))
    assert [segment.hour for segment in fall.segments].count(1) == 2
    first_one_thirty = at("America/New_York", 2026, 11, 1, 1, 30)  # fold=0: EDT
    assert Pace(2500, "America/New_York").rate(first_one_thirty) == Pace(2500, "America/New_York").rate(
        first_one_thirty + 3600
    )


def test_all_weight_in_a_missing_hour_means_no_paced_traffic_that_day():
    hours = [0.0] * 24
    hours[2] = 1.0
    pace = Pace(1000, "America/New_York", hours=DayProfile(tuple(hours)))
    start, end = day_bounds(pace, date(2026, 3, 8))
    assert pace.expected_visits(start, end) == 0.0
    assert TargetBudget("t", pace).status(start + 7200).state == "paused"
    next_start, next_end = day_bounds(pace, date(2026, 3, 9))
    assert pace.expected_visits(next_start, next_end) == pytest.approx(1000)


# ---------------------------------------------------------------------------------------------
# Leases


def stress_ledger(cap: int = 100, zone: str = "UTC") -> Ledger:
    return Ledger([TargetBudget("t", Pace(cap, zone), paced=False)])


def test_expired_lease_credits_its_unused_permits_back_the_same_day():
    ledger = stress_ledger()
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("w1", "t", 30, t, ttl=60)
    assert (lease.count, lease.day, lease.expires_at) == (30, date(2026, 3, 10), t + 60)
    assert ledger.report_used("w1", lease.id, 12)
    assert ledger.status(t)[0].outstanding_leased == 18
    assert ledger.expire(t + 59) == []
    (settled,) = ledger.expire(t + 60)
    assert (settled.lease.id, settled.lease.used, settled.credited) == (lease.id, 12, 18)
    status = ledger.status(t + 60)[0]
    assert (status.granted_today, status.remaining_today, status.outstanding_leased) == (12, 88, 0)
    assert ledger.lease("w2", "t", GENEROUS, t + 61, ttl=60).count == 88


def test_a_lease_of_yesterday_credits_nothing_today():
    ledger = stress_ledger()
    late = at("UTC", 2026, 3, 10, 23, 59)
    lease = ledger.lease("w1", "t", 100, late, ttl=120)
    ledger.report_used("w1", lease.id, 40)
    (settled,) = ledger.expire(late + 120)  # 00:01 on 03-11
    assert settled.credited == 0
    status = ledger.status(late + 120)[0]
    assert (status.day, status.granted_today, status.remaining_today) == (date(2026, 3, 11), 0, 100)


def test_a_dead_holders_lease_is_credited_only_at_expiry():
    ledger = stress_ledger()
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("dead", "t", 50, t, ttl=300)
    ledger.report_used("dead", lease.id, 10)
    (marked,) = ledger.release("dead")
    assert marked.released and marked.id == lease.id
    assert ledger.release("dead") == []
    assert ledger.status(t + 1)[0].granted_today == 50
    assert ledger.lease("w2", "t", GENEROUS, t + 1, ttl=300).count == 50
    assert ledger.lease("w3", "t", 1, t + 2, ttl=300).count == 0  # nothing freed yet
    assert ledger.report_used("dead", lease.id, 25)  # an in-flight report still counts
    (settled,) = [s for s in ledger.expire(t + 300) if s.lease.holder == "dead"]
    assert settled.credited == 25
    assert ledger.status(t + 300)[0].granted_today == 75


def test_report_used_is_cumulative_clamped_and_checks_the_holder():
    ledger = stress_ledger()
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("w1", "t", 10, t, ttl=60)
    assert not ledger.report_used("w2", lease.id, 5)
    assert not ledger.report_used("w1", "no-such-lease", 5)
    assert ledger.report_used("w1", lease.id, 6)
    assert ledger.report_used("w1", lease.id, 6)  # a repeated message changes nothing
    assert ledger.report_used("w1", lease.id, 2)  # never goes down
    assert ledger.leases("w1")[0].used == 6
    assert ledger.report_used("w1", lease.id, 99)  # clamped to count, fully used: closed
    assert ledger.leases() == []
    assert not ledger.report_used("w1", lease.id, 10)
    assert ledger.expire(t + 60) == []
    assert ledger.status(t + 60)[0].granted_today == 10


def test_returned_lease_credits_the_rest_immediately():
    ledger = stress_ledger()
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("w1", "t", 10, t, ttl=60)
    settled = ledger.return_lease("w1", lease.id, 3, t + 5)
    assert settled is not None and settled.credited == 7
    assert ledger.status(t + 5)[0].granted_today == 3
    assert ledger.return_lease("w1", lease.id, 3, t + 6) is None


def test_empty_lease_is_not_recorded_and_ttl_must_be_positive():
    ledger = stress_ledger(cap=0)
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("w1", "t", 10, t, ttl=60)
    assert lease.count == 0 and ledger.leases() == []
    with pytest.raises(ValueError):
        ledger.lease("w1", "t", 10, t, ttl=0)
    with pytest.raises(KeyError):
        ledger.lease("w1", "unknown", 10, t, ttl=60)


def test_credits_never_make_a_day_negative():
    budget = TargetBudget("t", Pace(100, "UTC"), paced=False)
    t = at("UTC", 2026, 3, 10, 12)
    assert budget.grant(5, t) == 5
    assert budget.credit(date(2026, 3, 10), 50, t) == 5
    assert budget.granted_today(t) == 0
    assert budget.credit(date(2026, 3, 9), 50, t) == 0


def test_credited_tokens_return_to_the_bucket_up_to_its_capacity():
    pace = Pace(8640, "UTC")  # 0.1 per second
    budget = TargetBudget("t", pace, burst_seconds=100)  # capacity: 10 tokens
    day, t = date(2026, 3, 10), at("UTC", 2026, 3, 10, 12)
    assert budget.grant(1, t) == 0  # the bucket starts empty
    assert budget.grant(GENEROUS, t + 500) == 10  # idle time beyond the capacity is lost
    assert budget.credit(day, 4, t + 500) == 4
    assert budget.grant(GENEROUS, t + 500) == 4
    assert budget.credit(day, 5, t + 700) == 5  # the bucket is full again: credits cannot overfill it
    assert budget.grant(GENEROUS, t + 700) == 10
    assert budget.granted_today(t + 700) == 15


def test_ledger_refuses_duplicate_names():
    with pytest.raises(ValueError):
        Ledger([TargetBudget("t", Pace(1)), TargetBudget("t", Pace(2))])


# ---------------------------------------------------------------------------------------------
# Persistence


def budgets_for_restart() -> list[TargetBudget]:
    return [
        TargetBudget("stress", Pace(100, "UTC"), paced=False),
        TargetBudget("paced", Pace(8640, "Asia/Tokyo")),
    ]


def test_restart_on_the_same_day_continues_the_count():
    ledger = Ledger(budgets_for_restart())
    t = at("UTC", 2026, 3, 10, 12)
    lease = ledger.lease("w1", "stress", 70, t, ttl=600)
    ledger.report_used("w1", lease.id, 30)
    ledger.budget("paced").grant(1, t)
    ledger.budget("paced").grant(GENEROUS, t + 50)
    text = state_json(ledger)
    state = json.loads(text)
    assert state["targets"]["stress"] == {"day": "2026-03-10", "granted": 70}
    assert state["targets"]["paced"]["day"] == "2026-03-10"  # 21:00 in Tokyo
    assert [raw["used"] for raw in state["leases"]] == [30]

    restarted = Ledger.from_state(parse_state(text), budgets_for_restart(), t + 60)
    assert restarted.budget("stress").grant(GENEROUS, t + 60) == 30  # no overshoot of 100
    assert restarted.budget("paced").granted_today(t + 60) == ledger.budget("paced").granted
    assert restarted.budget("paced").grant(GENEROUS, t + 60) == 0  # the bucket restarts empty
    assert restarted.status(t + 60)[0].outstanding_leased == 40
    (settled,) = restarted.expire(t + 600)
    assert (settled.lease.id, settled.credited) == (lease.id, 40)
    assert restarted.budget("stress").granted_today(t + 600) == 60
    new_lease = restarted.lease("w2", "stress", 1, t + 601, ttl=60)
    assert int(new_lease.id) > int(lease.id)


def test_restart_on_a_new_day_starts_from_zero():
    ledger = Ledger(budgets_for_restart())
    t = at("UTC", 2026, 3, 10, 23, 0)
    ledger.lease("w1", "stress", 100, t, ttl=7200)
    restarted = Ledger.from_state(parse_state(state_json(ledger)), budgets_for_restart(), t + 3600)
    assert restarted.budget("stress").granted_today(t + 3600) == 0
    assert restarted.expire(t + 7200)[0].credited == 0  # yesterday's lease credits nothing
    assert restarted.budget("stress").grant(GENEROUS, t + 7200) == 100


def test_restart_with_the_clock_behind_the_saved_day_fails_closed():
    ledger = Ledger(budgets_for_restart())
    t = at("UTC", 2026, 3, 11, 0, 5)
    ledger.budget("stress").grant(80, t)
    restarted = Ledger.from_state(ledger.to_state(), budgets_for_restart(), t - 600)  # 23:55 on 03-10
    assert restarted.budget("stress").grant(GENEROUS, t - 600) == 20
    assert restarted.budget("stress").grant(GENEROUS, t + 60) == 0  # 03-11 reached: same day, same count


def test_restore_drops_unknown_targets_leases_and_rejects_bad_state():
    state = Ledger(budgets_for_restart()).to_state()
    state["targets"]["gone"] = {"day": "2026-03-10", "granted": 5}
    state["leases"].append(
        {"id": "9", "holder": "w", "target": "gone", "count": 3, "day": "2026-03-10", "expires_at": 1.0}
    )
    restarted = Ledger.from_state(state, budgets_for_restart(), 0.0)
    assert restarted.targets == ("stress", "paced") and restarted.leases() == []
    with pytest.raises(ValueError):
        parse_state('{"version": 99, "targets": {}, "leases": []}')
    with pytest.raises(ValueError):
        parse_state('{"version": 1, "targets": [], "leases": []}')
    with pytest.raises(ValueError):
        parse_state("[]")


# ---------------------------------------------------------------------------------------------
# weight_shares


def test_weight_shares_sum_exactly_and_follow_the_weights():
    assert weight_shares({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert weight_shares({"a": 50, "b": 30, "c": 20}, 26000) == {"a": 13000, "b": 7800, "c": 5200}
    assert weight_shares({"a": 2, "b": 0, "c": 1}, 7) == {"a": 5, "b": 0, "c": 2}
    assert weight_shares({"a": 0.1, "b": 0.2, "c": 0.7}, 10) == {"a": 1, "b": 2, "c": 7}
    assert weight_shares({"a": 1, "b": 1}, 0) == {"a": 0, "b": 0}
    assert weight_shares({}, 0) == {}
    for bad_weights, bad_total in (({"a": -1, "b": 2}, 3), ({"a": 0}, 3), ({}, 1), ({"a": 1}, -1)):
        with pytest.raises(ValueError):
            weight_shares(bad_weights, bad_total)


def test_weight_shares_random_splits_are_exact_and_within_one_of_the_quota():
    rng = random.Random(7)
    for _ in range(300):
        weights = {
            f"t{i}": rng.choice([0, rng.uniform(0.01, 100), rng.randint(1, 9)]) for i in range(rng.randint(1, 8))
        }
        if not any(weights.values()):
            weights["t0"] = 1.0
        amount = rng.randint(0, 100000)
        shares = weight_shares(weights, amount)
        assert sum(shares.values()) == amount
        weight_sum = sum(weights.values())
        for key, weight in weights.items():
            assert abs(shares[key] - amount * weight / weight_sum) < 1 + 1e-9
            if weight == 0:
                assert shares[key] == 0


# ---------------------------------------------------------------------------------------------
# Property-style: random operations over several simulated days


def property_budgets() -> list[TargetBudget]:
    night = DayProfile(tuple(0.0 if h < 6 else 1.0 + (h % 5) for h in range(24)))
    return [
        TargetBudget("utc", Pace(500, "UTC")),
        TargetBudget("ny", Pace(800, "America/New_York", hours=night, week=WeekProfile((3, 3, 3, 3, 3, 1, 2)))),
        TargetBudget("tokyo", Pace(300, "Asia/Tokyo"), paced=False),
        TargetBudget("stockholm", Pace(50, "Europe/Stockholm"), burst_seconds=600),
        TargetBudget("zero", Pace(0, "UTC")),
        TargetBudget("free", Pace(None, "UTC")),
    ]


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_never_exceed_a_days_cap(seed):
    rng = random.Random(seed)
    paces = {b.name: b.pace for b in property_budgets()}
    ledger = Ledger(property_budgets())
    holders = ["w1", "w2", "w3", "w4"]
    now = at("UTC", 2026, 3, 6, 20) + rng.uniform(0, 3600)  # spans the US DST change on 03-08
    end = now + 4 * 86400
    leases: dict[str, dict] = {}  # the model: id -> target, day, count, used, expires_at, open
    used_per_day: dict[tuple[str, date], int] = {}
    granted_per_day: dict[tuple[str, date], int] = {}

    def check() -> None:
        open_ids = {lease.id for lease in ledger.leases()}
        assert open_ids == {i for i, m in leases.items() if m["open"]}
        for status in ledger.status(now):
            pace = paces[status.name]
            today = pace.day_of(now)
            assert status.day == today
            if status.cap_today is not None:
                assert status.granted_today <= status.cap_today == pace.cap(today)
            of_today = [m for m in leases.values() if m["target"] == status.name and m["day"] == today]
            assert status.granted_today == sum(m["used"] for m in of_today) + sum(
                m["count"] - m["used"] for m in of_today if m["open"]
            )
            assert status.outstanding_leased == sum(
                m["count"] - m["used"] for m in leases.values() if m["target"] == status.name and m["open"]
            )
        for (name, day), used in used_per_day.items():
            cap = paces[name].cap(day)
            assert cap is None or used <= cap

    while now < end:
        now += rng.choice([rng.uniform(0.1, 5), rng.uniform(5, 120), rng.uniform(120, 3600)])
        op = rng.random()
        if op < 0.45:
            name = rng.choice(list(paces))
            lease = ledger.lease(rng.choice(holders), name, rng.choice([1, 3, 10, 50, 1000]), now, rng.uniform(30, 900))
            assert lease.day == paces[name].day_of(now)
            granted_per_day[(name, lease.day)] = granted_per_day.get((name, lease.day), 0) + lease.count
            if lease.count:
                leases[lease.id] = dict(
                    target=name,
                    holder=lease.holder,
                    day=lease.day,
                    count=lease.count,
                    used=0,
                    expires_at=lease.expires_at,
                    open=True,
                )
        elif op < 0.7 and leases:
            lease_id = rng.choice(list(leases))
            model = leases[lease_id]
            wrong_holder = rng.random() < 0.1
            holder = "intruder" if wrong_holder else model["holder"]
            used = rng.randint(0, model["count"] + 2)
            accepted = ledger.report_used(holder, lease_id, used)
            assert accepted == (model["open"] and not wrong_holder)
            if accepted:
                new_used = min(max(used, model["used"]), model["count"])
                key = (model["target"], model["day"])
                used_per_day[key] = used_per_day.get(key, 0) + new_used - model["used"]
                model["used"] = new_used
                model["open"] = new_used < model["count"]
        elif op < 0.75 and leases:
            lease_id = rng.choice(list(leases))
            model = leases[lease_id]
            settled = ledger.return_lease(model["holder"], lease_id, model["used"], now)
            if model["open"]:
                assert settled is not None
                expected_credit = (
                    model["count"] - model["used"] if model["day"] == paces[model["target"]].day_of(now) else 0
                )
                assert settled.credited == expected_credit
            model["open"] = False
        elif op < 0.8:
            ledger.release(rng.choice(holders))
        elif op < 0.95:
            for settled in ledger.expire(now):
                model = leases[settled.lease.id]
                assert model["open"] and model["expires_at"] <= now
                expected_credit = (
                    model["count"] - model["used"] if model["day"] == paces[model["target"]].day_of(now) else 0
                )
                assert settled.credited == expected_credit
                model["open"] = False
            assert all(m["expires_at"] > now for m in leases.values() if m["open"])
        else:
            ledger = Ledger.from_state(parse_state(state_json(ledger)), property_budgets(), now)
        check()

    # after every lease has expired, each day's count is exactly what was used
    now = max([m["expires_at"] for m in leases.values()] + [now]) + 1
    ledger.expire(now)
    for model in leases.values():
        model["open"] = False
    assert ledger.leases() == []
    check()
    for status in ledger.status(now):
        today = paces[status.name].day_of(now)
        assert status.granted_today == used_per_day.get((status.name, today), 0)
        assert status.outstanding_leased == 0
    # and something actually happened: several local days with grants for the paced targets
    assert len({day for (name, day), n in granted_per_day.items() if name == "utc" and n}) >= 3
    assert sum(n for (name, _), n in granted_per_day.items() if name == "zero") == 0


def test_a_removed_target_keeps_its_days_count_until_it_comes_back():
    t = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).timestamp()
    full = [
        TargetBudget("stress", Pace(100, "UTC"), paced=False),
        TargetBudget("gone", Pace(40, "Asia/Tokyo"), paced=False),
    ]
    ledger = Ledger(full)
    ledger.lease("w", "gone", 30, t, 30.0)
    without = Ledger.from_state(
        parse_state(state_json(ledger)), [TargetBudget("stress", Pace(100, "UTC"), paced=False)], t + 60
    )
    assert without.targets == ("stress",) and without.to_state()["targets"]["gone"]["granted"] == 30  # saved again
    back = Ledger.from_state(
        without.to_state(),
        [
            TargetBudget("stress", Pace(100, "UTC"), paced=False),
            TargetBudget("gone", Pace(40, "Asia/Tokyo"), paced=False),
        ],
        t + 120,
    )
    assert back.budget("gone").granted_today(t + 120) == 30 and back.budget("gone").grant(40, t + 120) <= 10
    much_later = Ledger.from_state(
        without.to_state(), [TargetBudget("stress", Pace(100, "UTC"), paced=False)], t + 3 * 86400
    )
    assert "gone" not in much_later.to_state()["targets"], "a count of a day that is over everywhere is not kept"
