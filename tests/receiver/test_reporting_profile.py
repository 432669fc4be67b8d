"""The Reporting API methods the profiler reads (issue 16): each method's answer for known hits, per
site-local day (a ``date=D1,D2`` range answers one entry per day), ``flat=1`` labels, Matomo's
labels and segments, ``filter_limit``, ``API.getBulkRequest`` carrying them, and the token checks."""

import json
from datetime import datetime, timezone
from urllib.parse import urlencode

from receiver_client import CID_A, CID_B, TOKEN, ReceiverClient
from werkzeug.test import Client

from trafficinator_locust.core.catalog import COUNTRIES_BY_CODE
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverGoal, ReceiverInstance, ReceiverSite

DAY = "2026-11-25"  # receiver_client's T0 is 10:00 UTC that day
CID_C = "ccccccccccccccc3"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.3 Mobile/15E148 Safari/604.1"
)
SHOP = "https://shop.example"


def report(receiver: ReceiverClient, method: str, date: str = DAY, **params: str):
    return receiver.api(method, idSite="1", period="day", date=date, **params)


def by_label(rows: list[dict]) -> dict[str, dict]:
    return {row["label"]: row for row in rows}


def at(receiver: ReceiverClient, seconds: float, **params: str):
    """One hit ``seconds`` after T0."""
    receiver.clock.now = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc).timestamp() + seconds
    return receiver.hit(**params)


# --- VisitsSummary.get and VisitFrequency.get ----------------------------------------------------
def test_visits_summary_has_matomos_visit_metrics():
    receiver = ReceiverClient()
    at(receiver, 0, cid=CID_A, url=f"{SHOP}/", uid="alice")
    at(receiver, 20, cid=CID_A, url=f"{SHOP}/shoes", uid="alice")
    at(receiver, 60, cid=CID_A, e_c="Video", e_a="Play", uid="alice")
    at(receiver, 61, cid=CID_A, idgoal="1", uid="alice")
    at(receiver, 70, cid=CID_B, url=f"{SHOP}/")  # a bounce: one action
    summary = report(receiver, "VisitsSummary.get")
    assert summary == {
        "nb_uniq_visitors": 2,
        "nb_visits": 2,
        "nb_actions": 4,
        "nb_users": 1,
        "max_actions": 3,
        "sum_visit_length": 62,  # 1 + 61 - 0 (plugins/CoreHome/Columns/VisitTotalTime.php), the bounce 0
        "bounce_count": 1,
        "nb_visits_converted": 1,
        "bounce_rate": "50%",
        "nb_actions_per_visit": 2,
        "avg_time_on_site": 31,
    }
    frequency = report(receiver, "VisitFrequency.get")
    assert frequency["nb_visits_new"] == 2 and frequency["bounce_count_new"] == 1
    assert frequency["sum_visit_length_new"] == 62 and frequency["nb_visits_returning"] == 0
    assert frequency["bounce_rate_returning"] == "0%" and frequency["max_actions_new"] == 3


