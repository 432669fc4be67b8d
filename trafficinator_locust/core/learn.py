"""A traffic model learned from a Matomo's own reports: report rows in, ``traffic:`` YAML out.

Why: staging should receive traffic shaped like production's, and production's Matomo already
knows, in aggregate, its pages, channels, devices, languages, countries, hours, events, searches,
goals and orders. This module is the pure half of ``trafficinator profile``: it names the
Reporting API calls to make (:func:`report_calls`), turns their answers into the traffic model of
:mod:`.traffic` (:func:`learn`) and writes it as YAML that loads unchanged as ``defaults.traffic``
or a target's ``traffic`` (:func:`render_yaml`). :mod:`trafficinator_locust.ops.profile` fetches.
Nothing personal is read: only aggregate reports, never the visitor log (``Live``)::

    calls = report_calls(site_id=1, first=date(2026, 11, 2), last=date(2026, 11, 29), goal_ids=["1"])
    answers = dict(zip([key for key, _, _ in calls], api.bulk([(m, p) for _, m, p in calls])))
    learned = learn(answers, goal_definitions, days_between(first, last), top=100)
    print(render_yaml(learned))

Search engines, social networks, websites and campaigns by name (``referrers``), browser families
(``browsers``, DeviceDetector's names such as "Chrome Mobile" folded into the catalogue's "Chrome"),
site-search keywords with and without results (``site_search``), and outlink and download URLs are
written as model keys with their measured shares; what the model cannot hold (a name Matomo's lists
do not reach, a browser the catalogue lacks) is written as a comment. Matomo's answer shapes come
from its source (matomo-org/matomo): ``period=day`` with a ``date`` range gives
one entry per day (a ``DataTable\\Map`` keyed by date, core/DataTable/Renderer/Json.php); flattened
rows (``flat=1``) join their labels with the report's recursive label separator, `` - `` for events
(core/API/DataTableManipulator/Flattener.php, core/Plugin/Report.php ``$recursiveLabelSeparator``;
page URLs use ``/``, so their ``url`` is read instead); referrer, device and language rows carry a
``segment`` (core/DataTable/Filter/AddSegmentByLabel.php); Matomo strips campaign parameters from
page URLs (core/Tracker/PageUrl.php).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import yaml

from trafficinator_locust.core import catalog, referrers
from trafficinator_locust.core.errors import ReportingApiError
from trafficinator_locust.core.traffic import (
    CHANNELS,
    MAX_AMOUNT,
    MAX_CHOICES,
    MAX_GAP_SECONDS,
    MAX_NAME_LENGTH,
    MAX_PAGEVIEWS,
    check_http_url,
    check_page_url,
)

__all__ = ["Learned", "anonymize_pages", "learn", "render_yaml", "report_calls"]

DEFAULT_TOP = 100
_TABLE = {"filter_limit": "-1"}
_FLAT = {"filter_limit": "-1", "flat": "1"}
DAY_REPORTS: tuple[tuple[str, str, Mapping[str, str]], ...] = (
    ("summary", "VisitsSummary.get", {}),
    ("actions", "Actions.get", {}),
    ("frequency", "VisitFrequency.get", {}),
    ("server_hours", "VisitTime.getVisitInformationPerServerTime", _TABLE),
    ("local_hours", "VisitTime.getVisitInformationPerLocalTime", _TABLE),
    ("pages", "Actions.getPageUrls", _FLAT),
    ("titles", "Actions.getPageTitles", _FLAT),
    ("keywords", "Actions.getSiteSearchKeywords", _TABLE),
    ("no_result", "Actions.getSiteSearchNoResultKeywords", _TABLE),
    ("outlinks", "Actions.getOutlinks", _FLAT),
    ("downloads", "Actions.getDownloads", _FLAT),
    ("referrer_types", "Referrers.getReferrerType", _TABLE),
    ("engines", "Referrers.getSearchEngines", _TABLE),
    ("socials", "Referrers.getSocials", _TABLE),
    ("websites", "Referrers.getWebsites", _TABLE),
    ("campaigns", "Referrers.getCampaigns", _TABLE),
    ("device_types", "DevicesDetection.getType", _TABLE),
    ("browsers", "DevicesDetection.getBrowsers", _TABLE),
    ("languages", "UserLanguage.getLanguageCode", _TABLE),
    ("countries", "UserCountry.getCountry", _TABLE),
    ("event_categories", "Events.getCategory", _TABLE),
    ("event_actions", "Events.getCategory", {**_FLAT, "secondaryDimension": "eventAction"}),
    ("goals", "Goals.get", {}),
    ("orders", "Goals.get", {"idGoal": "ecommerceOrder"}),
    ("abandoned", "Goals.get", {"idGoal": "ecommerceAbandonedCart"}),
    ("items", "Goals.getItemsSku", _TABLE),
    ("item_names", "Goals.getItemsName", _TABLE),
)
"""(key, method, extra parameters) of every per-day report ``profile`` reads; ``goal:<id>`` follow."""

_CAMPAIGN_PARAM = re.compile(r"^(mtm_|pk_|utm_|matomo_|_rcn$|_rck$)", re.IGNORECASE)
"""Campaign parameters Matomo strips from page URLs (core/Tracker/PageUrl.php, the campaign var names)."""
_REFERRER_TYPES = {
    "direct": "direct",
    "search": "search",
    "website": "website",
    "campaign": "campaign",
    "social": "social",
    "ai": "ai",
}
_REFERRER_LABELS = {
    "direct entry": "direct",
    "search engines": "search",
    "websites": "website",
    "campaigns": "campaign",
    "social networks": "social",
    "ai assistants": "ai",
}
_DEVICE_KINDS = {"desktop": "desktop", "smartphone": "smartphone", "phablet": "smartphone", "tablet": "tablet"}
_DEVICE_KINDS |= {"feature phone": "smartphone", "feature_phone": "smartphone", "featurephone": "smartphone"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]+")
"""Characters that would end a YAML comment line or hide in a title: replaced by a space."""
_BROWSER_CODES = {
    **dict.fromkeys(("CH", "CM", "CI"), "Chrome"),
    **dict.fromkeys(("SF", "MF"), "Safari"),
    **dict.fromkeys(("FF", "FM", "FI"), "Firefox"),
    "PS": "Edge",
    **dict.fromkeys(("OP", "OM", "OT"), "Opera"),
    "SB": "Samsung Internet",
}
"""DeviceDetector's browser short codes (``browserCode==`` of ``DevicesDetection.getBrowsers``, plugins/
DevicesDetection/Columns/BrowserName.php) -> the catalogue's browser families."""
_BROWSER_LABELS = {
    **dict.fromkeys(("chrome", "chrome mobile", "chrome mobile ios"), "Chrome"),
    **dict.fromkeys(("safari", "mobile safari"), "Safari"),
    **dict.fromkeys(("firefox", "firefox mobile", "firefox mobile ios"), "Firefox"),
    **dict.fromkeys(("microsoft edge", "edge"), "Edge"),
    **dict.fromkeys(("opera", "opera mobile", "opera touch"), "Opera"),
    **dict.fromkeys(("samsung browser", "samsung internet"), "Samsung Internet"),
}
"""The same by DeviceDetector's names (the report's labels), for rows without a segment."""
_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+")
_HOUR = re.compile(r"^\s*(\d{1,2})\s*h?\s*$", re.IGNORECASE)
_LANGUAGE_CODE = re.compile(r"\(([a-z]{2,3}(?:-[a-z0-9]{2,8})?)\)\s*$", re.IGNORECASE)


