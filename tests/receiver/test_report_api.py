"""The day reports ``trafficinator verify`` compares (Actions.get, Events.getCategory, Goals.get,
VisitFrequency.get), API.getBulkRequest, and the ``lose`` option that makes one report come out short.

Everything runs through the receiver's WSGI app (docs/receiver.md has each rule's Matomo source)."""

import json
import os
import signal
import subprocess
import urllib.request
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest
from receiver_client import CID_A, CID_B, TOKEN, FakeClock, ReceiverClient
from werkzeug.test import Client

from trafficinator_locust.core.protocol import DUPLICATE_EC_ID, HIT_KINDS
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.process import receiver_command, wait_until_listening
from trafficinator_locust.receiver.store import InstanceState
from trafficinator_locust.receiver.tracker import KindLoss, Tracker, lose_shares
from trafficinator_locust.receiver.wsgi import Client as HttpClient

DAY = "2026-11-25"  # receiver_client's T0 is 10:00 UTC that day
CID_C = "ccccccccccccccc3"
NUMERIC = ("VisitsSummary.get", "Actions.get", "Goals.get", "VisitFrequency.get")


def day_report(receiver: ReceiverClient, method: str, date: str = DAY, site: str = "1", **params: str):
    return receiver.api(method, idSite=site, period="day", date=date, **params)


def goals(receiver: ReceiverClient, id_goal: str | None = None, date: str = DAY) -> dict:
    extra = {} if id_goal is None else {"idGoal": id_goal}
    return day_report(receiver, "Goals.get", date, **extra)


def all_reports(receiver: ReceiverClient, date: str = DAY) -> dict:
    """Every day report of site 1 (each goal of the site, both ecommerce goals and all goals)."""
    answers = {method: day_report(receiver, method, date) for method in (*NUMERIC, "Events.getCategory")}
    for id_goal in ("1", "2", "3", "ecommerceOrder", "ecommerceAbandonedCart"):
        answers[f"Goals.get {id_goal}"] = goals(receiver, id_goal, date)
    return answers


def sub(method: str, **params: str) -> str:
    """One ``urls[i]`` of a bulk request, encoded the way clients send it."""
    return urlencode({"method": method, **params})


def bulk(receiver: ReceiverClient, *urls: str, token: str | None = TOKEN, **outer: str):
    return receiver.api("API.getBulkRequest", token=token, **{f"urls[{i}]": url for i, url in enumerate(urls)}, **outer)


# --- Actions.get ---------------------------------------------------------------------------------
def test_actions_get_counts_pageviews_downloads_outlinks_searches_and_hits(receiver):
    receiver.hit(cid=CID_A, url="https://www.shop.example/shoes")
    receiver.hit(cid=CID_A, url="http://shop.example/shoes#reviews")  # the same page URL for Matomo
    receiver.hit(cid=CID_A, url="https://shop.example/shoes?gclid=x1", _pkp="19.90", _pks="SKU1")  # a product view
    receiver.hit(cid=CID_A, url="https://shop.example/a.pdf", download="https://shop.example/a.pdf")
    receiver.hit(cid=CID_A, url="https://shop.example/", download="https://shop.example/a.pdf")
    receiver.hit(cid=CID_A, url="https://shop.example/", link="https://other.example/")
    receiver.hit(cid=CID_A, url="https://shop.example/", search="boots")
    receiver.hit(cid=CID_A, url="https://shop.example/", search=" boots ")
    receiver.hit(cid=CID_A, url="https://shop.example/", search="hats")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play")
    receiver.hit(cid=CID_A, c_n="Banner", ca="1")  # content: an action row, no action
    receiver.hit(cid=CID_A, idgoal="1")
    receiver.hit(cid=CID_A, idgoal="0", revenue="5")
    receiver.hit(cid=CID_A, ping="1")
    receiver.hit(cid=CID_B, url="https://shop.example/shoes")  # another visit: one more unique pageview
    assert day_report(receiver, "Actions.get") == {
        "nb_pageviews": 4,
        "nb_uniq_pageviews": 2,
        "nb_downloads": 2,
        "nb_uniq_downloads": 1,
        "nb_outlinks": 1,
        "nb_uniq_outlinks": 1,
        "nb_searches": 3,
        "nb_keywords": 2,
        "nb_hits": 12,
    }
    assert day_report(receiver, "VisitsSummary.get")["nb_actions"] == 11  # nb_hits less the content hit


