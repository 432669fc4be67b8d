#!/usr/bin/env python3
"""Regenerate the packaged reference data in ``trafficinator_locust/core/catalog/*.json``.

Sources (see ``trafficinator_locust/core/catalog/SOURCES.md`` for the full story):

* user agents with usage percentages, device type, OS and browser: the ``browsers.jsonl`` file
  packaged in PyPI ``fake-useragent`` (Apache-2.0);
* country IPv4 ranges: Tor's ``geoip`` file as packaged by Debian in ``tor-geoipdb``, converted
  from the IPFire Location database (CC BY-SA 4.0);
* the check that every packaged user agent is classified the way we declare it: PyPI
  ``device-detector`` (MIT), a Python port of Matomo's DeviceDetector;
* everything else (market-share tables, languages, referrers, campaigns, search terms, events,
  Android models for client hints, screen resolutions) is curated in this file, with the
  approximations stated next to each table.

Usage::

    python scripts/build_catalog.py              # makes a temporary venv with the pinned sources
    python scripts/build_catalog.py --no-venv    # uses the sources installed in this interpreter
    python scripts/build_catalog.py --geoip /usr/share/tor/geoip --out /tmp/catalog

The output depends only on the input data (pinned package versions, the geoip file) and the
tables below: no clock, no randomness, no network access besides the package installs.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "trafficinator_locust" / "core" / "catalog"

FAKE_UA_REQUIREMENT = "fake-useragent==2.2.0"
DEVICE_DETECTOR_REQUIREMENT = "device-detector==6.5.1"
SOURCE_REQUIREMENTS = (FAKE_UA_REQUIREMENT, DEVICE_DETECTOR_REQUIREMENT)
# Release month of the pinned data (PyPI upload of that version); the data has no date of its own.
FAKE_UA_DATES = {"2.2.0": "2025-04"}
TOR_GEOIP_PACKAGE = "tor-geoipdb"
TOR_GEOIP_PATH = Path("/usr/share/tor/geoip")

# ----------------------------------------------------------------------------------------------
# Curated tables
# ----------------------------------------------------------------------------------------------

# Approximate worldwide platform shares (StatCounter Global Stats "Desktop vs Mobile vs Tablet
# Market Share Worldwide", approximate, 2025): mobile ~62 %, desktop ~36 %, tablet ~2 %.
DEVICE_KIND_SHARES = {"desktop": 0.36, "smartphone": 0.62, "tablet": 0.02}
DEVICE_KIND_SOURCE = (
    "Approximate worldwide platform market shares after StatCounter Global Stats "
    "(desktop vs mobile vs tablet), approximate, 2025. Curated, rounded."
)

KINDS = {"desktop": "desktop", "mobile": "smartphone", "tablet": "tablet"}
BROWSERS = {
    "Chrome": "Chrome",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Safari": "Safari",
    "Mobile Safari": "Safari",
    "Firefox": "Firefox",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge": "Edge",
    "Edge Mobile": "Edge",
    "Samsung Internet": "Samsung Internet",
    "Opera": "Opera",
    "Opera Mobile": "Opera",
}
OSES = {
    "Windows": "Windows",
    "Mac OS X": "macOS",
    "iOS": "iOS",
    "Android": "Android",
    "Linux": "Linux",
    "Ubuntu": "Linux",
    "Chrome OS": "Chrome OS",
}
# Versions kept: the newest major of each (kind, browser, OS) group and the few before it.
RECENT_MAJORS = {"Safari": 1}
RECENT_MAJORS_DEFAULT = 3
# Usage counted towards a group's weight: versions within this many majors of the newest
# (older entries in the source are mostly synthetic, e.g. "Chrome/46.0.2184.1797" on Android 8).
WEIGHT_MAJORS = 10
# Distinct user agents kept per group: proportional to the group's weight within its kind.
QUOTA_MIN, QUOTA_MAX, QUOTA_PER_SHARE = 2, 14, 60
# A variant dimension (screen size, OS version, Android model) is split into all its options
# when the entry carries at least this share of its kind, else one option is picked by hash.
SPLIT_THRESHOLD = 0.02

# Screen sizes in CSS pixels (what ``screen.width x screen.height`` reports, Matomo's ``res``),
# with rough weights. Curated approximations of common devices.
RESOLUTIONS = {
    ("desktop", "Windows"): (
        ("1920x1080", 40),
        ("1366x768", 14),
        ("1536x864", 16),
        ("2560x1440", 10),
        ("1440x900", 5),
        ("1600x900", 6),
        ("1280x720", 4),
        ("1280x1024", 3),
        ("1680x1050", 2),
    ),
    ("desktop", "macOS"): (
        ("1440x900", 20),
        ("1512x982", 20),
        ("1470x956", 15),
        ("1728x1117", 10),
        ("1920x1080", 15),
        ("2560x1440", 10),
        ("1680x1050", 10),
    ),
    ("desktop", "Linux"): (("1920x1080", 50), ("2560x1440", 20), ("1366x768", 15), ("1600x900", 15)),
    ("desktop", "Chrome OS"): (("1366x768", 40), ("1536x864", 30), ("1280x800", 20), ("1920x1080", 10)),
    ("smartphone", "iOS"): (
        ("390x844", 25),
        ("393x852", 25),
        ("430x932", 15),
        ("414x896", 15),
        ("375x812", 10),
        ("375x667", 10),
    ),
    ("smartphone", "Android"): (("412x915", 30), ("360x800", 25), ("384x854", 15), ("360x780", 15), ("393x873", 15)),
    ("tablet", "iOS"): (
        ("810x1080", 30),
        ("820x1180", 30),
        ("834x1194", 15),
        ("1024x1366", 10),
        ("768x1024", 10),
        ("744x1133", 5),
    ),
    ("tablet", "Android"): (("800x1280", 60), ("1280x800", 40)),
}

# Android models for the client hints (``uadata``) of Chromium browsers whose user agent is the
# reduced "Android 10; K" form: (model, Android platformVersion, screen, weight). Curated list of
# popular current models; every model code is known to DeviceDetector's device database.
PHONE_MODELS = (
    ("SM-A155F", "14.0.0", "384x832", 9),  # Samsung Galaxy A15
    ("SM-A256B", "14.0.0", "384x832", 6),  # Samsung Galaxy A25 5G
    ("SM-A556B", "14.0.0", "384x832", 6),  # Samsung Galaxy A55 5G
    ("SM-S921B", "14.0.0", "360x780", 7),  # Samsung Galaxy S24
    ("SM-S928B", "14.0.0", "384x832", 5),  # Samsung Galaxy S24 Ultra
    ("SM-S911B", "14.0.0", "360x780", 4),  # Samsung Galaxy S23
    ("Pixel 8", "15.0.0", "412x915", 5),  # Google Pixel 8
    ("Pixel 7a", "14.0.0", "412x915", 4),  # Google Pixel 7a
    ("23129RAA4G", "14.0.0", "393x873", 6),  # Xiaomi Redmi Note 13
    ("23106RN0DA", "13.0.0", "393x873", 5),  # Xiaomi Redmi 13C
    ("CPH2591", "14.0.0", "360x800", 3),  # OPPO A18
)
TABLET_MODELS = (
    ("SM-X200", "14.0.0", "800x1280", 5),  # Samsung Galaxy Tab A8 10.5"
    ("SM-X110", "14.0.0", "800x1340", 3),  # Samsung Galaxy Tab A9 8.7"
    ("SM-X710", "14.0.0", "1280x800", 2),  # Samsung Galaxy Tab S9 11"
)
# platformVersion of the client hints by OS (Windows: "10.0.0" is Windows 10, >= "13.0.0" is
# Windows 11, the way Matomo reads it). Rough current splits.
PLATFORM_VERSIONS = {
    "Windows": (("10.0.0", 45), ("19.0.0", 55)),
    "macOS": (("15.3.2", 50), ("14.7.4", 30), ("13.7.4", 20)),
    "Linux": (("6.8.0", 100),),
}
UADATA_PLATFORM = {"Windows": "Windows", "macOS": "macOS", "Linux": "Linux", "Android": "Android"}
GREASE_BRAND = {"brand": "Not-A.Brand", "version": "99.0.0.0"}

# Real crawler user agents as published by their operators (crawler documentation pages).
BOTS = (
    ("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (
        "Googlebot Smartphone",
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/135.0.7049.84 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
        ),
    ),
    (
        "Bingbot",
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
            "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
        ),
    ),
    ("DuckDuckBot", "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)"),
    ("YandexBot", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"),
    (
        "Applebot",
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 "
            "Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
        ),
    ),
    ("AhrefsBot", "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    ("Baiduspider", "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)"),
    ("SemrushBot", "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)"),
    ("facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    (
        "GPTBot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    ),
)

# (ISO 3166-1 alpha-2, English name, weight, primary language tag). Weight: approximate number
# of internet users in millions (rounded, ~2024, ITU / DataReportal orders of magnitude).
COUNTRIES = (
    ("US", "United States", 322, "en-US"),
    ("GB", "United Kingdom", 66, "en-GB"),
    ("CA", "Canada", 38, "en-CA"),
    ("AU", "Australia", 25, "en-AU"),
    ("IN", "India", 750, "en-IN"),
    ("NG", "Nigeria", 103, "en-NG"),
    ("ZA", "South Africa", 45, "en-ZA"),
    ("PH", "Philippines", 87, "en-PH"),
    ("DE", "Germany", 78, "de-DE"),
    ("AT", "Austria", 8.5, "de-AT"),
    ("CH", "Switzerland", 8.6, "de-CH"),
    ("FR", "France", 60, "fr-FR"),
    ("BE", "Belgium", 11, "nl-BE"),
    ("NL", "Netherlands", 17, "nl-NL"),
    ("ES", "Spain", 46, "es-ES"),
    ("MX", "Mexico", 107, "es-MX"),
    ("AR", "Argentina", 40, "es-AR"),
    ("BR", "Brazil", 187, "pt-BR"),
    ("IT", "Italy", 51, "it-IT"),
    ("PL", "Poland", 33, "pl-PL"),
    ("SE", "Sweden", 10, "sv-SE"),
    ("RU", "Russia", 127, "ru-RU"),
    ("UA", "Ukraine", 30, "uk-UA"),
    ("TR", "Turkey", 72, "tr-TR"),
    ("EG", "Egypt", 82, "ar-EG"),
    ("JP", "Japan", 103, "ja-JP"),
    ("KR", "South Korea", 50, "ko-KR"),
    ("CN", "China", 1090, "zh-CN"),
    ("ID", "Indonesia", 185, "id-ID"),
    ("VN", "Vietnam", 78, "vi-VN"),
)
RANGES_PER_COUNTRY = 8
# Larger ranges are mostly legacy /8 blocks of militaries and corporations (e.g. 6.0.0.0/8,
# 25.0.0.0/8), not where visitors come from; ISP allocations are at most about a /10.
MAX_RANGE_SIZE = 2**22
COUNTRY_WEIGHT_SOURCE = (
    "Weights: approximate internet users in millions per country (rounded, ~2024, "
    "ITU / DataReportal orders of magnitude); a neutral worldwide default that configs override."
)
# Special-purpose IPv4 networks (IANA registry, RFC 6890 and friends): never in a range.
RESERVED_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
)

LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "nl": "Dutch",
    "es": "Spanish",
    "pt": "Portuguese",
    "it": "Italian",
    "pl": "Polish",
    "sv": "Swedish",
    "ru": "Russian",
    "uk": "Ukrainian",
    "tr": "Turkish",
    "ar": "Arabic",
    "ja": "Japanese",
    "ko": "Korean",
    "zh": "Chinese",
    "id": "Indonesian",
    "vi": "Vietnamese",
}
# Second languages some browsers add (besides English) in Accept-Language.
EXTRA_LANGUAGES = {
    "en-IN": "hi",
    "en-PH": "fil",
    "en-CA": "fr",
    "nl-BE": "fr",
    "de-CH": "fr",
    "uk-UA": "ru",
    "en-ZA": "af",
}

# Search engines: name, referrer URL template, weight. Approximate worldwide search engine
# shares after StatCounter (2025). Templates use the host and keyword parameter Matomo's
# SearchEngines.yml (matomo-org/searchengine-and-social-list) knows for that engine.
SEARCH_ENGINES = (
    ("Google", "https://www.google.com/search?q={query}", 89.5),
    ("Bing", "https://www.bing.com/search?q={query}", 4.0),
    ("Yandex", "https://yandex.ru/search/?text={query}", 2.5),
    ("Yahoo!", "https://search.yahoo.com/search?p={query}", 1.3),
    ("Baidu", "https://www.baidu.com/s?wd={query}", 0.9),
    ("DuckDuckGo", "https://duckduckgo.com/?q={query}", 0.7),
    ("Ecosia", "https://www.ecosia.org/search?q={query}", 0.3),
)
# Social networks: name (as Matomo's Socials.yml names it), referrer URL, weight. Weights:
# approximate social media referral shares after StatCounter (2025). Facebook uses its link shims
# (l., lm.) and m.facebook.com: Matomo looks search engines up first, and SearchEngines.yml lists
# www.facebook.com, so a bare https://www.facebook.com/ is the *search engine* Facebook.
SOCIAL_NETWORKS = (
    ("Facebook", "https://l.facebook.com/", 40.0),
    ("Facebook", "https://m.facebook.com/", 20.0),
    ("Facebook", "https://lm.facebook.com/", 10.0),
    ("Twitter", "https://t.co/", 8.0),
    ("instagram", "https://l.instagram.com/", 7.0),
    ("Pinterest", "https://www.pinterest.com/", 6.0),
    ("YouTube", "https://www.youtube.com/", 3.5),
    ("reddit", "https://www.reddit.com/r/webdev/", 1.5),
    ("reddit", "https://www.reddit.com/r/technology/", 1.0),
    ("LinkedIn", "https://www.linkedin.com/", 1.5),
    ("LinkedIn", "https://lnkd.in/", 0.5),
)
# Referring websites on reserved example domains (RFC 2606), so no real site is named; none on
# www.example.com, the default site_url (Matomo reports a referrer on the page's own host as direct).
WEBSITES = (
    "https://blog.example.org/review-best-widgets-2025",
    "https://blog.example.org/how-we-cut-our-shipping-costs",
    "https://news.example.com/tech/2025/gadget-roundup",
    "https://news.example.com/business/small-shops-go-online",
    "https://forum.example.net/t/which-widget-should-i-buy/4821",
    "https://forum.example.net/t/discount-codes-thread/9127",
    "https://www.example.net/partners",
    "https://directory.example.com/shopping/home-and-garden",
    "https://wiki.example.org/wiki/Widget",
    "https://compare.example.net/widgets?sort=price",
    "https://deals.example.com/this-week",
    "https://magazine.example.org/gift-guide",
    "https://reviews.example.net/products/gadget-pro",
    "https://help.example.com/community/answers/1123",
)
# AI assistants (the "ai" channel): name (as Matomo's AIAssistants.yml names it), referrer URL (the
# origin the assistant sends, a host of AIAssistants.yml), weight. Weights: approximate worldwide AI
# chatbot referral shares after Statcounter Global Stats (AI Chatbot Market Share, July 2025).
AI_ASSISTANTS = (
    ("ChatGPT", "https://chatgpt.com/", 82.7),
    ("Perplexity", "https://www.perplexity.ai/", 8.1),
    ("Copilot", "https://copilot.microsoft.com/", 4.6),
    ("Gemini", "https://gemini.google.com/", 2.2),
    ("Deepseek", "https://chat.deepseek.com/", 1.6),
    ("Claude", "https://claude.ai/", 0.9),
)
# Campaigns: name, source, medium, keyword, weight.
CAMPAIGNS = (
    ("newsletter", "newsletter", "email", "", 30),
    ("spring_sale", "google", "cpc", "widgets sale", 20),
    ("brand_search", "bing", "cpc", "acme widgets", 8),
    ("retargeting", "facebook", "paid_social", "", 12),
    ("product_launch", "linkedin", "social", "", 8),
    ("partner_program", "partner-blog", "referral", "", 7),
    ("black_friday", "google", "display", "", 10),
    ("welcome_series", "mailchimp", "email", "", 5),
)
SEARCH_TERMS = (
    # kept from the first catalogue
    "pricing",
    "widgets",
    "contact",
    "shipping",
    "returns",
    "gadget review",
    "opening hours",
    "discount code",
    # common site-search and web-search intents of a small shop / product site
    "free shipping",
    "return policy",
    "order status",
    "track my order",
    "gift card",
    "size guide",
    "warranty",
    "customer service",
    "login",
    "reset password",
    "cancel subscription",
    "invoice",
    "best widgets 2025",
    "cheap widgets",
    "widget vs gadget",
    "gadget pro price",
    "widget manual pdf",
    "how to install widget",
    "widget not working",
    "replacement parts",
    "student discount",
    "black friday deals",
    "newsletter",
    "careers",
    "store locator",
    "payment methods",
    "paypal",
    "delivery time",
    "international shipping",
    "bulk order",
    "wholesale",
    "api documentation",
    "privacy policy",
    "terms and conditions",
    "compare plans",
    "free trial",
)
OUTLINKS = (
    "https://github.com/",
    "https://en.wikipedia.org/wiki/Web_analytics",
    "https://matomo.org/",
    "https://www.youtube.com/",
    "https://www.linkedin.com/company/example",
    "https://www.example.com/partner-offer",
)
DOWNLOADS = (
    "/files/brochure.pdf",
    "/files/price-list.xlsx",
    "/files/manual.pdf",
    "/files/whitepaper.pdf",
    "/files/catalogue-2025.pdf",
    "/files/installer.zip",
    "/files/datasheet.pdf",
)
EVENTS = (
    ("Video", "Play", "Product tour"),
    ("Video", "Complete", "Product tour"),
    ("CTA", "Click", "Start free trial"),
    ("CTA", "Click", "Request a demo"),
    ("Form", "Submit", "Newsletter"),
    ("Form", "Submit", "Contact"),
    ("Navigation", "Click", "Main menu"),
    ("Navigation", "Click", "Footer link"),
    ("Cart", "Add", "Gadget Pro"),
    ("Scroll", "Reached", "75%"),
    ("Share", "Click", "LinkedIn"),
    ("Chat", "Open", "Support widget"),
)
PRODUCTS = (  # sku, name, category, price
    ("WID-001", "Widget Basic", "Widgets", 19.90),
    ("WID-002", "Widget Plus", "Widgets", 34.50),
    ("WID-003", "Widget Pro", "Widgets", 59.00),
    ("GAD-101", "Gadget Mini", "Gadgets", 24.99),
    ("GAD-102", "Gadget Pro", "Gadgets", 89.00),
    ("GAD-103", "Gadget Max", "Gadgets", 149.00),
    ("GIZ-201", "Gizmo Classic", "Gizmos", 12.49),
    ("GIZ-202", "Gizmo Deluxe", "Gizmos", 45.00),
    ("ACC-301", "Carry Case", "Accessories", 15.00),
    ("ACC-302", "Charging Cable", "Accessories", 9.90),
    ("ACC-303", "Screen Protector", "Accessories", 7.50),
    ("SPR-401", "Replacement Battery", "Spare parts", 29.00),
)

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def stable_fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) from the given strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def weighted_pick(options, key: str):
    """One of ``options`` (tuples whose last item is the weight), chosen by a hash of ``key``."""
    total = sum(option[-1] for option in options)
    point = stable_fraction(key) * total
    for option in options:
        point -= option[-1]
        if point < 0:
            return option
    return options[-1]


def split_or_pick(options, share: float, key: str):
    """[(option, share)]: all options when ``share`` is large enough, else one picked by hash."""
    if share >= SPLIT_THRESHOLD and len(options) > 1:
        total = sum(option[-1] for option in options)
        return [(option, share * option[-1] / total) for option in options]
    return [(weighted_pick(options, key), share)]


def major_of(row: dict) -> int:
    return int(float(row["browser_version_major_minor"]))


def write_json(path: Path, data: dict) -> None:
    """JSON with one record per line inside lists, so diffs stay readable; stable key order."""

    def dump(value, indent: int) -> str:
        pad = " " * indent
        if isinstance(value, dict) and any(isinstance(v, (list, dict)) and v for v in value.values()):
            items = [f"{pad} {json.dumps(k)}: {dump(v, indent + 1).lstrip()}" for k, v in value.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and value:
            items = [pad + " " + json.dumps(v, ensure_ascii=False) for v in value]
            return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return pad + json.dumps(value, ensure_ascii=False)

    path.write_text(dump(data, 0) + "\n", encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))  # round-trip check


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


def load_browsers_jsonl() -> tuple[list[dict], str]:
    from importlib import metadata, resources

    version = metadata.version("fake-useragent")
    text = resources.files("fake_useragent").joinpath("data", "browsers.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()], version


def chromium_full_versions(rows: list[dict]) -> tuple[dict[int, str], dict[int, str]]:
    """Newest full Chromium and Edge version seen in the source per major version.

    Desktop and Android user agents carry the reduced "135.0.0.0" form; the full build numbers
    appear in Chrome for iOS (CriOS), Android WebView and Edge for iOS/Android user agents.
    """

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    chromium: dict[int, str] = {}
    edge: dict[int, str] = {}
    for row in rows:
        ua = row["useragent"]
        for token, version in re.findall(r"\b(Chrome|CriOS|EdgiOS|EdgA|Edg)/(\d+\.0\.\d+\.\d+)", ua):
            major, _, build, patch = (int(part) for part in version.split("."))
            if build < 1000 or patch == 0:  # reduced "X.0.0.0" or not a Chromium build number
                continue
            target = chromium if token in ("Chrome", "CriOS") else edge
            if major not in target or key(version) > key(target[major]):
                target[major] = version
    return chromium, edge


def implausible(ua: str) -> list[str]:
    """Reasons a user agent cannot come from the browser it names (beyond DeviceDetector's view)."""
    match = re.search(r"\bChrome/\d+\.0\.(\d+)\.\d+", ua)
    if match and match.group(1) != "0" and int(match.group(1)) < 1000:
        return [f"Chrome build number {match.group(1)} is not a Chromium build"]
    return []


def select_devices(rows: list[dict], problems_of) -> tuple[list[dict], dict]:
    """The (kind, browser, OS) groups, their weights, and the recent user agents of each.

    ``problems_of(kind, browser, os, ua)`` lists why DeviceDetector would not report a user agent
    as declared; such user agents count for nothing (typically other Chromium browsers the
    source files under "Chrome", like Avast Secure Browser).
    """
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        kind, browser, os_name = KINDS.get(row["type"]), BROWSERS.get(row["browser"]), OSES.get(row["os"])
        if not (kind and browser and os_name):
            continue
        if os_name == "iOS" and browser == "Chrome" and "CriOS/" not in row["useragent"]:
            continue  # "Chrome/4x" on "iPhone OS 11_0": not a real iOS Chrome user agent
        groups[(kind, browser, os_name)].append(row)

    weights: dict[tuple[str, str, str], float] = {}
    picked: dict[tuple[str, str, str], list[tuple[str, float, str]]] = {}
    rejected: dict[str, str] = {}
    for group in sorted(groups):
        group_rows = groups[group]
        newest = max(major_of(row) for row in group_rows)
        window = RECENT_MAJORS.get(group[1], RECENT_MAJORS_DEFAULT)
        counted = []
        for row in group_rows:
            if major_of(row) < newest - WEIGHT_MAJORS:
                continue
            ua = row["useragent"]
            if ua not in rejected:
                problems = implausible(ua) or problems_of(*group, ua)
                if problems:
                    rejected[ua] = f"{'/'.join(group)}: {'; '.join(problems)}"
                    continue
                counted.append(row)
            # a rejected user agent is skipped
        weights[group] = sum(row["percent"] for row in counted)
        usage: dict[str, float] = defaultdict(float)
        version: dict[str, str] = {}
        for row in counted:
            if major_of(row) >= newest - window:
                usage[row["useragent"]] += row["percent"]
                version[row["useragent"]] = row["browser_version"]
        picked[group] = sorted(
            ((ua, pct, version[ua]) for ua, pct in usage.items()), key=lambda item: (-item[1], item[0])
        )

    kind_totals: dict[str, float] = defaultdict(float)
    for (kind, _, _), weight in weights.items():
        kind_totals[kind] += weight

    entries = []
    for group in sorted(picked):
        kind, browser, os_name = group
        group_share = weights[group] / kind_totals[kind]
        quota = max(QUOTA_MIN, min(QUOTA_MAX, math.ceil(group_share * QUOTA_PER_SHARE)))
        chosen = picked[group][:quota]
        chosen_total = sum(pct for _, pct, _ in chosen)
        for ua, pct, browser_version in chosen:
            entries.append(
                {
                    "kind": kind,
                    "browser": browser,
                    "os": os_name,
                    "user_agent": ua,
                    "browser_version": browser_version,
                    "base_share": group_share * pct / chosen_total,
                }
            )
    stats = {
        "groups": {"/".join(g): round(weights[g] / kind_totals[g[0]], 6) for g in sorted(weights) if weights[g] > 0},
        "rejected": [
            f"{ua} ({reason})" for ua, reason in sorted(rejected.items(), key=lambda item: (item[1], item[0]))
        ],
    }
    return entries, stats


def uadata_for(entry: dict, full_versions, variant: dict) -> str | None:
    """Matomo's ``uadata`` (client hints JSON) for Chromium browsers that send them, else None."""
    chromium, edge = full_versions
    browser, os_name, ua = entry["browser"], entry["os"], entry["user_agent"]
    if browser not in ("Chrome", "Edge") or os_name not in UADATA_PLATFORM:
        return None  # Safari, Firefox, iOS browsers (WebKit) send none; Opera/Samsung: unknown builds
    match = re.search(r"Chrome/(\d+)\.", ua)
    if not match or int(match.group(1)) not in chromium:
        return None
    major = int(match.group(1))
    brands = [dict(GREASE_BRAND), {"brand": "Chromium", "version": chromium[major]}]
    if browser == "Chrome":
        brands.append({"brand": "Google Chrome", "version": chromium[major]})
    else:
        edge_match = re.search(r"Edg[A]?/(\d+)\.", ua)
        if not edge_match or int(edge_match.group(1)) not in edge:
            return None
        brands.append({"brand": "Microsoft Edge", "version": edge[int(edge_match.group(1))]})
    data = {
        "fullVersionList": brands,
        "mobile": entry["kind"] == "smartphone",
        "model": variant.get("model", ""),
        "platform": UADATA_PLATFORM[os_name],
        "platformVersion": variant.get("platformVersion", ""),
    }
    return json.dumps(data, separators=(",", ":"))


def expand_variants(entries: list[dict], kind_shares: dict, full_versions) -> list[dict]:
    """Split or assign client-hint platform versions, Android models and screen sizes."""
    devices = []
    for entry in entries:
        kind, os_name, ua, browser = entry["kind"], entry["os"], entry["user_agent"], entry["browser"]
        chromium_hints = browser in ("Chrome", "Edge") and os_name in UADATA_PLATFORM
        variants: list[tuple[dict, float]] = [({}, entry["base_share"])]

        if chromium_hints and os_name == "Android":
            model_match = re.search(r"Android (\d+)(?:\.\d+)*; ([^;)]+?)(?: Build/[^;)]*)?\)", ua)
            if model_match and model_match.group(2) != "K":
                variants = [
                    (
                        {"model": model_match.group(2), "platformVersion": f"{model_match.group(1)}.0.0"},
                        entry["base_share"],
                    )
                ]
            else:
                models = PHONE_MODELS if kind == "smartphone" else TABLET_MODELS
                variants = [
                    ({"model": model, "platformVersion": version, "resolution": screen}, share)
                    for (model, version, screen, _), share in split_or_pick(models, entry["base_share"], ua + "|model")
                ]
        elif chromium_hints and os_name in PLATFORM_VERSIONS:
            variants = [
                ({"platformVersion": version}, share)
                for (version, _), share in split_or_pick(
                    PLATFORM_VERSIONS[os_name], entry["base_share"], ua + "|platform"
                )
            ]

        for variant, share in variants:
            if "resolution" in variant:
                screens = [(variant["resolution"], share)]
            else:
                options = RESOLUTIONS[(kind, os_name)]
                key = ua + "|" + json.dumps(variant, sort_keys=True) + "|screen"
                screens = [(screen, part) for (screen, _), part in split_or_pick(options, share, key)]
            for screen, part in screens:
                devices.append(
                    {
                        "kind": kind,
                        "user_agent": ua,
                        "resolution": screen,
                        "browser": browser,
                        "browser_version": entry["browser_version"],
                        "os": os_name,
                        "share": part,
                        "uadata": uadata_for(entry, full_versions, variant),
                    }
                )
    # normalise within each kind
    totals: dict[str, float] = defaultdict(float)
    for device in devices:
        totals[device["kind"]] += device["share"]
    for device in devices:
        device["share"] = round(device["share"] / totals[device["kind"]], 9)
    order = {kind: index for index, kind in enumerate(kind_shares)}
    devices.sort(
        key=lambda d: (
            order[d["kind"]],
            d["browser"],
            d["os"],
            -d["share"],
            d["user_agent"],
            d["resolution"],
            d["uadata"] or "",
        )
    )
    return devices


def uadata_headers(uadata: str | None) -> dict | None:
    """Client hints in the form device_detector's ClientHints.new() reads (like Matomo's uadata)."""
    if not uadata:
        return None
    data = json.loads(uadata)
    return {
        "fullVersionList": data["fullVersionList"],
        "platform": data["platform"],
        "platformVersion": data["platformVersion"],
        "model": data["model"],
        "mobile": "?1" if data["mobile"] else "?0",
    }


def device_detector_checks():
    """(problems_of_user_agent, check_variants): DeviceDetector-based checks with a cache."""
    from device_detector import DeviceDetector

    cache: dict[tuple, list[str]] = {}

    def problems_of(kind: str, browser: str, os_name: str, ua: str) -> list[str]:
        key = (kind, browser, os_name, ua)
        if key not in cache:
            cache[key] = classification_problems(
                DeviceDetector, {"kind": kind, "browser": browser, "os": os_name, "user_agent": ua, "uadata": None}
            )
        return cache[key]

    def check_variants(devices: list[dict]) -> tuple[list[dict], list[str]]:
        kept, dropped = [], []
        for device in devices:
            problems = classification_problems(DeviceDetector, device)
            if problems:
                dropped.append(f"{device['user_agent']} with {device['uadata']} ({'; '.join(problems)})")
            else:
                kept.append(device)
        for name, ua in BOTS:
            if not DeviceDetector(ua).parse().is_bot():
                raise SystemExit(f"bot not detected by DeviceDetector: {name}: {ua}")
        return kept, sorted(set(dropped))

    return problems_of, check_variants


# Names DeviceDetector reports for each declared browser / OS family.
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
DD_DEVICE_TYPES = {"desktop": "desktop", "smartphone": "smartphone", "phablet": "smartphone", "tablet": "tablet"}


def classification_problems(detector_class, device: dict) -> list[str]:
    from device_detector.parser.settings import FAMILY_FROM_OS

    problems = []
    hints = uadata_headers(device["uadata"])
    for headers in (None, hints) if hints else (None,):
        detected = detector_class(device["user_agent"], headers=headers).parse()
        label = "with client hints" if headers else "user agent"
        if detected.is_bot():
            problems.append(f"{label}: detected as a bot")
        kind = DD_DEVICE_TYPES.get(str(detected.device_type()))
        if kind != device["kind"]:
            problems.append(f"{label}: device type {str(detected.device_type())!r}")
        if detected.client_name() not in DD_BROWSER_NAMES[device["browser"]]:
            problems.append(f"{label}: browser {detected.client_name()!r}")
        short = detected.all_details.get("os", {}).get("short_name", "")
        if FAMILY_FROM_OS.get(short) != DD_OS_FAMILIES[device["os"]]:
            problems.append(f"{label}: OS {detected.os_name()!r}")
    return problems


# ----------------------------------------------------------------------------------------------
# Countries
# ----------------------------------------------------------------------------------------------


def locate_geoip(path_arg: str | None, workdir: Path) -> tuple[Path, str]:
    """The Tor geoip file and the Debian package version it came from (when known)."""
    if path_arg:
        return Path(path_arg), "unknown (file given with --geoip)"
    if TOR_GEOIP_PATH.exists():
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", TOR_GEOIP_PACKAGE], capture_output=True, text=True
        )
        return TOR_GEOIP_PATH, version.stdout.strip() or "unknown"
    if not shutil.which("apt-get"):
        raise SystemExit("no Tor geoip file: install the Debian package tor-geoipdb or pass --geoip PATH")
    subprocess.run(["apt-get", "download", TOR_GEOIP_PACKAGE], cwd=workdir, check=True, capture_output=True)
    deb = next(workdir.glob(f"{TOR_GEOIP_PACKAGE}_*.deb"))
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "x")], check=True)
    return workdir / "x" / TOR_GEOIP_PATH.relative_to("/"), version


