"""What a visit is reported by: the dimensions Matomo stores on ``log_visit`` when the visit starts.

Why apart from :mod:`.visits`: that module groups hits into visits; this one describes a visit
that starts, from its first hit, for the dimension reports of the Reporting API (:mod:`.dimensions`):

- referrer type, name and keyword (:mod:`.attribution`; plugins/Referrers/Columns/Base.php);
- device type, browser name and code (:mod:`.devices` names mapped to DeviceDetector's short codes
  and names: "Chrome" ``CH``, "Chrome Mobile" ``CM``, "Chrome Mobile iOS" ``CI``, "Mobile Safari"
  ``MF``, "Safari" ``SF``, "Firefox" ``FF``, "Firefox Mobile" ``FM``, "Firefox Mobile iOS" ``FI``,
  "Microsoft Edge" ``PS``, "Opera" ``OP``, "Opera Mobile" ``OM``, "Samsung Browser" ``SB``, else
  "Unknown" ``UNK``; plugins/DevicesDetection/Columns/BrowserName.php);
- language code: Matomo stores only the first language tag of the browser language (``lang``,
  else ``Accept-Language``), lower-cased, with its region (plugins/UserLanguage/Columns/Language.php,
  core/Common.php ``extractLanguageAndRegionCodeFromBrowserLanguage``); the report then takes its
  language and the country of that tag (plugins/UserLanguage/RecordBuilders/Languages.php,
  ``extractCountryCodeFromBrowserLanguage``: a tag without region that core/DataFiles/
  LanguageToCountry.php knows gives its country, else the tag's region), ``lang-country`` unless
  they are the same (``de-de`` and ``fr`` are ``de``, ``fr``) or there is none (``en``);
- country code (plugins/UserCountry/Columns/Country.php): the ``country`` parameter (it needs a
  token), else the country of the visitor IP in the catalogue's ranges (``core/catalog/countries.json``,
  the ranges the generator draws ``cip`` from, standing in for Matomo's GeoIP/DB-IP database), else
  the one guessed from the browser language (Matomo's default provider), else ``xx``;
- local hour (plugins/VisitTime/Columns/LocalTime.php, core/Tracker/Request.php ``getLocalTime``):
  ``h`` of the first hit, else the hit's UTC hour (PHP's default time zone is UTC).

Example::

    traits = visit_traits({"h": "9"}, device, "10.0.0.1", "en-US,en;q=0.9", token_valid=False, ts=ts)
    traits.language, traits.local_hour, traits.country  # "en-us", 9, "us"
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache, lru_cache
from ipaddress import AddressValueError, IPv4Address

from trafficinator_locust.core.catalog import COUNTRIES
from trafficinator_locust.receiver.attribution import referrer_info
from trafficinator_locust.receiver.devices import Device
from trafficinator_locust.receiver.labels import LANGUAGE_TO_COUNTRY

__all__ = ["VisitTraits", "visit_traits", "browser_of", "language_code", "country_of_language"]

_MOBILE_OS = ("Android", "iOS")
_BROWSERS = {
    # (parser name, mobile OS or ""): (DeviceDetector name, short code)
    ("Chrome", ""): ("Chrome", "CH"),
    ("Chrome", "Android"): ("Chrome Mobile", "CM"),
    ("Chrome", "iOS"): ("Chrome Mobile iOS", "CI"),
    ("Safari", ""): ("Safari", "SF"),
    ("Safari", "iOS"): ("Mobile Safari", "MF"),
    ("Firefox", ""): ("Firefox", "FF"),
    ("Firefox", "Android"): ("Firefox Mobile", "FM"),
    ("Firefox", "iOS"): ("Firefox Mobile iOS", "FI"),
    ("Edge", ""): ("Microsoft Edge", "PS"),
    ("Edge", "Android"): ("Microsoft Edge", "PS"),
    ("Edge", "iOS"): ("Microsoft Edge", "PS"),
    ("Opera", ""): ("Opera", "OP"),
    ("Opera", "Android"): ("Opera Mobile", "OM"),
    ("Opera", "iOS"): ("Opera Touch", "OT"),
    ("Samsung Internet", "Android"): ("Samsung Browser", "SB"),
    ("Samsung Internet", ""): ("Samsung Browser", "SB"),
}
_UNKNOWN_BROWSER = ("Unknown", "UNK")
_CLEAN_LANGUAGE = re.compile(r"\s+|\([^)]*\)|;q=[0-9.]+")
_FIRST_LANGUAGE = re.compile(r"^([a-z]{2,3})(?:,|;|$)")
_REGION = re.compile(r"-([a-z]{2})")
_FIRST_TAG = re.compile(r"(?:^|,)([a-z]{2,3})(-[a-z]{2})?")
"""``extractLanguageAndRegionCodeFromBrowserLanguage``: the first language, with its region if it has one."""


@dataclass(frozen=True, slots=True)
class VisitTraits:
    """The dimensions of a visit, set once when it starts."""

    referrer_type: str = "direct"
    referrer_name: str = ""
    referrer_keyword: str = ""
    device_type: str = ""
    browser_name: str = "Unknown"
    browser_code: str = "UNK"
    language: str = "xx"
    country: str = "xx"
    local_hour: int = 0


def browser_of(device: Device) -> tuple[str, str]:
    """DeviceDetector's ``(name, short code)`` of the parsed device's browser."""
    os = device.os if device.os in _MOBILE_OS else ""
    return _BROWSERS.get((device.browser, os)) or _BROWSERS.get((device.browser, "")) or _UNKNOWN_BROWSER


def _browser_language(raw: str) -> str:
    """``Common::getBrowserLanguage``: lower-cased, without spaces, comments and q-values."""
    return _CLEAN_LANGUAGE.sub("", raw.lower())


def country_of_language(browser_language: str) -> str:
    """``extractCountryCodeFromBrowserLanguage`` (with the language-to-country guess), ``xx`` if none."""
    first = _FIRST_LANGUAGE.match(browser_language)
    if first and first.group(1) in LANGUAGE_TO_COUNTRY:
        return LANGUAGE_TO_COUNTRY[first.group(1)]
    region = _REGION.search(browser_language)
    return region.group(1) if region else "xx"


@lru_cache(maxsize=4096)
def language_code(raw: str) -> str:
    """The label of ``UserLanguage.getLanguageCode`` for a browser language: ``en-us``, ``fr``, ``xx``."""
    first = _FIRST_TAG.search(_browser_language(raw))
    if first is None:
        return "xx"
    tag = first.group(1) + (first.group(2) or "")
    language = tag[:2]
    country = country_of_language(tag)
    return language if country in ("xx", language) else f"{language}-{country}"


@cache
def _ranges() -> tuple[list[int], list[tuple[int, str]]]:
    """The catalogue's IPv4 ranges sorted by start: (starts, [(end, country)])."""
    spans = sorted((r.first, r.last, c.code.lower()) for c in COUNTRIES for r in c.ranges)
    return [start for start, _, _ in spans], [(end, code) for _, end, code in spans]