def test_a_day_without_data_answers_zeros_and_events_an_empty_list(receiver):
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play")
    receiver.hit(cid=CID_A, idgoal="2")
    empty = "2026-11-24"
    assert all(value == 0 for value in day_report(receiver, "Actions.get", empty).values())
    assert len(day_report(receiver, "Actions.get", empty)) == 9
    summary = day_report(receiver, "VisitsSummary.get", empty)
    assert summary["nb_visits"] == summary["nb_actions"] == summary["nb_uniq_visitors"] == 0
    assert set(summary.values()) == {0, "0%"}  # bounce_rate is a percentage
    assert set(day_report(receiver, "VisitFrequency.get", empty).values()) == {0, "0%"}
    for id_goal in (None, "2", "ecommerceOrder", "ecommerceAbandonedCart"):
        answer = goals(receiver, id_goal, empty)
        assert answer["nb_conversions"] == answer["nb_visits_converted"] == 0 and answer["revenue"] == 0
        assert answer["conversion_rate"] == answer["conversion_rate_returning_visit"] == "0%"
    assert day_report(receiver, "Events.getCategory", empty) == []
    assert day_report(receiver, "Events.getCategory")[0]["nb_events"] == 1


def test_reports_count_each_hit_on_the_sites_local_day():
    receiver = ReceiverClient(tz="Asia/Tokyo")
    receiver.clock.now = datetime(2026, 11, 25, 14, 50, tzinfo=timezone.utc).timestamp()  # 23:50 in Tokyo
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_v="3")
    receiver.hit(cid=CID_A, idgoal="1", revenue="4")
    receiver.clock.advance(20)  # 00:10 on the 26th: the visit splits at the site's midnight
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, idgoal="0", ec_id="O-1", revenue="10")
    first, second = "2026-11-25", "2026-11-26"
    assert day_report(receiver, "VisitsSummary.get", first)["nb_visits"] == 1
    assert day_report(receiver, "VisitsSummary.get", second)["nb_visits"] == 1
    assert day_report(receiver, "Actions.get", first)["nb_pageviews"] == 1
    assert day_report(receiver, "Actions.get", second)["nb_pageviews"] == 1
    assert [row["nb_events"] for row in day_report(receiver, "Events.getCategory", first)] == [1]
    assert day_report(receiver, "Events.getCategory", second) == []
    assert (goals(receiver, "1", first)["nb_conversions"], goals(receiver, "1", second)["nb_conversions"]) == (1, 0)
    assert goals(receiver, "ecommerceOrder", second)["revenue"] == 10.0
    assert goals(receiver, "ecommerceOrder", first)["nb_conversions"] == 0
    assert day_report(receiver, "VisitFrequency.get", first)["nb_visits_new"] == 1
    assert day_report(receiver, "VisitFrequency.get", second)["nb_visits_returning"] == 1  # same visitor, a day on
    assert day_report(receiver, "Actions.get", "today") == day_report(receiver, "Actions.get", second)


# --- Events.getCategory --------------------------------------------------------------------------
def test_events_get_category_sums_matomos_rows_per_category(receiver):
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_n="Intro", e_v="2.5")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_n="Intro", e_v="4")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Pause")  # another action: Matomo counts the visit again
    receiver.hit(cid=CID_B, e_c=" Video ", e_a="Play", e_n="Intro", e_v="-1.25")
    receiver.hit(cid=CID_B, e_c="Form", e_a="Submit")
    video, form = day_report(receiver, "Events.getCategory")
    assert video == {
        "label": "Video",
        "nb_uniq_visitors": 3,
        "nb_visits": 3,
        "nb_events": 4,
        "nb_events_with_value": 3,
        "sum_event_value": 5.25,
        "min_event_value": -1.25,
        "max_event_value": 4.0,
        "avg_event_value": 1.75,
    }
    assert form["label"] == "Form" and form["nb_events"] == 1 and form["nb_visits"] == 1
    assert (form["sum_event_value"], form["min_event_value"], form["avg_event_value"]) == (0, 0, 0)
    assert [row["label"] for row in day_report(receiver, "Events.getCategory", filter_limit="1")] == ["Video"]
    assert len(day_report(receiver, "Events.getCategory", filter_limit="-1")) == 2