@dataclass
class Learned:
    """What was learned: the ``traffic`` mapping, the target-level keys and the comments for the rest."""

    traffic: dict[str, Any]
    target: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    main_host: str = ""
    """The host most listed pages are on: downloads there are written as paths below site_url."""


def report_calls(
    site_id: int, first: date, last: date, goal_ids: Iterable[str] = ()
) -> list[tuple[str, str, dict[str, str]]]:
    """The (key, method, parameters) of every call ``profile`` makes for the days ``first``..``last``."""
    base = {"idSite": str(site_id), "period": "day", "date": f"{first.isoformat()},{last.isoformat()}"}
    calls = [(key, method, {**base, **extra}) for key, method, extra in DAY_REPORTS]
    calls += [(f"goal:{goal}", "Goals.get", {**base, "idGoal": str(goal)}) for goal in goal_ids]
    return calls


def days_between(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


# ---------------------------------------------------------------------------------------------
# Reading Matomo's answers


def per_day(key: str, answer: Any, days: Sequence[str]) -> list[Any]:
    """The day values of one answer: Matomo's ``{"2026-12-01": value, ...}`` (a single day's bare value
    is accepted when the range is one day). Matomo's error answer raises :class:`ReportingApiError`."""
    if isinstance(answer, dict) and answer.get("result") == "error":
        raise ReportingApiError(f"{key}: Matomo says: {str(answer.get('message', 'error'))[:300]}")
    if isinstance(answer, dict) and answer and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(k)) for k in answer):
        return [answer[day] for day in days if day in answer]
    if len(days) == 1:
        return [answer]
    if answer in ([], {}, None):
        return []
    raise ReportingApiError(f"{key}: expected one entry per day of the range, got {type(answer).__name__}")


def metrics(key: str, answer: Any, days: Sequence[str]) -> dict[str, float]:
    """A metric report summed over the days (``[]`` is Matomo's day without data)."""
    total: dict[str, float] = {}
    for value in per_day(key, answer, days):
        if isinstance(value, list) and not value:
            continue
        if not isinstance(value, dict):
            raise ReportingApiError(f"{key}: unexpected answer for a day ({type(value).__name__})")
        for metric, number in value.items():
            parsed = _number(number)
            if parsed is not None:
                total[metric] = total.get(metric, 0.0) + parsed
    return total