@lru_cache(maxsize=65536)
def _country_of_ip(address: str) -> str:
    try:
        number = int(IPv4Address(address))
    except (AddressValueError, ValueError):
        return ""
    starts, ends = _ranges()
    index = bisect.bisect_right(starts, number) - 1
    if index >= 0 and number <= ends[index][0]:
        return ends[index][1]
    return ""


def _local_hour(params: Mapping[str, str], ts: float) -> int:
    raw = (params.get("h") or "").strip()
    if raw.isdigit() and int(raw) < 24:
        return int(raw)
    return datetime.fromtimestamp(ts, timezone.utc).hour


def visit_traits(
    params: Mapping[str, str], device: Device, address: str, language: str, *, token_valid: bool, ts: float
) -> VisitTraits:
    """The traits of a visit that starts with this hit (see the module docstring for each rule)."""
    kind, name, keyword = referrer_info(params)
    browser_name, browser_code = browser_of(device)
    code = language_code(language)
    country = (params.get("country") or "").strip().lower() if token_valid else ""
    if not re.fullmatch(r"[a-z]{2}", country):
        country = _country_of_ip(address) or country_of_language(_browser_language(language))
    return VisitTraits(
        referrer_type=kind,
        referrer_name=name,
        referrer_keyword=keyword,
        device_type=device.device_type,
        browser_name=browser_name,
        browser_code=browser_code,
        language=code,
        country=country,
        local_hour=_local_hour(params, ts),
    )