def read_geoip(path: Path) -> tuple[list[tuple[int, int, str]], dict]:
    header: dict[str, str] = {}
    ranges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = re.match(r"#\s*(Generated|Vendor|License):\s*(.+)", line)
            if match:
                header[match.group(1).lower()] = match.group(2).strip()
            continue
        if line.strip():
            first, last, code = line.split(",")
            ranges.append((int(first), int(last), code.strip()))
    return ranges, header


def build_countries(ranges: list[tuple[int, int, str]]) -> list[dict]:
    reserved = [ipaddress.ip_network(net) for net in RESERVED_NETWORKS]

    def clean(first: int, last: int) -> bool:
        lo, hi = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        return not any(lo <= net.broadcast_address and net.network_address <= hi for net in reserved)

    by_country: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for first, last, code in ranges:
        by_country[code].append((first, last))
    countries = []
    for code, name, weight, language in COUNTRIES:
        candidates = sorted(
            ((lo, hi) for lo, hi in by_country[code] if clean(lo, hi) and hi - lo + 1 <= MAX_RANGE_SIZE),
            key=lambda r: (-(r[1] - r[0]), r[0]),
        )
        chosen, first_octets = [], set()
        for first, last in candidates:  # the largest ranges, at most one per first octet
            if first >> 24 not in first_octets and len(chosen) < RANGES_PER_COUNTRY:
                chosen.append((first, last))
                first_octets.add(first >> 24)
        chosen.sort()
        if len(chosen) < 5:
            raise SystemExit(f"country {code}: only {len(chosen)} usable ranges in the geoip data")
        countries.append(
            {
                "code": code,
                "name": name,
                "weight": weight,
                "language": language,
                "ranges": [
                    [str(ipaddress.IPv4Address(lo)), str(ipaddress.IPv4Address(hi)), lo, hi] for lo, hi in chosen
                ],
            }
        )
    return countries


