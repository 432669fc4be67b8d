"""The referrer, browser, site-search and link choices of the traffic model (traffic.referrers, browsers,
site_search, outlinks, downloads): validated with clear errors, followed by the planner within
statistical tolerance, and each generated referrer classified back to its configured name by
core/referrers.py (Matomo's own classification)."""

import textwrap
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest

from trafficinator_locust.core import catalog
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import ConfigError
from trafficinator_locust.core.referrers import (
    classify,
    search_engine_names,
    search_engine_referrer,
    social_network_names,
    social_network_referrer,
)
from trafficinator_locust.core.visits import VisitPlanner, browser_weights

SEED = 20261204
VISITS = 4000


def load(write_yaml, traffic: str):
    """The target of a config whose traffic has ``traffic`` (YAML, any indentation) below its defaults."""
    body = textwrap.indent(textwrap.dedent(traffic).strip("\n"), " " * 6)
    text = textwrap.dedent(
        """\
        targets:
          - name: Shop
            url: https://m.example/matomo.php
            site_id: 3
            traffic:
              site_url: https://shop.example
              visitors: {returning: 0}
        """
    )
    return load_config(write_yaml(text + body + "\n"), env={}).targets[0]


def problems(write_yaml, traffic: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write_yaml, traffic)
    return [str(p) for p in caught.value.problems]


def landings(target, count=VISITS):
    planner = VisitPlanner(target, seed=SEED)
    return [planner.plan(n) for n in range(count)]


def assert_shares(counts: Counter, weights: dict[str, float], tolerance: float = 0.03):
    total = sum(counts.values())
    expected = sum(weights.values())
    assert total > 0
    for name, weight in weights.items():
        assert abs(counts[name] / total - weight / expected) < tolerance, (name, counts, weights)
    assert set(counts) <= set(weights), counts


# --- referrers ----------------------------------------------------------------------------------


def test_search_engines_follow_their_weights_and_classify_back(write_yaml):
    engines = {"Google": 60, "Bing": 20, "DuckDuckGo": 10, "Qwant": 10}
    target = load(
        write_yaml,
        "channels: {search: 1}\nreferrers: {search_engines: {Google: 60, Bing: 20, DuckDuckGo: 10, Qwant: 10}}",
    )
    names = Counter()
    for visit in landings(target):
        hit = visit.hits[0].params
        found = classify(hit["url"], hit["urlref"])
        assert found.type == "search"
        names[found.name] += 1
    assert_shares(names, engines)


def test_socials_websites_and_campaigns_follow_their_weights(write_yaml):
    target = load(
        write_yaml,
        """\
              channels: {social: 1, website: 1, campaign: 1}
              referrers:
                socials: {Facebook: 3, LinkedIn: 1, Bluesky: 1}
                websites: {blog.example.org: 2, News.Example.com: 1}
                campaigns: {Winter-Sale: 3, newsletter: 1}
        """,
    )
    by_type: dict[str, Counter] = {"social": Counter(), "website": Counter(), "campaign": Counter()}
    for visit in landings(target, 6000):
        hit = visit.hits[0].params
        found = classify(hit["url"], hit["urlref"])
        by_type[found.type][found.name] += 1
        assert found.type == visit.channel
    assert_shares(by_type["social"], {"Facebook": 3, "LinkedIn": 1, "Bluesky": 1})
    assert_shares(by_type["website"], {"blog.example.org": 2, "news.example.com": 1})
    assert_shares(by_type["campaign"], {"winter-sale": 3, "newsletter": 1})


def test_a_known_campaign_keeps_its_catalogue_source_and_medium(write_yaml):
    target = load(write_yaml, "      channels: {campaign: 1}\n      referrers: {campaigns: {newsletter: 1}}")
    query = parse_qs(urlsplit(landings(target, 1)[0].hits[0].params["url"]).query)
    assert query == {"mtm_campaign": ["newsletter"], "mtm_source": ["newsletter"], "mtm_medium": ["email"]}


def test_every_reachable_name_classifies_back():
    engines, socials = search_engine_names(), social_network_names()
    assert {"Google", "Bing", "DuckDuckGo", "Yahoo!", "Baidu", "Yandex", "Ecosia"} <= set(engines)
    assert {"Facebook", "Instagram", "LinkedIn", "Twitter", "reddit"} <= set(socials)
    assert "ChatGPT" not in engines  # an AI assistant from Matomo 5.4 on: never a search engine
    for name in engines:
        found = classify("https://shop.example/", search_engine_referrer(name).replace("{query}", "red+shoes"))
        assert (found.type, found.name) == ("search", name)
    for name in socials:
        assert classify("https://shop.example/", social_network_referrer(name)).name == name


def test_an_unknown_engine_or_social_is_an_error_with_close_matches(write_yaml):
    found = problems(write_yaml, "      referrers: {search_engines: {Gogle: 1}, socials: {Facebok: 1}}")
    text = "\n".join(found)
    assert "traffic.referrers.search_engines" in text and "'Gogle'" in text and "'Google'" in text
    assert "traffic.referrers.socials" in text and "'Facebook'" in text


def test_names_match_ignoring_case_and_are_written_as_matomo_spells_them(write_yaml):
    target = load(write_yaml, "      referrers: {search_engines: {google: 1}, socials: {instagram: 1}}")
    assert [c.name for c in target.traffic.referrers.search_engines] == ["Google"]
    assert {c.name for c in target.traffic.referrers.socials} == {"Instagram"}


