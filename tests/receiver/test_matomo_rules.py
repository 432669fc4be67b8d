"""The receiver behaves like Matomo 5 (docs/receiver.md has the rule, its Matomo source and the test):
``ca=1``, bulk transactions, deadlock-like failures, returning visitors from the receiver's own
history, visitor lookup by cid / uid / _id / fingerprint, referrer types, goals and ecommerce."""

import json
from datetime import datetime, timezone

import pytest
from receiver_client import CID_A, CID_B, TOKEN, ReceiverClient, old_cdt
from werkzeug.test import Client

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverGoal, ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.visits import uid_visitor_id

CHROME_131 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.3 Mobile/15E148 Safari/604.1"
)
NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc)


def shop() -> ReceiverClient:
    """Site 1: goal 1 'URL contains /thank-you', goal 2 manual, goal 3 manual allowing several, default revenue 2."""
    goals = (
        ReceiverGoal(1, url_contains="/thank-you"),
        ReceiverGoal(2),
        ReceiverGoal(3, allow_multiple=True, revenue=2.0),
    )
    return ReceiverClient(sites={1: ReceiverSite(1, goals=frozenset(), goal_definitions=goals)})


# --- ca=1 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"e_c": "Video", "e_a": "Play"},
        {"link": "https://other.example/"},
        {"download": "https://example.org/a.pdf"},
        {"c_n": "Banner"},
        {"search": "shoes"},
        {"idgoal": "2", "e_c": "Video", "e_a": "Play"},  # an event claims it; the goal converts
    ],
)
def test_ca_1_claimed_by_an_action_type_is_stored(receiver, params):
    assert receiver.hit(cid=CID_A, ca="1", **params).status_code == 200
    assert receiver.site()["hits"] == 1 and receiver.site()["invalid"] == {}


@pytest.mark.parametrize(
    "params",
    [
        {"idgoal": "2"},
        {"idgoal": "0", "revenue": "5"},
        {"idgoal": "0", "ec_id": "A-1", "revenue": "5"},
        {"url": "https://example.org/"},
        {"ping": "1"},
        {"_pks": "SKU1"},
        {"e_c": "Video"},
        {"e_a": "Play", "e_c": " "},
    ],
)
def test_ca_1_that_no_action_type_claims_is_refused(receiver, params):
    receiver.hit(cid=CID_A)
    before = receiver.site()
    response = receiver.hit(cid=CID_A, ca="1", **params)
    assert response.status_code == 400
    site = receiver.site()
    assert site["invalid"] == {p.CA_UNCLAIMED: 1}
    assert (site["hits"], site["actions"], site["conversions"]) == (before["hits"], before["actions"], {})


def test_the_ca_rule_is_the_shared_protocol_definition():
    def check(**params):
        return p.check_hit(
            {"idsite": "1", "rec": "1", **params},
            site_exists=True,
            token_valid=False,
            token_given=False,
            goal_ids={1, 2},
            now_utc=NOW,
        )

    assert check(idgoal="2", ca="1").reason == p.CA_UNCLAIMED
    assert check(idgoal="2", ca="0") is None and check(e_c="V", e_a="P", ca="1") is None
    assert check(cid="short", idgoal="2", ca="1").reason == p.BAD_CID  # checked before the actions run
    assert check(cip="1.2.3.4", idgoal="2", ca="1").reason == p.OVERRIDE_NEEDS_TOKEN
    assert check(idgoal="9", ca="1").reason == p.CA_UNCLAIMED  # the actions run before the goals
    assert check(e_c="Video").reason == p.EVENT_INCOMPLETE  # stricter than Matomo, without ca
    assert p.BULK_FATAL_REASONS == {p.CA_UNCLAIMED} and p.CA_UNCLAIMED in p.INVALID_REASONS


def test_content_with_ca_is_stored_but_is_no_action_nor_pageview(receiver):
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_A, ca="1", c_n="Banner", c_p="/img/banner.png")
    site = receiver.site()
    assert site["hits"] == 2 and site["actions"]["pageview"] == 1
    assert receiver.visits()[0]["actions"] == 1


# --- bulk: one transaction -----------------------------------------------------------------------
def item(**params) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in {"idsite": "1", "rec": "1", **params}.items())