def accept_language(tag: str) -> str:
    lang = tag.split("-")[0]
    parts = [tag]
    if lang == "en":
        if tag != "en-US":
            parts.append("en-US;q=0.9")
        parts.append("en;q=0.8" if tag != "en-US" else "en;q=0.9")
        if tag in EXTRA_LANGUAGES:
            parts.append(f"{EXTRA_LANGUAGES[tag]};q=0.7")
        return ",".join(parts)
    parts.append(f"{lang};q=0.9")
    if tag in EXTRA_LANGUAGES:
        parts.append(f"{EXTRA_LANGUAGES[tag]};q=0.8")
        parts += ["en-US;q=0.7", "en;q=0.6"]
    else:
        parts += ["en-US;q=0.8", "en;q=0.7"]
    return ",".join(parts)


def build_languages() -> list[dict]:
    weights: dict[str, float] = defaultdict(float)
    for _, _, weight, tag in COUNTRIES:
        weights[tag] += weight
    total = sum(weights.values())
    return [
        {
            "tag": tag,
            "name": LANGUAGE_NAMES[tag.split("-")[0]],
            "accept_language": accept_language(tag),
            "weight": round(weights[tag] / total, 6),
        }
        for tag in sorted(weights, key=lambda t: (-weights[t], t))
    ]


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def have_pinned_sources() -> bool:
    from importlib import metadata

    for requirement in SOURCE_REQUIREMENTS:
        name, version = requirement.split("==")
        try:
            if metadata.version(name) != version:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


