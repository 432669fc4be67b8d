"""Backfill days (pure): day counts, placement in time by the hourly profile, cdt rules on DST days,
visit numbers and order-id prefixes fixed by seed, day and index."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from trafficinator_locust.core import backfill_days as bd
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visits import VisitPlanner

CDT_RE = re.compile(r"\A\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\Z")
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()


def one_target(write_yaml, timezone_name="UTC", visits=28, extra="", name="traffic.yaml"):
    path = write_yaml(
        f"""
        seed: 5
        targets:
          - name: Site
            url: http://127.0.0.1:9/site/matomo.php
            site_id: 1
            token_auth: site-token-1234
            timezone: {timezone_name}
            visits_per_day: {visits}
        {extra}""",
        name=name,
    )
    return load_config(path).targets[0]


def windows_visits(target, day, seed=5, now=FAR_FUTURE):
    pace = target.pace()
    window = bd.day_window(pace, day, now)
    return window, list(bd.day_visits(VisitPlanner(target, seed), pace, window))


# --- days ------------------------------------------------------------------------------------------
def test_day_counts_follow_the_cap_and_weekday_factors(write_yaml):
    target = one_target(write_yaml, extra="    profile: {weekdays: [1, 1, 1, 1, 2, 0.5, 0.5]}")
    pace = target.pace()
    monday = date(2025, 3, 10)
    counts = [bd.day_window(pace, monday + timedelta(days=n), FAR_FUTURE).visits for n in range(7)]
    assert counts == [28, 28, 28, 28, 56, 14, 14]  # 28 x 7 x w / sum(w), sum(w) = 7
    odd = one_target(write_yaml, visits=10, extra="    profile: {weekdays: [3, 1, 1, 1, 1, 1, 1]}", name="odd.yaml")
    pace = odd.pace()
    assert [bd.day_window(pace, monday + timedelta(days=n), FAR_FUTURE).visits for n in range(2)] == [
        23,
        8,
    ]  # 10*7*3/9 = 23.3, 10*7/9 = 7.8


def test_today_gets_the_visits_due_so_far_all_before_now_and_a_later_day_is_refused(write_yaml):
    target = one_target(write_yaml, visits=240)
    pace = target.pace()
    now = datetime(2025, 3, 10, 6, 0, 0, tzinfo=timezone.utc).timestamp()
    window = bd.day_window(pace, date(2025, 3, 10), now)
    assert window.end == int(now) and window.visits == 60  # a quarter of a flat day
    visits = list(bd.day_visits(VisitPlanner(target, 5), pace, window))
    assert len(visits) == 60 and all(t < now for v in visits for t in v.times)
    with pytest.raises(ValueError, match="not begun"):
        bd.day_window(pace, date(2025, 3, 11), now)


def test_visit_numbers_and_order_id_prefix_are_fixed_by_day_index_and_seed():
    assert bd.visit_number(date(2025, 3, 14), 17) == 20250314_000000017
    assert bd.visit_number(date(2025, 3, 14), 0) != bd.visit_number(date(2025, 3, 15), 0)
    with pytest.raises(ValueError):
        bd.visit_number(date(2025, 3, 14), 10**9)
    assert bd.run_id_for(5, "Shop") == bd.run_id_for(5, "Shop") != bd.run_id_for(6, "Shop")
    assert bd.run_id_for(5, "Shop") != bd.run_id_for(5, "Blog")


# --- placement -------------------------------------------------------------------------------------
def test_visits_are_placed_by_the_hourly_profile(write_yaml):
    hours = [0] * 24
    hours[9], hours[17] = 1, 3
    target = one_target(write_yaml, "Europe/Berlin", visits=400, extra=f"    profile: {{hours: {hours}}}")
    window, visits = windows_visits(target, date(2025, 5, 14))
    zone = ZoneInfo("Europe/Berlin")
    started = Counter(datetime.fromtimestamp(v.start, zone).hour for v in visits)
    assert started == {9: 100, 17: 300}  # stratified: exactly the profile's shares
    starts = [v.start for v in visits]
    assert starts == sorted(starts)  # visit index order is time order


def test_flat_profile_spreads_visits_over_every_hour(write_yaml):
    target = one_target(write_yaml, "Asia/Tokyo", visits=480)
    _, visits = windows_visits(target, date(2025, 5, 14))
    per_hour = Counter(datetime.fromtimestamp(v.start, ZoneInfo("Asia/Tokyo")).hour for v in visits)
    assert set(per_hour) == set(range(24)) and all(19 <= n <= 21 for n in per_hour.values())


@pytest.mark.parametrize(
    "zone, day",
    [
        ("UTC", date(2025, 5, 14)),
        ("America/New_York", date(2025, 5, 14)),
        ("Asia/Tokyo", date(2025, 12, 31)),
        ("Europe/Berlin", date(2025, 3, 30)),  # 23 hours
        ("America/New_York", date(2025, 11, 2)),  # 25 hours
    ],
)
def test_every_cdt_is_utc_inside_its_local_day_and_in_time_order(write_yaml, zone, day):
    target = one_target(write_yaml, zone, visits=150, extra="    traffic: {dwell_seconds: {min: 200, max: 1500}}")
    window, visits = windows_visits(target, day)
    tz = ZoneInfo(zone)
    encoder = TrackingEncoder(target, run_id="bftest")
    assert len(visits) == 150
    for visit in visits:
        assert list(visit.times) == sorted(visit.times)
        for position, ts in enumerate(visit.times):
            params = bd.hit_params(encoder, 1, visit, position)
            assert CDT_RE.match(params["cdt"]) and "token_auth" not in params
            moment = datetime.strptime(params["cdt"], bd.CDT_FORMAT).replace(tzinfo=timezone.utc)
            local = moment.astimezone(tz)
            assert local.date() == day, (visit.index, params["cdt"])
            assert (params["h"], params["m"], params["s"]) == (str(local.hour), str(local.minute), str(local.second))
            assert window.start <= ts < window.end


def test_dst_days_place_visits_in_the_hours_that_exist(write_yaml):
    target = one_target(write_yaml, "Europe/Berlin", visits=250)
    spring, spring_visits = windows_visits(target, date(2025, 3, 30))
    assert spring.end - spring.start == 23 * 3600
    zone = ZoneInfo("Europe/Berlin")
    spring_hours = Counter(datetime.fromtimestamp(v.start, zone).hour for v in spring_visits)
    assert 2 not in spring_hours and len(spring_hours) == 23
    autumn, autumn_visits = windows_visits(target, date(2025, 10, 26))
    assert autumn.end - autumn.start == 25 * 3600
    autumn_hours = Counter(datetime.fromtimestamp(v.start, zone).hour for v in autumn_visits)
    assert 19 <= autumn_hours[2] <= 21  # 02:00-03:00 happens twice: 2/25 of the day


def test_a_visit_that_would_pass_midnight_is_shifted_back_and_a_too_long_one_squeezed():
    assert bd.hit_times(990.0, [0, 5, 10], 0, 1000) == (984, 989, 999)
    assert bd.hit_times(100.2, [0, 5.5, 10], 0, 1000) == (100, 105, 115)
    squeezed = bd.hit_times(5.0, [0, 300, 300], 0, 100)
    assert squeezed[0] == 0 and squeezed[-1] == 99 and list(squeezed) == sorted(squeezed)