# --- Goals.get -----------------------------------------------------------------------------------
def test_goals_get_per_goal_ecommerce_and_all_goals():
    receiver = ReceiverClient()
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, idgoal="1", revenue="3.50")
    receiver.hit(cid=CID_A, idgoal="1", revenue="9")  # once per visit: dropped
    receiver.hit(cid=CID_A, idgoal="2")
    receiver.hit(cid=CID_A, idgoal="0", revenue="20")  # a cart that the order turns into the order
    receiver.hit(cid=CID_A, idgoal="0", ec_id="O-1", revenue="19.99")
    receiver.hit(cid=CID_B, url="https://shop.example/")
    receiver.hit(cid=CID_B, idgoal="0", revenue="7.10")  # abandoned: no converted visit
    receiver.hit(cid=CID_C, url="https://shop.example/")
    receiver.hit(cid=CID_C, idgoal="0", ec_id="O-2", revenue="5")
    receiver.hit(cid=CID_C, idgoal="0", ec_id="O-3", revenue="5.01")  # a second order of the visit
    one = goals(receiver, "1")
    assert (one["nb_conversions"], one["nb_visits_converted"], one["revenue"], one["conversion_rate"]) == (
        1,
        1,
        3.5,
        "33.33%",
    )
    assert "avg_order_revenue" not in one
    order = goals(receiver, "ecommerceOrder")
    assert (order["nb_conversions"], order["nb_visits_converted"], order["revenue"]) == (3, 2, 30.0)
    assert order["conversion_rate"] == "66.67%" and order["avg_order_revenue"] == 10.0
    assert goals(receiver, "0")["nb_conversions"] == 3  # Goal_0_*: the order records
    cart = goals(receiver, "ecommerceAbandonedCart")
    assert (cart["nb_conversions"], cart["nb_visits_converted"], cart["revenue"]) == (1, 1, 7.1)
    everything = goals(receiver)
    assert (everything["nb_conversions"], everything["revenue"]) == (5, 33.5)  # goals 1, 2 and orders, no cart
    assert everything["nb_visits_converted"] == 2 and everything["conversion_rate"] == "66.67%"
    assert everything["nb_conversions_new_visit"] == 5 and everything["nb_conversions_returning_visit"] == 0
    assert json.loads(json.dumps(everything)) == everything and isinstance(everything["revenue"], float)


def test_goals_get_splits_new_and_returning_visits(receiver):
    receiver.hit(cid=CID_A, idgoal="2", revenue="1")
    receiver.clock.advance(40)  # a new visit of a known visitor: returning
    receiver.hit(cid=CID_A, idgoal="2", revenue="2")
    receiver.hit(cid=CID_B, url="https://shop.example/")
    two = goals(receiver, "2")
    assert (two["nb_conversions"], two["nb_visits_converted"], two["conversion_rate"]) == (2, 2, "66.67%")
    assert (two["nb_conversions_new_visit"], two["revenue_new_visit"]) == (1, 1.0)
    assert (two["nb_conversions_returning_visit"], two["revenue_returning_visit"]) == (1, 2.0)
    assert two["conversion_rate_new_visit"] == "50%" and two["conversion_rate_returning_visit"] == "100%"


def test_goals_get_for_a_goal_the_site_lacks_answers_zeros(receiver):
    receiver.hit(cid=CID_A, idgoal="2", revenue="1")
    for id_goal in ("9", "01", "nope"):
        answer = goals(receiver, id_goal)
        assert answer["nb_conversions"] == 0 and answer["revenue"] == 0 and answer["conversion_rate"] == "0%"
    assert goals(receiver, "")["nb_conversions"] == 1  # an empty idGoal is Matomo's default: all goals
    assert day_report(receiver, "Goals.get", site="9")["result"] == "error"


