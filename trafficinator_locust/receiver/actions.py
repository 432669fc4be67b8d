"""What Matomo's ``Actions.get`` and ``Events.getCategory`` count, per site and site-local day.

Why per visit and day: Matomo archives these reports from ``log_link_visit_action`` by the day of
each action (plugins/Actions/RecordBuilders/ActionReports.php, plugins/Events/RecordBuilders/
EventReports.php); a visit never spans the site's midnight here (:mod:`.visits`), so an action's day
is its visit's day, the same day ``VisitsSummary.get`` counts it on. The rules:

- ``nb_pageviews``: pageviews, product views included (a product view is a pageview with ``_pkp``,
  ``_pks``...); site searches have no page URL and are not pageviews. ``nb_uniq_pageviews``: the
  visits per page URL, summed over URLs (``nb_visits`` of each URL row). Likewise downloads
  (``download``) and outlinks (``link``).
- A URL is Matomo's action URL: trimmed, the host lower-cased, the fragment and the campaign and
  click-id parameters dropped, ``http://``, ``https://`` and ``www.`` left out
  (core/Tracker/PageUrl.php, ``excludeQueryParametersFromUrl``, ``normalizeUrl``).
- ``nb_searches``: site searches; ``nb_keywords``: distinct keywords (``search``, trimmed) of the day.
- ``nb_hits``: every action row of the day, content impressions and interactions included
  (plugins/Actions/RecordBuilders/Hits.php).
- Events by category (trimmed ``e_c``): ``nb_events`` hits, ``nb_events_with_value``,
  ``sum_event_value``, ``min_event_value``, ``max_event_value`` (``e_v``). Matomo counts ``nb_visits``
  and ``nb_uniq_visitors`` per (category, action, name) and sums those rows into the category's, so
  a visit that sends two actions of one category counts twice there; so does the receiver.

Memory: what a visit has counted lives on the visit (freed when it ends); per day, the keywords and,
per event category, the (visitor, action, name) triples.

Example::

    reports = ActionReports()
    reports.action(visit, "pageview", {"url": "https://www.shop.example/a#top"})
    reports.on(visit.day).pageviews  # 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from trafficinator_locust.core.protocol import CAMPAIGN_PARAMS
from trafficinator_locust.receiver.visits import Visit

__all__ = ["ActionsDay", "EventRow", "ActionReports", "action_url"]

_EXCLUDED_PARAMS = frozenset(
    {
        *CAMPAIGN_PARAMS,
        "pk_cpn",
        "piwik_campaign",
        "matomo_campaign",
        "mtm_cpn",
        "utm_campaign",
        "pk_kwd",
        "pk_keyword",
        "piwik_kwd",
        "matomo_kwd",
        "mtm_kwd",
        "mtm_keyword",
        "utm_term",
        "_rck",
        "gclid",
        "fbclid",
        "msclkid",
        "twclid",
        "wbraid",
        "gbraid",
        "yclid",
    }
)
"""Query parameters Matomo leaves out of action URLs by default: campaign names and keywords
(``campaign_var_name``, ``campaign_keyword_var_name``) and click ids
(``url_query_parameter_to_exclude_from_url``, config/global.ini.php)."""
_PREFIXES = ("http://www.", "http://", "https://www.", "https://")
"""Matomo's URL prefixes (``PageUrl::$urlPrefixMap``), stored apart from the action's name."""


@dataclass
class ActionsDay:
    """The ``Actions.get`` figures of one site-local day."""

    pageviews: int = 0
    uniq_pageviews: int = 0
    downloads: int = 0
    uniq_downloads: int = 0
    outlinks: int = 0
    uniq_outlinks: int = 0
    searches: int = 0
    keywords: set[str] = field(default_factory=set)
    hits: int = 0


@dataclass
class EventRow:
    """One event category's figures of one site-local day."""

    events: int = 0
    visits: int = 0
    """Visits per (action, name), summed (Matomo's category row)."""
    visitors: set[tuple[str, str, str]] = field(default_factory=set)
    """(visitor id, action, name): their count is the category's ``nb_uniq_visitors``."""
    with_value: int = 0
    value_sum: float = 0.0
    value_min: float | None = None
    value_max: float | None = None


class ActionReports:
    """A site's action and event figures by site-local day; the tracker calls :meth:`action` for
    every stored action and :meth:`content` for every stored content hit."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every figure."""
        self.days: dict[date, ActionsDay] = {}
        self.events: dict[date, dict[str, EventRow]] = {}

    def on(self, day: date) -> ActionsDay:
        """The figures of a day, empty when nothing happened on it (creates nothing)."""
        return self.days.get(day) or ActionsDay()

    def events_on(self, day: date) -> dict[str, EventRow]:
        """The event categories of a day (empty when it had no event)."""
        return self.events.get(day, {})

    def content(self, visit: Visit) -> None:
        """A content impression or interaction: an action row (``nb_hits``), no action of a report."""
        self._day(visit.day).hits += 1

    def action(self, visit: Visit, kind: str, params: Mapping[str, str]) -> None:
        """Count one stored action (a kind of ``core.protocol.ACTION_KINDS``) on its visit's day."""
        day = self._day(visit.day)
        day.hits += 1
        if kind in ("pageview", "product_view"):
            day.pageviews += 1
            day.uniq_pageviews += _first(visit, ("page", action_url(params.get("url", ""))))
        elif kind == "download":
            day.downloads += 1
            day.uniq_downloads += _first(visit, ("download", action_url(params.get("download", ""))))
        elif kind == "outlink":
            day.outlinks += 1
            day.uniq_outlinks += _first(visit, ("outlink", action_url(params.get("link", ""))))
        elif kind == "search":
            day.searches += 1
            day.keywords.add(params.get("search", "").strip())
        elif kind == "event":
            self._event(visit, params)

    def _day(self, day: date) -> ActionsDay:
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = ActionsDay()
        return stats

    def _event(self, visit: Visit, params: Mapping[str, str]) -> None:
        category = params.get("e_c", "").strip()
        action, name = params.get("e_a", "").strip(), params.get("e_n", "").strip()
        rows = self.events.get(visit.day)
        if rows is None:
            rows = self.events[visit.day] = {}
        row = rows.get(category)
        if row is None:
            row = rows[category] = EventRow()
        row.events += 1
        row.visits += _first(visit, ("event", category, action, name))
        row.visitors.add((visit.visitor_id, action, name))
        value = _event_value(params.get("e_v"))
        if value is not None:
            row.with_value += 1
            row.value_sum += value
            row.value_min = value if row.value_min is None else min(row.value_min, value)
            row.value_max = value if row.value_max is None else max(row.value_max, value)


def _first(visit: Visit, key: tuple[str, ...]) -> int:
    """1 the first time the visit counts ``key``, else 0 (a visit's unique pageviews, outlinks...)."""
    if visit.seen is None:
        visit.seen = set()
    elif key in visit.seen:
        return 0
    visit.seen.add(key)
    return 1


def _event_value(raw: str | None) -> float | None:
    """``e_v`` as Matomo stores it (a float), or None when absent or not a finite number."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


@lru_cache(maxsize=16384)
def action_url(url: str) -> str:
    """The action URL Matomo groups a page, download or outlink by (see the module docstring)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and pair.split("=", 1)[0].lower() not in _EXCLUDED_PARAMS
    )
    cleaned = urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, query, ""))
    lowered = cleaned.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            return cleaned[len(prefix) :]
    return cleaned
