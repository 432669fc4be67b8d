import locust  # noqa: F401  (gevent monkey-patching must happen before urllib3/requests are imported)

import ipaddress
import json
import random
import re
from urllib.parse import urlsplit

import pytest
from devicedetect import classify

from trafficinator_locust.core import catalog
from trafficinator_locust.core.protocol import bot_user_agent

KINDS = ("desktop", "smartphone", "tablet")
REQUIRED_BROWSERS = {"Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"}
REQUIRED_OSES = {"Windows", "macOS", "iOS", "Android", "Linux"}

# What Matomo's DeviceDetector reports for each declared value.
DD_BROWSER_NAMES = {
    "Chrome": {"Chrome", "Chrome Mobile", "Chrome Mobile iOS"},
    "Safari": {"Safari", "Mobile Safari"},
    "Firefox": {"Firefox", "Firefox Mobile", "Firefox Mobile iOS"},
    "Edge": {"Microsoft Edge"},
    "Samsung Internet": {"Samsung Browser"},
    "Opera": {"Opera", "Opera Mobile"},
}
DD_OS_FAMILIES = {
    "Windows": "Windows",
    "macOS": "Mac",
    "iOS": "iOS",
    "Android": "Android",
    "Linux": "GNU/Linux",
    "Chrome OS": "Chrome OS",
}

# Domains of Matomo's Socials.yml (matomo-org/searchengine-and-social-list) per network name.
MATOMO_SOCIAL_DOMAINS = {
    "Facebook": {"facebook.com", "fb.me", "m.facebook.com", "l.facebook.com"},
    "Twitter": {"twitter.com", "t.co", "x.com"},
    "LinkedIn": {"linkedin.com", "lnkd.in"},
    "reddit": {"reddit.com", "np.reddit.com"},
    "instagram": {"instagram.com", "l.instagram.com"},
    "YouTube": {"youtube.com", "youtu.be"},
    "Pinterest": {"pinterest.com"},
}
# Host and keyword parameter per engine, as in Matomo's SearchEngines.yml.
MATOMO_SEARCH_ENGINES = {
    "Google": ("google.com", "q"),
    "Bing": ("bing.com", "q"),
    "DuckDuckGo": ("duckduckgo.com", "q"),
    "Yahoo!": ("search.yahoo.com", "p"),
    "Yandex": ("yandex.ru", "text"),
    "Baidu": ("baidu.com", "wd"),
    "Ecosia": ("ecosia.org", "q"),
}

RESERVED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


# --- devices -------------------------------------------------------------------------------------


def test_device_fields_keep_their_order_and_old_constructor():
    assert catalog.Device._fields[:3] == ("kind", "user_agent", "resolution")
    old_style = catalog.Device("desktop", "Mozilla/5.0", "1920x1080")
    assert old_style.kind == "desktop" and old_style.resolution == "1920x1080"


def test_devices_counts_and_fields():
    assert isinstance(catalog.DEVICES, tuple)
    assert len({d.user_agent for d in catalog.DEVICES}) >= 80
    assert {d.kind for d in catalog.DEVICES} == set(KINDS)
    for device in catalog.DEVICES:
        assert isinstance(device, catalog.Device)
        assert device.kind in KINDS
        assert re.fullmatch(r"\d+x\d+", device.resolution), device
        assert device.user_agent.startswith("Mozilla/5.0 ("), device
        assert device.browser in DD_BROWSER_NAMES and device.os in DD_OS_FAMILIES, device
        assert device.browser_version and 0 < device.share <= 1, device
    assert {d.browser for d in catalog.DEVICES} >= REQUIRED_BROWSERS
    assert {d.os for d in catalog.DEVICES} >= REQUIRED_OSES


def test_every_kind_has_several_browsers_and_oses():
    for kind in KINDS:
        devices = catalog.DEVICES_BY_KIND[kind]
        assert len({d.user_agent for d in devices}) >= 8, kind
        assert len({d.os for d in devices}) >= 2, kind
        assert len({d.browser for d in devices}) >= 3, kind


def test_resolutions_suit_the_device_kind():
    for device in catalog.DEVICES:
        width, height = (int(x) for x in device.resolution.split("x"))
        short, long_ = sorted((width, height))
        if device.kind == "desktop":
            assert width > height and 1280 <= width <= 3840, device
        elif device.kind == "smartphone":
            assert width < height and 320 <= width <= 480 and 560 <= height <= 1000, device
        else:
            assert 600 <= short <= 1100 and 900 <= long_ <= 1400, device


def test_shares_sum_to_one_within_each_kind():
    for kind in KINDS:
        assert sum(d.share for d in catalog.DEVICES_BY_KIND[kind]) == pytest.approx(1.0, abs=1e-6), kind
    assert all(catalog.DEVICES_BY_KIND[k] for k in KINDS)
    assert sum(len(v) for v in catalog.DEVICES_BY_KIND.values()) == len(catalog.DEVICES)


def test_device_kind_shares():
    shares = catalog.DEVICE_KIND_SHARES
    assert set(shares) == set(KINDS)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["smartphone"] > shares["desktop"] > shares["tablet"] > 0
    with pytest.raises(TypeError):
        shares["desktop"] = 1.0  # type: ignore[index]


