"""The embedded receiver: statuses, counters, visit grouping, bulk, Reporting API, serving."""

import locust  # noqa: F401  (monkey-patches before anything imports urllib3/requests)

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from pydantic import SecretStr
from werkzeug.test import Client

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.sink import (
    GIF,
    SinkApp,
    SinkInstance,
    SinkSite,
    default_instances,
    instances_from_targets,
    serve,
)

TOKEN = "sekret-token-4c1d2e"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc).timestamp()
CID_A, CID_B = "aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2"


class FakeClock:
    """A settable clock in unix seconds."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


class Sink:
    """The WSGI app in-process with a fake clock and a few request helpers."""

    def __init__(self, tz: str = "UTC", prefix: str = "/dev") -> None:
        self.clock = FakeClock()
        sites = {1: SinkSite(1, timezone=tz, name="Main"), 2: SinkSite(2, goals=frozenset({5}))}
        self.prefix = prefix
        self.app = SinkApp([SinkInstance(prefix, sites, {TOKEN})], clock=self.clock)
        self.client = Client(self.app)
        self.bodies: list[bytes] = []

    def _keep(self, response):
        self.bodies.append(response.get_data())
        return response

    def hit(self, headers: dict | None = None, remote: str = "10.0.0.1", **params: str):
        """Form-POST one hit (idsite=1, rec=1 unless overridden)."""
        data = {"idsite": "1", "rec": "1", **params}
        data = {k: v for k, v in data.items() if v is not None}
        return self._keep(
            self.client.post(
                f"{self.prefix}/matomo.php",
                data=data,
                headers=self._headers(headers),
                environ_base={"REMOTE_ADDR": remote},
            )
        )

    def get_hit(self, **params: str):
        query = {k: v for k, v in {"idsite": "1", "rec": "1", **params}.items() if v is not None}
        return self._keep(self.client.get(f"{self.prefix}/matomo.php", query_string=query, headers=self._headers(None)))

    def bulk(self, payload, raw: bool = False):
        body = payload if raw else json.dumps(payload)
        return self._keep(
            self.client.post(
                f"{self.prefix}/matomo.php", data=body, content_type="application/json", headers=self._headers(None)
            )
        )

    def api(self, method: str, token: str | None = TOKEN, **params: str):
        data = {"module": "API", "format": "JSON", "method": method, **params}
        if token is not None:
            data["token_auth"] = token
        return self._keep(self.client.post(f"{self.prefix}/index.php", data=data)).json

    def stats(self) -> dict:
        return self._keep(self.client.get(f"{self.prefix}/sink/stats")).json

    def site(self, site_id: int = 1) -> dict:
        return self.stats()["sites"][str(site_id)]

    @staticmethod
    def _headers(extra: dict | None) -> dict:
        return {"User-Agent": UA, "Accept-Language": "en-US", **(extra or {})}


@pytest.fixture
def sink() -> Sink:
    return Sink()


def old_cdt(hours: float) -> str:
    return datetime.fromtimestamp(T0 - hours * 3600, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- answers ---------------------------------------------------------------------------------------
def test_stored_hit_answers_gif_or_204(sink):
    response = sink.hit(url="https://example.org/")
    assert response.status_code == 200 and response.mimetype == "image/gif"
    assert response.get_data() == GIF and len(GIF) == 43
    silent = sink.hit(url="https://example.org/", send_image="0")
    assert silent.status_code == 204 and silent.get_data() == b""
    assert sink.site()["hits"] == 2


def test_piwik_php_alias_and_unknown_paths(sink):
    assert sink.client.get("/dev/piwik.php?idsite=1&rec=1").status_code == 200
    assert sink.client.get("/nope/matomo.php?idsite=1&rec=1").status_code == 404
    assert sink.client.get("/dev/other.php").status_code == 404
    assert sink.client.put("/dev/matomo.php?idsite=1&rec=1").status_code == 405
    assert sink.site()["hits"] == 1


def test_optional_delay_still_answers_and_records():
    app = SinkApp([SinkInstance("/dev", {1: SinkSite(1)}, set())], clock=FakeClock(), delay_seconds=0.001)
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
def test_each_receiver_rule_answers_400_and_counts_its_reason(sink, params, reason):
    response = sink.hit(**params)
    assert response.status_code == 400
    site = sink.site()
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
def test_hits_naming_no_known_site_are_400_and_counted_on_the_instance(sink, params, reason):
    assert sink.hit(**params).status_code == 400
    stats = sink.stats()
    assert stats["invalid"] == {reason: 1}
    assert all(site["invalid"] == {} for site in stats["sites"].values())


def test_token_unlocks_overrides_and_old_cdt(sink):
    assert sink.hit(cip="203.0.113.9", country="se", token_auth=TOKEN).status_code == 200
    assert sink.hit(cdt=old_cdt(48), token_auth=TOKEN).status_code == 200
    assert sink.hit(cdt=old_cdt(23)).status_code == 200
    assert sink.site()["hits"] == 3 and sink.site()["invalid"] == {}


def test_goal_ids_are_per_site(sink):
    assert sink.hit(idsite="2", idgoal="5").status_code == 200
    assert sink.hit(idsite="2", idgoal="1").status_code == 400
    assert sink.site(2)["actions"]["goal"] == 1 and sink.site(2)["invalid"] == {p.UNKNOWN_GOAL: 1}


def test_missing_rec_is_ignored_not_a_visit_nor_invalid(sink):
    response = sink.hit(rec=None, url="https://example.org/")
    assert response.status_code == 200 and response.get_data() == GIF
    assert sink.hit(rec=None, send_image="0").status_code == 204
    site = sink.site()
    assert site["ignored"] == {p.NO_REC: 2}
    assert (site["visits"], site["hits"], site["invalid"]) == (0, 0, {})


def test_bots_are_dropped_silently_unless_bots_1(sink):
    googlebot = {"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    assert sink.hit(headers=googlebot).status_code == 200
    assert sink.hit(ua="Mozilla/5.0 (compatible; bingbot/2.0)").status_code == 200
    assert sink.site()["ignored"] == {p.BOT: 2} and sink.site()["visits"] == 0
    assert sink.hit(headers=googlebot, bots="1").status_code == 200
    assert sink.site()["visits"] == 1 and sink.site()["hits"] == 1


def test_duplicate_ec_id_is_400_per_site(sink):
    order = {"idgoal": "0", "ec_id": "ORDER-1", "revenue": "10.00", "cid": CID_A}
    assert sink.hit(**order).status_code == 200
    assert sink.hit(**order).status_code == 400
    assert sink.hit(**{**order, "idsite": "2"}).status_code == 200
    assert sink.hit(idgoal="0", revenue="5").status_code == 200  # carts have no ec_id
    assert sink.hit(idgoal="0", revenue="5").status_code == 200
    site = sink.site()
    assert site["invalid"] == {p.DUPLICATE_EC_ID: 1}
    assert site["actions"]["order"] == 1 and site["actions"]["cart"] == 2


def test_query_string_wins_over_form_body(sink):
    response = sink.client.post(
        "/dev/matomo.php?idsite=1", data={"idsite": "99", "rec": "1"}, headers={"User-Agent": UA}
    )
    assert response.status_code == 200 and sink.site()["hits"] == 1


# --- transports ------------------------------------------------------------------------------------
HITS = [
    {"cid": CID_A, "url": "https://example.org/", "action_name": "Home"},
    {"cid": CID_A, "e_c": "Video", "e_a": "Play"},
    {"cid": CID_B, "search": "shoes", "search_count": "0"},
    {"cid": CID_B, "link": "https://other.example/"},
    {"cid": "nothex"},
    {"uid": "user@example.org", "download": "https://example.org/a.pdf"},
    {"uid": "user@example.org", "idgoal": "1", "revenue": "3.50"},
    {"cid": CID_A, "rec": None},
]


def with_defaults(params: dict) -> dict:
    merged = {"idsite": "1", "rec": "1", **params}
    return {k: v for k, v in merged.items() if v is not None}


def test_get_form_post_and_bulk_record_the_same():
    by_get, by_post, by_bulk = Sink(), Sink(), Sink()
    get_statuses = [by_get.get_hit(**hit).status_code for hit in HITS]
    post_statuses = [by_post.hit(**hit).status_code for hit in HITS]
    as_strings = ["?" + urllib.parse.urlencode(with_defaults(hit)) for hit in HITS[:4]]
    as_objects = [with_defaults(hit) for hit in HITS[4:]]
    answer = by_bulk.bulk({"requests": as_strings + as_objects}).json
    assert get_statuses == post_statuses == [200, 200, 200, 200, 400, 200, 200, 200]
    assert answer == {"status": "success", "tracked": 7, "invalid": 1}
    assert by_get.stats() == by_post.stats() == by_bulk.stats()
    site = by_get.site()
    assert (site["visits"], site["hits"], site["ignored"]) == (3, 6, {p.NO_REC: 1})
    assert site["actions"]["event"] == 1 and site["actions"]["goal"] == 1


def test_bulk_counts_tracked_and_invalid_and_applies_the_top_level_token(sink):
    answer = sink.bulk(
        {
            "token_auth": TOKEN,
            "requests": [
                "?idsite=1&rec=1&cid=" + CID_A,
                "?idsite=1&rec=1&cip=198.51.100.7",  # allowed by the top-level token
                {"idsite": 1, "rec": 1, "cdt": old_cdt(30)},  # allowed by the top-level token
                "?idsite=1&rec=1&cid=short",
                "?idsite=77&rec=1",
                "?idsite=1",  # no rec: ignored, counted as tracked
            ],
        }
    )
    assert answer.status_code == 200
    assert answer.json == {"status": "success", "tracked": 4, "invalid": 2}
    stats = sink.stats()
    assert stats["sites"]["1"]["hits"] == 3 and stats["sites"]["1"]["invalid"] == {p.BAD_CID: 1}
    assert stats["invalid"] == {p.UNKNOWN_SITE: 1}


def test_bulk_items_without_token_are_checked_one_by_one(sink):
    answer = sink.bulk({"requests": ["?idsite=1&rec=1&cip=198.51.100.7", "?idsite=1&rec=1"]}).json
    assert answer == {"status": "success", "tracked": 1, "invalid": 1}


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps({"token_auth": TOKEN}),
        json.dumps({"requests": "?idsite=1&rec=1"}),
        json.dumps({"requests": ["?idsite=1&rec=1", 42]}),
        json.dumps({"requests": [], "token_auth": 5}),
        "[1, 2]",
    ],
)
def test_malformed_bulk_fails_the_whole_batch(sink, body):
    response = sink.bulk(body, raw=True)
    assert response.status_code == 400 and response.json["status"] == "error"
    assert sink.site()["hits"] == 0


# --- visits ----------------------------------------------------------------------------------------
def test_same_fingerprint_with_different_cookie_ids_merges_into_one_visit(sink):
    sink.hit(_id="1111111111111111", url="https://example.org/a")
    sink.hit(_id="2222222222222222", url="https://example.org/b")
    site = sink.site()
    assert site["visits"] == 1 and site["unique_visitors"] == 1 and site["actions"]["pageview"] == 2


def test_different_cids_are_different_visits(sink):
    sink.hit(_id="1111111111111111", cid=CID_A)
    sink.hit(_id="2222222222222222", cid=CID_B)
    sink.hit(cid=CID_A)
    assert (sink.site()["visits"], sink.site()["unique_visitors"]) == (2, 2)


def test_different_ip_ua_or_language_are_different_visits(sink):
    sink.hit()
    sink.hit(remote="10.0.0.2")
    sink.hit(ua="Mozilla/5.0 (Macintosh) Safari/605")
    sink.hit(lang="fr-FR")
    sink.hit(headers={"Accept-Language": "de-DE"})
    assert sink.site()["visits"] == 5


def test_cip_with_token_is_the_fingerprint_ip(sink):
    sink.hit(cip="198.51.100.1", token_auth=TOKEN)
    sink.hit(cip="198.51.100.2", token_auth=TOKEN)
    sink.hit(cip="198.51.100.1", token_auth=TOKEN)
    assert sink.site()["visits"] == 2


def test_thirty_minutes_of_silence_start_a_new_visit(sink):
    sink.hit(cid=CID_A)
    sink.clock.advance(29)
    sink.hit(cid=CID_A)
    assert sink.site()["visits"] == 1
    sink.clock.advance(31)
    sink.hit(cid=CID_A)
    assert (sink.site()["visits"], sink.site()["unique_visitors"]) == (2, 1)


def test_new_visit_1_forces_a_new_visit(sink):
    sink.hit(cid=CID_A)
    sink.hit(cid=CID_A, new_visit="1")
    sink.hit(cid=CID_A)
    assert sink.site()["visits"] == 2


def test_site_local_midnight_splits_a_visit_in_its_time_zone():
    tokyo, utc = Sink(tz="Asia/Tokyo"), Sink(tz="UTC")
    for sink in (tokyo, utc):
        sink.clock.now = datetime(2026, 11, 25, 14, 50, tzinfo=timezone.utc).timestamp()  # 23:50 JST
        sink.hit(cid=CID_A)
        sink.clock.advance(20)  # 00:10 JST
        sink.hit(cid=CID_A)
    assert tokyo.site()["visits"] == 2
    assert tokyo.site()["visits_by_day"] == {"2026-11-25": 1, "2026-11-26": 1}
    assert utc.site()["visits"] == 1 and utc.site()["visits_by_day"] == {"2026-11-25": 1}


def test_campaign_change_starts_a_new_visit(sink):
    sink.hit(cid=CID_A, url="https://example.org/?mtm_campaign=spring")
    sink.hit(cid=CID_A, url="https://example.org/next")  # no campaign: same visit
    sink.hit(cid=CID_A, _rcn="spring")  # same campaign: same visit
    assert sink.site()["visits"] == 1
    sink.hit(cid=CID_A, url="https://example.org/?pk_campaign=autumn")
    assert sink.site()["visits"] == 2


def test_ping_never_creates_a_visit_but_extends_one(sink):
    assert sink.hit(cid=CID_A, ping="1").status_code == 200
    assert sink.site()["visits"] == 0 and sink.site()["ignored"] == {p.PING_WITHOUT_VISIT: 1}
    sink.hit(cid=CID_A)
    sink.clock.advance(20)
    sink.hit(cid=CID_A, ping="1")
    sink.clock.advance(20)  # 40 min after the page, 20 after the ping
    sink.hit(cid=CID_A)
    sink.clock.advance(31)
    sink.hit(cid=CID_A, ping="1")  # the visit has ended: ignored
    site = sink.site()
    assert site["visits"] == 1 and site["actions"]["ping"] == 1 and site["actions"]["pageview"] == 2
    assert site["ignored"] == {p.PING_WITHOUT_VISIT: 2}


def test_uid_is_a_visitor_id_lookup(sink):
    sink.hit(uid="alice", ua="Browser A")
    sink.hit(uid="alice", ua="Browser B", remote="10.9.9.9")
    assert sink.site()["visits"] == 1
    sink.hit(uid="bob", ua="Browser A")
    assert (sink.site()["visits"], sink.site()["unique_visitors"]) == (2, 2)


def test_cdt_sets_the_hit_time(sink):
    sink.hit(cid=CID_A, cdt=old_cdt(3))
    sink.hit(cid=CID_A, cdt=old_cdt(2))  # an hour later: a new visit
    sink.hit(cid=CID_A, cdt=old_cdt(1.9))  # six minutes later: same visit
    assert sink.site()["visits"] == 2


def test_many_short_visits_still_count_right(sink):
    for n in range(3000):
        if n and n % 500 == 0:
            sink.clock.advance(31)
        sink.hit(cid=f"{n:016x}", send_image="0")
    site = sink.site()
    assert site["visits"] == 3000 and site["unique_visitors"] == 3000
    sink.hit(cid=f"{2999:016x}")  # still within 30 min of its last action
    assert sink.site()["visits"] == 3000


# --- stats -----------------------------------------------------------------------------------------
def test_stats_shape_and_reset(sink):
    sink.hit(cid=CID_A)
    sink.hit(cid="bad")
    sink.hit(rec=None)
    stats = sink.stats()
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
    }
    assert set(site["actions"]) == set(p.HIT_KINDS)
    assert site["visits_by_day"] == {"2026-11-25": 1}
    assert site["invalid"] == {p.BAD_CID: 1} and site["ignored"] == {p.NO_REC: 1}
    everything = sink.client.get("/sink/stats").json
    assert list(everything) == ["/dev"] and everything["/dev"] == stats
    assert sink.client.get("/dev/sink/reset").status_code == 405
    assert sink.client.post("/dev/sink/reset").status_code == 200
    cleared = sink.site()
    assert (cleared["visits"], cleared["hits"], cleared["invalid"], cleared["visits_by_day"]) == (0, 0, {}, {})


def test_several_instances_are_independent():
    app = SinkApp(
        [
            SinkInstance("/dev", {1: SinkSite(1)}, {"dev-token"}),
            SinkInstance("/prod", {1: SinkSite(1)}, {"prod-token"}),
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


# --- reporting API ---------------------------------------------------------------------------------
def test_api_version_needs_some_view_access_like_matomo(sink):
    assert sink.api("API.getMatomoVersion") == {"value": "5.2.0"}
    for token in (None, "wrong-token"):
        answer = sink.api("API.getMatomoVersion", token=token)
        assert answer == {
            "result": "error",
            "message": "You can't access this resource as it requires 'view' access for at least one website.",
        }
    response = sink.client.get("/dev/index.php?module=API&method=API.getMatomoVersion&format=JSON")
    assert response.status_code == 200 and response.json["result"] == "error"


def test_api_site_from_id(sink):
    assert sink.api("SitesManager.getSiteFromId", idSite="1") == {
        "idsite": "1",
        "name": "Main",
        "timezone": "UTC",
        "currency": "USD",
        "ecommerce": 1,
    }
    unknown = sink.api("SitesManager.getSiteFromId", idSite="9")
    assert unknown["result"] == "error" and "website id" in unknown["message"]


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
@pytest.mark.parametrize("method", ["SitesManager.getSiteFromId", "VisitsSummary.get"])
def test_api_methods_need_a_valid_token(sink, token, method):
    answer = sink.api(method, token=token, idSite="1", period="day", date="2026-11-25")
    assert answer["result"] == "error"
    assert "You can't access this resource as it requires 'view' access" in answer["message"]


def test_api_errors_are_status_200_like_matomo(sink):
    response = sink.client.post("/dev/index.php", data={"module": "API", "method": "Nope.nothing", "token_auth": TOKEN})
    assert response.status_code == 200 and response.json["result"] == "error"
    week = sink.api("VisitsSummary.get", idSite="1", period="week", date="2026-11-25")
    assert week["result"] == "error"


def test_visits_summary_uses_the_site_local_day():
    sink = Sink(tz="Asia/Tokyo")
    sink.clock.now = datetime(2026, 11, 25, 16, 0, tzinfo=timezone.utc).timestamp()  # 01:00 JST on the 26th
    sink.hit(cid=CID_A)
    sink.hit(cid=CID_A, e_c="Video", e_a="Play")
    sink.hit(cid=CID_B)
    sink.hit(cid=CID_B, ping="1")
    summary = sink.api("VisitsSummary.get", idSite="1", period="day", date="2026-11-26")
    assert summary == {"nb_visits": 2, "nb_actions": 3, "nb_uniq_visitors": 2}
    assert sink.api("VisitsSummary.get", idSite="1", period="day", date="today") == summary
    empty = sink.api("VisitsSummary.get", idSite="1", period="day", date="2026-11-25")
    assert empty == {"nb_visits": 0, "nb_actions": 0, "nb_uniq_visitors": 0}


def test_api_token_in_query_string_also_works(sink):
    query = urllib.parse.urlencode(
        {"module": "API", "method": "SitesManager.getSiteFromId", "idSite": "2", "format": "JSON", "token_auth": TOKEN}
    )
    assert sink.client.get(f"/dev/index.php?{query}").json["idsite"] == "2"


VIEW, WRITE, ADMIN = "view-only-token-1", "write-token-2", "admin-token-3"


def roles_sink() -> Sink:
    """Sites 1 and 2; TOKEN (from ``tokens``) is admin, the others have the role they are named after."""
    sink = Sink()
    sink.app = SinkApp(
        [
            SinkInstance(
                "/dev",
                {1: SinkSite(1, name="Main"), 2: SinkSite(2)},
                {TOKEN},
                roles={VIEW: "view", WRITE: "write", ADMIN: "admin"},
            )
        ],
        clock=sink.clock,
    )
    sink.client = Client(sink.app)
    return sink


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
    sink = roles_sink()
    assert sink.api("SitesManager.getSitesIdWithAtLeastViewAccess", token=token) == [1, 2]
    assert sink.api("SitesManager.getSitesIdWithViewAccess", token=token) == view
    assert sink.api("SitesManager.getSitesIdWithWriteAccess", token=token) == write  # write only, as Matomo
    assert sink.api("SitesManager.getSitesIdWithAdminAccess", token=token) == admin
    assert len(sink.api("SitesManager.getSitesWithAdminAccess", token=token)) == len(admin)
    assert [s["idsite"] for s in sink.api("SitesManager.getSitesWithAtLeastViewAccess", token=token)] == ["1", "2"]
    assert sink.api("SitesManager.getSiteFromId", token=token, idSite="1")["name"] == "Main"
    assert sink.api("API.getMatomoVersion", token=token) == {"value": "5.2.0"}


def test_a_view_only_token_does_not_unlock_tracking_overrides():
    sink = roles_sink()
    assert sink.hit(cid=CID_A, cip="1.2.3.4", token_auth=VIEW).status_code == 400
    assert sink.hit(cid=CID_A, cip="1.2.3.4", token_auth=WRITE).status_code == 200
    assert sink.site()["invalid"] == {p.OVERRIDE_NEEDS_TOKEN: 1} and sink.site()["ip_overrides"] == 1


def test_an_unknown_role_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'owner' is not one of view, write, admin"):
        SinkApp([SinkInstance("/dev", {1: SinkSite(1)}, roles={"t": "owner"})])


def test_site_from_id_tells_time_zone_currency_and_ecommerce():
    app = SinkApp(
        [SinkInstance("/shop", {4: SinkSite(4, "Europe/Berlin", "EUR", ecommerce=False, name="Shop")}, {TOKEN})]
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


def test_an_empty_tracker_request_gets_matomos_page_and_records_nothing(sink):
    page = sink.client.get("/dev/matomo.php")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.get_data().startswith(b"This resource is part of Matomo.")
    assert b"endpoint for the Matomo tracking API" in page.get_data()
    empty_post = sink.client.post("/dev/matomo.php")
    assert empty_post.status_code == 400 and empty_post.get_data().startswith(b"This resource is part of Matomo.")
    stats = sink.stats()
    assert stats["ignored"] == {} and stats["invalid"] == {} and sink.site()["hits"] == 0
    assert sink.get_hit(cid=CID_A).status_code == 200 and sink.get_hit(cid=CID_A).get_data() == GIF


# --- secrets ---------------------------------------------------------------------------------------
def test_token_is_never_echoed(sink):
    sink.hit(cip="1.2.3.4", token_auth=TOKEN)
    sink.hit(cip="1.2.3.4", token_auth=TOKEN + "x")
    sink.hit(cid="bad", token_auth=TOKEN)
    sink.hit(idsite="42", token_auth=TOKEN)
    sink.hit(cdt=old_cdt(50), token_auth=TOKEN + "x")
    sink.bulk({"token_auth": TOKEN, "requests": ["?idsite=1&rec=1&cid=bad", f"?idsite=1&rec=1&token_auth={TOKEN}"]})
    sink.bulk('{"token_auth": "' + TOKEN + '", "requests": [', raw=True)
    sink.bulk({"token_auth": TOKEN, "requests": [7]})
    sink.api("VisitsSummary.get", token=TOKEN + "x", idSite="1")
    sink.api("Foo.bar", idSite="1")
    sink.api("SitesManager.getSiteFromId", idSite="1")
    sink.stats()
    sink.bodies.append(sink.client.get("/sink/stats").get_data())
    assert len(sink.bodies) >= 13
    assert not [body for body in sink.bodies if TOKEN.encode() in body]


# --- configuration ---------------------------------------------------------------------------------
def target(name, url, site_id, tz="UTC", token=None):
    return SimpleNamespace(name=name, url=url, site_id=site_id, timezone=tz, token_auth=token)


def test_instances_from_targets_groups_loopback_targets_by_prefix():
    targets = [
        target("Dev A", "http://127.0.0.1:8765/dev/matomo.php", 1, "Asia/Tokyo", "t1"),
        target("Dev B", "http://localhost:8765/dev/matomo.php", 2, "UTC", SecretStr("t2")),
        target("Prod", "http://127.0.0.1:8765/prod/piwik.php", 1, "Europe/Stockholm"),
        target("Root", "http://127.0.0.1:8765/matomo.php", 3),
        target("Remote", "https://analytics.example.com/dev/matomo.php", 1, token="t9"),
        target("Other port", "http://127.0.0.1:9999/other/matomo.php", 1),
    ]
    instances = {i.prefix: i for i in instances_from_targets(targets, port=8765)}
    assert set(instances) == {"/dev", "/prod", ""}
    dev = instances["/dev"]
    assert set(dev.sites) == {1, 2} and dev.tokens == {"t1", "t2"}
    assert dev.sites[1].timezone == "Asia/Tokyo" and dev.sites[1].name == "Dev A"
    assert instances["/prod"].tokens == set() and instances[""].sites[3].site_id == 3
    any_port = {i.prefix for i in instances_from_targets(targets)}
    assert any_port == {"/dev", "/prod", "", "/other"}
    assert {i.prefix for i in instances_from_targets(targets, port=0)} == any_port


def test_default_instances_match_the_demo_config():
    instances = {i.prefix: i for i in default_instances()}
    assert set(instances) == {"/dev", "/staging", "/prod"}
    assert instances["/prod"].sites[1].timezone == "Asia/Tokyo"
    assert all(len(i.tokens) == 1 for i in instances.values())


def test_root_instance_serves_matomo_php_at_the_root():
    app = SinkApp(instances_from_targets([target("Root", "http://127.0.0.1:8765/matomo.php", 1)]), clock=FakeClock())
    client = Client(app)
    assert client.get("/matomo.php?idsite=1&rec=1").status_code == 200
    assert client.get("/sink/stats").json[""]["sites"]["1"]["hits"] == 1


# --- serving over HTTP -----------------------------------------------------------------------------
def test_real_server_on_loopback_with_keep_alive_answers():
    app = SinkApp([SinkInstance("/dev", {1: SinkSite(1)}, {TOKEN})])
    server, port = serve(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{port}/dev"
        form = urllib.parse.urlencode({"idsite": 1, "rec": 1, "cid": CID_A, "token_auth": TOKEN}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/matomo.php", data=form)) as response:
            assert response.status == 200 and response.read() == GIF
        with urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&cid={CID_B}&send_image=0") as response:
            assert response.status == 204
        bulk = json.dumps({"requests": [f"?idsite=1&rec=1&cid={CID_A}", "?idsite=1&rec=1&cid=x"]}).encode()
        request = urllib.request.Request(f"{base}/matomo.php", data=bulk, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            assert json.load(response) == {"status": "success", "tracked": 1, "invalid": 1}
        with pytest.raises(urllib.error.HTTPError) as rejected:
            urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&cid=nothex")
        assert rejected.value.code == 400 and TOKEN.encode() not in rejected.value.read()
        with urllib.request.urlopen(f"{base}/sink/stats") as response:
            site = json.load(response)["sites"]["1"]
        assert (site["visits"], site["hits"], site["invalid"]) == (2, 3, {p.BAD_CID: 2})
    finally:
        server.stop()


def test_serve_refuses_non_loopback_hosts():
    with pytest.raises(ValueError):
        serve(SinkApp([]), "0.0.0.0", 0)


def test_standalone_sink_writes_ready_file_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trafficinator_locust.cli",
            "sink",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--instance",
            "/dev",
            "--instance",
            "/prod",
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        port = int(ready.read_text())
        assert line.strip() == f"sink listening on http://127.0.0.1:{port} (instances: /dev, /prod)"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/prod/matomo.php?idsite=1&rec=1") as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_ip_overrides_are_counted_only_with_a_valid_token():
    """The e2e tests prove 'cip only for targets with a token' through this counter."""
    sink = Sink()
    assert sink.hit(cid="00000000000000a1", cip="81.2.69.160", token_auth=TOKEN).status_code == 200
    assert sink.hit(cid="00000000000000a2").status_code == 200
    assert sink.site()["ip_overrides"] == 1


# --- silent loss (for `trafficinator verify`) and tracking failures --------------------------------
def _lossy(loss: float, seed: int) -> tuple[SinkApp, Client]:
    app = SinkApp([SinkInstance("/dev", {1: SinkSite(1)}, {TOKEN})], clock=FakeClock(), loss=loss, loss_seed=seed)
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
    assert answer == {"status": "success", "tracked": 400, "invalid": 0}
    assert app.stats("/dev")["sites"]["1"]["lost"] == lost  # the token does not change the choice
    with pytest.raises(ValueError):
        SinkApp([], loss=1.0)


def test_invalid_hits_are_not_lost_they_stay_invalid():
    app, client = _lossy(0.9, seed=1)
    for _ in range(20):
        assert client.post("/dev/matomo.php", data={"idsite": "1", "rec": "1", "cid": "nothex"}).status_code == 400
    site = app.stats("/dev")["sites"]["1"]
    assert site["invalid"] == {p.BAD_CID: 20} and "lost" not in site


def test_tracking_failures_list_rejected_hits_per_site_and_reason(sink):
    assert sink.api("CoreAdminHome.getTrackingFailures") == []
    sink.hit(cid="bad")
    sink.hit(cid="bad")
    sink.hit(cid=CID_A, cdt=old_cdt(30))
    sink.hit(idsite="9")
    failures = sink.api("CoreAdminHome.getTrackingFailures")
    assert [(f["idsite"], f["problem"], f["count"]) for f in failures] == [
        ("1", p.BAD_CID, 2),
        ("1", p.CDT_NEEDS_TOKEN, 1),
        ("", p.UNKNOWN_SITE, 1),
    ]
    assert all(f["request_url"] == "" for f in failures)
    denied = sink.api("CoreAdminHome.getTrackingFailures", token="wrong")
    assert denied["result"] == "error" and "view" in denied["message"]


def test_json_answers_on_a_keep_alive_connection_are_not_held_back_by_nagle():
    import http.client
    import time as _time

    app = SinkApp([SinkInstance("/dev", {1: SinkSite(1)}, {TOKEN})])
    server, port = serve(app, "127.0.0.1", 0)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"requests": [f"?idsite=1&rec=1&cid={CID_A}"], "token_auth": TOKEN}).encode()
        started = _time.perf_counter()
        for _ in range(10):
            connection.request("POST", "/dev/matomo.php", body=body, headers={"Content-Type": "application/json"})
            assert json.loads(connection.getresponse().read())["tracked"] == 1
        assert (_time.perf_counter() - started) / 10 < 0.02  # ~40 ms each with Nagle + delayed ACK
        connection.close()
    finally:
        server.stop()


def test_sink_command_refuses_a_loss_outside_0_to_1():
    result = subprocess.run(
        [sys.executable, "-m", "trafficinator_locust.cli", "sink", "--loss", "1.5", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--loss" in result.stderr and "Traceback" not in result.stderr