@pytest.mark.parametrize(
    ("websites", "message"),
    [
        ("{www.google.com: 1}", "the search 'Google'"),
        ("{shop.example: 1}", "the site's own host"),
        ("{'https://blog.example/': 1}", "must be a host name"),
        ("{blog.example: -1}", "weights must be >= 0"),
        ("{blog.example: .nan}", "finite"),
    ],
)
def test_bad_websites_are_refused(write_yaml, websites, message):
    found = "\n".join(problems(write_yaml, f"      referrers: {{websites: {websites}}}"))
    assert "traffic.referrers.websites" in found
    assert message in found


def test_sizes_are_bounded(write_yaml):
    many = "{" + ", ".join(f"k{i}: 1" for i in range(10_001)) + "}"
    found = "\n".join(problems(write_yaml, f"      site_search: {{keywords: {many}}}"))
    assert "traffic.site_search.keywords" in found and "10000" in found.replace(",", "")
    long_name = "x" * 256
    found = "\n".join(problems(write_yaml, f"      referrers: {{campaigns: {{{long_name}: 1}}}}"))
    assert "at most 255 characters" in found


def test_without_the_keys_the_visits_are_unchanged(write_yaml):
    plain = load(write_yaml, "")
    assert plain.traffic.referrers.search_engines is None and plain.traffic.site_search is None
    again = load(write_yaml, "      referrers: {}\n")
    assert [v.hits for v in landings(plain, 300)] == [v.hits for v in landings(again, 300)]


# --- browsers -----------------------------------------------------------------------------------


def browser_counts(target, count=VISITS) -> tuple[Counter, Counter]:
    by_device = {device.user_agent: device for device in catalog.DEVICES}
    browsers, kinds = Counter(), Counter()
    for visit in landings(target, count):
        device = by_device[visit.visitor.user_agent]
        browsers[device.browser] += 1
        kinds[device.kind] += 1
    return browsers, kinds


def test_browsers_follow_their_weights_and_device_kinds_keep_theirs(write_yaml):
    weights = {"Chrome": 60, "Safari": 25, "Firefox": 10, "Samsung Internet": 5}
    target = load(
        write_yaml,
        "      devices: {desktop: 40, smartphone: 55, tablet: 5}\n"
        "      browsers: {Chrome: 60, Safari: 25, Firefox: 10, Samsung Internet: 5}",
    )
    browsers, kinds = browser_counts(target)
    assert_shares(browsers, weights)
    assert_shares(kinds, {"desktop": 40, "smartphone": 55, "tablet": 5})


def test_browser_weights_fit_the_marginals_exactly_when_they_can():
    devices = {"desktop": 36, "smartphone": 62, "tablet": 2}
    factors = browser_weights(devices, {"Chrome": 50, "Safari": 40, "Edge": 10})
    share = Counter()
    for kind, weight in devices.items():
        for device in catalog.DEVICES_BY_KIND[kind]:
            share[device.browser] += weight / 100 * device.share * factors[kind].get(device.browser, 0.0)
    assert share["Chrome"] == pytest.approx(0.5, abs=1e-6)
    assert share["Safari"] == pytest.approx(0.4, abs=1e-6)
    assert share["Firefox"] == 0


def test_an_unknown_browser_is_an_error_listing_the_catalogues(write_yaml):
    found = "\n".join(problems(write_yaml, "      browsers: {Chrome Mobile: 1}"))
    assert "traffic.browsers" in found and "unknown browser 'Chrome Mobile'" in found
    assert "Samsung Internet" in found and "Safari" in found


# --- site search and links ------------------------------------------------------------------------


def test_keywords_and_no_result_keywords_follow_their_weights(write_yaml):
    target = load(
        write_yaml,
        """\
              actions: {search: 1, outlink: 1, download: 1, event: 0}
              site_search: {keywords: {shoes: 5, red shoes: 2}, no_result_keywords: {xyzzy: 1}}
              outlinks: {"https://partner.example/a": 3, "https://other.example/": 1}
              downloads: {/files/a.pdf: 1, "https://cdn.example/b.zip": 1}
        """,
    )
    terms, links, files, empty = Counter(), Counter(), Counter(), Counter()
    for visit in landings(target, 3000):
        for hit in visit.hits:
            if hit.kind == "search":
                terms[hit.params["search"]] += 1
                empty[hit.params["search"]] += hit.params["search_count"] == "0"
                assert urlsplit(hit.params["url"]).query in ("q=shoes", "q=red+shoes", "q=xyzzy")
            elif hit.kind == "outlink":
                links[hit.params["link"]] += 1
            elif hit.kind == "download":
                files[hit.params["download"]] += 1
    assert_shares(terms, {"shoes": 5, "red shoes": 2, "xyzzy": 1})
    assert empty["xyzzy"] == terms["xyzzy"] and empty["shoes"] == empty["red shoes"] == 0
    assert_shares(links, {"https://partner.example/a": 3, "https://other.example/": 1})
    assert_shares(files, {"https://shop.example/files/a.pdf": 1, "https://cdn.example/b.zip": 1})


def test_a_keyword_in_both_lists_and_a_relative_outlink_are_refused(write_yaml):
    found = "\n".join(
        problems(
            write_yaml, "      site_search: {keywords: {a: 1}, no_result_keywords: {a: 1}}\n      outlinks: {/x: 1}"
        )
    )
    assert "traffic.site_search" in found and "in both keywords and no_result_keywords" in found
    assert "traffic.outlinks" in found and "'/x'" in found
