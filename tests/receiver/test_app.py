"""The receiver's routes, the stats JSON and reset, independent instances, and no answer echoing a token."""

from receiver_client import CID_A, TOKEN, FakeClock, old_cdt
from werkzeug.test import Client

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite


def test_piwik_php_alias_and_unknown_paths(receiver):
    assert receiver.client.get("/dev/piwik.php?idsite=1&rec=1").status_code == 200
    assert receiver.client.get("/nope/matomo.php?idsite=1&rec=1").status_code == 404
    assert receiver.client.get("/dev/other.php").status_code == 404
    assert receiver.client.put("/dev/matomo.php?idsite=1&rec=1").status_code == 405
    assert receiver.site()["hits"] == 1


def test_stats_shape_and_reset(receiver):
    receiver.hit(cid=CID_A)
    receiver.hit(cid="bad")
    receiver.hit(rec=None)
    stats = receiver.stats()
    assert stats["instance"] == "/dev" and set(stats["sites"]) == {"1", "2"}
    site = stats["sites"]["1"]
    assert set(site) == {
        "visits",
        "unique_visitors",
        "actions",
        "hits",
        "ip_overrides",
        "invalid",
        "ignored",
        "visits_by_day",
        "returning_visits",
        "visitor_types",
        "referrer_types",
        "conversions",
    }
    assert (site["returning_visits"], site["visitor_types"], site["referrer_types"]) == (0, {"new": 1}, {"direct": 1})
    assert site["conversions"] == {}
    assert (stats["failed_batches"], stats["rolled_back_batches"]) == (0, 0)
    assert set(site["actions"]) == set(p.HIT_KINDS)
    assert site["visits_by_day"] == {"2026-11-25": 1}
    assert site["invalid"] == {p.BAD_CID: 1} and site["ignored"] == {p.NO_REC: 1}
    everything = receiver.client.get("/sink/stats").json
    assert list(everything) == ["/dev"] and everything["/dev"] == stats
    assert receiver.client.get("/dev/sink/reset").status_code == 405
    assert receiver.client.post("/dev/sink/reset").status_code == 200
    cleared = receiver.site()
    assert (cleared["visits"], cleared["hits"], cleared["invalid"], cleared["visits_by_day"]) == (0, 0, {}, {})


def test_several_instances_are_independent():
    app = ReceiverApp(
        [
            ReceiverInstance("/dev", {1: ReceiverSite(1)}, {"dev-token"}),
            ReceiverInstance("/prod", {1: ReceiverSite(1)}, {"prod-token"}),
        ],
        clock=FakeClock(),
    )
    client = Client(app)
    client.post("/dev/matomo.php", data={"idsite": "1", "rec": "1", "cip": "1.2.3.4", "token_auth": "dev-token"})
    response = client.post(
        "/prod/matomo.php", data={"idsite": "1", "rec": "1", "cip": "1.2.3.4", "token_auth": "dev-token"}
    )
    assert response.status_code == 400
    everything = client.get("/sink/stats").json
    assert everything["/dev"]["sites"]["1"]["hits"] == 1
    assert everything["/prod"]["sites"]["1"]["invalid"] == {p.OVERRIDE_NEEDS_TOKEN: 1}
    client.post("/prod/sink/reset")
    assert client.get("/dev/sink/stats").json["sites"]["1"]["hits"] == 1


def test_token_is_never_echoed(receiver):
    receiver.hit(cip="1.2.3.4", token_auth=TOKEN)
    receiver.hit(cip="1.2.3.4", token_auth=TOKEN + "x")
    receiver.hit(cid="bad", token_auth=TOKEN)
    receiver.hit(idsite="42", token_auth=TOKEN)
    receiver.hit(cdt=old_cdt(50), token_auth=TOKEN + "x")
    receiver.bulk({"token_auth": TOKEN, "requests": ["?idsite=1&rec=1&cid=bad", f"?idsite=1&rec=1&token_auth={TOKEN}"]})
    receiver.bulk('{"token_auth": "' + TOKEN + '", "requests": [', raw=True)
    receiver.bulk({"token_auth": TOKEN, "requests": [7]})
    receiver.api("VisitsSummary.get", token=TOKEN + "x", idSite="1")
    receiver.api("Foo.bar", idSite="1")
    receiver.api("SitesManager.getSiteFromId", idSite="1")
    receiver.stats()
    receiver.bodies.append(receiver.client.get("/sink/stats").get_data())
    assert len(receiver.bodies) >= 13
    assert not [body for body in receiver.bodies if TOKEN.encode() in body]
