"""Matomo's referrer classification: what a visit's landing hit (``url`` + ``urlref``) is reported as.

Pure: the only input besides the two URLs is Matomo's own lists (``catalog/matomo/*.yml``, CC0),
read once, lazily. It follows Matomo's tracker code, file by file (``matomo-org/matomo``):

``plugins/Referrers/Columns/Base.php`` (``getReferrerInformation``) decides in this order:

1. ``ignore_referrer=1`` (or ``ignore_referer=1``) in the page URL's query: direct entry.
2. A referrer that does not look like a URL (``core/UrlHelper.php``, ``isLookLikeUrl``) counts as none.
3. **AI assistant** (Matomo 5.4+, ``ai_assistants=True``; before 5.4 there is no such type):
   ``plugins/Referrers/AIAssistant.php``, ``isAIAssistantUrl``: a domain of ``AIAssistants.yml``
   found in the referrer URL after the start, a ``.`` or a ``/`` and followed by ``/`` or the end.
   Base.php checks it *first*, "as campaign parameters should be ignored in that case" (ChatGPT
   adds ``utm_source=chatgpt.com`` to its links).
4. **Campaign**: a campaign name parameter in the page URL's query, else in its fragment; names from
   ``[Tracker] campaign_var_name``, keywords from ``campaign_keyword_var_name`` (``config/global.ini.php``).
   A campaign without keyword takes the search keyword of the referrer, else the referrer host;
   name and keyword are lower-cased. A Google Ads referrer (``googleads``/``doubleclick`` host with
   ``url=``) is the campaign "AdWords" even without parameters.
5. **Direct entry**: the referrer's host is the page's own host (``plugins/SitesManager/SiteUrls.php``:
   the tracked URL counts as a site URL; hosts compare lower-cased, without a leading ``www.``).
6. **Search engine** (``plugins/Referrers/SearchEngine.php``, ``extractInformationFromUrl``): the
   referrer's host + path, host, "lossy" host + path or lossy host is in ``SearchEngines.yml``
   (``UrlHelper::getLossyUrl``: ``www.``/``search.``/``m.`` dropped, a country code becomes ``{}``,
   so ``www.google.co.uk`` is ``google.{}``), **and** a keyword is found: a keyword parameter
   (or regex) of the engine, a present-but-empty keyword parameter, or a path matching the engine's
   ``hiddenkeyword`` list (default ``/^$/`` and ``/``: an empty or ``/`` path with no query). The
   last two count as a search with the keyword "not defined" (``keyword=None``). So
   ``https://www.facebook.com/`` is the search engine Facebook, ``https://www.facebook.com/groups/x``
   is not (and goes on to social). With ``ai_assistants=False`` the lists are taken as Matomo 5.1
   bundles them: without ``chatgpt.com`` as a search engine (added to the lists in November 2024).
7. **Social network** (``plugins/Referrers/Social.php``, ``getSocialNetworkFromDomain``): a domain of
   ``Socials.yml`` in the referrer URL after the start, a ``.`` or a ``/`` and followed by ``.``, ``/``
   or the end (the domain is used as a regular expression, unescaped, as Matomo does).
8. **Website**: any other referrer with a host, named by its lower-cased host.
9. Otherwise (no referrer, or one without host): direct entry.

Not modelled: a site's other URLs and excluded referrers (only the page's own host is known here),
campaign parameters sent as tracking parameters (``_rcn``/``_rck``), the Matomo 5.5 detection of an
AI assistant from ``utm_source`` alone (no referrer), ``mb_detect_encoding`` for engines with several
charsets (the first charset the keyword's bytes decode in is taken), the HTML-escaping of parameter
values, and the truncation of long names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

import yaml

__all__ = ["ReferrerInfo", "classify", "TYPES", "CAMPAIGN_NAME_PARAMS", "CAMPAIGN_KEYWORD_PARAMS"]

TYPES = ("campaign", "direct", "search", "social", "website", "ai")

# Matomo's defaults, config/global.ini.php [Tracker] campaign_var_name / campaign_keyword_var_name.
CAMPAIGN_NAME_PARAMS = (
    "pk_cpn",
    "pk_campaign",
    "piwik_campaign",
    "mtm_campaign",
    "matomo_campaign",
    "utm_campaign",
    "utm_source",
    "utm_medium",
)
CAMPAIGN_KEYWORD_PARAMS = ("pk_kwd", "pk_keyword", "piwik_kwd", "mtm_kwd", "mtm_keyword", "matomo_kwd", "utm_term")

# Country codes Matomo replaces by "{}" in a lossy host: core/Intl/Data/Resources/countries.php followed
# by countries-extra.php (RegionDataProvider::getCountryList(true)), in that order.
_COUNTRY_CODES = (
    "ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bl bm bn bo bq br bs bt bv bw by "
    "bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee eg eh er es et fi fj fk "
    "fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir "
    "is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mf mg mh mk "
    "ml mm mn mo mp mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm "
    "pn pr ps pt pw py qa re ro rs ru rw sa sb sc sd se sg sh si sj sk sl sm sn so sr ss st sv sx sy sz tc td tf "
    "tg th tj tk tl tm tn to tr tt tv tw tz ua ug um us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw "
    "xx ac cp dg ea eu fx ic su ta uk an bu cs nt sf tp yu zr a1 a2 ap o1 cat"
).split()
_COUNTRIES = "|".join(_COUNTRY_CODES)
# UrlHelper::getLossyUrl: the four replacements, applied in order.
_LOSSY = (
    (re.compile(r"^(w+[0-9]*|search)\."), ""),
    (re.compile(r"(^|\.)m\."), r"\1"),
    (re.compile(r"(\.(com|org|net|co|it|edu))?\.(" + _COUNTRIES + r")(/|$)"), r".{}\4"),
    (re.compile(r"(^|\.)(" + _COUNTRIES + r")\."), r"\1{}."),
)
_LOOKS_LIKE_URL = re.compile(r"(([A-Za-z][A-Za-z0-9+.\-]*)?:)?//(.*)")  # UrlHelper::isLookLikeUrl
_PHP_TRIM = " \t\n\r\0\x0b"
_DEFAULT_HIDDEN_KEYWORD = ("/^$/", "/")
_GOOGLE_TBM = {"isch": "Google Images", "vid": "Google Video", "shop": "Google Shopping"}
# SearchEngines.yml URLs newer than the lists Matomo 5.1 bundles: searchengine-and-social-list PR #107
# (2024-11-04) added chatgpt.com to the search engine ChatGPT; Matomo 5.1.2 reports it as a website.
_NOT_IN_MATOMO_5_1 = frozenset({"chatgpt.com"})


@dataclass(frozen=True)
class ReferrerInfo:
    """How Matomo reports a visit's referrer (``referer_type``, ``referer_name``, ``referer_keyword``)."""

    type: str  # "campaign" | "direct" | "search" | "social" | "website" | "ai"
    name: str  # e.g. "Google", "Facebook", "ChatGPT", the host for websites, the campaign name
    keyword: str | None  # search keyword when known (None: "keyword not defined"); a campaign's keyword


