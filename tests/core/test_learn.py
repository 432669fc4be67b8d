"""core.learn: Matomo-shaped report answers -> traffic model -> YAML that the config loads unchanged."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest
import yaml

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import ReportingApiError
from trafficinator_locust.core.learn import (
    anonymize_pages,
    days_between,
    learn,
    pageviews_range,
    render_yaml,
    report_calls,
)
from trafficinator_locust.core.visits import VisitPlanner

DAYS = days_between(date(2026, 11, 2), date(2026, 11, 8))  # Monday to Sunday


def by_day(value, days=DAYS):
    """Matomo's answer for ``period=day`` and a date range: one entry per day (here the same each day)."""
    return {day: value for day in days}


def answers() -> dict:
    """One week of a shop, 100 visits a day, as Matomo 5 answers each report."""
    summary = {"nb_visits": 100, "nb_actions": 420, "bounce_count": 20, "sum_visit_length": 9000, "max_actions": 9}
    days = {day: dict(summary) for day in DAYS}
    pages = [
        {"label": "/index", "url": "https://shop.example/", "nb_hits": 120, "nb_visits": 90, "sum_time_spent": 1200},
        {
            "label": "products/widgets",
            "url": "https://shop.example/products/widgets",
            "nb_hits": 60,
            "nb_visits": 50,
            "sum_time_spent": 600,
        },
        {
            "label": "products/widgets?mtm_campaign=x",
            "url": "https://shop.example/products/widgets?mtm_campaign=spring",
            "nb_hits": 20,
            "nb_visits": 20,
            "sum_time_spent": 200,
        },
        {"label": "/about", "url": "https://shop.example/about", "nb_hits": 30, "nb_visits": 30, "sum_time_spent": 300},
        {
            "label": "/checkout",
            "url": "https://shop.example/checkout",
            "nb_hits": 5,
            "nb_visits": 5,
            "sum_time_spent": 50,
        },
    ]
    titles = [
        {"label": "Welcome", "nb_hits": 120, "nb_visits": 90},
        {"label": "Widgets | Shop", "nb_hits": 80, "nb_visits": 70},
        {"label": "About us", "nb_hits": 30, "nb_visits": 30},
    ]
    return {
        "summary": days,
        "actions": by_day({"nb_pageviews": 245, "nb_searches": 10, "nb_outlinks": 5, "nb_downloads": 150}),
        "frequency": by_day({"nb_visits_returning": 25, "nb_visits_new": 75}),
        "server_hours": by_day([{"label": f"{h}h", "nb_visits": 10 if 8 <= h < 18 else 0} for h in range(24)]),
        "local_hours": by_day([]),
        "pages": by_day(pages),
        "titles": by_day(titles),
        "keywords": by_day([{"label": "cheap deals", "nb_visits": 6}, {"label": "returns", "nb_visits": 2}]),
        "no_result": by_day([{"label": "zzz", "nb_visits": 2}]),
        "outlinks": by_day([{"label": "partner.example", "nb_hits": 5, "nb_visits": 5}]),
        "downloads": by_day([{"label": "shop.example/cat.pdf", "nb_hits": 150, "nb_visits": 80}]),
        "referrer_types": by_day(
            [
                {"label": "Direct Entry", "nb_visits": 40, "segment": "referrerType==direct"},
                {"label": "Search Engines", "nb_visits": 30, "segment": "referrerType==search"},
                {"label": "Websites", "nb_visits": 10, "segment": "referrerType==website"},
                {"label": "Campaigns", "nb_visits": 15, "segment": "referrerType==campaign"},
                {"label": "Social Networks", "nb_visits": 5},  # no segment: read from the label
            ]
        ),
        "engines": by_day([{"label": "Google", "nb_visits": 27}, {"label": "Bing", "nb_visits": 3}]),
        "socials": by_day([{"label": "Mastodon", "nb_visits": 5}]),
        "websites": by_day([{"label": "blog.example.org", "nb_visits": 10}]),
        "campaigns": by_day([{"label": "spring", "nb_visits": 15}]),
        "device_types": by_day(
            [
                {"label": "Desktop", "nb_visits": 50, "segment": "deviceType==desktop"},
                {"label": "Smartphone", "nb_visits": 35, "segment": "deviceType==smartphone"},
                {"label": "Phablet", "nb_visits": 5, "segment": "deviceType==phablet"},
                {"label": "Tablet", "nb_visits": 5, "segment": "deviceType==tablet"},
                {"label": "TV", "nb_visits": 5, "segment": "deviceType==tv"},
            ]
        ),
        "browsers": by_day([{"label": "Chrome", "nb_visits": 70}, {"label": "Firefox", "nb_visits": 30}]),
        "languages": by_day(
            [
                {"label": "German - Germany (de-de)", "nb_visits": 60, "segment": "languageCode==de-de"},
                {"label": "English - United States (en-us)", "nb_visits": 30},
                {"label": "French (fr)", "nb_visits": 5, "segment": "languageCode==fr"},
                {"label": "Klingon (tlh)", "nb_visits": 5, "segment": "languageCode==tlh"},
            ]
        ),
        "countries": by_day(
            [
                {"label": "Germany", "code": "de", "nb_visits": 70},
                {"label": "United States", "code": "us", "nb_visits": 25},
                {"label": "Unknown", "code": "xx", "nb_visits": 5},
            ]
        ),
        "event_categories": by_day(
            [{"label": "Video", "nb_events": 30, "nb_visits": 20}, {"label": "Media - Audio", "nb_events": 10}]
        ),
        "event_actions": by_day(
            [
                {
                    "label": "Video - Play",
                    "nb_events": 30,
                    "nb_events_with_value": 30,
                    "min_event_value": 5,
                    "max_event_value": 120,
                },
                {"label": "Media - Audio - Pause", "nb_events": 10},  # the category's own " - " is kept
            ]
        ),
        "goals": by_day({"nb_conversions": 16, "revenue": 200}),
        "orders": by_day({"nb_conversions": 5, "revenue": 500}),
        "abandoned": by_day({"nb_conversions": 5}),
        "items": by_day(
            [
                {"label": "SKU-1", "revenue": 300, "quantity": 10, "orders": 5},
                {"label": "SKU-2", "revenue": 200, "quantity": 4, "orders": 3},
            ]
        ),
        "item_names": by_day(
            [
                {"label": "Blue widget", "revenue": 300, "quantity": 10, "orders": 5},
                {"label": "Red gadget", "revenue": 200, "quantity": 4, "orders": 3},
            ]
        ),
        "goal:1": by_day({"nb_conversions": 6, "revenue": 0}),
        "goal:2": by_day({"nb_conversions": 10, "revenue": 200}),
        "goal:3": by_day([]),
    }


