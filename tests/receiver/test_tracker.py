"""The tracker endpoint: Matomo's statuses and silent drops, each rule's reason, the stateful checks
(duplicate order id, goals per site), the loss option, the counters it feeds."""

import json

import pytest
from receiver_client import CID_A, TOKEN, FakeClock, ReceiverClient, old_cdt
from werkzeug.test import Client

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.tracker import GIF


def test_stored_hit_answers_gif_or_204(receiver):
    response = receiver.hit(url="https://example.org/")
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert response.get_data() == GIF and len(GIF) == 43
    silent = receiver.hit(url="https://example.org/", send_image="0")
    assert silent.status_code == 204 and silent.get_data() == b""
    assert receiver.site()["hits"] == 2


def test_optional_delay_still_answers_and_records():
    app = ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)}, set())], clock=FakeClock(), delay_seconds=0.001)
    assert Client(app).get("/dev/matomo.php?idsite=1&rec=1").status_code == 200
    assert app.stats("/dev")["sites"]["1"]["hits"] == 1


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"cid": "xyz"}, p.BAD_CID),
        ({"e_c": "Video"}, p.EVENT_INCOMPLETE),
        ({"e_a": "Play", "e_c": ""}, p.EVENT_INCOMPLETE),
        ({"cip": "203.0.113.9"}, p.OVERRIDE_NEEDS_TOKEN),
        ({"country": "se", "token_auth": "wrong-token"}, p.OVERRIDE_NEEDS_TOKEN),
        ({"lat": "59.3"}, p.OVERRIDE_NEEDS_TOKEN),
        ({"cdt": old_cdt(25)}, p.CDT_NEEDS_TOKEN),
        ({"cdt": "tomorrow-ish"}, p.BAD_CDT),
        ({"idgoal": "9"}, p.UNKNOWN_GOAL),
        ({"idgoal": "0", "ec_id": "A1", "revenue": "10.999"}, p.BAD_MONEY),
        (
            {"idgoal": "0", "ec_id": "A1", "revenue": "50", "ec_st": "40", "ec_tx": "5", "ec_sh": "5", "ec_dt": "1"},
            p.REVENUE_MISMATCH,
        ),
        ({"idgoal": "0", "ec_id": "A1", "ec_items": '[["SKU", "Shoe"]]'}, p.BAD_EC_ITEMS),
    ],
)
def test_each_receiver_rule_answers_400_and_counts_its_reason(receiver, params, reason):
    response = receiver.hit(**params)
    assert response.status_code == 400
    site = receiver.site()
    assert site["invalid"] == {reason: 1}
    assert site["hits"] == 0 and site["visits"] == 0 and site["ignored"] == {}


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"idsite": None}, p.MISSING_IDSITE),
        ({"idsite": "abc"}, p.MISSING_IDSITE),
        ({"idsite": "99"}, p.UNKNOWN_SITE),
    ],
)
def test_hits_naming_no_known_site_are_400_and_counted_on_the_instance(receiver, params, reason):
    assert receiver.hit(**params).status_code == 400
    stats = receiver.stats()
    assert stats["invalid"] == {reason: 1}
    assert all(site["invalid"] == {} for site in stats["sites"].values())


def test_token_unlocks_overrides_and_old_cdt(receiver):
    assert receiver.hit(cip="203.0.113.9", country="se", token_auth=TOKEN).status_code == 200
    assert receiver.hit(cdt=old_cdt(48), token_auth=TOKEN).status_code == 200
    assert receiver.hit(cdt=old_cdt(23)).status_code == 200
    assert receiver.site()["hits"] == 3 and receiver.site()["invalid"] == {}


def test_goal_ids_are_per_site(receiver):
    assert receiver.hit(idsite="2", idgoal="5").status_code == 200
    assert receiver.hit(idsite="2", idgoal="1").status_code == 400
    assert receiver.site(2)["actions"]["goal"] == 1 and receiver.site(2)["invalid"] == {p.UNKNOWN_GOAL: 1}


def test_missing_rec_is_ignored_not_a_visit_nor_invalid(receiver):
    response = receiver.hit(rec=None, url="https://example.org/")
    assert response.status_code == 200 and response.get_data() == GIF
    assert receiver.hit(rec=None, send_image="0").status_code == 204
    site = receiver.site()
    assert site["ignored"] == {p.NO_REC: 2}
    assert (site["visits"], site["hits"], site["invalid"]) == (0, 0, {})


