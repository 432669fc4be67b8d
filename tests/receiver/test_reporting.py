"""The Reporting API subset: access by token role, site details, VisitsSummary by site-local day,
tracking failures, errors answered with status 200 like Matomo."""

import urllib.parse
from datetime import datetime, timezone

import pytest
from receiver_client import CID_A, CID_B, TOKEN, ReceiverClient, old_cdt
from werkzeug.test import Client

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite


def test_api_version_needs_some_view_access_like_matomo(receiver):
    assert receiver.api("API.getMatomoVersion") == {"value": "5.2.0"}
    for token in (None, "wrong-token"):
        answer = receiver.api("API.getMatomoVersion", token=token)
        assert answer == {
            "result": "error",
            "message": "You can't access this resource as it requires 'view' access for at least one website.",
        }
    response = receiver.client.get("/dev/index.php?module=API&method=API.getMatomoVersion&format=JSON")
    assert response.status_code == 200 and response.json["result"] == "error"


def test_api_site_from_id(receiver):
    assert receiver.api("SitesManager.getSiteFromId", idSite="1") == {
        "idsite": "1",
        "name": "Main",
        "timezone": "UTC",
        "currency": "USD",
        "ecommerce": 1,
    }
    unknown = receiver.api("SitesManager.getSiteFromId", idSite="9")
    assert unknown["result"] == "error" and "website id" in unknown["message"]


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
@pytest.mark.parametrize("method", ["SitesManager.getSiteFromId", "VisitsSummary.get"])
def test_api_methods_need_a_valid_token(receiver, token, method):
    answer = receiver.api(method, token=token, idSite="1", period="day", date="2026-11-25")
    assert answer["result"] == "error"
    assert "You can't access this resource as it requires 'view' access" in answer["message"]


def test_api_errors_are_status_200_like_matomo(receiver):
    response = receiver.client.post(
        "/dev/index.php", data={"module": "API", "method": "Nope.nothing", "token_auth": TOKEN}
    )
    assert response.status_code == 200 and response.json["result"] == "error"
    week = receiver.api("VisitsSummary.get", idSite="1", period="week", date="2026-11-25")
    assert week["result"] == "error"


def test_visits_summary_uses_the_site_local_day():
    receiver = ReceiverClient(tz="Asia/Tokyo")
    receiver.clock.now = datetime(2026, 11, 25, 16, 0, tzinfo=timezone.utc).timestamp()  # 01:00 JST on the 26th
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play")
    receiver.hit(cid=CID_B)
    receiver.hit(cid=CID_B, ping="1")
    summary = receiver.api("VisitsSummary.get", idSite="1", period="day", date="2026-11-26")
    assert (summary["nb_visits"], summary["nb_actions"], summary["nb_uniq_visitors"]) == (2, 3, 2)
    assert receiver.api("VisitsSummary.get", idSite="1", period="day", date="today") == summary
    empty = receiver.api("VisitsSummary.get", idSite="1", period="day", date="2026-11-25")
    assert (empty["nb_visits"], empty["nb_actions"], empty["nb_uniq_visitors"]) == (0, 0, 0)


def test_api_token_in_query_string_also_works(receiver):
    query = urllib.parse.urlencode(
        {"module": "API", "method": "SitesManager.getSiteFromId", "idSite": "2", "format": "JSON", "token_auth": TOKEN}
    )
    assert receiver.client.get(f"/dev/index.php?{query}").json["idsite"] == "2"


VIEW, WRITE, ADMIN = "view-only-token-1", "write-token-2", "admin-token-3"


def roles_receiver() -> ReceiverClient:
    """Sites 1 and 2; TOKEN (from ``tokens``) is admin, the others have the role they are named after."""
    receiver = ReceiverClient()
    receiver.app = ReceiverApp(
        [
            ReceiverInstance(
                "/dev",
                {1: ReceiverSite(1, name="Main"), 2: ReceiverSite(2)},
                {TOKEN},
                roles={VIEW: "view", WRITE: "write", ADMIN: "admin"},
            )
        ],
        clock=receiver.clock,
    )
    receiver.client = Client(receiver.app)
    return receiver


@pytest.mark.parametrize(
    ("token", "view", "write", "admin"),
    [
        (TOKEN, [], [], [1, 2]),
        (ADMIN, [], [], [1, 2]),
        (WRITE, [], [1, 2], []),
        (VIEW, [1, 2], [], []),
    ],
)
def test_each_role_lists_its_sites_like_matomos_sites_manager(token, view, write, admin):
    receiver = roles_receiver()
    assert receiver.api("SitesManager.getSitesIdWithAtLeastViewAccess", token=token) == [1, 2]
    assert receiver.api("SitesManager.getSitesIdWithViewAccess", token=token) == view
    assert receiver.api("SitesManager.getSitesIdWithWriteAccess", token=token) == write  # write only, as Matomo
    assert receiver.api("SitesManager.getSitesIdWithAdminAccess", token=token) == admin
    assert len(receiver.api("SitesManager.getSitesWithAdminAccess", token=token)) == len(admin)
    assert [s["idsite"] for s in receiver.api("SitesManager.getSitesWithAtLeastViewAccess", token=token)] == ["1", "2"]
    assert receiver.api("SitesManager.getSiteFromId", token=token, idSite="1")["name"] == "Main"
    assert receiver.api("API.getMatomoVersion", token=token) == {"value": "5.2.0"}


def test_a_view_only_token_does_not_unlock_tracking_overrides():
    receiver = roles_receiver()
    assert receiver.hit(cid=CID_A, cip="1.2.3.4", token_auth=VIEW).status_code == 400
    assert receiver.hit(cid=CID_A, cip="1.2.3.4", token_auth=WRITE).status_code == 200
    assert receiver.site()["invalid"] == {p.OVERRIDE_NEEDS_TOKEN: 1} and receiver.site()["ip_overrides"] == 1


def test_site_from_id_tells_time_zone_currency_and_ecommerce():
    app = ReceiverApp(
        [ReceiverInstance("/shop", {4: ReceiverSite(4, "Europe/Berlin", "EUR", ecommerce=False, name="Shop")}, {TOKEN})]
    )
    answer = (
        Client(app)
        .post(
            "/shop/index.php",
            data={"module": "API", "method": "SitesManager.getSiteFromId", "idSite": "4", "token_auth": TOKEN},
        )
        .json
    )
    assert answer == {"idsite": "4", "name": "Shop", "timezone": "Europe/Berlin", "currency": "EUR", "ecommerce": 0}


def test_tracking_failures_list_rejected_hits_per_site_and_reason(receiver):
    assert receiver.api("CoreAdminHome.getTrackingFailures") == []
    receiver.hit(cid="bad")
    receiver.hit(cid="bad")
    receiver.hit(cid=CID_A, cdt=old_cdt(30))
    receiver.hit(idsite="9")
    failures = receiver.api("CoreAdminHome.getTrackingFailures")
    assert [(f["idsite"], f["problem"], f["count"]) for f in failures] == [
        ("1", p.BAD_CID, 2),
        ("1", p.CDT_NEEDS_TOKEN, 1),
        ("", p.UNKNOWN_SITE, 1),
    ]
    assert all(f["request_url"] == "" for f in failures)
    denied = receiver.api("CoreAdminHome.getTrackingFailures", token="wrong")
    assert denied["result"] == "error" and "view" in denied["message"]