def test_uadata_is_matomo_client_hints_json_for_chromium_only():
    with_hints = [d for d in catalog.DEVICES if d.uadata is not None]
    assert len(with_hints) >= 20
    for device in catalog.DEVICES:
        if device.uadata is None:
            continue
        assert device.browser in ("Chrome", "Edge") and device.os not in ("iOS",), device
        data = json.loads(device.uadata)
        assert set(data) == {"fullVersionList", "mobile", "model", "platform", "platformVersion"}
        brands = {b["brand"]: b["version"] for b in data["fullVersionList"]}
        assert re.fullmatch(r"\d+\.0\.\d+\.\d+", brands["Chromium"]), device
        major = re.search(r"Chrome/(\d+)\.", device.user_agent).group(1)
        assert brands["Chromium"].split(".")[0] == major
        assert ("Google Chrome" if device.browser == "Chrome" else "Microsoft Edge") in brands
        assert data["mobile"] is (device.kind == "smartphone")
        assert data["platform"] == device.os
        assert re.fullmatch(r"\d+\.\d+\.\d+", data["platformVersion"]), device
        assert bool(data["model"]) is (device.os == "Android"), device
    for device in catalog.DEVICES:
        if device.browser in ("Safari", "Firefox") or device.os == "iOS":
            assert device.uadata is None, device


def test_devices_are_classified_as_declared_by_matomo_device_detector():
    wrong = []
    for device in catalog.DEVICES:
        for uadata in (None, device.uadata) if device.uadata else (None,):
            kind, browser, os_family, is_bot = classify(device.user_agent, uadata)
            label = "ua+uadata" if uadata else "ua"
            if kind != device.kind:
                wrong.append(f"{label} type {kind!r} != {device.kind}: {device.user_agent} {uadata or ''}")
            if browser not in DD_BROWSER_NAMES[device.browser]:
                wrong.append(f"{label} browser {browser!r} != {device.browser}: {device.user_agent}")
            if os_family != DD_OS_FAMILIES[device.os]:
                wrong.append(f"{label} OS {os_family!r} != {device.os}: {device.user_agent}")
            if is_bot:
                wrong.append(f"{label} bot: {device.user_agent}")
    assert not wrong, "\n".join(wrong)


def test_devices_are_not_bots_for_the_sink_either():
    assert not [d.user_agent for d in catalog.DEVICES if bot_user_agent(d.user_agent)]


def test_bots_are_real_and_detected_as_bots():
    assert len(catalog.BOTS) >= 6
    names = {b.name for b in catalog.BOTS}
    assert {"Googlebot", "Bingbot", "DuckDuckBot", "YandexBot", "Applebot", "AhrefsBot"} <= names
    for bot in catalog.BOTS:
        assert classify(bot.user_agent)[3], bot
        assert bot_user_agent(bot.user_agent), bot


# --- languages and countries ---------------------------------------------------------------------


def test_languages():
    assert len(catalog.LANGUAGE_SHARES) >= 15
    assert len({lang.tag.split("-")[0] for lang in catalog.LANGUAGE_SHARES}) >= 15
    assert sum(lang.weight for lang in catalog.LANGUAGE_SHARES) == pytest.approx(1.0, abs=1e-4)
    for lang in catalog.LANGUAGE_SHARES:
        assert re.fullmatch(r"[a-z]{2,3}-[A-Z]{2}", lang.tag), lang
        assert lang.accept_language.startswith(lang.tag + ","), lang
        for part in lang.accept_language.split(",")[1:]:
            assert re.fullmatch(r"[a-z]{2,3}(-[A-Z]{2})?;q=0\.\d", part), lang
        assert lang.weight > 0
    assert catalog.LANGUAGES == tuple(lang.accept_language for lang in catalog.LANGUAGE_SHARES)


def test_countries():
    tags = {lang.tag for lang in catalog.LANGUAGE_SHARES}
    assert len(catalog.COUNTRIES) >= 25
    assert len({c.code for c in catalog.COUNTRIES}) == len(catalog.COUNTRIES)
    for country in catalog.COUNTRIES:
        assert re.fullmatch(r"[A-Z]{2}", country.code) and country.name and country.weight > 0
        assert country.language in tags, country.code
        assert len(country.ranges) >= 5, country.code
        assert catalog.COUNTRIES_BY_CODE[country.code] is country
        for r in country.ranges:
            assert int(ipaddress.IPv4Address(r.start)) == r.first
            assert int(ipaddress.IPv4Address(r.end)) == r.last
            assert r.first < r.last


def test_ranges_avoid_special_purpose_networks_and_do_not_overlap():
    spans = []
    for country in catalog.COUNTRIES:
        for r in country.ranges:
            for network in ipaddress.summarize_address_range(
                ipaddress.IPv4Address(r.start), ipaddress.IPv4Address(r.end)
            ):
                assert network.is_global, (country.code, r)
                assert not any(network.overlaps(reserved) for reserved in RESERVED), (country.code, r)
            spans.append((r.first, r.last, country.code))
    spans.sort()
    for (_, last, code), (first, _, other) in zip(spans, spans[1:]):
        assert last < first, (code, other)