def test_bulk_skips_unknown_sites_and_invalid_parameters_and_stores_the_rest(receiver):
    answer = receiver.bulk(
        {
            "token_auth": TOKEN,
            "requests": [
                item(cid=CID_A),
                item(idsite="99", cid=CID_A),
                item(cid="aaaaaaaaaaaaaaa"),
                item(cid=CID_A, idgoal="9"),
                item(cid=CID_B, cdt=old_cdt(30).replace(" ", "%20")),  # the top-level token allows it
                item(cid=CID_B, idgoal="0", revenue="1.999"),  # the receiver's own money check
            ],
        }
    )
    assert answer.status_code == 200
    assert answer.json == {"status": "success", "tracked": 2, "invalid": 4, "invalid_indices": [1, 2, 3, 5]}
    without_token = receiver.bulk(
        {"requests": [item(cid=CID_A, cip="1.2.3.4"), item(cid=CID_B, cdt=old_cdt(30).replace(" ", "%20"))]}
    )
    assert without_token.json == {"status": "success", "tracked": 0, "invalid": 2}  # indices: super users only
    site = receiver.site()
    assert site["visits"] == 2 and site["hits"] == 2
    assert site["invalid"] == {
        p.BAD_CID: 1,
        p.UNKNOWN_GOAL: 1,
        p.BAD_MONEY: 1,
        p.OVERRIDE_NEEDS_TOKEN: 1,
        p.CDT_NEEDS_TOKEN: 1,
    }


def test_bulk_with_a_refused_item_is_rolled_back_whole(receiver):
    receiver.hit(cid=CID_A, idgoal="0", ec_id="ORDER-1", revenue="10")
    before = receiver.site()
    answer = receiver.bulk(
        {
            "token_auth": TOKEN,
            "requests": [
                item(cid=CID_A),
                item(cid="short"),  # invalid: not counted as tracked
                item(cid=CID_B, idgoal="0", ec_id="ORDER-1", revenue="10"),  # a repeated order: not tracked
                item(cid=CID_B),
                item(cid=CID_A, idgoal="2", ca="1"),
                item(cid=CID_B),
            ],
        }
    )
    assert answer.status_code == 500
    assert answer.json == {"status": "error", "tracked": 2, "invalid": 0, "invalid_indices": []}
    after = receiver.site()
    assert after["invalid"] == {p.CA_UNCLAIMED: 1}  # the reason is recorded, nothing else of the batch
    assert {k: v for k, v in after.items() if k != "invalid"} == {k: v for k, v in before.items() if k != "invalid"}
    assert receiver.stats()["rolled_back_batches"] == 1


def test_fail_batches_answers_a_seeded_share_of_bulk_requests_like_a_deadlock():
    def run(share: float, seed: int) -> tuple[list[int], dict]:
        receiver = ReceiverClient(fail_batches=share, fail_seed=seed)
        statuses = []
        for n in range(60):
            answer = receiver.bulk({"token_auth": TOKEN, "requests": [item(cid=f"{n:016x}")]})
            statuses.append(answer.status_code)
            if answer.status_code == 500:
                assert answer.json == {"status": "error", "tracked": 0}
        assert receiver.hit(cid=CID_A).status_code == 200  # single hits never fail
        return statuses, receiver.stats()

    statuses, stats = run(0.3, seed=4)
    failed = statuses.count(500)
    assert 8 <= failed <= 30 and set(statuses) == {200, 500}
    assert stats["failed_batches"] == failed and stats["sites"]["1"]["visits"] == 60 - failed + 1
    assert run(0.3, seed=4)[0] == statuses  # same seed, same failures
    assert run(0.3, seed=5)[0] != statuses or run(0.3, seed=6)[0] != statuses
    assert run(1.0, seed=0)[0] == [500] * 60 and run(0.0, seed=0)[0] == [200] * 60
    with pytest.raises(ValueError):
        ReceiverApp([], fail_batches=1.5)


