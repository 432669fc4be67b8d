"""The receiver's report data stays bounded (receiver/archive.py): finished visits are archived
and forgotten, each table holds at most its cap of labels per day and sums the rest in "Others",
only the latest days are kept, and distinct counts are exact under their limit."""

import gc
import tracemalloc
from datetime import datetime, timezone

from receiver_client import TOKEN, ReceiverClient

from trafficinator_locust.receiver.archive import (
    MAX_DAYS,
    MAX_ROWS_ACTIONS,
    MAX_ROWS_EVENTS,
    MAX_ROWS_REFERRERS,
    ROW_EXACT_DISTINCT,
    Distinct,
)
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.store import InstanceState
from trafficinator_locust.receiver.tracker import Tracker
from trafficinator_locust.receiver.visits import VISIT_TIMEOUT_SECONDS
from trafficinator_locust.receiver.wsgi import Client

DAY = "2026-11-25"
T0 = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc).timestamp()
RETAINED_BOUND_MB = 24
"""docs/receiver.md: 30,000 visits of distinct URLs and titles keep the receiver under this (measured: about 12)."""


def report(receiver: ReceiverClient, method: str, date: str = DAY, **params: str):
    return receiver.api(method, idSite="1", period="day", date=date, **params)


def test_thirty_thousand_visits_of_distinct_urls_keep_the_receiver_under_its_bound():
    state = InstanceState(ReceiverInstance("/m", {1: ReceiverSite(1)}, {TOKEN}), "/m")
    now = [T0]
    tracker = Tracker(lambda: now[0])
    client = Client("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "en-US", "10.0.0.1")
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(30_000):  # one visit a second, one pageview each: every URL and title distinct
            now[0] = T0 + n
            url = f"https://shop.example/p/{n}"
            params = {"idsite": "1", "rec": "1", "cid": f"{n:016x}", "url": url, "action_name": url}
            tracker.track(state, params, client)
        gc.collect()
        retained, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert retained < RETAINED_BOUND_MB * 2**20, f"{retained / 2**20:.1f} MB retained"
    site = state.sites[1]
    live = sum(len(visits) for visits in site.visits.by_config.values())
    assert live <= VISIT_TIMEOUT_SECONDS + 1100  # the visits of the last 30 minutes (and a sweep's lag)
    day = next(iter(site.action_reports.days.values()))
    assert len(day.rows["page_url"]) == MAX_ROWS_ACTIONS + 1  # the cap and "Others"


def test_page_urls_beyond_the_cap_are_summed_in_others():
    receiver = ReceiverClient()
    for n in range(MAX_ROWS_ACTIONS + 5):
        receiver.clock.now = T0 + 36000 + n
        receiver.hit(cid="aaaaaaaaaaaaaaa1", url=f"https://shop.example/p{n:04d}", action_name=f"P{n:04d}")
    rows = report(receiver, "Actions.getPageUrls", flat="1", filter_limit="-1")
    assert len(rows) == MAX_ROWS_ACTIONS + 1
    assert rows[-1] == {"label": "Others", "nb_visits": 5, "nb_hits": 5, "sum_time_spent": 4, "avg_time_on_page": 1}
    assert rows[0]["label"] == "/p0000" and "segment" in rows[0]
    titles = report(receiver, "Actions.getPageTitles", filter_limit="-1")
    assert titles[-1]["label"] == "Others" and titles[-1]["nb_hits"] == 5 and "segment" not in titles[-1]
    assert report(receiver, "Actions.get")["nb_pageviews"] == MAX_ROWS_ACTIONS + 5


def test_referrers_beyond_the_cap_are_summed_in_others_across_archived_and_ongoing_visits():
    receiver = ReceiverClient()
    visits = MAX_ROWS_REFERRERS + 100
    for n in range(visits):  # two seconds apart: the early visits end and are archived meanwhile
        receiver.clock.now = T0 + 3600 + 2 * n
        receiver.hit(cid=f"{n + 1:016x}", url="https://shop.example/", urlref=f"https://site{n:04d}.example/")
    rows = report(receiver, "Referrers.getWebsites", filter_limit="-1")
    assert len(rows) == MAX_ROWS_REFERRERS + 1
    assert rows[0] == {
        "label": "site0000.example",
        "nb_uniq_visitors": 1,
        "nb_visits": 1,
        "nb_actions": 1,
        "nb_users": 0,
        "max_actions": 1,
        "sum_visit_length": 0,
        "bounce_count": 1,
        "nb_visits_converted": 0,
        "segment": "referrerName==site0000.example",
    }
    assert rows[-1]["label"] == "Others" and rows[-1]["nb_visits"] == 100 and rows[-1]["nb_uniq_visitors"] == 100
    summary = report(receiver, "VisitsSummary.get")
    assert (summary["nb_visits"], summary["nb_uniq_visitors"], summary["bounce_count"]) == (visits, visits, visits)
    assert receiver.site()["unique_visitors"] == visits


def test_only_the_latest_days_are_kept():
    receiver = ReceiverClient()
    for n in range(MAX_DAYS + 2):
        receiver.clock.now = T0 + n * 86400 + 3600
        receiver.hit(cid=f"{n + 1:016x}", url="https://shop.example/", action_name="Home")
    first, last = "2026-11-25", "2026-12-31"  # day 0 and day MAX_DAYS + 1
    assert report(receiver, "VisitsSummary.get", date=first)["nb_visits"] == 0
    assert report(receiver, "Actions.getPageTitles", date=first) == []
    assert report(receiver, "Actions.get", date="2026-11-26")["nb_pageviews"] == 0
    assert report(receiver, "VisitsSummary.get", date=last)["nb_visits"] == 1
    assert report(receiver, "Actions.get", date="2026-11-27")["nb_pageviews"] == 1
    stats = receiver.site()
    assert len(stats["visits_by_day"]) == MAX_DAYS and first not in stats["visits_by_day"]
    assert stats["visits"] == MAX_DAYS + 2  # the totals count every day


def test_distinct_counts_are_exact_under_the_limit_and_estimated_within_ten_percent_beyond():
    exact = Distinct()
    for n in range(ROW_EXACT_DISTINCT):
        exact.add(f"{n:016x}")
        exact.add(f"{n:016x}")
    assert exact.count() == ROW_EXACT_DISTINCT
    estimated = Distinct()
    for n in range(100_000):
        estimated.add(f"{n:016x}")
    assert estimated.values is None and len(estimated.registers or b"") == 2048  # 2 KB, whatever the count
    assert abs(estimated.count() - 100_000) < 10_000  # over 4 standard errors (2.3 %): str hashes vary per process
    merged = exact.copy()
    merged.update(estimated)
    assert abs(merged.count() - 100_000) < 10_000


def test_event_categories_and_names_beyond_the_cap_are_summed_in_others():
    receiver = ReceiverClient()
    for n in range(MAX_ROWS_EVENTS + 3):
        receiver.clock.now = T0 + 36000 + n
        receiver.hit(cid="aaaaaaaaaaaaaaa1", e_c=f"C{n:04d}", e_a="Play", e_n=f"N{n:04d}", e_v="2")
    categories = report(receiver, "Events.getCategory", filter_limit="-1")
    assert len(categories) == MAX_ROWS_EVENTS + 1
    others = categories[-1]
    assert (others["label"], others["nb_events"], others["nb_visits"], others["sum_event_value"]) == ("Others", 3, 3, 6)
    names = report(receiver, "Events.getName", filter_limit="-1")
    assert len(names) == MAX_ROWS_EVENTS + 1 and names[-1]["label"] == "Others" and names[-1]["nb_events"] == 3
    actions = report(receiver, "Events.getAction", filter_limit="-1")
    assert [(row["label"], row["nb_events"]) for row in actions] == [("Play", MAX_ROWS_EVENTS + 3)]