def rows(key: str, answer: Any, days: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of a table report over all days (not merged: see :func:`merged`)."""
    found: list[dict[str, Any]] = []
    for value in per_day(key, answer, days):
        if isinstance(value, dict) and not value:
            continue
        if isinstance(value, dict):  # a PHP array with keys: its rows are the values
            value = list(value.values())
        if not isinstance(value, list):
            raise ReportingApiError(f"{key}: unexpected answer for a day ({type(value).__name__})")
        found.extend(row for row in value if isinstance(row, dict))
    return found


def merged(table: Iterable[Mapping[str, Any]], key_of: Any) -> dict[Any, dict[str, Any]]:
    """Rows with the same ``key_of(row)`` (not ``None``) added up: sums, and min/max for value ranges."""
    result: dict[Any, dict[str, Any]] = {}
    for row in table:
        key = key_of(row)
        if key is None:
            continue
        into = result.setdefault(key, {"label": row.get("label"), "url": row.get("url"), "segment": row.get("segment")})
        for metric, value in row.items():
            number = _number(value) if metric not in ("label", "url", "segment", "code", "idsubdatatable") else None
            if number is None:
                continue
            if metric.startswith("min_"):
                into[metric] = min(into.get(metric, number), number)
            elif metric.startswith("max_"):
                into[metric] = max(into.get(metric, number), number)
            else:
                into[metric] = into.get(metric, 0.0) + number
    return result


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().rstrip("%").replace(",", "")
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _segment_value(row: Mapping[str, Any], name: str) -> str | None:
    segment = str(row.get("segment") or "")
    for part in segment.split(";"):
        key, _, value = part.partition("==")
        if key.strip() == name and value:
            return unquote(value).strip()
    return None


# ---------------------------------------------------------------------------------------------
# Learning


def learn(
    answers: Mapping[str, Any],
    goal_definitions: Sequence[Mapping[str, Any]],
    days: Sequence[str],
    *,
    top: int = DEFAULT_TOP,
    anonymize: bool = False,
    source: str = "",
) -> Learned:
    """The traffic model of the reports in ``answers`` (keys of :data:`DAY_REPORTS`, ``goal:<id>``).

    Raises :class:`ReportingApiError` on a Matomo error answer or an answer of the wrong shape, and
    when the range holds no visit (nothing to learn).
    """
    summary = metrics("VisitsSummary.get", answers.get("summary"), days)
    visits = summary.get("nb_visits", 0.0)
    if visits <= 0:
        raise ReportingApiError(
            f"no visits between {days[0]} and {days[-1]}: nothing to learn (is it the right site and range?)"
        )
    actions = metrics("Actions.get", answers.get("actions"), days)
    learned = Learned(traffic={})
    learned.header = [
        f"Traffic model learned by `trafficinator profile` from {source or 'a Matomo'}, {days[0]} to {days[-1]}:",
        f"{visits:,.0f} visits, {actions.get('nb_pageviews', 0):,.0f} pageviews. Aggregate reports only (no visitor"
        " log). Load it as `defaults.traffic:` or a target's `traffic:` (docs/profile.md).",
    ]
    traffic = learned.traffic
    orders = metrics("Goals.get ecommerceOrder", answers.get("orders"), days).get("nb_conversions", 0.0)
    abandoned = metrics("Goals.get ecommerceAbandonedCart", answers.get("abandoned"), days).get("nb_conversions", 0.0)
    _pages(traffic, learned, answers, days, top, anonymize, orders)
    _visit_length(traffic, summary, actions, answers, days, visits, orders)
    _who(traffic, learned, answers, days, visits)
    _channels(traffic, learned, answers, days, anonymize, top)
    _actions(traffic, learned, answers, days, visits, actions, goal_definitions, anonymize)
    _site_search(traffic, learned, answers, days, anonymize, top)
    _links(traffic, learned, answers, days, anonymize, top)
    _ecommerce(traffic, answers, days, visits, orders, abandoned, top)
    _target_keys(learned, answers, days, summary)
    _bounce(traffic, summary, visits)
    return learned


def _share(part: float, whole: float) -> float:
    return round(min(1.0, part / whole), 4) if whole > 0 else 0.0


def _percent_table(counts: Mapping[str, float]) -> dict[str, float]:
    """Weights as percentages with 2 decimals (relative weights: only ratios matter), zeros kept."""
    total = sum(counts.values())
    return {key: round(100 * value / total, 2) for key, value in counts.items()} if total > 0 else {}


# -- pages ---------------------------------------------------------------------------------------


def _page_key(row: Mapping[str, Any]) -> str | None:
    """A page row's URL without campaign parameters (Matomo strips them too), as ``scheme://host/path?q``
    or, without a ``url``, the flattened label as a path (``/index`` is the folder's own page)."""
    url = str(row.get("url") or "")
    if url:
        parts = urlsplit(url)
        query = urlencode(
            [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _CAMPAIGN_PARAM.match(k)]
        )
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))
    label = str(row.get("label") or "").strip()
    if not label or label in ("-1", "Others"):
        return None
    path = "/" + label.lstrip("/")
    return path[: -len("index")] if path.endswith("/index") else path


def _pages(
    traffic: dict[str, Any],
    learned: Learned,
    answers: Mapping[str, Any],
    days: Sequence[str],
    top: int,
    anonymize: bool,
    orders: float,
) -> None:
    pages = merged(rows("Actions.getPageUrls", answers.get("pages"), days), _page_key)
    # The planner adds a checkout page to each order itself: its hits are not the list's to make.
    for key, row in pages.items():
        if urlsplit(key).path.rstrip("/") == "/checkout" and orders:
            row["nb_hits"] = max(0.0, row.get("nb_hits", 0.0) - orders)
    ranked = sorted(((k, r) for k, r in pages.items() if r.get("nb_hits", 0) > 0), key=lambda kr: -kr[1]["nb_hits"])
    if not ranked:
        learned.notes.append("No page URLs in the range: the built-in pages stay.")
        return
    total_hits = sum(row["nb_hits"] for _, row in ranked)
    kept, folded = ranked[:top], ranked[top:]
    titles = _titles(rows("Actions.getPageTitles", answers.get("titles"), days), kept)
    hosts = [urlsplit(key).netloc for key, _ in kept]
    main_host = learned.main_host = max(set(hosts), key=hosts.count) if hosts else ""
    entries = []
    skipped = 0
    for key, row in kept:
        parts = urlsplit(key)
        where = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        url = where if parts.netloc in ("", main_host) else key
        try:
            check_page_url(url)
        except ValueError:
            skipped += 1
            continue
        entry: dict[str, Any] = {"url": url}
        if titles.get(key):
            entry["title"] = titles[key]
        entry["weight"] = round(100 * row["nb_hits"] / total_hits, 3) or 0.001
        entries.append(entry)
    if skipped:
        learned.notes.append(
            f"{skipped} page URL(s) the config would refuse (white space, control characters) left out."
        )
    if not entries:
        return
    if anonymize:
        entries = anonymize_pages(entries)
    traffic["urls"] = entries
    traffic["section_stickiness"] = 0
    if main_host and not anonymize:
        learned.notes.append(f"Pages were measured on {main_host}; the paths go below the target's site_url.")
    if folded:
        share = 100 * sum(row["nb_hits"] for _, row in folded) / total_hits
        learned.notes.append(
            f"The top {len(kept)} of {len(ranked)} pages are listed; the other {share:.1f} % of pageviews are "
            "folded into them (their weights are shares of all pageviews)."
        )