# --- VisitFrequency.get --------------------------------------------------------------------------
FREQUENCY_FIGURES = tuple(
    f"{name}_{kind}"
    for kind in ("new", "returning")
    for name in ("nb_visits", "nb_actions", "nb_uniq_visitors", "nb_visits_converted")
)


def test_visit_frequency_uses_the_receivers_own_returning_decision(receiver):
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, url="https://shop.example/2")
    receiver.hit(cid=CID_A, new_visit="1", url="https://shop.example/")  # a known visitor: returning
    receiver.hit(cid=CID_B, _idvc="5", url="https://shop.example/")  # claims visits the receiver never saw: new
    receiver.hit(cid=CID_C, idgoal="0", ec_id="O-9", revenue="3")  # starts with an order: returningCustomer
    frequency = day_report(receiver, "VisitFrequency.get")
    assert {name: frequency[name] for name in FREQUENCY_FIGURES} == {
        "nb_visits_new": 2,
        "nb_actions_new": 3,
        "nb_uniq_visitors_new": 2,
        "nb_visits_converted_new": 0,
        "nb_visits_returning": 2,
        "nb_actions_returning": 1,
        "nb_uniq_visitors_returning": 2,
        "nb_visits_converted_returning": 1,
    }
    assert receiver.site()["returning_visits"] == 2


# --- API.getBulkRequest --------------------------------------------------------------------------
def test_bulk_request_answers_each_sub_request_in_order_with_errors_in_place(receiver):
    receiver.hit(cid=CID_A, url="https://shop.example/", idsite="1")
    receiver.hit(cid=CID_B, url="https://shop.example/", idsite="2")
    base = {"period": "day", "date": DAY}
    response = receiver.client.post(
        "/dev/index.php",
        data={
            "module": "API",
            "method": "API.getBulkRequest",
            "token_auth": TOKEN,
            "urls[0]": sub("VisitsSummary.get", idSite="1", **base),
            "urls[1]": sub("Nope.nothing"),
            "urls[2]": sub("API.getBulkRequest", **{"urls[0]": sub("API.getMatomoVersion")}),  # nested: skipped
            "urls[3]": "idSite=1",  # no method of its own: it inherits API.getBulkRequest and is skipped
            "urls[4]": sub("Actions.get", idSite="2", **base),
            "urls[5]": sub("VisitsSummary.get", idSite="1", period="week", date=DAY),
        },
    )
    assert response.status_code == 200
    visits, error, actions, week = response.json
    assert (visits["nb_visits"], visits["nb_actions"], visits["nb_uniq_visitors"]) == (1, 1, 1)
    assert error["result"] == "error" and "Nope" in error["message"]
    assert actions["nb_pageviews"] == 1 and week["result"] == "error"
    assert bulk(receiver) == []


def test_bulk_request_merges_the_outer_parameters_the_sub_requests_own_winning(receiver):
    receiver.hit(cid=CID_A, url="https://shop.example/", idsite="1")
    receiver.hit(cid=CID_A, url="https://shop.example/", idsite="2")
    receiver.hit(cid=CID_B, url="https://shop.example/", idsite="2")
    answers = bulk(
        receiver,
        sub("VisitsSummary.get"),  # idSite, period, date from the outer request
        sub("VisitsSummary.get", idSite="2"),  # its own idSite wins
        sub("VisitsSummary.get", date="2026-11-24"),
        idSite="1",
        period="day",
        date=DAY,
    )
    assert [answer["nb_visits"] for answer in answers] == [1, 2, 0]
    once = bulk(receiver, "method=Events.getCategory%26idSite=1&period=day&date=" + DAY)  # decoded once more
    assert once == [[]]


def test_bulk_request_checks_access_per_sub_request_like_a_direct_call():
    receiver = ReceiverClient()
    receiver.app = ReceiverApp(
        [ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN}, roles={"view-token": "view"})], clock=receiver.clock
    )
    receiver.client = Client(receiver.app)
    urls = (sub("VisitsSummary.get", idSite="1", period="day", date=DAY), sub("API.getMatomoVersion"))
    for token in (None, "wrong-token"):
        denied = bulk(receiver, *urls, token=token)
        assert [answer["result"] for answer in denied] == ["error", "error"]
        assert "requires 'view' access for the website id = 1" in denied[0]["message"]
        assert "for at least one website" in denied[1]["message"]
    assert bulk(receiver, *urls, token="view-token")[1] == {"value": "5.2.0"}
    own = sub("API.getMatomoVersion", token_auth="view-token")  # a sub-request's own token wins
    assert bulk(receiver, own, token="wrong-token") == [{"value": "5.2.0"}]
    assert "wrong-token" not in json.dumps(bulk(receiver, *urls, token="wrong-token"))  # never echoed


