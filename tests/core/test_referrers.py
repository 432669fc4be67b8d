"""Matomo's referrer classification (core/referrers.py) and the packaged referrer catalogue against it.

The expected values come from a real Matomo 5.1.2 (the referrer cases of the conformance recording:
referrer-www-facebook, referrer-l-facebook, referrer-google, referrer-chatgpt, referrer-website,
campaign), from Matomo's own tests (plugins/Referrers/tests: ReferrerTypeTest, AIAssistantTest) and
from the rules of plugins/Referrers/Columns/Base.php, SearchEngine.php, Social.php and AIAssistant.php.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from urllib.parse import quote_plus, urlencode, urlsplit

import pytest

from trafficinator_locust.core import catalog
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.referrers import ReferrerInfo, classify
from trafficinator_locust.core.traffic import CHANNELS, DEFAULT_SITE_URL
from trafficinator_locust.core.visits import VisitPlanner

PAGE = "https://c.example/"  # the page of the conformance cases
LANDING = DEFAULT_SITE_URL + "/"  # the planner's default site


def _r(type_: str, name: str = "", keyword: str | None = None) -> ReferrerInfo:
    return ReferrerInfo(type_, name, keyword)


# --- known examples -------------------------------------------------------------------------------

# (page url, referrer, Matomo 5.1, Matomo 5.4+)
CASES = [
    # the conformance cases, recorded from Matomo 5.1.2
    (PAGE, "https://www.facebook.com/", _r("search", "Facebook"), _r("search", "Facebook")),
    (PAGE, "https://l.facebook.com/", _r("social", "Facebook"), _r("social", "Facebook")),
    (PAGE, "https://www.google.com/search?q=widgets", _r("search", "Google", "widgets"), None),
    (PAGE, "https://chatgpt.com/", _r("website", "chatgpt.com"), _r("ai", "ChatGPT")),
    (PAGE, "https://blog.other.example/post", _r("website", "blog.other.example"), None),
    (PAGE, "", _r("direct"), None),
    (PAGE + "?mtm_campaign=spring&mtm_source=news&mtm_medium=email", "", _r("campaign", "spring"), None),
    # ReferrerTypeTest.php
    ("http://piwik.org/foo/bar", "http://google.com/search?q=piwik", _r("search", "Google", "piwik"), None),
    ("http://piwik.org/foo/bar", "https://twitter.com/matomo_org", _r("social", "Twitter"), None),
    ("http://piwik.org/foo/bar?pk_campaign=test", "http://piwik.org", _r("campaign", "test", "piwik.org"), None),
    ("http://example.com/foo", "http://example.com/bar", _r("direct"), None),
    ("http://example.org", "http://example.com/bar", _r("website", "example.com"), None),
    # AIAssistantTest.php (getAIAssistantFromDomain): a path after the host, a host + path definition
    (PAGE, "http://chatgpt.com/i/16564-4345-5sdff-333", _r("website", "chatgpt.com"), _r("ai", "ChatGPT")),
    (PAGE, "https://x.com/i/grok", _r("social", "Twitter"), _r("ai", "Grok")),
    (PAGE, "https://x.com/matomo_org", _r("social", "Twitter"), None),
    # the site's own host, with or without www. (SiteUrls::toCanonicalHost), is direct; a subdomain is not
    ("https://www.shop.example/a", "https://shop.example/b", _r("direct"), None),
    ("https://shop.example/a", "https://WWW.Shop.Example/b", _r("direct"), None),
    ("https://shop.example/a", "https://blog.shop.example/b", _r("website", "blog.shop.example"), None),
    # a search engine host without keyword: a search only for an empty or "/" path (hiddenkeyword default)
    (PAGE, "https://www.facebook.com", _r("search", "Facebook"), None),
    (PAGE, "https://www.facebook.com/groups/widgets", _r("social", "Facebook"), None),
    (PAGE, "https://m.facebook.com/", _r("social", "Facebook"), None),
    (PAGE, "https://www.facebook.com/search/?q=Widgets", _r("search", "Facebook", "widgets"), None),
    (PAGE, "https://www.bing.com/search?form=QBLH&q=", _r("search", "Bing"), None),  # empty keyword parameter
    (PAGE, "https://www.bing.com/news", _r("website", "www.bing.com"), None),
    (PAGE, "https://duckduckgo.com/", _r("search", "DuckDuckGo"), None),  # hiddenkeyword /.*/
    (PAGE, "https://www.google.com/url?sa=t&url=https%3A%2F%2Fc.example%2F", _r("search", "Google"), None),
    # lossy hosts: www./m./search. dropped, country codes become {} (google.{}, {}.bing.com)
    (PAGE, "https://www.google.co.uk/search?q=Caf%C3%A9+Cr%C3%A8me", _r("search", "Google", "café crème"), None),
    (PAGE, "https://www.google.de/", _r("search", "Google"), None),
    (PAGE, "https://de.bing.com/search?q=widgets", _r("search", "Bing", "widgets"), None),
    (PAGE, "https://www.google.com/search?tbm=isch&q=widgets", _r("search", "Google Images", "widgets"), None),
    (
        PAGE,
        "https://www.google.com/search?as_q=red&as_epq=big+widget",
        _r("search", "Google", 'red "big widget"'),
        None,
    ),
    (
        PAGE,
        "https://yandex.ru/search/?text=%D0%B2%D0%B8%D0%B4%D0%B6%D0%B5%D1%82",
        _r("search", "Yandex", "виджет"),
        None,
    ),
    (PAGE, "https://search.yahoo.com/search?p=widgets", _r("search", "Yahoo!", "widgets"), None),
    (PAGE, "https://uk.search.yahoo.com/search?p=widgets", _r("search", "Yahoo!", "widgets"), None),
    # AI assistants: before 5.4 websites, or search engines where SearchEngines.yml has the host
    (PAGE, "https://www.perplexity.ai/", _r("search", "Perplexity"), _r("ai", "Perplexity")),
    (PAGE, "https://www.perplexity.ai/search?q=widgets", _r("search", "Perplexity", "widgets"), _r("ai", "Perplexity")),
    (PAGE, "https://gemini.google.com/", _r("website", "gemini.google.com"), _r("ai", "Gemini")),
    (PAGE, "https://copilot.microsoft.com/", _r("website", "copilot.microsoft.com"), _r("ai", "Copilot")),
    (PAGE, "https://claude.ai/new", _r("website", "claude.ai"), _r("ai", "Claude")),
    (PAGE, "https://chat.openai.com/", _r("search", "ChatGPT"), _r("ai", "ChatGPT")),
    (PAGE, "https://notchatgpt.com/", _r("website", "notchatgpt.com"), None),  # not on a label boundary
    # AI first (5.4+): campaign parameters are ignored for an AI referrer (ChatGPT adds utm_source)
    (
        PAGE + "?utm_source=chatgpt.com",
        "https://chatgpt.com/",
        _r("campaign", "chatgpt.com", "chatgpt.com"),
        _r("ai", "ChatGPT"),
    ),
    # campaigns: query, then fragment; pk_/mtm_/utm_ names and keywords; lower-cased
    (PAGE + "?pk_campaign=Spring-Sale&pk_kwd=Red+Widgets", "", _r("campaign", "spring-sale", "red widgets"), None),
    (PAGE + "?utm_source=Newsletter&utm_medium=email&utm_term=x", "", _r("campaign", "newsletter", "x"), None),
    (PAGE + "#mtm_campaign=hash&mtm_kwd=k", "", _r("campaign", "hash", "k"), None),
    (PAGE + "?mtm_campaign=", "", _r("direct"), None),
    # a campaign without keyword takes the referrer's search keyword, else its host
    (PAGE + "?mtm_campaign=ads", "https://www.google.com/search?q=Widgets", _r("campaign", "ads", "widgets"), None),
    (PAGE + "?mtm_campaign=ads", "https://news.example.net/x", _r("campaign", "ads", "news.example.net"), None),
    # Google Ads without campaign parameters
    (
        PAGE,
        "https://googleads.g.doubleclick.net/pagead/ads?ad_type=text&url=https%3A%2F%2Fnews.example.net%2Fa",
        _r("campaign", "adwords (text)", "(adwords) news.example.net"),
        None,
    ),
    # no usable referrer
    (PAGE + "?ignore_referrer=1", "https://www.google.com/search?q=x", _r("direct"), None),
    (PAGE, "not a url", _r("direct"), None),
    (PAGE, "https://[broken/", _r("direct"), None),
]


@pytest.mark.parametrize(("url", "referrer", "matomo_5_1", "matomo_5_4"), CASES)
def test_classify_as_matomo(url, referrer, matomo_5_1, matomo_5_4):
    assert classify(url, referrer, ai_assistants=False) == matomo_5_1
    assert classify(url, referrer, ai_assistants=True) == (matomo_5_4 or matomo_5_1)
    assert classify(url, referrer) == classify(url, referrer, ai_assistants=True)


def test_search_engine_before_social_for_facebook():
    """www.facebook.com is in SearchEngines.yml (parameter q) and facebook.com in Socials.yml."""
    for ai in (False, True):
        assert classify(PAGE, "https://www.facebook.com/", ai_assistants=ai).type == "search"
        assert classify(PAGE, "https://www.facebook.com/?q=widgets", ai_assistants=ai) == _r(
            "search", "Facebook", "widgets"
        )
        assert classify(PAGE, "https://l.facebook.com/l.php?u=https%3A%2F%2Fc.example%2F", ai_assistants=ai) == _r(
            "social", "Facebook"
        )


# --- the packaged catalogue -----------------------------------------------------------------------


def _referrers_json() -> dict:
    text = resources.files("trafficinator_locust.core.catalog").joinpath("referrers.json").read_text("utf-8")
    return json.loads(text)


def test_the_catalogue_module_holds_every_entry_of_referrers_json():
    data = _referrers_json()
    assert len(catalog.SEARCH_ENGINES) == len(data["search_engines"])
    assert len(catalog.SOCIAL_NETWORKS) == len(data["social_networks"])
    assert len(catalog.AI_ASSISTANTS) == len(data["ai_assistants"]) >= 5
    assert len(catalog.WEBSITES) == len(data["websites"])
    assert len(catalog.CAMPAIGNS) == len(data["campaigns"])
    assert "ai_assistants" in catalog.SOURCES["referrers"]


@pytest.mark.parametrize("ai_assistants", [False, True])
@pytest.mark.parametrize("engine", catalog.SEARCH_ENGINES, ids=lambda e: e.name)
def test_every_search_engine_is_a_search_with_its_keyword(engine, ai_assistants):
    for term in ("widgets", "gadget review & more", "Opening Hours"):
        referrer = engine.url.format(query=quote_plus(term))
        assert classify(LANDING, referrer, ai_assistants=ai_assistants) == _r("search", engine.name, term.lower())


@pytest.mark.parametrize("ai_assistants", [False, True])
@pytest.mark.parametrize("social", catalog.SOCIAL_NETWORKS, ids=lambda s: s.url)
def test_every_social_network_is_social(social, ai_assistants):
    info = classify(LANDING, social.url, ai_assistants=ai_assistants)
    assert info.type == "social", info
    # The catalogue writes "instagram" as Matomo used to; the current Socials.yml says "Instagram".
    assert info.name.casefold() == social.name.casefold()


@pytest.mark.parametrize("ai_assistants", [False, True])
@pytest.mark.parametrize("website", catalog.WEBSITES)
def test_every_website_is_a_website(website, ai_assistants):
    assert classify(LANDING, website, ai_assistants=ai_assistants) == _r("website", urlsplit(website).hostname)


@pytest.mark.parametrize("ai_assistants", [False, True])
@pytest.mark.parametrize("campaign", catalog.CAMPAIGNS, ids=lambda c: c.name)
def test_every_campaign_is_a_campaign(campaign, ai_assistants):
    query = {"mtm_campaign": campaign.name, "mtm_source": campaign.source, "mtm_medium": campaign.medium}
    if campaign.keyword:
        query["mtm_kwd"] = campaign.keyword
    info = classify(f"{LANDING}?{urlencode(query)}", "", ai_assistants=ai_assistants)
    assert info == _r("campaign", campaign.name.lower(), campaign.keyword.lower() or None)


@pytest.mark.parametrize("assistant", catalog.AI_ASSISTANTS, ids=lambda a: a.name)
def test_every_ai_assistant_is_an_ai_assistant_from_5_4_and_a_website_or_search_before(assistant):
    assert classify(LANDING, assistant.url, ai_assistants=True) == _r("ai", assistant.name)
    before = classify(LANDING, assistant.url, ai_assistants=False)
    host = urlsplit(assistant.url).hostname
    # Matomo 5.1: a website, except where SearchEngines.yml lists the host (www.perplexity.ai, bare "/")
    expected = _r("search", "Perplexity") if host == "www.perplexity.ai" else _r("website", host)
    assert before == expected


# --- the planner: each channel's landing hit is what Matomo reports for that channel -------------

PLANNED = """
targets:
  - name: Channels
    url: https://m.example/matomo.php
    site_id: 1
    traffic:
      channels: {direct: 10, search: 10, social: 10, website: 10, ai: 10, campaign: 10}
