"""The tally of what each report must show: counted per hit on workers, drained in their reports,
merged on the master into one ``reports`` object per target and local day."""

from __future__ import annotations

from trafficinator_locust.core.reports import VisitReports
from trafficinator_locust.runtime.tally import VisitTally


def _worker(goal_revenue: str) -> VisitTally:
    tally = VisitTally()
    visit = VisitReports(returning=True, channel="search")
    tally.visit_started("A", ok=True, day="2026-12-03")
    for kind, params in (
        ("pageview", {}),
        ("goal", {"idgoal": "2", "revenue": goal_revenue}),
        ("cart", {}),
        ("order", {"ec_id": "x", "revenue": "10.10"}),
    ):
        tally.hit_stored("A", "2026-12-03", visit, kind, params)
    tally.visit_started("A", ok=True, day="2026-12-03", stored=False)  # a bot visit Matomo drops
    return tally


def test_worker_deltas_merge_into_one_day_on_the_master():
    master = VisitTally()
    for worker in (_worker("1.25"), _worker("2.50")):
        master.merge(worker.drain())
        assert worker.reports == {} and worker.drain()["reports"] == {}  # drained: sent once
    day = master.reports["A"]["2026-12-03"]
    assert day["goal:2:conversions"] == 2 and day["goal:2:revenue"] == 375
    assert (day["orders"], day["revenue"], day["abandoned_carts"]) == (2, 2020, 0)
    assert (day["returning_visits"], day["bot_visits"], day["referrer:search"]) == (2, 2, 2)
    assert (day["hits"], day["actions"], day["pageviews"]) == (8, 2, 2)
    assert master.days["A"]["2026-12-03"] == [2, 0] and master.bots["A"] == 2


def test_reset_forgets_the_reports():
    tally = _worker("1")
    tally.reset()
    assert tally.reports == {} and tally.days == {}


def test_tracked_hits_are_kept_per_wall_second_merged_from_workers_and_bounded():
    """A capacity ramp reads a bulk target's tracked hits over a step's whole seconds."""
    from trafficinator_locust.runtime.tally import HIT_SECONDS_KEPT

    clock = iter([100.2, 100.9, 101.5]).__next__
    worker, master = VisitTally(wall=clock), VisitTally(wall=lambda: 0.0)
    worker.hits_tracked("Bulk", 20)
    worker.hits_tracked("Bulk", 20)
    worker.hits_tracked("Bulk", 5)
    master.merge(worker.drain())
    assert master.hits_in("Bulk", range(100, 101)) == 40 and master.hits_in("Bulk", range(100, 102)) == 45
    assert worker.hits_in("Bulk", range(0, 200)) == 0  # drained: deltas only
    for second in range(HIT_SECONDS_KEPT + 50):
        master._add_second("Bulk", 1000 + second, 1)
    assert len(master.hits_per_second["Bulk"]) <= HIT_SECONDS_KEPT + 1