def rerun_in_venv(argv: list[str]) -> int:
    """Install the pinned source packages into a temporary venv and run this script there."""
    with tempfile.TemporaryDirectory(prefix="catalog-venv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SOURCE_REQUIREMENTS], check=True)
        return subprocess.run([str(python), str(Path(__file__).resolve()), "--no-venv", *argv]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: the package's catalog folder)")
    parser.add_argument(
        "--geoip", help="Tor geoip file (default: /usr/share/tor/geoip, else `apt-get download tor-geoipdb`)"
    )
    parser.add_argument(
        "--no-venv", action="store_true", help="use the source packages of this interpreter as they are"
    )
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    if not args.no_venv and not have_pinned_sources():
        return rerun_in_venv(args_list)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from importlib import metadata

    # --- devices ---
    rows, fake_ua_version = load_browsers_jsonl()
    problems_of, check_variants = device_detector_checks()
    entries, stats = select_devices(rows, problems_of)
    devices = expand_variants(entries, DEVICE_KIND_SHARES, chromium_full_versions(rows))
    devices, dropped = check_variants(devices)
    devices = renormalise(devices)
    dd_version = metadata.version("device-detector")
    devices_json = {
        "source": {
            "user_agents": {
                "package": f"fake-useragent {fake_ua_version} (PyPI), file fake_useragent/data/browsers.jsonl",
                "licence": "Apache-2.0",
                "date": FAKE_UA_DATES.get(fake_ua_version, f"unknown (fake-useragent {fake_ua_version})"),
                "url": "https://github.com/fake-useragent/fake-useragent",
                "method": (
                    "Rows mapped to kind (desktop/mobile->smartphone/tablet), browser (Chrome, Safari, Firefox, "
                    "Edge, Samsung Internet, Opera) and OS; other browsers and in-app webviews left out. "
                    f"Per (kind, browser, OS) group: weight = summed usage percent of versions within {WEIGHT_MAJORS} "
                    f"majors of the newest; kept user agents = the most used of the newest {RECENT_MAJORS_DEFAULT + 1} "
                    f"majors (Safari: {RECENT_MAJORS['Safari'] + 1}), {QUOTA_MIN}-{QUOTA_MAX} per group; the group "
                    "weight is spread over them by their usage percent; share = weight normalised to 1 within each "
                    "kind."
                ),
            },
            "variants": (
                "Curated, approximate: screen sizes (CSS px) per kind and OS; client hints (uadata) for Chrome and "
                "Edge on Windows/macOS/Linux/Android with full versions taken from the newest Chromium/Edge builds "
                "seen in the same source, Windows 10/11 and macOS platformVersion splits, and popular Android models "
                "for the "
                f"reduced 'Android 10; K' user agents. Entries with >= {SPLIT_THRESHOLD} of their kind are split over "
                "all options, smaller ones get one option chosen by a hash of the user agent."
            ),
            "checked_with": (
                f"device-detector {dd_version} (PyPI, MIT), Python port of Matomo's DeviceDetector: user agents "
                "(and client-hint variants) it does not classify as declared (device type, browser, OS family, "
                "not a bot) are left out"
            ),
            "rejected_user_agents": stats["rejected"],
            "dropped_variants": dropped,
            "group_weights": stats["groups"],
        },
        "device_kind_shares": {"source": DEVICE_KIND_SOURCE, "shares": DEVICE_KIND_SHARES},
        "devices": devices,
        "bots": [{"name": name, "user_agent": ua} for name, ua in BOTS],
        "bots_source": "Crawler user agents as documented by their operators (Google, Microsoft Bing, DuckDuckGo, "
        "Yandex, Apple, Ahrefs, Baidu, Semrush, Meta, OpenAI crawler documentation pages).",
    }
    write_json(out / "devices.json", devices_json)

    # --- countries and languages ---
    with tempfile.TemporaryDirectory(prefix="catalog-geoip-") as tmp:
        geoip_path, deb_version = locate_geoip(args.geoip, Path(tmp))
        ranges, header = read_geoip(geoip_path)
    countries = build_countries(ranges)
    write_json(
        out / "countries.json",
        {
            "source": {
                "package": (
                    f"Debian package {TOR_GEOIP_PACKAGE} {deb_version}, file {TOR_GEOIP_PATH} (Tor's geoip file)"
                ),
                "data": f"{header.get('vendor', 'IPFire Project')} Location database (https://location.ipfire.org/), "
                "converted by Tor's geoip-db-tool",
                "licence": header.get("license", "CC BY-SA 4.0")
                + " (https://creativecommons.org/licenses/by-sa/4.0/); "
                "this file is an adaptation and is shared under the same licence",
                "date": header.get("generated", "unknown"),
                "method": (
                    f"Per country the {RANGES_PER_COUNTRY} largest ranges of the file of at most {MAX_RANGE_SIZE} "
                    "addresses (a /10; larger ones are mostly legacy military/corporate blocks), at most one per first "
                    "octet, as listed there (start, end, start int, end int); ranges touching special-purpose networks "
                    "(private, loopback, link-local, CGNAT, documentation, multicast, reserved) are skipped."
                ),
                "weights": COUNTRY_WEIGHT_SOURCE,
            },
            "countries": countries,
        },
    )
    write_json(
        out / "languages.json",
        {
            "source": "Curated: one primary language tag per country of countries.json; weight = that country's weight "
            "normalised over all countries; Accept-Language values in the form current browsers send.",
            "languages": build_languages(),
        },
    )

    # --- referrers ---
    write_json(out / "referrers.json", referrers_json())
    write_json(
        out / "actions.json",
        {
            "source": "Curated examples for a small shop / product site.",
            "search_terms": list(SEARCH_TERMS),
            "outlinks": list(OUTLINKS),
            "downloads": list(DOWNLOADS),
            "events": [list(event) for event in EVENTS],
            "products": [{"sku": k, "name": n, "category": c, "price": p} for k, n, c, p in PRODUCTS],
        },
    )

    kinds = defaultdict(int)
    for device in devices:
        kinds[device["kind"]] += 1
    print(
        f"devices: {len(devices)} entries, {len({d['user_agent'] for d in devices})} distinct user agents, "
        f"{dict(kinds)}"
    )
    for line in stats["rejected"]:
        print("  rejected:", line)
    for line in dropped:
        print("  dropped variant:", line)
    print(
        f"countries: {len(countries)}; languages: {len(build_languages())}; geoip generated {header.get('generated')}"
    )
    return 0


def referrers_json() -> dict:
    """The content of referrers.json: curated tables only, so it can be written alone, e.g. with
    ``python -c "import sys; sys.path[:0] = ['scripts']; import build_catalog as b;
    b.write_json(b.DEFAULT_OUT / 'referrers.json', b.referrers_json())"``."""
    return {
        "source": {
            "search_engines": "Curated. Hosts and keyword parameters as in Matomo's SearchEngines.yml "
            "(matomo-org/searchengine-and-social-list); weights: approximate worldwide search engine "
            "shares after StatCounter, 2025.",
            "social_networks": "Curated. Hosts as in Matomo's Socials.yml "
            "(matomo-org/searchengine-and-social-list), none that SearchEngines.yml claims first; "
            "names as Matomo reports them; weights: approximate social media referral shares after "
            "StatCounter, 2025.",
            "ai_assistants": "Curated. Hosts and names as in Matomo's AIAssistants.yml "
            "(matomo-org/searchengine-and-social-list); weights: approximate worldwide AI chatbot referral "
            "shares after Statcounter Global Stats (AI Chatbot Market Share), July 2025.",
            "websites": "Invented pages on RFC 2606 example domains.",
            "campaigns": "Invented campaign names with common source/medium pairs.",
        },
        "search_engines": [{"name": n, "url": u, "weight": w} for n, u, w in SEARCH_ENGINES],
        "social_networks": [{"name": n, "url": u, "weight": w} for n, u, w in SOCIAL_NETWORKS],
        "ai_assistants": [{"name": n, "url": u, "weight": w} for n, u, w in AI_ASSISTANTS],
        "websites": list(WEBSITES),
        "campaigns": [{"name": n, "source": s, "medium": m, "keyword": k, "weight": w} for n, s, m, k, w in CAMPAIGNS],
    }


def renormalise(devices: list[dict]) -> list[dict]:
    """Shares normalised to 1 within each kind again (after entries were dropped)."""
    totals: dict[str, float] = defaultdict(float)
    for device in devices:
        totals[device["kind"]] += device["share"]
    for device in devices:
        device["share"] = round(device["share"] / totals[device["kind"]], 9)
    return devices


if __name__ == "__main__":
    sys.exit(main())