def test_bulk_request_reads_repeated_urls_and_the_query_string(receiver):
    receiver.hit(cid=CID_A, url="https://shop.example/")
    first = quote(sub("VisitsSummary.get", idSite="1", period="day", date=DAY), safe="")
    second = quote(sub("API.getMatomoVersion"), safe="")
    body = f"module=API&method=API.getBulkRequest&token_auth={TOKEN}&urls[]={first}&urls%5B%5D={second}"
    response = receiver.client.post("/dev/index.php", data=body, content_type="application/x-www-form-urlencoded")
    summary, version = response.json
    assert {"nb_actions", "nb_uniq_visitors", "nb_visits"} <= set(summary) and list(version) == ["value"]
    query = f"module=API&method=API.getBulkRequest&urls[1]={first}&urls[0]={second}"  # PHP keeps the query's order
    answers = receiver.client.post(f"/dev/index.php?{query}", data={"token_auth": TOKEN, "urls[0]": "x"}).json
    assert answers[0]["nb_visits"] == 1 and answers[1] == {"value": "5.2.0"}


# --- loss injection: --lose KIND=SHARE -----------------------------------------------------------
def lossy(**options) -> ReceiverClient:
    return ReceiverClient(record_hits=True, **options)


def send_goals(receiver: ReceiverClient, count: int = 200) -> None:
    for n in range(count):
        cid = f"{n:016x}"
        assert receiver.hit(cid=cid, url=f"https://shop.example/{n}", send_image="0").status_code == 204
        assert receiver.hit(cid=cid, idgoal="2", revenue="1", send_image="0").status_code == 204


def test_lose_drops_a_seeded_share_of_one_kind_and_counts_it():
    receiver = lossy(lose={"goal": 0.5}, lose_seed=3)
    send_goals(receiver)
    site = receiver.site()
    lost = site["lost_by_kind"]["goal"]
    assert 60 <= lost <= 140 and site["lost_by_kind"] == {"goal": lost} and site["lost"] == lost
    assert site["conversions"]["2"]["conversions"] == 200 - lost
    two = goals(receiver, "2")
    assert two["nb_conversions"] == two["nb_visits_converted"] == 200 - lost and two["revenue"] == 200 - lost
    assert day_report(receiver, "Actions.get")["nb_pageviews"] == 200 and site["visits"] == 200  # other kinds kept
    again = lossy(lose={"goal": 0.5}, lose_seed=3)
    send_goals(again)
    assert again.site()["lost_by_kind"] == {"goal": lost}  # the same hits and seed lose the same ones
    other = lossy(lose={"goal": 0.5}, lose_seed=4)
    send_goals(other)
    assert other.site()["hit_log"] != site["hit_log"]  # another seed loses other goals


def test_lost_hits_change_no_report_nor_visit_nor_hit_log():
    every = dict.fromkeys(HIT_KINDS, 1.0)
    receiver, untouched = lossy(lose=every), lossy(lose=every)
    receiver.hit(cid=CID_A, url="https://shop.example/", _pkp="3")
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, search="boots")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_v="1")
    receiver.hit(cid=CID_A, link="https://other.example/")
    receiver.hit(cid=CID_A, download="https://shop.example/a.pdf")
    receiver.hit(cid=CID_A, idgoal="1")
    receiver.hit(cid=CID_A, idgoal="0", revenue="4")
    receiver.hit(cid=CID_A, idgoal="0", ec_id="O-1", revenue="4")
    receiver.hit(cid=CID_A, ping="1")
    answer = receiver.bulk({"token_auth": TOKEN, "requests": [f"?idsite=1&rec=1&cid={CID_B}&idgoal=2"]})
    assert answer.json == {"status": "success", "tracked": 1, "invalid": 0, "invalid_indices": []}
    assert all(response.startswith(b"GIF") for response in receiver.bodies[:10])
    site = receiver.site()
    assert site["lost"] == 11 and sum(site["lost_by_kind"].values()) == 11
    assert site["lost_by_kind"] == {
        "cart": 1,
        "download": 1,
        "event": 1,
        "goal": 2,
        "order": 1,
        "outlink": 1,
        "pageview": 1,
        "ping": 1,
        "product_view": 1,
        "search": 1,
    }
    assert site["visits"] == site["hits"] == 0 and "hit_log" not in site and site["conversions"] == {}
    assert all_reports(receiver) == all_reports(untouched)
    assert receiver.visits() == []