def _titles(title_rows: Sequence[Mapping[str, Any]], pages: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Each page's title, by the one title row with the same pageviews (and visits, to break a tie).

    Matomo reports titles and URLs apart (Actions.getPageTitles, getPageUrls); a page whose title is
    its own has the same figures in both. A page with no such unique match gets a title made from its URL.
    """
    by_title = merged(title_rows, lambda row: str(row.get("label") or "").strip() or None)
    candidates: dict[float, list[tuple[str, Mapping[str, Any]]]] = {}
    for label, row in by_title.items():
        candidates.setdefault(row.get("nb_hits", 0.0), []).append((label, row))
    found: dict[str, str] = {}
    used: set[str] = set()
    for key, row in pages:
        matches = [(label, t) for label, t in candidates.get(row.get("nb_hits", 0.0), []) if label not in used]
        if len(matches) > 1:
            matches = [(label, t) for label, t in matches if t.get("nb_visits") == row.get("nb_visits")]
        if len(matches) == 1 and matches[0][0] not in ("-1", "Others"):
            found[key] = _one_line(matches[0][0]).strip()
            used.add(matches[0][0])
    return found


def anonymize_pages(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Paths and titles replaced by placeholders that keep the structure: ``/products/widgets`` ->
    ``/section-1/page-1``; the same section keeps its name, depth and weights stay, queries and hosts go.

    Stable: the same list in the same order always gives the same placeholders.
    """
    sections: dict[str, str] = {}
    children: dict[tuple[str, ...], dict[str, str]] = {}
    result = []
    for number, entry in enumerate(entries, 1):
        segments = [part for part in urlsplit(str(entry["url"])).path.split("/") if part]
        names: list[str] = []
        for depth, segment in enumerate(segments):
            if depth == 0:
                names.append(sections.setdefault(segment, f"section-{len(sections) + 1}"))
            else:
                siblings = children.setdefault(tuple(segments[:depth]), {})
                names.append(siblings.setdefault(segment, f"page-{len(siblings) + 1}"))
        path = "/" + "/".join(names)
        result.append({"url": path, "title": f"Page {number}", "weight": entry["weight"]})
    folded: dict[str, dict[str, Any]] = {}
    for entry in result:  # two URLs that differed only by query or host are one page now
        if entry["url"] in folded:
            folded[entry["url"]]["weight"] = round(folded[entry["url"]]["weight"] + entry["weight"], 3)
        else:
            folded[entry["url"]] = entry
    return list(folded.values())


# -- visit length ----------------------------------------------------------------------------------


def _visit_length(
    traffic: dict[str, Any],
    summary: Mapping[str, float],
    actions: Mapping[str, float],
    answers: Mapping[str, Any],
    days: Sequence[str],
    visits: float,
    orders: float,
) -> None:
    """``pageviews`` (an integer range with the measured mean, and as many one-page visits as the bounces
    suggest) and ``dwell_seconds`` (the mean time on a page, +-50 %)."""
    pageviews = actions.get("nb_pageviews", summary.get("nb_actions", visits))
    mean = max(1.0, (pageviews - orders) / visits)  # the planner adds each order's checkout page
    traffic["pageviews"] = {"min": 1, "max": 1}
    traffic["_mean_pageviews"] = mean
    page_rows = merged(rows("Actions.getPageUrls", answers.get("pages"), days), _page_key).values()
    hits = sum(row.get("nb_hits", 0.0) for row in page_rows)
    spent = sum(
        row.get("sum_time_spent", row.get("avg_time_on_page", 0.0) * row.get("nb_hits", 0.0)) for row in page_rows
    )
    if hits > 0:
        on_page = spent / hits
        low, high = round(on_page * 0.5, 1), round(min(on_page * 1.5, MAX_GAP_SECONDS - 1), 1)
        traffic["dwell_seconds"] = {"min": low, "max": max(low, high)}


def _bounce(traffic: dict[str, Any], summary: Mapping[str, float], visits: float) -> None:
    """Pick the pageviews range once the add-on shares are known: a bounce is a visit of one action
    (Matomo's bounce_count), so one-page visits = bounces / P(no add-on action)."""
    mean = traffic.pop("_mean_pageviews")
    shares = traffic.get("actions", {})
    shop = traffic.get("ecommerce", {})
    quiet = 1.0
    for share in (
        *(shares.get(k, 0.0) for k in ("search", "outlink", "download", "event", "goal")),
        shop.get("cart", 0),
    ):
        quiet *= 1 - share
    one_page = min(1.0, _share(summary.get("bounce_count", 0.0), visits) / quiet) if quiet > 0 else 0.0
    traffic["pageviews"] = pageviews_range(mean, one_page)


def pageviews_range(mean: float, one_page: float) -> dict[str, int]:
    """The integer range ``{min, max}`` whose uniform mean is closest to ``mean`` (relative error first),
    then whose share of one-page visits is closest to ``one_page``; at most :data:`MAX_PAGEVIEWS`."""
    best: tuple[float, int, int] | None = None
    top = min(MAX_PAGEVIEWS, max(1, math.ceil(2 * mean) + 1))
    for low in range(1, min(top, math.ceil(mean)) + 1):
        for high in range(low, top + 1):
            drawn_once = 1 / (high - low + 1) if low == 1 else 0.0
            score = abs((low + high) / 2 - mean) / mean + 0.3 * abs(drawn_once - one_page)
            if best is None or score < best[0] - 1e-12:
                best = (score, low, high)
    assert best is not None
    return {"min": best[1], "max": best[2]}


# -- who -------------------------------------------------------------------------------------------


def _who(
    traffic: dict[str, Any], learned: Learned, answers: Mapping[str, Any], days: Sequence[str], visits: float
) -> None:
    frequency = metrics("VisitFrequency.get", answers.get("frequency"), days)
    if "nb_visits_returning" in frequency:
        traffic["visitors"] = {"returning": _share(frequency["nb_visits_returning"], visits)}
    devices: dict[str, float] = {}
    other = 0.0
    for row in rows("DevicesDetection.getType", answers.get("device_types"), days):
        kind = (_segment_value(row, "deviceType") or str(row.get("label", ""))).strip().lower()
        count = _number(row.get("nb_visits")) or 0.0
        if kind in _DEVICE_KINDS:
            devices[_DEVICE_KINDS[kind]] = devices.get(_DEVICE_KINDS[kind], 0.0) + count
        else:
            other += count
    if sum(devices.values()) > 0:
        traffic["devices"] = _percent_table(
            {kind: devices.get(kind, 0.0) for kind in ("desktop", "smartphone", "tablet")}
        )
        if other:
            learned.notes.append(
                f"{100 * other / (other + sum(devices.values())):.1f} % of visits were on devices the model has no "
                "kind for (TV, console, car, unknown...): left out of devices."
            )
    _browsers(traffic, learned, answers, days, visits)
    traffic_languages, unknown = _languages(rows("UserLanguage.getLanguageCode", answers.get("languages"), days))
    if traffic_languages:
        traffic["languages"] = traffic_languages
    if unknown:
        learned.notes.append(f"Languages not in the catalogue, left out: {_of_visits(unknown, visits)}")
    countries: dict[str, float] = {}
    missing: dict[str, float] = {}
    for row in rows("UserCountry.getCountry", answers.get("countries"), days):
        code = str(row.get("code") or _segment_value(row, "countryCode") or "").strip().upper()
        count = _number(row.get("nb_visits")) or 0.0
        if code in catalog.COUNTRIES_BY_CODE:
            countries[code] = countries.get(code, 0.0) + count
        elif count:
            missing[str(row.get("label") or code or "?")] = missing.get(str(row.get("label") or code), 0.0) + count
    if sum(countries.values()) > 0:
        traffic["countries"] = _percent_table(dict(sorted(countries.items(), key=lambda kv: -kv[1])))
    if missing:
        learned.notes.append(f"Countries not in the catalogue (or unknown), left out: {_of_visits(missing, visits)}")


def _browsers(
    traffic: dict[str, Any], learned: Learned, answers: Mapping[str, Any], days: Sequence[str], visits: float
) -> None:
    """``browsers``: DeviceDetector's browsers folded into the catalogue's families by code, else by name."""
    families: dict[str, float] = {}
    other: dict[str, float] = {}
    for row in rows("DevicesDetection.getBrowsers", answers.get("browsers"), days):
        label = str(row.get("label") or "").strip()
        family = _BROWSER_CODES.get((_segment_value(row, "browserCode") or "").upper()) or _BROWSER_LABELS.get(
            label.lower()
        )
        count = _number(row.get("nb_visits")) or 0.0
        if family:
            families[family] = families.get(family, 0.0) + count
        elif count:
            other[label or "?"] = other.get(label or "?", 0.0) + count
    if sum(families.values()) > 0:
        traffic["browsers"] = _percent_table(dict(sorted(families.items(), key=lambda kv: -kv[1])))
    if other:
        learned.notes.append(f"Browsers the device catalogue does not have, left out: {_of_visits(other, visits)}")


def _languages(table: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Matomo's language codes (``en-us``) as catalogue tags (``en-US``); a code without the catalogue's
    region goes to the catalogue's most common tag of its language, else it is returned as unknown."""
    tags = {language.tag.lower(): language.tag for language in catalog.LANGUAGE_SHARES}
    by_language: dict[str, str] = {}
    for language in sorted(catalog.LANGUAGE_SHARES, key=lambda lang: -lang.weight):
        by_language.setdefault(language.tag.split("-")[0].lower(), language.tag)
    found: dict[str, float] = {}
    unknown: dict[str, float] = {}
    for row in table:
        code = _segment_value(row, "languageCode")
        if not code:
            match = _LANGUAGE_CODE.search(str(row.get("label") or ""))
            code = match.group(1) if match else str(row.get("label") or "")
        code = code.strip().lower().replace("_", "-")
        count = _number(row.get("nb_visits")) or 0.0
        tag = tags.get(code) or by_language.get(code.split("-")[0])
        if tag:
            found[tag] = found.get(tag, 0.0) + count
        elif count:
            unknown[code or "?"] = unknown.get(code or "?", 0.0) + count
    ordered = dict(sorted(found.items(), key=lambda kv: -kv[1]))
    return (_percent_table(ordered) if sum(found.values()) > 0 else {}), unknown


def _labelled(key: str, answer: Any, days: Sequence[str], metric: str = "nb_visits") -> dict[str, float]:
    """``label -> metric`` summed over the days, largest first."""
    table = merged(rows(key, answer, days), lambda row: str(row.get("label") or "").strip() or None)
    counts = {label: row.get(metric, 0.0) for label, row in table.items() if row.get(metric, 0.0) > 0}
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _of_visits(counts: Mapping[str, float], visits: float, limit: int = 10) -> str:
    """``"tlh 5.0 % of visits, ..."``, largest first."""
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = [f"{label} {100 * count / visits:.1f} % of visits" for label, count in ordered[:limit]]
    return ", ".join(shown) + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def _shares_text(counts: Mapping[str, float], limit: int) -> str:
    total = sum(counts.values())
    if total <= 0:
        return "none"
    shown = [f"{label} {100 * count / total:.1f} %" for label, count in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


# -- channels --------------------------------------------------------------------------------------


def _channels(
    traffic: dict[str, Any],
    learned: Learned,
    answers: Mapping[str, Any],
    days: Sequence[str],
    anonymize: bool,
    top: int,
) -> None:
    counts = {channel: 0.0 for channel in CHANNELS}
    for row in rows("Referrers.getReferrerType", answers.get("referrer_types"), days):
        kind = _segment_value(row, "referrerType")
        channel = _REFERRER_TYPES.get((kind or "").lower()) or _REFERRER_LABELS.get(str(row.get("label", "")).lower())
        if channel:
            counts[channel] += _number(row.get("nb_visits")) or 0.0
    if sum(counts.values()) > 0:
        traffic["channels"] = _percent_table(counts)
    chosen: dict[str, dict[str, float]] = {}
    engines = {name.lower(): name for name in referrers.search_engine_names()}
    socials = {name.lower(): name for name in referrers.social_network_names()}
    for key, method, what in (
        ("search_engines", "Referrers.getSearchEngines", "Search engines"),
        ("socials", "Referrers.getSocials", "Social networks"),
        ("websites", "Referrers.getWebsites", "Websites"),
        ("campaigns", "Referrers.getCampaigns", "Campaigns"),
    ):
        found = _labelled(method, answers.get(key if key != "search_engines" else "engines"), days)
        kept: dict[str, float] = {}
        left_out: dict[str, float] = {}
        for label, count in found.items():
            name = {
                "search_engines": lambda text: engines.get(text.lower()),
                "socials": lambda text: socials.get(text.lower()),
                "websites": _website_host,
                "campaigns": _campaign_name,
            }[key](label)
            if name is None or (name not in kept and len(kept) >= min(top, MAX_CHOICES)):
                left_out[label] = count
            else:
                kept[name] = kept.get(name, 0.0) + count
        if kept:
            names = list(kept)
            if anonymize and key in ("websites", "campaigns"):
                names = [
                    f"website-{i}.example" if key == "websites" else f"campaign-{i}" for i in range(1, len(kept) + 1)
                ]
            chosen[key] = dict(zip(names, _percent_table(kept).values()))
        if left_out and not anonymize:
            reason = (
                "not in Matomo's lists as the planner reaches them, or beyond the top"
                if key in ("search_engines", "socials")
                else "beyond the top or not a usable name"
            )
            learned.notes.append(f"{what} left out ({reason}): {_shares_text(left_out, 10)}")
        elif left_out:
            learned.notes.append(f"{what}: {len(left_out)} left out")
    if chosen:
        traffic["referrers"] = chosen


def _website_host(label: str) -> str | None:
    """A website row's host, if Matomo's classification (core/referrers.py) sees it as a website."""
    host = label.strip().lower()
    if not _HOST.fullmatch(host) or len(host) > MAX_NAME_LENGTH:
        return None
    found = referrers.classify("https://site.invalid/", f"https://{host}/")
    return host if (found.type, found.name) == ("website", host) else None


def _campaign_name(label: str) -> str | None:
    name = _one_line(label).strip()
    return name if name and len(name) <= MAX_NAME_LENGTH else None


# -- actions, events, goals --------------------------------------------------------------------------


def _actions(
    traffic: dict[str, Any],
    learned: Learned,
    answers: Mapping[str, Any],
    days: Sequence[str],
    visits: float,
    actions: Mapping[str, float],
    goal_definitions: Sequence[Mapping[str, Any]],
    anonymize: bool,
) -> None:
    """Add-on shares: each visit the planner picks for an action gets one, so share = actions per visit."""
    shares: dict[str, float] = {
        "search": _share(actions.get("nb_searches", 0.0), visits),
        "outlink": _share(actions.get("nb_outlinks", 0.0), visits),
        "download": _share(actions.get("nb_downloads", 0.0), visits),
    }
    events = _events(answers, days)
    total_events = sum(event["weight"] for event in events)
    shares["event"] = _share(total_events, visits)
    if events:
        weights = _percent_table({str(i): e["weight"] for i, e in enumerate(events)})
        for i, event in enumerate(events):
            event["weight"] = max(weights[str(i)], 0.01)
        traffic["events"] = events
    goals = _goals(answers, days, goal_definitions)
    converted = sum(goal["weight"] for goal in goals)
    shares["goal"] = _share(converted, visits)
    if goals:
        weights = _percent_table({str(goal["id"]): goal["weight"] for goal in goals})
        for goal in goals:
            goal["weight"] = max(weights[str(goal["id"])], 0.01)
        traffic["goals"] = goals
    counted = {
        "search": actions.get("nb_searches", 0.0),
        "outlink": actions.get("nb_outlinks", 0.0),
        "download": actions.get("nb_downloads", 0.0),
        "event": total_events,
        "goal conversion": converted,
    }
    for kind, count in counted.items():
        if count > visits:
            learned.notes.append(f"More than one {kind} per visit ({count / visits:.2f}): the share is capped at 1.")
    traffic["actions"] = shares


def _searches(key: str, answer: Any, days: Sequence[str]) -> dict[str, float]:
    """Keyword -> searches (``nb_hits``; ``nb_visits`` where a report has no hits), largest first."""
    table = merged(rows(key, answer, days), lambda row: _campaign_name(str(row.get("label") or "")))
    counts = {k: row.get("nb_hits", row.get("nb_visits", 0.0)) for k, row in table.items()}
    return dict(sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: -kv[1]))


def _site_search(
    traffic: dict[str, Any],
    learned: Learned,
    answers: Mapping[str, Any],
    days: Sequence[str],
    anonymize: bool,
    top: int,
) -> None:
    """``site_search``: Matomo's keywords report lists every keyword; the no-result report those whose
    every search found nothing (plugins/Actions/API.php ``getSiteSearchNoResultKeywords``). They go to
    ``keywords`` and ``no_result_keywords`` apart, each weighted by its searches."""
    every = _searches("Actions.getSiteSearchKeywords", answers.get("keywords"), days)
    empty = _searches("Actions.getSiteSearchNoResultKeywords", answers.get("no_result"), days)
    for keyword, count in empty.items():
        every.setdefault(keyword, count)
    found = {k: v for k, v in every.items() if k not in empty}
    total = sum(every.values())
    if total <= 0:
        return
    limit = min(top, MAX_CHOICES)
    kept_found, kept_empty = dict(list(found.items())[:limit]), dict(list(empty.items())[:limit])
    if anonymize:
        kept_found = {f"keyword-{i}": v for i, v in enumerate(kept_found.values(), 1)}
        kept_empty = {f"keyword-{len(kept_found) + i}": v for i, v in enumerate(kept_empty.values(), 1)}
    weights = list(
        _percent_table(
            {**{("f", k): v for k, v in kept_found.items()}, **{("e", k): v for k, v in kept_empty.items()}}
        ).items()
    )
    search: dict[str, Any] = {}
    if kept_found:
        search["keywords"] = {k: w for (kind, k), w in weights if kind == "f"}
    if kept_empty:
        search["no_result_keywords"] = {k: w for (kind, k), w in weights if kind == "e"}
    traffic["site_search"] = search
    folded = total - sum(kept_found.values()) - sum(kept_empty.values())
    learned.notes.append(
        f"Site search: {len(every)} keywords, {100 * sum(empty.values()) / total:.1f} % of searches without result"
        + (
            f"; the top {limit} of each kind are listed ({100 * folded / total:.1f} % of searches folded in)."
            if folded
            else "."
        )
    )


def _links(
    traffic: dict[str, Any],
    learned: Learned,
    answers: Mapping[str, Any],
    days: Sequence[str],
    anonymize: bool,
    top: int,
) -> None:
    """``outlinks`` and ``downloads``: the clicked URLs by clicks (``nb_hits``); downloads on the pages'
    host as paths below the target's site_url."""
    for key, method in (("outlinks", "Actions.getOutlinks"), ("downloads", "Actions.getDownloads")):
        table = merged(rows(method, answers.get(key), days), _link_url)
        counts: dict[str, float] = {}
        for url, row in sorted(table.items(), key=lambda kv: -kv[1].get("nb_hits", 0.0)):
            parts = urlsplit(url)
            if key == "downloads" and learned.main_host and parts.netloc == learned.main_host:
                url = urlunsplit(("", "", parts.path or "/", parts.query, ""))
            try:
                check_http_url(url) if key == "outlinks" else check_page_url(url)
            except ValueError:
                continue
            if row.get("nb_hits", 0.0) > 0 and len(counts) < min(top, MAX_CHOICES):
                counts[url] = counts.get(url, 0.0) + row["nb_hits"]
        if not counts:
            continue
        if anonymize:
            counts = {_link_placeholder(key, url, i): v for i, (url, v) in enumerate(counts.items(), 1)}
        traffic[key] = _percent_table(counts)
        if len(table) > len(counts):
            learned.notes.append(f"{key.capitalize()}: the top {len(counts)} of {len(table)} URLs are listed.")


def _link_url(row: Mapping[str, Any]) -> str | None:
    """A link row's URL: its ``url``, else ``https://`` and the flattened label (``host/path``)."""
    url = str(row.get("url") or "").strip()
    if not url:
        label = str(row.get("label") or "").strip()
        url = f"https://{label}" if label and label not in ("-1", "Others") else ""
    return url or None


def _link_placeholder(key: str, url: str, number: int) -> str:
    """``https://link-3.example/`` for an outlink, ``/files/file-3.pdf`` for a download (its extension kept)."""
    if key == "outlinks":
        return f"https://link-{number}.example/"
    extension = re.search(r"\.[A-Za-z0-9]{1,8}$", urlsplit(url).path)
    return f"/files/file-{number}{extension.group() if extension else ''}"


def _events(answers: Mapping[str, Any], days: Sequence[str]) -> list[dict[str, Any]]:
    """``Category - Action`` rows (flattened by the secondary dimension), split at a known category."""
    categories = sorted(_labelled("Events.getCategory", answers.get("event_categories"), days, "nb_events"), key=len)
    table = merged(
        rows("Events.getCategory (eventAction)", answers.get("event_actions"), days),
        lambda row: str(row.get("label") or "").strip() or None,
    )
    events = []
    for label, row in sorted(table.items(), key=lambda kv: -kv[1].get("nb_events", 0.0)):
        count = row.get("nb_events", 0.0)
        if count <= 0:
            continue
        category = next((c for c in reversed(categories) if label.startswith(c + " - ")), None)
        if category is None:
            category, _, action = label.partition(" - ")
        else:
            action = label[len(category) + 3 :]
        event: dict[str, Any] = {"category": category or "Event", "action": action or "event", "weight": count}
        if row.get("nb_events_with_value", 0.0) > 0 and "min_event_value" in row:
            low, high = row["min_event_value"], row.get("max_event_value", row["min_event_value"])
            if 0 <= low <= high <= MAX_AMOUNT:
                event["value"] = {"min": _round_amount(low), "max": _round_amount(high)}
        events.append(event)
    if not events:  # no action rows: one event per category
        events = [
            {"category": c, "action": "event", "weight": n}
            for c, n in _labelled("Events.getCategory", answers.get("event_categories"), days, "nb_events").items()
        ]
    return events[:DEFAULT_TOP]


def _round_amount(value: float) -> float:
    return float(round(min(value, MAX_AMOUNT), 2))


def _goals(
    answers: Mapping[str, Any], days: Sequence[str], definitions: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    goals = []
    for definition in definitions:
        goal_id = str(definition.get("idgoal", "")).strip()
        if not goal_id.isdigit() or f"goal:{goal_id}" not in answers:
            continue
        figures = metrics(f"Goals.get {goal_id}", answers[f"goal:{goal_id}"], days)
        conversions = figures.get("nb_conversions", 0.0)
        if conversions <= 0:
            continue
        goal: dict[str, Any] = {"id": int(goal_id), "weight": conversions}
        revenue = figures.get("revenue", 0.0)
        if revenue > 0:
            mean = revenue / conversions
            goal["revenue"] = {"min": _round_amount(mean * 0.5), "max": _round_amount(mean * 1.5)}
        if str(definition.get("allow_multiple", "0")).lower() in ("1", "true"):
            goal["allow_multiple"] = True
        goals.append(goal)
    return goals


# -- ecommerce ---------------------------------------------------------------------------------------


def _ecommerce(
    traffic: dict[str, Any],
    answers: Mapping[str, Any],
    days: Sequence[str],
    visits: float,
    orders: float,
    abandoned: float,
    top: int,
) -> None:
    """Order and cart shares (a cart share includes the visits that order), products with their mean
    price, and the items and quantity ranges of the measured means."""
    if orders <= 0 and abandoned <= 0:
        return
    shop: dict[str, Any] = {"cart": _share(orders + abandoned, visits), "order": _share(orders, visits)}
    items = merged(
        rows("Goals.getItemsSku", answers.get("items"), days), lambda row: str(row.get("label") or "") or None
    )
    names = merged(
        rows("Goals.getItemsName", answers.get("item_names"), days), lambda row: str(row.get("label") or "") or None
    )
    by_figures: dict[tuple[float, float, float], list[str]] = {}
    for name, row in names.items():
        by_figures.setdefault(_item_figures(row), []).append(name)
    products = []
    in_orders = quantity = 0.0
    for sku, row in sorted(items.items(), key=lambda kv: -kv[1].get("revenue", 0.0))[:top]:
        units = row.get("quantity", 0.0)
        if units <= 0 or row.get("revenue", 0.0) <= 0:
            continue
        named = by_figures.get(_item_figures(row), [])
        products.append(
            {
                "sku": sku,
                "name": named[0] if len(named) == 1 else sku,
                "price": _round_amount(max(0.01, row["revenue"] / units)),
            }
        )
        in_orders += row.get("orders", 0.0)
        quantity += units
    if products:
        shop["products"] = products
    if orders > 0 and in_orders > 0:
        shop["items"] = _mean_range(in_orders / orders, min(100, len(products) or 1))
        shop["quantity"] = _mean_range(quantity / in_orders, 1000)
    traffic["ecommerce"] = shop


def _item_figures(row: Mapping[str, Any]) -> tuple[float, float, float]:
    return (row.get("quantity", 0.0), row.get("orders", 0.0), round(row.get("revenue", 0.0), 2))


def _mean_range(mean: float, limit: int) -> dict[str, int]:
    """``{min: 1, max: n}`` whose uniform mean is nearest ``mean``, ``n <= limit``."""
    return {"min": 1, "max": max(1, min(limit, round(2 * mean - 1)))}


# -- target-level keys ------------------------------------------------------------------------------


def _target_keys(
    learned: Learned, answers: Mapping[str, Any], days: Sequence[str], summary: Mapping[str, float]
) -> None:
    """``visits_per_day`` (the mean day) and ``profile``: hours in the site's time zone (Matomo's server
    time report is shown in the site's time zone), weekdays from the mean visits of each weekday."""
    learned.target["visits_per_day"] = max(1, round(summary.get("nb_visits", 0.0) / len(days)))
    hours = [0.0] * 24
    for key, method in (
        ("server_hours", "VisitTime.getVisitInformationPerServerTime"),
        ("local_hours", "VisitTime.getVisitInformationPerLocalTime"),
    ):
        for row in rows(method, answers.get(key), days):
            match = _HOUR.match(str(row.get("label", "")))
            if match and int(match.group(1)) < 24:
                hours[int(match.group(1))] += _number(row.get("nb_visits")) or 0.0
        if sum(hours) > 0:
            if key == "local_hours":
                learned.notes.append("The hours are the visitors' local time (the server time report was empty).")
            break
    profile: dict[str, Any] = {}
    if sum(hours) > 0:
        profile["hours"] = [round(100 * h / sum(hours), 2) for h in hours]
    per_weekday: dict[int, list[float]] = {}
    day_values = per_day("VisitsSummary.get", answers.get("summary"), days)
    if len(day_values) == len(days):
        for day, value in zip(days, day_values):
            count = _number(value.get("nb_visits")) if isinstance(value, dict) else 0.0
            per_weekday.setdefault(date.fromisoformat(day).weekday(), []).append(count or 0.0)
    if len(days) >= 7 and len(per_weekday) == 7:
        means = [sum(per_weekday[w]) / len(per_weekday[w]) for w in range(7)]
        if sum(means) > 0:
            profile["weekdays"] = [round(7 * m / sum(means), 3) for m in means]
    elif len(days) < 7:
        learned.notes.append("Fewer than 7 days: no weekday weights (profile a week or more for them).")
    if profile:
        learned.target["profile"] = profile


# ---------------------------------------------------------------------------------------------
# Writing


def render_yaml(learned: Learned) -> str:
    """The model as YAML: a comment header, the ``traffic`` mapping, then comments for the target-level
    keys and for what the model cannot express."""
    lines = [f"# {line}" for line in learned.header]
    body = yaml.safe_dump(learned.traffic, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
    lines.append(body.rstrip("\n"))
    if learned.target:
        lines.append("")
        lines.append("# --- Target-level keys (not traffic keys): copy them, uncommented, into the target itself,")
        lines.append("# --- next to its url and site_id (docs/profile.md). visits_per_day is the mean day.")
        target_text = yaml.safe_dump(learned.target, sort_keys=False, width=200, default_flow_style=None)
        lines.extend(f"# {line}" for line in target_text.rstrip("\n").split("\n"))
    if learned.notes:
        lines.append("")
        lines.append("# --- Measured, not expressed by the model:")
        for note in learned.notes:
            lines.append(f"# - {_one_line(note)}")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text)