GOALS = [
    {"idgoal": "1", "name": "Newsletter", "allow_multiple": "0"},
    {"idgoal": "2", "name": "Lead", "allow_multiple": "1", "revenue": "20"},
    {"idgoal": "3", "name": "Never", "allow_multiple": "0"},
]


@pytest.fixture
def learned():
    return learn(answers(), GOALS, DAYS, source="target Prod")


def test_report_calls_ask_every_report_for_the_range_and_each_goal():
    calls = report_calls(3, date(2026, 11, 2), date(2026, 11, 8), ["1", "2"])
    methods = {method for _, method, _ in calls}
    assert {
        "VisitsSummary.get",
        "Actions.getPageUrls",
        "Referrers.getReferrerType",
        "UserCountry.getCountry",
    } <= methods
    assert all(params["date"] == "2026-11-02,2026-11-08" and params["period"] == "day" for _, _, params in calls)
    assert ("goal:2", "Goals.get") in {(key, method) for key, method, _ in calls}
    assert all("Live." not in method for _, method, _ in calls)  # nothing personal


def test_pages_get_measured_weights_titles_and_no_campaign_parameters(learned):
    urls = {entry["url"]: entry for entry in learned.traffic["urls"]}
    assert list(urls) == ["/", "/products/widgets", "/about"]  # the checkout's planner-made hits are taken off
    # 120 + 80 (two rows, one without its campaign parameter) + 30 = 230 pageviews a day
    assert urls["/products/widgets"]["weight"] == pytest.approx(100 * 80 / 230, abs=0.001)
    assert urls["/"]["title"] == "Welcome" and urls["/products/widgets"]["title"] == "Widgets | Shop"
    assert learned.traffic["section_stickiness"] == 0  # the shares are the picks: no section bias on top