def test_a_lost_kind_leaves_the_others_and_a_repeated_order_id_stays_refused():
    receiver = lossy(lose={"order": 1.0, "event": 0.0})
    receiver.hit(cid=CID_A, url="https://shop.example/")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play")
    receiver.hit(cid=CID_A, idgoal="0", ec_id="O-1", revenue="4")
    site = receiver.site()
    assert site["lost_by_kind"] == {"order": 1} and site["actions"]["event"] == 1
    assert goals(receiver, "ecommerceOrder")["nb_conversions"] == 0
    assert day_report(receiver, "VisitsSummary.get")["nb_actions"] == 2
    state = InstanceState(ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN}), "/dev")
    state.sites[1].ec_ids.add("O-1")  # an order the site stored before
    tracker = Tracker(FakeClock(), lose=KindLoss({"order": 1.0}))
    repeated = {"idsite": "1", "rec": "1", "cid": CID_B, "idgoal": "0", "ec_id": "O-1", "revenue": "4"}
    outcome = tracker.track(state, repeated, HttpClient("", "", "10.0.0.1"))
    assert outcome is not None and outcome.reason == DUPLICATE_EC_ID and outcome.status == 400
    assert state.stats()["sites"]["1"]["invalid"] == {DUPLICATE_EC_ID: 1} and "lost" not in state.stats()["sites"]["1"]


def test_lose_refuses_unknown_kinds_and_shares_outside_0_to_1():
    assert lose_shares(["goal=1", "event=0.25", "goal=0.5"]) == {"goal": 0.5, "event": 0.25}
    for option, words in (
        ("goal", "KIND=SHARE"),
        ("=0.5", "KIND=SHARE"),
        ("visit=0.5", "not a hit kind"),
        ("goal=1.5", "between 0 and 1"),
        ("goal=x", "between 0 and 1"),
        ("goal=nan", "between 0 and 1"),
    ):
        with pytest.raises(ValueError, match=words) as refused:
            lose_shares([option])
        assert repr(option) in str(refused.value)
    for shares in ({"visit": 0.5}, {"goal": -0.1}, {"goal": 2}):
        with pytest.raises(ValueError):
            ReceiverApp([], lose=shares)


def test_sink_command_refuses_a_bad_lose():
    for value in ("goal=2", "visit=0.5", "goal"):
        result = subprocess.run(
            receiver_command("--lose", value, "--port", "0"), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and "--lose" in result.stderr and value in result.stderr
        assert "Traceback" not in result.stderr and "listening" not in result.stdout


def test_sink_command_loses_the_kinds_given_with_lose(tmp_path):
    ready = tmp_path / "port"
    options = ("--instance", "/dev", "--token", TOKEN, "--lose", "goal=1", "--lose", "event=0", "--lose-seed", "5")
    process = subprocess.Popen(
        receiver_command("--port", "0", "--ready-file", str(ready), *options),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until_listening(process)
        base = f"http://127.0.0.1:{int(ready.read_text())}/dev"
        for query in (f"cid={CID_A}", f"cid={CID_A}&idgoal=1", f"cid={CID_A}&e_c=Video&e_a=Play"):
            with urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&{query}") as response:
                assert response.status == 200
        with urllib.request.urlopen(f"{base}/sink/stats") as response:
            site = json.load(response)["sites"]["1"]
        assert site["lost_by_kind"] == {"goal": 1} and site["actions"]["event"] == 1 and site["conversions"] == {}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        process.stdout.close()