# --- returning visitors --------------------------------------------------------------------------
def test_returning_is_decided_from_the_receivers_own_history(receiver):
    receiver.hit(cid=CID_A, new_visit="1", _idvc="5")  # claims to return: Matomo never saw it
    receiver.clock.advance(24 * 60)  # the next day
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_A, new_visit="1")
    receiver.hit(cid=CID_B, _idvc="3")
    visits = receiver.visits()
    assert [(v["visitorId"], v["visitCount"], v["visitorType"]) for v in visits] == [
        (CID_A, 1, "new"),
        (CID_A, 2, "returning"),
        (CID_A, 3, "returning"),
        (CID_B, 1, "new"),
    ]
    site = receiver.site()
    assert site["returning_visits"] == 2 and site["visitor_types"] == {"new": 2, "returning": 2}


def test_returning_survives_the_expiry_of_old_visits(receiver):
    for n in range(1500):
        receiver.hit(cid=f"{n:016x}", send_image="0")
    receiver.clock.advance(120)
    for n in range(1500):  # sweeps retire the first visits into the history on the way
        receiver.hit(cid=f"{n + 5000:016x}", send_image="0")
    receiver.hit(cid=f"{7:016x}")
    assert receiver.visits()[-1]["visitCount"] == 2 and receiver.site()["returning_visits"] == 1


def test_returning_customer_ordered_before_or_starts_with_an_order(receiver):
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_A, idgoal="0", ec_id="ORDER-1", revenue="10")  # mid-visit: the visit stays "new"
    receiver.clock.advance(31)
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_B, idgoal="0", ec_id="ORDER-2", revenue="10")  # a brand-new visitor's first hit
    types = [(v["visitorId"], v["visitorType"]) for v in receiver.visits()]
    assert types == [(CID_A, "new"), (CID_A, "returningCustomer"), (CID_B, "returningCustomer")]
    assert receiver.site()["returning_visits"] == 2


# --- visitor lookup ------------------------------------------------------------------------------
def test_cid_is_looked_up_by_visitor_id_only(receiver):
    for cid in (CID_A, CID_B, CID_A, CID_B):  # same IP, user agent and language
        receiver.hit(cid=cid, ua=CHROME_131)
    assert [(v["visitorId"], v["actions"]) for v in receiver.visits()] == [(CID_A, 2), (CID_B, 2)]


def test_uid_is_hashed_and_takes_over_a_visit_of_the_same_fingerprint(receiver):
    assert uid_visitor_id("user-42") == "685ec89afbc0d819"  # sha1("user-42")[:16], as Matomo
    receiver.hit(cid=CID_A, ua=IPHONE)
    receiver.hit(cid=CID_B, uid="user-42", ua=IPHONE)
    receiver.hit(cid=CID_B, uid="user-42", ua=IPHONE)
    (visit,) = receiver.visits()
    assert (visit["visitorId"], visit["userId"], visit["actions"]) == ("685ec89afbc0d819", "user-42", 3)
    assert receiver.site()["unique_visitors"] == 1
    receiver.hit(cid=CID_A, ua=IPHONE)  # A's id now belongs to no visit: a new visit, a new visitor
    assert receiver.site()["visits"] == 2


def test_uid_fingerprint_fallback_skips_visits_of_another_user(receiver):
    receiver.hit(uid="alice", ua=IPHONE)
    receiver.clock.advance(1)
    receiver.hit(uid="bob", ua=IPHONE)  # same fingerprint, but alice's visit
    receiver.clock.advance(1)
    receiver.hit(ua=IPHONE)  # no id: the latest visit of the fingerprint (bob's)
    visits = receiver.visits()
    assert [(v["userId"], v["actions"]) for v in visits] == [("alice", 1), ("bob", 2)]
    assert [v["visitorType"] for v in visits] == ["new", "new"]


def test_uid_with_new_visit_after_a_fingerprint_match_is_returning(receiver):
    receiver.hit(cid=CID_A, ua=IPHONE)
    receiver.hit(cid=CID_B, uid="user-42", ua=IPHONE, new_visit="1")
    receiver.hit(cid=CID_B, uid="user-42", ua=IPHONE)
    receiver.hit(cid=CID_A, ua=IPHONE)
    visits = [(v["visitorId"], v["actions"], v["visitCount"], v["visitorType"]) for v in receiver.visits()]
    assert visits == [(CID_A, 2, 1, "new"), ("685ec89afbc0d819", 2, 2, "returning")]


