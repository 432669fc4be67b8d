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