DIRECT = ReferrerInfo("direct", "", None)


def classify(url: str, referrer: str, *, ai_assistants: bool = True) -> ReferrerInfo:
    """Classify a landing hit as Matomo does: ``url`` is the page URL, ``referrer`` its ``urlref``.

    ``ai_assistants=False`` is Matomo 5.1: no AI assistant type, so their referrers are websites, or
    search engines where its lists name them (``www.perplexity.ai/``, ``you.com/``, ``chat.openai.com/``;
    not ``chatgpt.com``, added to the lists after 5.1). ``True`` is Matomo 5.4 and later.
    """
    page = _split(url)
    if page.query and "1" in (_param(page.query, "ignore_referrer"), _param(page.query, "ignore_referer")):
        return DIRECT
    if referrer and not _looks_like_url(referrer):
        referrer = ""
    host = _host(referrer) if referrer else ""
    if ai_assistants and referrer:
        assistant = _ai_assistant(referrer)
        if assistant is not None:
            return ReferrerInfo("ai", assistant, None)
    campaign = _campaign(page.query, page.fragment, referrer, host, ai_assistants)
    if campaign is not None:
        return campaign
    if not referrer:
        return DIRECT
    if host and _canonical_host(host) == _canonical_host(_host(url)):
        return DIRECT
    engine = _search_engine(referrer, ai_assistants)
    if engine is not None:
        return ReferrerInfo("search", engine[0], engine[1])
    social = _social_network(referrer)
    if social is not None:
        return ReferrerInfo("social", social, None)
    if host:
        return ReferrerInfo("website", host.lower(), None)
    return DIRECT