def test_visit_length_and_bounces(learned):
    traffic = learned.traffic
    # (245 pageviews - 5 checkout pages) / 100 visits = 2.4 a visit
    assert (traffic["pageviews"]["min"] + traffic["pageviews"]["max"]) / 2 == pytest.approx(2.4, rel=0.1)
    assert traffic["dwell_seconds"] == {"min": 5.0, "max": 15.0}  # 2300 s over 230 pageviews


def test_pageviews_range_keeps_the_mean_and_one_page_visits():
    assert pageviews_range(3.0, 0.2) == {"min": 1, "max": 5}
    assert pageviews_range(3.0, 0.0)["min"] > 1 and sum(pageviews_range(3.0, 0.0).values()) == 6
    assert pageviews_range(1.0, 1.0) == {"min": 1, "max": 1}
    wide = pageviews_range(40.0, 0.0)
    assert (wide["min"] + wide["max"]) / 2 == pytest.approx(40)


def test_who_visits(learned):
    traffic = learned.traffic
    assert traffic["visitors"] == {"returning": 0.25}
    assert traffic["devices"] == {"desktop": 52.63, "smartphone": 42.11, "tablet": 5.26}  # TV left out
    assert traffic["languages"] == {"de-DE": 63.16, "en-US": 31.58, "fr-FR": 5.26}  # fr -> the catalogue's French
    assert traffic["countries"] == {"DE": 73.68, "US": 26.32}
    assert traffic["channels"] == {
        "direct": 40.0,
        "search": 30.0,
        "social": 5.0,
        "website": 10.0,
        "ai": 0.0,
        "campaign": 15.0,
    }


def test_actions_events_goals_and_shop(learned):
    traffic = learned.traffic
    assert traffic["actions"] == {
        "search": 0.1,
        "outlink": 0.05,
        "download": 1.0,  # 1.5 a visit: capped, and said
        "event": 0.4,
        "goal": 0.16,
    }
    assert traffic["events"] == [
        {"category": "Video", "action": "Play", "weight": 75.0, "value": {"min": 5.0, "max": 120.0}},
        {"category": "Media - Audio", "action": "Pause", "weight": 25.0},
    ]
    assert traffic["goals"] == [
        {"id": 1, "weight": 37.5},
        {"id": 2, "weight": 62.5, "revenue": {"min": 10.0, "max": 30.0}, "allow_multiple": True},
    ]
    shop = traffic["ecommerce"]
    assert shop["order"] == 0.05 and shop["cart"] == 0.1
    assert shop["products"] == [
        {"sku": "SKU-1", "name": "Blue widget", "price": 30.0},
        {"sku": "SKU-2", "name": "Red gadget", "price": 50.0},
    ]
    assert shop["items"] == {"min": 1, "max": 2} and shop["quantity"] == {"min": 1, "max": 2}


def test_target_keys_and_what_the_model_cannot_say():
    data = answers()
    data["summary"][DAYS[0]] = {**data["summary"][DAYS[0]], "nb_visits": 200}  # a busy Monday
    learned = learn(data, GOALS, DAYS)
    assert learned.target["visits_per_day"] == round(800 / 7)
    profile = learned.target["profile"]
    assert profile["hours"][7] == 0 and profile["hours"][8] == 10.0 and sum(profile["hours"]) == pytest.approx(100)
    assert profile["weekdays"][0] == pytest.approx(2 * profile["weekdays"][1], rel=0.01)
    text = render_yaml(learned)
    assert "# visits_per_day: 114" in text and "#   weekdays:" in text
    assert "20.0 % of searches without result" in text
    assert "tlh" in text and "Unknown" in text  # what was left out is said


def test_yaml_loads_as_defaults_traffic_and_as_a_target_traffic(learned, tmp_path: Path):
    text = render_yaml(learned)
    assert yaml.safe_load(text) == learned.traffic  # the comments are comments
    body = textwrap.indent(text, "    ")
    config = (
        f"defaults:\n  traffic:\n{body}targets:\n  - {{name: Stage, url: 'https://m.example/matomo.php', site_id: 1}}\n"
    )
    (tmp_path / "defaults.yaml").write_text(config)
    shared = load_config(tmp_path / "defaults.yaml").targets[0].traffic
    nested = textwrap.indent(text, "      ")
    own = f"targets:\n  - name: Stage\n    url: 'https://m.example/matomo.php'\n    site_id: 1\n    traffic:\n{nested}"
    (tmp_path / "target.yaml").write_text(own)
    mine = load_config(tmp_path / "target.yaml").targets[0].traffic
    assert shared == mine
    assert [page.weight for page in mine.pages] == [entry["weight"] for entry in learned.traffic["urls"]]
    assert mine.channels["campaign"] == 15.0 and mine.visitors.returning == 0.25
    assert [g.id for g in mine.goals] == [1, 2] and mine.ecommerce.order == 0.05