"""


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    path = tmp_path_factory.mktemp("referrers") / "traffic.yaml"
    path.write_text(PLANNED, encoding="utf-8")
    planner = VisitPlanner(load_config(path, env={}).targets[0], 11)
    return [planner.plan(n) for n in range(3000)]


@pytest.mark.parametrize("ai_assistants", [False, True])
def test_the_planners_landing_hits_are_classified_as_their_channel(planned, ai_assistants):
    seen = Counter()
    for visit in planned:
        first = visit.hits[0].params
        info = classify(first["url"], first.get("urlref", ""), ai_assistants=ai_assistants)
        expected = visit.channel
        if visit.channel == "ai" and not ai_assistants:
            expected = "search" if urlsplit(first["urlref"]).hostname == "www.perplexity.ai" else "website"
        assert info.type == expected, (visit.channel, first["url"], first.get("urlref"), info)
        seen[visit.channel] += 1
    assert set(seen) == set(CHANNELS)


# --- the channel option -----------------------------------------------------------------------------


def _channels(tmp_path, traffic: str) -> dict[str, float]:
    path = tmp_path / "traffic.yaml"
    path.write_text(
        f"targets:\n  - name: T\n    url: https://m.example/matomo.php\n    site_id: 1\n{traffic}", encoding="utf-8"
    )
    return load_config(path, env={}).targets[0].traffic.channels


def test_default_channels_include_a_small_ai_share_taken_from_website(tmp_path):
    channels = _channels(tmp_path, "")
    assert channels == {"direct": 30, "search": 35, "social": 10, "website": 14, "ai": 1, "campaign": 10}
    assert list(channels) == list(CHANNELS)


def test_old_channel_lists_without_ai_load_unchanged(tmp_path):
    channels = _channels(tmp_path, "    traffic:\n      channels: {direct: 25, search: 45, social: 10, website: 20}\n")
    assert channels == {"direct": 25, "search": 45, "social": 10, "website": 20, "ai": 0, "campaign": 0}


def test_ai_share_is_relative_like_the_others(tmp_path):
    channels = _channels(tmp_path, "    traffic:\n      channels: {direct: 3, ai: 1}\n")
    total = sum(channels.values())
    assert channels["ai"] / total == 0.25 and channels["direct"] / total == 0.75