def test_without_ids_only_the_fingerprint_within_30_minutes_matches(receiver):
    receiver.hit(ua=CHROME_131)
    receiver.clock.advance(29)
    receiver.hit(ua=CHROME_131)
    receiver.clock.advance(31)
    receiver.hit(ua=CHROME_131)
    visits = receiver.visits()
    assert [v["actions"] for v in visits] == [2, 1] and visits[0]["visitorId"] != visits[1]["visitorId"]
    assert [v["visitorType"] for v in visits] == ["new", "new"]


# --- the fingerprint (config id) -----------------------------------------------------------------
def test_the_fingerprint_hashes_os_browser_version_plugins_ip_and_language(receiver):
    wow64 = CHROME_131.replace("Win64; x64", "WOW64")  # another string, same OS, browser and version
    receiver.hit(ua=CHROME_131, pdf="1")
    receiver.hit(ua=wow64, pdf="1")
    assert receiver.site()["visits"] == 1
    for other in (
        {"ua": CHROME_131.replace("131.0.0.0", "130.0.0.0"), "pdf": "1"},
        {"ua": CHROME_131, "pdf": "0"},
        {"ua": CHROME_131, "pdf": "1", "lang": "de-DE"},
        {"ua": CHROME_131, "pdf": "1", "remote": "10.0.0.2"},
        {"ua": CHROME_131, "pdf": "1", "res": "1x1", "_id": "0123456789abcdef"},  # not hashed: same visit
    ):
        receiver.hit(**other)
    assert receiver.site()["visits"] == 5


def test_the_fingerprint_never_matches_across_the_sites_midnight():
    receiver = ReceiverClient(tz="Asia/Tokyo")
    receiver.clock.now = datetime(2026, 11, 25, 14, 55, tzinfo=timezone.utc).timestamp()  # 23:55 JST
    receiver.hit(ua=CHROME_131)
    receiver.clock.advance(10)
    receiver.hit(ua=CHROME_131)
    assert [v["visitorType"] for v in receiver.visits()] == ["new", "new"]


# --- referrers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, kind, name",
    [
        ({}, "direct", ""),
        ({"urlref": "https://example.org/other-page"}, "direct", ""),
        ({"urlref": "https://www.google.com/search?q=widgets"}, "search", "Google"),
        ({"urlref": "https://www.facebook.com/"}, "search", "Facebook"),
        ({"urlref": "https://l.facebook.com/"}, "social", "Facebook"),
        ({"urlref": "https://blog.other.example/post"}, "website", "blog.other.example"),
        ({"urlref": "https://chatgpt.com/"}, "website", "chatgpt.com"),  # the receiver is a 5.2: no "ai"
        ({"url": "https://example.org/?mtm_campaign=Spring"}, "campaign", "spring"),
        ({"_rcn": "Autumn", "urlref": "https://www.google.com/search?q=x"}, "campaign", "autumn"),
    ],
)
def test_referrer_types_are_matomos(receiver, params, kind, name):
    receiver.hit(cid=CID_A, **{"url": "https://example.org/", **params})
    receiver.hit(cid=CID_A, url="https://example.org/next", urlref="https://www.google.com/search?q=later")
    (visit,) = receiver.visits()
    assert (visit["referrerType"], visit["referrerName"]) == (kind, name)
    assert receiver.site()["referrer_types"] == {kind: 1}


# --- goals and ecommerce -------------------------------------------------------------------------
def test_goals_convert_once_per_visit_unless_they_allow_several():
    receiver = shop()
    receiver.hit(cid=CID_A, url="https://example.org/thank-you")
    receiver.hit(cid=CID_A, url="https://example.org/THANK-YOU?again=1")  # case-insensitive, once
    receiver.hit(cid=CID_A, idgoal="2", revenue="5")
    assert receiver.hit(cid=CID_A, idgoal="2", revenue="7").status_code == 200  # dropped silently
    receiver.hit(cid=CID_A, idgoal="3")
    receiver.clock.now += 0.1
    receiver.hit(cid=CID_A, idgoal="3")  # the same second: Matomo's buster keeps one
    receiver.clock.advance(1)
    receiver.hit(cid=CID_A, idgoal="3", revenue="1.50")
    site = receiver.site()
    assert site["conversions"] == {
        "1": {"conversions": 1, "revenue": 0.0},
        "2": {"conversions": 1, "revenue": 5.0},
        "3": {"conversions": 2, "revenue": 3.5},
    }
    assert site["actions"]["goal"] == 5 and receiver.visits()[0]["actions"] == 2  # goals are no actions
    receiver.hit(cid=CID_B, idgoal="2")
    assert receiver.site()["conversions"]["2"]["conversions"] == 2  # another visit converts again