# ---------------------------------------------------------------------------------------------
# Matomo's lists


class _Engine(NamedTuple):
    name: str
    params: tuple[str, ...]
    hidden: tuple[str, ...]  # hiddenkeyword, or the default
    charsets: tuple[str, ...]


class _Lists(NamedTuple):
    engines: Mapping[str, _Engine]  # URL (host, host+path, lossy host) -> engine
    engines_5_1: Mapping[str, _Engine]  # the same, without the URLs Matomo 5.1's lists do not have
    socials: tuple[tuple[re.Pattern[str], str], ...]  # in Socials.yml order: the first match names it
    assistants: tuple[tuple[re.Pattern[str], str], ...]


def _yaml(name: str) -> Any:
    folder = resources.files("trafficinator_locust.core.catalog").joinpath("matomo")
    text = folder.joinpath(name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when present


@cache
def _lists() -> _Lists:
    engines: dict[str, _Engine] = {}
    for name, definitions in _yaml("SearchEngines.yml").items():  # SearchEngine::transformData
        for definition in definitions if isinstance(definitions, list) else ():
            engine = _Engine(
                str(name),
                tuple(str(p) for p in definition.get("params") or ()),
                tuple(str(h) for h in definition.get("hiddenkeyword") or ()) or _DEFAULT_HIDDEN_KEYWORD,
                tuple(str(c) for c in definition.get("charsets") or ()),
            )
            for host in definition.get("urls") or ():
                engines[str(host)] = engine  # a later definition of the same URL wins, in place
    return _Lists(
        engines,
        {url: engine for url, engine in engines.items() if url not in _NOT_IN_MATOMO_5_1},
        tuple(
            (re.compile(r"(^|[./])" + domain + r"([./]|$)"), name)  # Social::getSocialNetworkFromDomain
            for domain, name in _by_domain(_yaml("Socials.yml")).items()
        ),
        tuple(
            (re.compile(r"(^|[./])" + re.escape(domain) + r"(/|$)"), name)  # AIAssistant::isAIAssistantUrl
            for domain, name in _by_domain(_yaml("AIAssistants.yml")).items()
        ),
    )


def _by_domain(lists: Mapping[str, Any]) -> dict[str, str]:
    """``{name: [domain, ...]}`` to ``{domain: name}`` in file order (Social/AIAssistant::transformData)."""
    by_domain: dict[str, str] = {}
    for name, domains in lists.items():
        for domain in domains if isinstance(domains, list) else ():
            by_domain[str(domain)] = str(name)
    return by_domain


# ---------------------------------------------------------------------------------------------
# Detection steps (each cached by its input: Matomo caches them per referrer URL too)


@lru_cache(maxsize=4096)
def _ai_assistant(referrer: str) -> str | None:
    for pattern, name in _lists().assistants:
        if pattern.search(referrer):
            return name
    return None


@lru_cache(maxsize=4096)
def _social_network(referrer: str) -> str | None:
    for pattern, name in _lists().socials:
        if pattern.search(referrer):
            return name
    return None


@lru_cache(maxsize=4096)
def _search_engine(referrer: str, current_lists: bool = True) -> tuple[str, str | None] | None:
    """``(engine name, keyword or None for "not defined")``, or None: SearchEngine::extractInformationFromUrl.

    ``current_lists=False``: as Matomo 5.1's lists (see ``_NOT_IN_MATOMO_5_1``).
    """
    parts = _split(referrer)
    host = _host(referrer)
    if not host:
        return None
    path, fragment = parts.path, parts.fragment
    query = parts.query + ("&" + fragment if fragment else "")
    engines = _lists().engines if current_lists else _lists().engines_5_1
    engine = engines.get(_engine_host(host, path, query, engines) or "")
    if engine is None:
        return None
    name = engine.name
    key: str | bool | None = None  # None: not found; False: "no keyword provided" (still a search)
    if name == "Google Images":
        if "&prev" in query:
            query = _urldecode(_trim(_text(_param(query, "prev"))))
            query = query[query.index("?") :].replace("&", "&amp;") if "?" in query else ""
    elif name == "Google" and ("&as_" in query or query.startswith("as_")):
        keys = []
        for param, shape in (("as_q", "{}"), ("as_oq", "{}"), ("as_epq", '"{}"'), ("as_eq", "-{}")):
            value = _param(query, param)
            if not _empty(value):
                value = _text(value)
                keys.append(shape.format(value.replace("+", " OR ") if param == "as_oq" else value))
        key = _trim(_urldecode(" ".join(keys)))
    if name == "Google":
        name = _GOOGLE_TBM.get(_text(_param(query, "tbm")), name)
    if _empty(key):
        for variable in engine.params:
            if variable.startswith("/"):
                match = _php_regex(variable).search(referrer)
                if match:
                    key = _trim(_urldecode(match.group(1) or ""))
                    break
            else:
                key = _trim(_urldecode(_text(_param(query, variable))))
                if _empty(key) and (f"&{variable}=" in query or f"?{variable}=" in query):
                    key = False  # the keyword parameter is there, but empty
                if not _empty(key) or key is False:
                    break
    if engine.hidden and (key is None or key == ""):
        path_query_fragment = path + ("?" + query if query else "") + ("#" + fragment if fragment else "")
        for hidden in engine.hidden:
            if len(hidden) > 1 and hidden.startswith("/") and hidden.endswith("/"):
                if _php_regex(hidden).search(path_query_fragment):
                    key = False
                    break
            elif hidden == path_query_fragment:
                key = False
                break
    if key is None or key == "":
        return None
    if key is False:
        return name, None
    if not _empty(key):
        return name, _decode(str(key), engine.charsets).lower()
    return name, str(key)  # PHP's empty("0"): kept as it is


def _engine_host(host: str, path: str, query: str, engines: Mapping[str, _Engine]) -> str | None:
    """SearchEngine::getEngineHostFromUrl: the definition key a referrer host matches, or None."""
    lossy = _lossy(host)
    for candidate in (host + path, host, lossy + path, lossy):
        if candidate in engines:
            return candidate
    if query.startswith("cx=partner-pub-"):
        return "google.com/cse"  # Google custom search engine
    if path.startswith("/pemonitorhosted/ws/results/"):
        return "wsdsold.infospace.com"
    if host.find(".images.search.yahoo.com") > 0:
        return "images.search.yahoo.com"
    if host.find(".search.yahoo.com") > 0:
        return "search.yahoo.com"
    return None


def _lossy(host: str) -> str:
    for pattern, replacement in _LOSSY:
        host = pattern.sub(replacement, host)
    return host


def _campaign(query: str, fragment: str, referrer: str, referrer_host: str, lists: bool) -> ReferrerInfo | None:
    """Base::detectReferrerCampaign (from the landing URL; then the referrer's keyword or host)."""
    name = keyword = ""
    adwords = False
    if query or fragment:
        found = False
        if query:
            name, keyword, found = _campaign_from(query, name, keyword)
        if not found and fragment:
            name, keyword, found = _campaign_from(fragment, name, keyword)
    if not (name and keyword):  # Base::detectCampaignKeywordFromReferrerUrl
        if name:
            engine = _search_engine(referrer, lists) if referrer else None
            if engine is not None and engine[1]:
                keyword = engine[1]
        referrer_query = _split(referrer).query
        if not keyword and referrer_query and ("googleads" in referrer_host or "doubleclick" in referrer_host):
            landing = _decode(_trim(_urldecode(_text(_param(referrer_query, "url")))), ())
            landing_host = _host(landing) if landing else ""
            if landing_host:
                if not name:
                    ad_type = _decode(_trim(_urldecode(_text(_param(referrer_query, "ad_type")))), ())
                    name, adwords = "AdWords" + (f" ({ad_type})" if ad_type else ""), True
                keyword = "(adwords) " + landing_host
    if not name and not adwords:
        return None
    keyword = keyword or referrer_host
    return ReferrerInfo("campaign", name.lower(), keyword.lower() or None)


def _campaign_from(text: str, name: str, keyword: str) -> tuple[str, str, bool]:
    """Base::detectCampaignFromString: (name, keyword, whether a keyword was found)."""
    value = ""
    for parameter in CAMPAIGN_NAME_PARAMS:
        raw = _param(text, parameter)
        if not isinstance(raw, str):
            continue
        value = _decode(_trim(_urldecode(raw)), ())
        if not _empty(value):
            break
    if _empty(value):
        return name, keyword, False
    for parameter in CAMPAIGN_KEYWORD_PARAMS:
        raw = _param(text, parameter)
        if not isinstance(raw, str):
            continue
        found = _decode(_trim(_urldecode(raw)), ())
        if not _empty(found):
            keyword = found
            break
    return value, keyword, not _empty(keyword)


# ---------------------------------------------------------------------------------------------
# PHP helpers, as Matomo uses them


def _looks_like_url(url: str) -> bool:
    match = _LOOKS_LIKE_URL.fullmatch(url)
    return match is not None and len(match.group(3)) > 0


def _split(url: str) -> SplitResult:
    """urlsplit, with nothing for what parse_url() would refuse."""
    try:
        return urlsplit(url or "")
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return urlsplit("")


def _host(url: str) -> str:
    """parse_url()'s host: no user info, no port, case kept."""
    netloc = _split(url).netloc.rpartition("@")[2]
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    return netloc.partition(":")[0]


def _canonical_host(host: str) -> str:
    """SiteUrls::toCanonicalHost: lower-cased, without a leading ``www.``."""
    host = host.lower()
    return host[4:] if host.startswith("www.") else host


def _param(query: str, name: str) -> str | bool | None:
    """UrlHelper::getParameterFromQueryString: the raw value, False for ``name`` without ``=``, None if absent.

    The last occurrence wins; ``name[]`` parameters are arrays, which Matomo's callers ignore here.
    """
    if not query:
        return None
    query = (query[1:] if query.startswith("?") else query).strip(_PHP_TRIM)
    value: str | bool | None = None
    for piece in query.split("&"):
        key, equals, raw = piece.partition("=")
        if key == name:
            value = raw if equals else False
    return value


def _text(value: str | bool | None) -> str:
    return value if isinstance(value, str) else ""


def _empty(value: object) -> bool:
    """PHP's empty() for the values seen here."""
    return value is None or value is False or value == "" or value == "0"


def _trim(text: str) -> str:
    return text.strip(_PHP_TRIM)


def _urldecode(text: str) -> str:
    """PHP urldecode, keeping bytes as code points 0-255 (decoded by ``_decode`` at the end)."""
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text.replace("+", " "))