# --- per site-local day, date ranges -------------------------------------------------------------
def test_a_date_range_answers_each_site_local_day_across_midnight_in_tokyo():
    receiver = ReceiverClient(tz="Asia/Tokyo")
    receiver.clock.now = datetime(2026, 11, 25, 14, 50, tzinfo=timezone.utc).timestamp()  # 23:50 JST on the 25th
    receiver.hit(cid=CID_A, url=f"{SHOP}/late", h="23")
    receiver.clock.now += 20 * 60  # 00:10 JST on the 26th: Matomo's midnight ends the visit
    receiver.hit(cid=CID_A, url=f"{SHOP}/early", h="0")
    days = "2026-11-24,2026-11-26"
    summary = report(receiver, "VisitsSummary.get", days)
    assert list(summary) == ["2026-11-24", "2026-11-25", "2026-11-26"]
    assert summary["2026-11-24"] == []  # a day without visits in a multi-day answer
    assert summary["2026-11-25"]["nb_visits"] == summary["2026-11-26"]["nb_visits"] == 1
    pages = report(receiver, "Actions.getPageUrls", days, flat="1")
    assert pages["2026-11-24"] == [] and [row["label"] for row in pages["2026-11-25"]] == ["/late"]
    assert [row["label"] for row in pages["2026-11-26"]] == ["/early"]
    local = report(receiver, "VisitTime.getVisitInformationPerLocalTime", days)
    assert local["2026-11-24"] == [] and len(local["2026-11-25"]) == 24  # every hour once the day has a visit
    assert local["2026-11-25"][23] == {
        "label": "23h",
        "nb_uniq_visitors": 1,
        "nb_visits": 1,
        "nb_actions": 1,
        "nb_users": 0,
        "max_actions": 1,
        "sum_visit_length": 0,
        "bounce_count": 1,
        "nb_visits_converted": 0,
        "segment": "visitLocalHour==23",
    }
    server = report(receiver, "VisitTime.getVisitInformationPerServerTime", days)
    late = [row for row in server["2026-11-25"] if row["nb_visits"]]
    early = [row for row in server["2026-11-26"] if row["nb_visits"]]
    assert [(r["label"], r["segment"]) for r in late] == [
        ("23h", "visitServerHour==14")
    ]  # the site's hour, UTC segment
    assert [(r["label"], r["segment"]) for r in early] == [("0h", "visitServerHour==15")]
    assert report(receiver, "VisitsSummary.get", "2026-11-26,2026-11-24")["result"] == "error"


# --- Actions -------------------------------------------------------------------------------------
def test_page_urls_and_titles_with_time_spent_as_matomos_actions_archiver():
    receiver = ReceiverClient()
    at(receiver, 0, cid=CID_A, url=f"{SHOP}/shoes/red", action_name="Red shoes")
    at(receiver, 30, cid=CID_A, url="https://www.shop.example/shoes/red#reviews", action_name="Red shoes")
    at(receiver, 40, cid=CID_A, url=f"{SHOP}/", action_name="Home")  # 30 + 10 s on /shoes/red
    at(receiver, 100, cid=CID_A, e_c="Video", e_a="Play", url=f"{SHOP}/")  # an event's time is no page's
    at(receiver, 130, cid=CID_A, url=f"{SHOP}/about")  # 30 s since the event, on the page the visitor was on
    at(receiver, 140, cid=CID_B, url=f"{SHOP}/shoes/red", action_name="Red shoes")
    flat = report(receiver, "Actions.getPageUrls", flat="1")
    assert [row["label"] for row in flat] == ["shoes/red", "/about", "/index"]
    assert flat[0] == {
        "label": "shoes/red",
        "nb_visits": 2,
        "nb_hits": 3,
        "sum_time_spent": 40,
        "avg_time_on_page": 13,  # sum_time_spent / nb_hits, no decimals
        "url": "https://shop.example/shoes/red",
        "segment": "pageUrl==https%3A%2F%2Fshop.example%2Fshoes%2Fred",
    }
    assert by_label(flat)["/index"]["sum_time_spent"] == 30 and by_label(flat)["/about"]["sum_time_spent"] == 0
    tree = by_label(report(receiver, "Actions.getPageUrls"))
    assert set(tree) == {"shoes", "/index", "/about"} and "url" not in tree["shoes"]  # a folder
    titles = by_label(report(receiver, "Actions.getPageTitles", flat="1"))
    assert titles["Red shoes"]["nb_hits"] == 3 and titles["Red shoes"]["nb_visits"] == 2
    assert titles["Red shoes"]["segment"] == "pageTitle==Red+shoes" and titles["Home"]["sum_time_spent"] == 30
    assert titles["Page Name not defined"]["nb_hits"] == 1  # no action_name
    assert len(report(receiver, "Actions.getPageUrls", flat="1", filter_limit="1")) == 1