def test_random_ip_is_inside_a_listed_range_and_deterministic():
    for country in catalog.COUNTRIES:
        rng = random.Random(country.code)
        for _ in range(50):
            address = catalog.random_ip(country.code, rng)
            value = int(ipaddress.IPv4Address(address))
            assert any(r.first <= value <= r.last for r in country.ranges), (country.code, address)
            assert ipaddress.IPv4Address(address).is_global
        first = [catalog.random_ip(country.code, random.Random(42)) for _ in range(3)]
        assert len(set(first)) == 1
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert [catalog.random_ip("DE", rng_a) for _ in range(20)] == [catalog.random_ip("de", rng_b) for _ in range(20)]
    with pytest.raises(KeyError):
        catalog.random_ip("XX", random.Random(1))


# --- referrers and actions -----------------------------------------------------------------------


def test_search_engines_use_matomo_hosts_and_keyword_parameters():
    names = {engine.name for engine in catalog.SEARCH_ENGINES}
    assert names >= set(MATOMO_SEARCH_ENGINES)
    for engine in catalog.SEARCH_ENGINES:
        assert engine.weight > 0 and "{query}" in engine.url
        url = urlsplit(engine.referrer("gadget review & more"))
        host, param = MATOMO_SEARCH_ENGINES[engine.name]
        assert url.scheme == "https" and (url.hostname == host or url.hostname.endswith("." + host)), engine
        assert f"{param}=gadget+review+%26+more" in url.query, engine


def test_social_networks_use_hosts_matomo_recognises():
    assert {s.name for s in catalog.SOCIAL_NETWORKS} == set(MATOMO_SOCIAL_DOMAINS)
    for social in catalog.SOCIAL_NETWORKS:
        host = urlsplit(social.url).hostname
        domains = MATOMO_SOCIAL_DOMAINS[social.name]
        assert any(host == d or host.endswith("." + d) for d in domains), social
        assert social.weight > 0 and social.url.startswith("https://")
        # not a search engine URL (Matomo treats www.facebook.com/?q=... as a search)
        assert "q=" not in social.url


def test_websites_and_campaigns():
    assert len(catalog.WEBSITES) >= 12
    for url in catalog.WEBSITES:
        parts = urlsplit(url)
        assert parts.scheme == "https" and re.search(r"(^|\.)example\.(com|org|net)$", parts.hostname), url
        assert parts.path not in ("", "/") or parts.hostname.startswith("www."), url
    assert len(catalog.CAMPAIGNS) >= 3
    mediums = {c.medium for c in catalog.CAMPAIGNS}
    assert {"email", "cpc"} <= mediums
    assert any(c.name == "newsletter" and c.medium == "email" for c in catalog.CAMPAIGNS)
    assert any(c.name == "spring_sale" and c.source == "google" and c.medium == "cpc" for c in catalog.CAMPAIGNS)
    for campaign in catalog.CAMPAIGNS:
        assert campaign.name and campaign.source and campaign.medium and campaign.weight > 0


def test_search_terms_outlinks_downloads_events():
    assert len(catalog.SEARCH_TERMS) >= 40 and len(set(catalog.SEARCH_TERMS)) == len(catalog.SEARCH_TERMS)
    assert {
        "pricing",
        "widgets",
        "contact",
        "shipping",
        "returns",
        "gadget review",
        "opening hours",
        "discount code",
    } <= set(catalog.SEARCH_TERMS)
    assert all(url.startswith("https://") for url in catalog.OUTLINKS) and len(catalog.OUTLINKS) >= 4
    assert all(path.startswith("/files/") for path in catalog.DOWNLOADS) and len(catalog.DOWNLOADS) >= 4
    assert len(catalog.EVENTS) >= 8
    for event in catalog.EVENTS:
        assert isinstance(event, tuple) and len(event) == 3 and all(isinstance(x, str) and x for x in event)


def test_everything_is_immutable_and_sourced():
    for name in (
        "DEVICES",
        "BOTS",
        "LANGUAGE_SHARES",
        "LANGUAGES",
        "COUNTRIES",
        "SEARCH_ENGINES",
        "SOCIAL_NETWORKS",
        "WEBSITES",
        "CAMPAIGNS",
        "SEARCH_TERMS",
        "OUTLINKS",
        "DOWNLOADS",
        "EVENTS",
    ):
        assert isinstance(getattr(catalog, name), tuple), name
    assert all(isinstance(c.ranges, tuple) for c in catalog.COUNTRIES)
    with pytest.raises(TypeError):
        catalog.COUNTRIES_BY_CODE["XX"] = None  # type: ignore[index]
    sources = catalog.SOURCES
    assert "fake-useragent" in sources["devices"]["user_agents"]["package"]
    assert sources["devices"]["user_agents"]["licence"] == "Apache-2.0"
    assert "CC BY-SA 4.0" in sources["countries"]["licence"]
    assert sources["countries"]["date"] and sources["devices"]["user_agents"]["date"]