def _decode(text: str, charsets: tuple[str, ...]) -> str:
    """The bytes of ``text`` as text: in the engine's charsets (SearchEngine::convertCharset), else UTF-8."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:  # not from _urldecode: already text
        return text
    for charset in charsets[:1] if len(charsets) == 1 else charsets:
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("utf-8", errors="replace")


@cache
def _php_regex(pattern: str) -> re.Pattern[str]:
    """A PCRE ``/.../flags`` pattern of the lists as a Python pattern."""
    end = pattern.rindex("/")
    flags = re.IGNORECASE if "i" in pattern[end + 1 :] else 0
    return re.compile(pattern[1:end], flags)


# ---------------------------------------------------------------------------------------------
# Referrers for a name: the way back from a report label to a referrer URL Matomo classifies as it

_CHECK_PAGE = "https://site.invalid/"
"""A page URL on a host no list names: the referrers below are checked against it."""
_CHECK_QUERY = "widgets"


def search_engine_names() -> tuple[str, ...]:
    """The names of Matomo's search engines (``SearchEngines.yml``) that :func:`search_engine_referrer` can reach."""
    return tuple(name for name in _engine_definitions() if search_engine_referrer(name) is not None)


def social_network_names() -> tuple[str, ...]:
    """The names of Matomo's social networks (``Socials.yml``) that :func:`social_network_referrer` can reach."""
    return tuple(name for name in _social_domains() if social_network_referrer(name) is not None)