def test_outlinks_downloads_and_site_search_keywords():
    receiver = ReceiverClient()
    receiver.hit(cid=CID_A, url=f"{SHOP}/", link="https://other.example/page?x=1")
    receiver.hit(cid=CID_A, url=f"{SHOP}/", link="https://other.example/page?x=1")
    receiver.hit(cid=CID_B, url=f"{SHOP}/", download=f"{SHOP}/files/a.pdf")
    receiver.hit(cid=CID_A, url=f"{SHOP}/", search="boots", search_count="0")
    receiver.hit(cid=CID_B, url=f"{SHOP}/", search="boots", search_count="0")
    receiver.hit(cid=CID_A, url=f"{SHOP}/", search="hats", search_count="3")
    receiver.hit(cid=CID_A, url=f"{SHOP}/", search="socks")  # no search_count: not a no-result keyword
    outlinks = report(receiver, "Actions.getOutlinks", flat="1")
    assert outlinks == [
        {
            "label": "other.example/page?x=1",
            "nb_visits": 1,
            "nb_hits": 2,
            "url": "https://other.example/page?x=1",
            "segment": "outlinkUrl==https%3A%2F%2Fother.example%2Fpage%3Fx%3D1",
        }
    ]
    assert [row["label"] for row in report(receiver, "Actions.getOutlinks")] == ["other.example"]
    downloads = report(receiver, "Actions.getDownloads", flat="1")
    assert [(row["label"], row["url"]) for row in downloads] == [("shop.example/files/a.pdf", f"{SHOP}/files/a.pdf")]
    keywords = by_label(report(receiver, "Actions.getSiteSearchKeywords"))
    assert {label: row["nb_visits"] for label, row in keywords.items()} == {"boots": 2, "hats": 1, "socks": 1}
    assert keywords["boots"]["segment"] == "siteSearchKeyword==boots"
    assert [row["label"] for row in report(receiver, "Actions.getSiteSearchNoResultKeywords")] == ["boots"]


# --- Referrers -----------------------------------------------------------------------------------
def test_referrer_reports_have_matomos_labels_and_segments():
    receiver = ReceiverClient()
    receiver.hit(cid=CID_A, url=f"{SHOP}/")
    receiver.hit(cid=CID_B, url=f"{SHOP}/", urlref="https://www.google.com/search?q=red+shoes")
    receiver.hit(cid=CID_C, url=f"{SHOP}/", urlref="https://blog.example/post")
    receiver.hit(cid="ddddddddddddddd4", url=f"{SHOP}/", urlref="https://www.facebook.com/groups/x")
    receiver.hit(cid="eeeeeeeeeeeeeee5", url=f"{SHOP}/?mtm_campaign=Winter&mtm_kwd=Boots")
    types = by_label(report(receiver, "Referrers.getReferrerType"))
    assert {label: (row["segment"], row["referrer_type"]) for label, row in types.items()} == {
        "Direct Entry": ("referrerType==direct", 1),
        "Search Engines": ("referrerType==search", 2),
        "Websites": ("referrerType==website", 3),
        "Campaigns": ("referrerType==campaign", 6),
        "Social Networks": ("referrerType==social", 7),
    }
    assert all(row["nb_visits"] == 1 for row in types.values())
    engines = report(receiver, "Referrers.getSearchEngines")
    assert [(r["label"], r["segment"]) for r in engines] == [("Google", "referrerType==search;referrerName==Google")]
    websites = report(receiver, "Referrers.getWebsites")
    assert [(r["label"], r["segment"]) for r in websites] == [("blog.example", "referrerName==blog.example")]
    assert [r["label"] for r in report(receiver, "Referrers.getSocials")] == ["Facebook"]
    campaigns = report(receiver, "Referrers.getCampaigns")
    assert [(r["label"], r["segment"]) for r in campaigns] == [
        ("winter", "referrerType==campaign;referrerName==winter")
    ]


