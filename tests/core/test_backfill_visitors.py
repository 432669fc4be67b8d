"""Backfill visitors (pure): a visitor book per target fed with the days in order, so returning visits
reuse visitors the backfill planned earlier, no visitor is in two visits at once, and the same seed
and days give the same visitors (what a resumed backfill replays)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import pytest

from trafficinator_locust.core import backfill_days as bd
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.visits import VisitPlanner

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()
FIRST = date(2025, 3, 10)


def target_with(write_yaml, visits=300, visitors="", name="traffic.yaml"):
    path = write_yaml(
        f"""
        seed: 5
        targets:
          - name: Site
            url: http://127.0.0.1:9/site/matomo.php
            site_id: 1
            token_auth: site-token-1234
            timezone: Europe/Berlin
            visits_per_day: {visits}
            traffic: {{bots: 0.05{visitors}}}
        """,
        name=name,
    )
    return load_config(path).targets[0]


def backfill(target, seed=5, days=5, first=FIRST):
    """Per day: (window, tickets, visits) as the backfill plans them, days in order."""
    pace, planner = target.pace(), VisitPlanner(target, seed)
    visitors = bd.BackfillVisitors(planner, pace)
    planned = []
    for n in range(days):
        window = bd.day_window(pace, first + timedelta(days=n), FAR_FUTURE)
        tickets = visitors.tickets(window)
        planned.append((window, tickets, list(bd.day_visits(planner, pace, window, 0, tickets))))
    return planned


def test_the_same_seed_and_days_give_the_same_visitors_and_hits(write_yaml):
    target = target_with(write_yaml)
    first, again, other = backfill(target), backfill(target), backfill(target, seed=6)
    assert [tickets for _, tickets, _ in first] == [tickets for _, tickets, _ in again]
    assert [[v.visit for v in visits] for *_, visits in first] == [[v.visit for v in visits] for *_, visits in again]
    assert [tickets for _, tickets, _ in first] != [tickets for _, tickets, _ in other]
    # A resumed run replays the days before its own: replaying days 1-3 gives day 4 the same visitors.
    pace, planner = target.pace(), VisitPlanner(target, 5)
    replay = bd.BackfillVisitors(planner, pace)
    for window, _, _ in first[:3]:
        replay.tickets(window)
    window, tickets, visits = first[3]
    assert replay.tickets(window) == tickets
    assert [v.visit for v in bd.day_visits(planner, pace, window, 17, tickets)] == [v.visit for v in visits[17:]]


def test_returning_visits_reach_the_configured_share_after_the_first_day(write_yaml):
    target = target_with(write_yaml, visits=600)
    planned = backfill(target, days=6)
    humans = [v.visit.visitor for _, _, visits in planned[1:] for v in visits if not v.visit.visitor.bot]
    share = sum(visitor.returning for visitor in humans) / len(humans)
    assert share == pytest.approx(0.3, abs=0.03)
    first_day = [v.visit.visitor for v in planned[0][2] if not v.visit.visitor.bot]
    assert not first_day[0].returning  # a fresh site: the very first visit is new
    # Bots take no ticket; every human visit does.
    for _, tickets, visits in planned:
        assert all((ticket is None) == v.visit.visitor.bot for ticket, v in zip(tickets, visits, strict=True))


@pytest.mark.parametrize("visitors", ["", ", visitors: {returning: 0.9, pool_size: 3}"])
def test_a_visitor_is_never_in_two_visits_at_once_and_returns_after_its_earlier_visits(write_yaml, visitors):
    # A busy hour and a tiny pool make visits overlap a lot: the book must still keep visitors apart.
    target = target_with(write_yaml, visits=400, visitors=visitors)
    planned = backfill(target, days=4)
    spans = defaultdict(list)  # visitor index -> (first hit, last hit, visit count) of its visits
    for _, tickets, visits in planned:
        for ticket, day_visit in zip(tickets, visits, strict=True):
            if ticket is not None:
                assert day_visit.visit.visitor.visit_count == ticket.visits_before + 1
                spans[ticket.index].append((day_visit.times[0], day_visit.times[-1], ticket.visits_before))
    returning = 0
    for visits in spans.values():
        visits.sort()
        assert [before for _, _, before in visits] == list(range(len(visits)))  # 1st, 2nd, ... visit
        assert all(later[0] > earlier[1] for earlier, later in zip(visits, visits[1:]))  # no overlap
        returning += len(visits) - 1
    assert returning > 100, "the scenario needs returning visits"
    cids = defaultdict(set)
    for _, tickets, visits in planned:
        for ticket, day_visit in zip(tickets, visits, strict=True):
            if ticket is not None:
                cids[ticket.index].add(day_visit.visit.visitor.cid)
    assert all(len(cid) == 1 for cid in cids.values())  # the same person on every visit


def test_days_go_in_order(write_yaml):
    target = target_with(write_yaml, visits=10)
    pace = target.pace()
    visitors = bd.BackfillVisitors(VisitPlanner(target, 5), pace)
    visitors.tickets(bd.day_window(pace, FIRST, FAR_FUTURE))
    with pytest.raises(ValueError, match="day by day"):
        visitors.tickets(bd.day_window(pace, FIRST, FAR_FUTURE))
    with pytest.raises(ValueError, match="tickets for"):
        list(bd.day_visits(VisitPlanner(target, 5), pace, bd.day_window(pace, FIRST, FAR_FUTURE), 0, [None]))