def test_a_cart_row_becomes_the_order_and_a_cart_after_the_order_is_abandoned(receiver):
    receiver.hit(cid=CID_A, idgoal="0", revenue="20.00")
    receiver.hit(cid=CID_A, idgoal="0", revenue="25.00")  # replaces the cart row
    assert receiver.site()["conversions"] == {"ecommerceAbandonedCart": {"conversions": 1, "revenue": 25.0}}
    receiver.hit(cid=CID_A, idgoal="0", ec_id="ORDER-1", revenue="24.90")
    assert receiver.site()["conversions"] == {"ecommerceOrder": {"conversions": 1, "revenue": 24.9}}
    receiver.hit(cid=CID_A, idgoal="0", revenue="10.00")
    assert receiver.site()["conversions"] == {
        "ecommerceAbandonedCart": {"conversions": 1, "revenue": 10.0},
        "ecommerceOrder": {"conversions": 1, "revenue": 24.9},
    }


def test_a_repeated_order_id_is_refused_after_its_visit_is_stored(receiver):
    receiver.hit(cid=CID_A, idgoal="0", ec_id="ORDER-3", revenue="10")
    assert receiver.hit(cid=CID_B, idgoal="0", ec_id="ORDER-3", revenue="10").status_code == 400
    site = receiver.site()
    assert site["visits"] == 2 and site["invalid"] == {p.DUPLICATE_EC_ID: 1}
    assert site["conversions"] == {"ecommerceOrder": {"conversions": 1, "revenue": 10.0}}
    assert [(v["visitorId"], v["actions"]) for v in receiver.visits()] == [(CID_A, 0), (CID_B, 0)]
    answer = receiver.bulk({"token_auth": TOKEN, "requests": [item(cid=CID_B, idgoal="0", ec_id="ORDER-3")]})
    assert answer.json == {"status": "success", "tracked": 0, "invalid": 1, "invalid_indices": [0]}


# --- the Reporting API's Live subset -------------------------------------------------------------
def test_live_last_visits_details_newest_first(receiver):
    receiver.hit(cid=CID_A, ua=IPHONE, urlref="https://l.facebook.com/")
    receiver.clock.advance(1)
    receiver.hit(cid=CID_B, ua=CHROME_131)
    newest, oldest = receiver.api("Live.getLastVisitsDetails", idSite="1")
    assert (newest["visitorId"], oldest["visitorId"]) == (CID_B, CID_A)
    assert oldest["deviceType"] == "Smartphone" and newest["deviceType"] == "Desktop"
    assert set(oldest) >= {"idVisit", "visitorId", "visitCount", "visitorType", "actions", "referrerType"}
    assert len(receiver.api("Live.getLastVisitsDetails", idSite="1", filter_limit="1")) == 1
    assert receiver.api("Live.getLastVisitsDetails", idSite="9")["result"] == "error"


def test_bulk_answers_use_matomos_json():
    receiver = ReceiverClient()
    answer = receiver.bulk({"token_auth": TOKEN, "requests": [item(cid=CID_A)]})
    assert json.loads(answer.get_data()) == {"status": "success", "tracked": 1, "invalid": 0, "invalid_indices": []}


def test_a_write_token_is_no_super_user_and_gets_no_invalid_indices():
    app = ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)}, roles={"w-token": "write"})])
    receiver = ReceiverClient()
    receiver.app, receiver.client = app, Client(app)
    answer = receiver.bulk({"token_auth": "w-token", "requests": [item(cid="short"), item(cid=CID_A)]})
    assert answer.json == {"status": "success", "tracked": 1, "invalid": 1}