# --- devices, languages, countries ---------------------------------------------------------------
def test_device_type_browser_language_and_country():
    receiver = ReceiverClient()
    japan = COUNTRIES_BY_CODE["JP"].ranges[0].start
    receiver.hit(cid=CID_A, url=f"{SHOP}/", lang="en-US,en;q=0.9")  # Firefox on Linux, 10.0.0.1: no range
    receiver.hit(cid=CID_B, url=f"{SHOP}/", ua=IPHONE, lang="fr", remote=japan)
    receiver.hit(cid=CID_C, url=f"{SHOP}/", lang="de-DE", country="BR", token_auth=TOKEN)
    receiver.hit(cid="ddddddddddddddd4", url=f"{SHOP}/", lang="zh,en-US;q=0.8", remote=japan)  # the first tag only
    types = report(receiver, "DevicesDetection.getType")
    assert [(r["label"], r["nb_visits"], r["segment"]) for r in types[:3]] == [
        ("Desktop", 3, "deviceType==desktop"),
        ("Smartphone", 1, "deviceType==smartphone"),
        ("Tablet", 0, "deviceType==tablet"),  # every device type once the day has visits
    ]
    assert len(types) == 14 and types[3] == {
        "label": "Feature phone",
        "nb_visits": 0,
        "segment": "deviceType==feature+phone",
    }
    browsers = {r["label"]: r["segment"] for r in report(receiver, "DevicesDetection.getBrowsers")}
    assert browsers == {"Firefox": "browserCode==FF", "Mobile Safari": "browserCode==MF"}
    languages = {r["label"]: r["segment"] for r in report(receiver, "UserLanguage.getLanguageCode")}
    assert languages == {
        "English - United States (en-us)": "languageCode==en-us",
        "French (fr)": "languageCode==fr",  # fr guesses France: the same code, so no region
        "German (de)": "languageCode==de",  # de-de: the region is the language's own code
        "Chinese (zh)": "languageCode==zh",
    }
    countries = {r["code"]: (r["label"], r["segment"]) for r in report(receiver, "UserCountry.getCountry")}
    assert countries == {
        "us": ("United States", "countryCode==us"),  # from the browser language
        "jp": ("Japan", "countryCode==jp"),  # from the IP
        "br": ("Brazil", "countryCode==br"),  # the country parameter, with a token
    }


# --- Events --------------------------------------------------------------------------------------
def test_events_by_action_name_and_flattened_category_action():
    receiver = ReceiverClient()
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_n="Intro", e_v="3")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Play", e_n="Intro", e_v="5")
    receiver.hit(cid=CID_A, e_c="Video", e_a="Pause")
    receiver.hit(cid=CID_B, e_c="Audio", e_a="Play", e_n="Song")
    actions = by_label(report(receiver, "Events.getAction"))
    assert actions["Play"]["nb_events"] == 3 and actions["Play"]["nb_visits"] == 2
    assert actions["Play"]["sum_event_value"] == 8 and actions["Play"]["max_event_value"] == 5
    names = by_label(report(receiver, "Events.getName"))
    assert set(names) == {"Intro", "Song", "Event name not set"}
    flat = by_label(report(receiver, "Events.getCategory", flat="1", secondaryDimension="eventAction"))
    assert set(flat) == {"Video - Play", "Video - Pause", "Audio - Play"}
    assert flat["Video - Play"]["nb_events"] == 2 and flat["Video - Play"]["nb_events_with_value"] == 2
    assert [row["label"] for row in report(receiver, "Events.getCategory")] == ["Video", "Audio"]