def test_target_keys_uncommented_load_too(learned, tmp_path: Path):
    text = render_yaml(learned)
    target_part = text.split("# --- Target-level keys")[1].split("# --- Measured")[0]
    keys = "\n".join(line[2:] for line in target_part.splitlines()[2:] if line.startswith("# "))
    config = {
        "targets": [{"name": "Stage", "url": "https://m.example/matomo.php", "site_id": 1, **yaml.safe_load(keys)}]
    }
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump(config))
    target = load_config(tmp_path / "keys.yaml").targets[0]
    assert target.visits_per_day == 100 and len(target.profile.hours) == 24


def test_measured_page_weights_drive_the_picker(learned, tmp_path: Path):
    body = textwrap.indent(render_yaml(learned), "      ")
    config = f"targets:\n  - name: Stage\n    url: 'https://m.example/matomo.php'\n    site_id: 1\n    traffic:\n{body}"
    (tmp_path / "c.yaml").write_text(config)
    planner = VisitPlanner(load_config(tmp_path / "c.yaml").targets[0], seed=5)
    counts: dict[str, int] = {}
    for number in range(3000):
        for hit in planner.plan(number).hits:
            if hit.kind == "pageview" and "/checkout" not in hit.params["url"]:
                path = hit.params["url"].split("?")[0].replace("https://www.example.com", "")
                counts[path] = counts.get(path, 0) + 1
    total = sum(counts[p] for p in ("/", "/products/widgets", "/about"))
    assert counts["/products/widgets"] / total == pytest.approx(80 / 230, abs=0.03)
    assert counts["/"] / total == pytest.approx(120 / 230, abs=0.03)


def test_anonymized_pages_keep_structure_and_weights():
    pages = [
        {"url": "/products/widgets?color=red", "title": "Red widgets", "weight": 30.0},
        {"url": "/products/gadgets", "title": "Gadgets", "weight": 20.0},
        {"url": "/", "title": "Home", "weight": 40.0},
        {"url": "/products/widgets?color=blue", "title": "Blue widgets", "weight": 10.0},
        {"url": "/blog/2026/hello", "title": "Hello", "weight": 5.0},
    ]
    hidden = anonymize_pages(pages)
    assert hidden == [
        {"url": "/section-1/page-1", "title": "Page 1", "weight": 40.0},
        {"url": "/section-1/page-2", "title": "Page 2", "weight": 20.0},
        {"url": "/", "title": "Page 3", "weight": 40.0},
        {"url": "/section-2/page-1/page-1", "title": "Page 5", "weight": 5.0},
    ]
    assert anonymize_pages(pages) == hidden  # stable


def test_anonymized_profile_names_no_path_title_site_or_keyword():
    learned = learn(answers(), GOALS, DAYS, anonymize=True)
    text = render_yaml(learned)
    for secret in ("widgets", "Welcome", "About", "shop.example", "partner.example", "blog.example.org", "cheap deals"):
        assert secret not in text, secret
    assert [entry["weight"] for entry in learned.traffic["urls"]] == [
        entry["weight"] for entry in learn(answers(), GOALS, DAYS).traffic["urls"]
    ]


def test_a_single_day_may_come_as_a_bare_value():
    day = ["2026-11-02"]
    data = {
        key: (value[DAYS[0]] if isinstance(value, dict) and DAYS[0] in value else value)
        for key, value in answers().items()
    }
    assert learn(data, GOALS, day).traffic["visitors"] == {"returning": 0.25}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"summary": by_day([])}, "no visits between 2026-11-02 and 2026-11-08"),
        ({"pages": {"result": "error", "message": "You can't access this resource"}}, "You can't access"),
        ({"countries": "nonsense"}, "expected one entry per day"),
    ],
)
def test_errors_are_reporting_api_errors(change, message):
    with pytest.raises(ReportingApiError, match=message):
        learn({**answers(), **change}, GOALS, DAYS)