@cache
def search_engine_referrer(name: str) -> str | None:
    """A referrer URL template (``{query}`` for the quoted keyword) that :func:`classify` reports as the
    search engine ``name``, or None. Built from the engine's first definitions in ``SearchEngines.yml``
    as Matomo builds its links (``SearchEngine::getBackLinkFromUrlAndKeyword``: the host, a country
    code for ``{}``, and the ``backlink``), else its keyword parameter, else the engine's bare host
    (a "hidden keyword" path: keyword not defined); each candidate is checked with :func:`classify`::

        search_engine_referrer("DuckDuckGo")   # 'https://duckduckgo.com/?q={query}'
    """
    for definition in _engine_definitions().get(name, ()):
        params = [str(p) for p in definition.get("params") or () if not str(p).startswith("/")]
        backlink = str(definition.get("backlink") or "")
        for url in definition.get("urls") or ():
            host = str(url).replace("{}", "com")
            base = "https://" + host + ("" if "/" in host else "/")
            candidates = []
            if backlink and "{k}" in backlink:
                candidates.append(base.rstrip("/") + "/" + backlink.lstrip("/").replace("{k}", "{query}"))
            candidates += [f"{base}?{param}={{query}}" for param in params]
            candidates.append(base)
            for candidate in candidates:
                found = classify(_CHECK_PAGE, candidate.replace("{query}", _CHECK_QUERY))
                if found.type == "search" and found.name == name:
                    return candidate
    return None


@cache
def social_network_referrer(name: str) -> str | None:
    """A referrer URL that :func:`classify` reports as the social network ``name``, or None: a page on
    one of its ``Socials.yml`` domains (not the bare host, which may be a search engine's: Facebook)."""
    for domain in _social_domains().get(name, ()):
        for candidate in (f"https://{domain}/share", f"https://{domain}/"):
            found = classify(_CHECK_PAGE, candidate)
            if found.type == "social" and found.name == name:
                return candidate
    return None


@cache
def _engine_definitions() -> dict[str, tuple[Mapping[str, Any], ...]]:
    return {
        str(name): tuple(d for d in definitions if isinstance(d, dict))
        for name, definitions in _yaml("SearchEngines.yml").items()
        if isinstance(definitions, list)
    }


@cache
def _social_domains() -> dict[str, tuple[str, ...]]:
    return {
        str(name): tuple(str(domain) for domain in domains)
        for name, domains in _yaml("Socials.yml").items()
        if isinstance(domains, list)
    }