# --- Goals ---------------------------------------------------------------------------------------
def test_goal_definitions_and_ecommerce_items():
    sites = {1: ReceiverSite(1, goals=frozenset({2}), goal_definitions=(ReceiverGoal(1, url_contains="/thanks"),))}
    receiver = ReceiverClient(sites=sites)
    receiver.hit(cid=CID_A, url=f"{SHOP}/p/1", _pks="SKU1", _pkn="Boots", _pkc='["Shoes","Winter"]')
    receiver.hit(cid=CID_C, url=f"{SHOP}/p/3", _pks="SKU3", _pkn="Hat", _pkc="Hats")  # viewed, never ordered
    items = json.dumps([["SKU1", "Boots", ["Shoes", "Winter"], 50, 2], ["SKU2", "Socks", "Clothes", 5, 1]])
    receiver.hit(cid=CID_A, idgoal="0", ec_id="O-1", revenue="105", ec_items=items)
    receiver.hit(
        cid=CID_B, idgoal="0", ec_id="O-2", revenue="50", ec_items=json.dumps([["SKU1", "Boots", "Shoes", 50, 1]])
    )
    goals = receiver.api("Goals.getGoals", idSite="1")
    assert list(goals) == ["1", "2"]
    assert goals["1"]["match_attribute"] == "url" and goals["1"]["pattern"] == "/thanks"
    assert goals["2"]["match_attribute"] == "manually" and goals["2"]["allow_multiple"] == "0"
    assert "pattern" not in goals["2"]  # Goals API formatGoal drops a manual goal's pattern
    sku = by_label(report(receiver, "Goals.getItemsSku"))
    assert sku["SKU1"] == {
        "label": "SKU1",
        "revenue": 150,
        "quantity": 3,
        "price": 100,
        "orders": 2,
        "avg_price": 50,  # price / orders
        "avg_quantity": 1.5,
        "nb_visits": 1,  # the visits that viewed the product
        "conversion_rate": "200%",
        "segment": "productSku==SKU1",
    }
    assert [row["label"] for row in report(receiver, "Goals.getItemsName")] == ["Boots", "Socks", "Hat"]
    assert sku["SKU3"]["orders"] == 0 and sku["SKU3"]["nb_visits"] == 1 and sku["SKU3"]["conversion_rate"] == "0%"
    categories = by_label(report(receiver, "Goals.getItemsCategory"))
    assert categories["Shoes"]["orders"] == 2 and categories["Winter"]["revenue"] == 100
    assert categories["Clothes"]["segment"] == "productCategory==Clothes"
    assert report(receiver, "Goals.get", idGoal="ecommerceOrder")["nb_conversions"] == 2


# --- API.getBulkRequest and tokens ---------------------------------------------------------------
def test_bulk_request_carries_the_profile_methods_with_a_date_range():
    receiver = ReceiverClient()
    receiver.hit(cid=CID_A, url=f"{SHOP}/shoes", lang="en-US")
    days = "2026-11-24,2026-11-25"
    urls = [
        urlencode({"method": "Actions.getPageUrls", "flat": "1"}),
        urlencode({"method": "Referrers.getReferrerType"}),
        urlencode({"method": "UserLanguage.getLanguageCode", "date": DAY}),
    ]
    answers = receiver.api(
        "API.getBulkRequest",
        idSite="1",
        period="day",
        date=days,
        filter_limit="-1",
        **{f"urls[{i}]": url for i, url in enumerate(urls)},
    )
    pages, referrers, languages = answers
    assert pages["2026-11-24"] == [] and pages["2026-11-25"][0]["label"] == "/shoes"
    assert referrers["2026-11-25"][0]["segment"] == "referrerType==direct"
    assert languages[0]["segment"] == "languageCode==en-us"  # its own date wins: one day, no keys


def test_a_view_token_reads_the_reports_and_no_token_is_refused_as_matomo_does():
    receiver = ReceiverClient()
    receiver.app = ReceiverApp(
        [ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN}, roles={"view-token-9": "view"})],
        clock=receiver.clock,
    )
    receiver.client = Client(receiver.app)
    receiver.hit(cid=CID_A, url=f"{SHOP}/", token_auth=None)
    viewed = receiver.api("Actions.getPageUrls", token="view-token-9", idSite="1", period="day", date=DAY, flat="1")
    assert [row["label"] for row in viewed] == ["/index"]
    for token in (None, "not-a-token"):
        for method in ("Referrers.getReferrerType", "Goals.getGoals", "UserCountry.getCountry"):
            refused = receiver.api(method, token=token, idSite="1", period="day", date=DAY)
            assert refused == {
                "result": "error",
                "message": "You can't access this resource as it requires 'view' access for the website id = 1.",
            }