def test_hostile_labels_cannot_break_out_of_a_comment():
    data = answers()
    data["engines"] = by_day([{"label": "Evil\nchannels: {direct: 0}\u2028x", "nb_visits": 3}])
    text = render_yaml(learn(data, GOALS, DAYS))
    assert yaml.safe_load(text)["channels"]["direct"] == 40.0


# --- referrers, browsers, site search and links are model keys ------------------------------------


def test_referrers_browsers_search_and_links_are_model_keys():
    traffic = learn(answers(), GOALS, DAYS).traffic
    assert traffic["referrers"] == {
        "search_engines": {"Google": 90.0, "Bing": 10.0},
        "socials": {"Mastodon": 100.0},
        "websites": {"blog.example.org": 100.0},
        "campaigns": {"spring": 100.0},
    }
    assert traffic["browsers"] == {"Chrome": 70.0, "Firefox": 30.0}
    # Matomo's keyword report lists every keyword; the no-result one goes apart, weights are shares of searches
    assert traffic["site_search"] == {
        "keywords": {"cheap deals": 60.0, "returns": 20.0},
        "no_result_keywords": {"zzz": 20.0},
    }
    assert traffic["outlinks"] == {"https://partner.example": 100.0}
    assert traffic["downloads"] == {"/cat.pdf": 100.0}  # on the pages' host: a path below the target's site_url


def test_devicedetector_browsers_fold_into_the_catalogue_families_and_the_rest_is_said():
    data = answers()
    data["browsers"] = by_day(
        [
            {"label": "Chrome Mobile", "nb_visits": 30, "segment": "browserCode==CM"},
            {"label": "Chrome", "nb_visits": 20, "segment": "browserCode==CH"},
            {"label": "Mobile Safari", "nb_visits": 40, "segment": "browserCode==MF"},
            {"label": "Samsung Browser", "nb_visits": 5, "segment": "browserCode==SB"},
            {"label": "UC Browser", "nb_visits": 5, "segment": "browserCode==UC"},
        ]
    )
    learned = learn(data, GOALS, DAYS)
    assert learned.traffic["browsers"] == {"Chrome": 52.63, "Safari": 42.11, "Samsung Internet": 5.26}
    assert "UC Browser" in render_yaml(learned)


def test_names_matomo_lists_cannot_reach_stay_comments_and_the_top_bounds_each_list():
    data = answers()
    data["engines"] = by_day([{"label": "Google", "nb_visits": 5}, {"label": "Altavista 1998", "nb_visits": 1}])
    data["websites"] = by_day([{"label": f"site{i}.example", "nb_visits": 10 - i} for i in range(5)])
    learned = learn(data, GOALS, DAYS, top=3)
    assert learned.traffic["referrers"]["search_engines"] == {"Google": 100.0}
    assert list(learned.traffic["referrers"]["websites"]) == ["site0.example", "site1.example", "site2.example"]
    text = render_yaml(learned)
    assert "Altavista 1998" in text and "site4.example" in text


def test_anonymized_choices_keep_their_weights_under_placeholders():
    plain, hidden = learn(answers(), GOALS, DAYS).traffic, learn(answers(), GOALS, DAYS, anonymize=True).traffic
    assert hidden["referrers"]["search_engines"] == plain["referrers"]["search_engines"]  # not personal: kept
    assert hidden["referrers"]["websites"] == {"website-1.example": 100.0}
    assert hidden["referrers"]["campaigns"] == {"campaign-1": 100.0}
    assert hidden["site_search"] == {
        "keywords": {"keyword-1": 60.0, "keyword-2": 20.0},
        "no_result_keywords": {"keyword-3": 20.0},
    }
    assert hidden["outlinks"] == {"https://link-1.example/": 100.0}
    assert hidden["downloads"] == {"/files/file-1.pdf": 100.0}


def test_only_searches_without_result_give_only_no_result_keywords(tmp_path: Path):
    data = answers()
    data["keywords"] = by_day([{"label": "zzz", "nb_visits": 2, "nb_hits": 3}])
    data["no_result"] = by_day([{"label": "zzz", "nb_visits": 2, "nb_hits": 3}])
    traffic = learn(data, GOALS, DAYS).traffic
    assert traffic["site_search"] == {"no_result_keywords": {"zzz": 100.0}}