def test_bots_are_dropped_silently_unless_bots_1(receiver):
    googlebot = {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    assert receiver.hit(headers=googlebot).status_code == 200
    assert receiver.hit(ua="Mozilla/5.0 (compatible; bingbot/2.0)").status_code == 200
    assert receiver.site()["ignored"] == {p.BOT: 2} and receiver.site()["visits"] == 0
    assert receiver.hit(headers=googlebot, bots="1").status_code == 200
    assert receiver.site()["visits"] == 1 and receiver.site()["hits"] == 1


def test_duplicate_ec_id_is_400_per_site(receiver):
    order = {"idgoal": "0", "ec_id": "ORDER-1", "revenue": "10.00", "cid": CID_A}
    assert receiver.hit(**order).status_code == 200
    assert receiver.hit(**order).status_code == 400
    assert receiver.hit(**{**order, "idsite": "2"}).status_code == 200
    assert receiver.hit(idgoal="0", revenue="5").status_code == 200  # carts have no ec_id
    assert receiver.hit(idgoal="0", revenue="5").status_code == 200
    site = receiver.site()
    assert site["invalid"] == {p.DUPLICATE_EC_ID: 1}
    assert site["actions"]["order"] == 1 and site["actions"]["cart"] == 2


def test_an_empty_tracker_request_gets_matomos_page_and_records_nothing(receiver):
    page = receiver.client.get("/dev/matomo.php")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.get_data().startswith(b"This resource is part of Matomo.")
    assert b"endpoint for the Matomo tracking API" in page.get_data()
    empty_post = receiver.client.post("/dev/matomo.php")
    assert empty_post.status_code == 400 and empty_post.get_data().startswith(b"This resource is part of Matomo.")
    stats = receiver.stats()
    assert stats["ignored"] == {} and stats["invalid"] == {} and receiver.site()["hits"] == 0
    assert receiver.get_hit(cid=CID_A).status_code == 200 and receiver.get_hit(cid=CID_A).get_data() == GIF


def test_ip_overrides_are_counted_only_with_a_valid_token():
    """The e2e tests prove 'cip only for targets with a token' through this counter."""
    receiver = ReceiverClient()
    assert receiver.hit(cid="00000000000000a1", cip="81.2.69.160", token_auth=TOKEN).status_code == 200
    assert receiver.hit(cid="00000000000000a2").status_code == 200
    assert receiver.site()["ip_overrides"] == 1


def _lossy(loss: float, seed: int) -> tuple[ReceiverApp, Client]:
    app = ReceiverApp(
        [ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN})], clock=FakeClock(), loss=loss, loss_seed=seed
    )
    return app, Client(app)


def _lost_visits(loss: float, seed: int, count: int = 400) -> tuple[int, dict]:
    app, client = _lossy(loss, seed)
    for n in range(count):
        response = client.post(
            "/dev/matomo.php",
            data={"idsite": "1", "rec": "1", "send_image": "0", "cid": f"{n:016x}", "url": f"https://e.example/{n}"},
        )
        assert response.status_code == 204  # answered like a stored hit
    site = app.stats("/dev")["sites"]["1"]
    return site["lost"], site


def test_loss_drops_a_seeded_share_of_valid_hits_but_answers_them_as_stored():
    lost, site = _lost_visits(0.25, seed=1)
    assert 60 <= lost <= 140 and site["visits"] == site["hits"] == 400 - lost
    assert site["invalid"] == {} and site["ignored"] == {}
    assert _lost_visits(0.25, seed=1)[0] == lost  # same hits, same seed: same choice
    assert (
        _lost_visits(0.25, seed=2)[1]["visits"] != site["visits"]
        or _lost_visits(0.25, seed=3)[1]["visits"] != site["visits"]
    )
    app, client = _lossy(0.25, seed=1)
    bulk = json.dumps(
        {
            "requests": [
                f"?idsite=1&rec=1&send_image=0&cid={n:016x}&url=https%3A%2F%2Fe.example%2F{n}" for n in range(400)
            ],
            "token_auth": TOKEN,
        }
    )
    answer = client.post("/dev/matomo.php", data=bulk, content_type="application/json").json
    assert answer == {"status": "success", "tracked": 400, "invalid": 0, "invalid_indices": []}
    assert app.stats("/dev")["sites"]["1"]["lost"] == lost  # the token does not change the choice
    with pytest.raises(ValueError):
        ReceiverApp([], loss=1.0)


def test_invalid_hits_are_not_lost_they_stay_invalid():
    app, client = _lossy(0.9, seed=1)
    for _ in range(20):
        assert client.post("/dev/matomo.php", data={"idsite": "1", "rec": "1", "cid": "nothex"}).status_code == 400
    site = app.stats("/dev")["sites"]["1"]
    assert site["invalid"] == {p.BAD_CID: 20} and "lost" not in site
