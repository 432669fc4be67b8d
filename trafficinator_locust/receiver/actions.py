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

The rows of the table reports the profiler reads (per day, see :mod:`.page_reports` for their shapes):

- page URLs and page titles (plugins/Actions/RecordBuilders/ActionReports.php ``archiveDayActions``):
  ``nb_hits`` (pageviews, product views included), ``nb_visits`` (visits per row) and
  ``sum_time_spent`` (``archiveDayActionsTime``: the sum of ``time_spent_ref_action``, the seconds
  from one hit of the visit to the next, booked on the page the visitor was on, the visit's latest
  pageview; an event's time is left out, ``getWhereClauseActionIsNotEvent``; the last page of a
  visit gets nothing, a ping only moves the visit's last action time). A pageview without
  ``action_name`` is the title "Page Name not defined" (``ArchivingHelper::getUnknownActionName``).
- outlinks and downloads: ``nb_hits`` and ``nb_visits`` per action URL; site search keywords:
  searches and visits per keyword, and whether every search of it that sent ``search_count``
  found nothing (``MAX(search_count) = 0``: the no-result keywords).
- events per action, per name ("Event name not set" when empty) and per (category, action), the
  same (category, action, name) rows summed as for categories (plugins/Events/RecordBuilders/
  EventReports.php ``aggregateEventRow``).
- product views per SKU, name and category (``_pks``, ``_pkn``, ``_pkc``): the visits of the items reports.

Memory (:mod:`.archive`): what a visit has counted lives on the visit (freed when it ends); per
day, at most :data:`~.archive.MAX_ROWS_ACTIONS` rows per page URL, title, outlink, download and
keyword report, :data:`~.archive.MAX_ROWS_EVENTS` per event report and
:data:`~.archive.MAX_ROWS_PRODUCTS` per product report, a new label beyond them counted in the
"Others" row (Matomo's ``datatable_archiving_maximum_rows_*``, config/global.ini.php); distinct
keywords and each event row's visitors as :class:`~.archive.Distinct` counts; the latest
:data:`~.archive.MAX_DAYS` days.

Example::

    reports = ActionReports()
    reports.action(visit, "pageview", {"url": "https://www.shop.example/a#top"})
    reports.on(visit.day).pageviews  # 1
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from trafficinator_locust.core.protocol import CAMPAIGN_PARAMS
from trafficinator_locust.receiver.archive import (
    DAY_EXACT_DISTINCT,
    MAX_ROWS_ACTIONS,
    MAX_ROWS_EVENTS,
    MAX_ROWS_PRODUCTS,
    OTHERS_KEY,
    Distinct,
    capped_row,
    keep_recent_days,
)
from trafficinator_locust.receiver.visits import Visit

__all__ = ["ActionsDay", "EventRow", "PageRow", "ActionReports", "action_url", "url_prefix", "UNKNOWN_TITLE"]

UNKNOWN_TITLE = "Page Name not defined"
"""``ArchivingHelper::getUnknownActionName`` of a page title (General_NotDefined with "Page Name")."""
EVENT_NAME_NOT_SET = "Event name not set"
"""``Archiver::EVENT_NAME_NOT_SET``: the event name row of events sent without ``e_n``."""

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
class EventRow:
    """One event category's figures of one site-local day."""

    events: int = 0
    visits: int = 0
    """Visits per (action, name), summed (Matomo's category row)."""
    visitors: Distinct = field(default_factory=Distinct)
    """(visitor id, and the row's other dimensions): their count is the row's ``nb_uniq_visitors``."""
    with_value: int = 0
    value_sum: float = 0.0
    value_min: float | None = None
    value_max: float | None = None


@dataclass
class PageRow:
    """One row of a page URL, page title, outlink, download or site search keyword report of a day."""

    hits: int = 0
    visits: int = 0
    time_spent: int = 0
    url: str = ""
    """The first full URL seen for the row (Matomo's ``url`` metadata), "" for titles and keywords."""
    max_results: int | None = None
    """Keywords: the largest ``search_count`` sent (None when none was), Matomo's ``MAX(search_count)``."""


_ROW_KINDS = ("page_url", "page_title", "outlink", "download", "keyword")
_EVENT_KINDS = ("action", "name", "category_action")
_PRODUCT_KINDS = ("sku", "name", "category")


@dataclass
class ActionsDay:
    """The ``Actions.get`` figures and the action, event and product rows of one site-local day."""

    pageviews: int = 0
    uniq_pageviews: int = 0
    downloads: int = 0
    uniq_downloads: int = 0
    outlinks: int = 0
    uniq_outlinks: int = 0
    searches: int = 0
    keywords: Distinct = field(default_factory=lambda: Distinct(DAY_EXACT_DISTINCT))
    hits: int = 0
    rows: dict[str, dict[str, PageRow]] = field(default_factory=lambda: {kind: {} for kind in _ROW_KINDS})
    """By ``page_url`` (action URL), ``page_title``, ``outlink`` and ``download`` (URL), ``keyword``."""
    events: dict[str, EventRow] = field(default_factory=dict)
    """By category."""
    event_rows: dict[str, dict[object, EventRow]] = field(default_factory=lambda: {k: {} for k in _EVENT_KINDS})
    """By ``action``, ``name`` or ``category_action`` ((category, action))."""
    product_views: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in _PRODUCT_KINDS})
    """By ``sku``, ``name`` or ``category``: the visits that viewed it."""


_EMPTY = ActionsDay()


class ActionReports:
    """A site's action and event figures by site-local day; the tracker calls :meth:`action` for
    every stored action and :meth:`content` for every stored content hit."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every figure."""
        self.days: dict[date, ActionsDay] = {}

    def rows_on(self, day: date, kind: str) -> dict[str, PageRow]:
        """The rows of one report of a day (``page_url``, ``page_title``, ``outlink``, ``download``, ``keyword``)."""
        return self.on(day).rows[kind]

    def event_rows_on(self, day: date, kind: str) -> dict[object, EventRow]:
        """The event rows of a day by ``action``, ``name`` or ``category_action``."""
        return self.on(day).event_rows[kind]

    def product_visits_on(self, day: date, kind: str) -> dict[str, int]:
        """Visits that viewed each product SKU, name or category on a day."""
        return self.on(day).product_views[kind]

    def on(self, day: date) -> ActionsDay:
        """The figures of a day, empty when nothing happened on it (creates nothing)."""
        return self.days.get(day) or _EMPTY

    def events_on(self, day: date) -> dict[str, EventRow]:
        """The event categories of a day (empty when it had no event)."""
        return self.on(day).events

    def content(self, visit: Visit) -> None:
        """A content impression or interaction: an action row (``nb_hits``), no action of a report."""
        self._day(visit.day).hits += 1
        self._time_spent(visit)

    def action(self, visit: Visit, kind: str, params: Mapping[str, str]) -> None:
        """Count one stored action (a kind of ``core.protocol.ACTION_KINDS``) on its visit's day."""
        day = self._day(visit.day)
        day.hits += 1
        if kind != "event":
            self._time_spent(visit)
        if kind in ("pageview", "product_view"):
            raw = params.get("url", "")
            name = action_url(raw)
            first = _first(visit, ("page", name))
            day.pageviews += 1
            day.uniq_pageviews += first
            page = self._row(day, "page_url", name, first, raw)
            title = params.get("action_name", "").strip() or UNKNOWN_TITLE
            visit.last_page = (page, self._row(day, "page_title", title, _first(visit, ("title", title))))
            if kind == "product_view":
                self._product_view(day, visit, params)
        elif kind == "download":
            raw = params.get("download", "")
            name = action_url(raw)
            first = _first(visit, ("download", name))
            day.downloads += 1
            day.uniq_downloads += first
            self._row(day, "download", name, first, raw)
        elif kind == "outlink":
            raw = params.get("link", "")
            name = action_url(raw)
            first = _first(visit, ("outlink", name))
            day.outlinks += 1
            day.uniq_outlinks += first
            self._row(day, "outlink", name, first, raw)
        elif kind == "search":
            keyword = params.get("search", "").strip()
            day.searches += 1
            day.keywords.add(keyword)
            row = self._row(day, "keyword", keyword, _first(visit, ("keyword", keyword)))
            count = params.get("search_count", "").strip()
            if count.isdigit():
                row.max_results = int(count) if row.max_results is None else max(row.max_results, int(count))
        elif kind == "event":
            self._event(day, visit, params)

    @staticmethod
    def _row(day: ActionsDay, kind: str, label: str, first: int, raw_url: str | None = None) -> PageRow:
        """Count one hit of a report row (``first``: 1 for the visit's first; a label beyond the
        report's cap counts in "Others"); ``raw_url``: the hit's URL, whose prefix and action URL
        (``label``) are the row's ``url``."""
        rows = day.rows[kind]
        row = rows.get(label)
        if row is None:
            row = capped_row(rows, label, MAX_ROWS_ACTIONS, PageRow)
            if not row.hits and raw_url is not None and rows.get(label) is row:
                row.url = url_prefix(raw_url) + label
        row.hits += 1
        row.visits += first
        return row

    @staticmethod
    def _time_spent(visit: Visit) -> None:
        """Book the seconds since the visit's previous hit on the page the visitor was on."""
        if visit.last_page is None or visit.since_last <= 0:
            return
        seconds = int(visit.since_last)
        for row in visit.last_page:
            assert isinstance(row, PageRow)
            row.time_spent += seconds

    @staticmethod
    def _product_view(day: ActionsDay, visit: Visit, params: Mapping[str, str]) -> None:
        """A product page view: its visit counts for the product's SKU, name and each category."""
        values = [("sku", params.get("_pks", "").strip()), ("name", params.get("_pkn", "").strip())]
        values += [("category", category) for category in product_categories(params.get("_pkc", ""))]
        for kind, value in values:
            if value and _first(visit, ("product", kind, value)):
                views = day.product_views[kind]
                full = value not in views and len(views) - (OTHERS_KEY in views) >= MAX_ROWS_PRODUCTS
                label = OTHERS_KEY if full else value
                views[label] = views.get(label, 0) + 1

    def _day(self, day: date) -> ActionsDay:
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = ActionsDay()
            keep_recent_days(self.days)
        return stats

    @staticmethod
    def _event(day: ActionsDay, visit: Visit, params: Mapping[str, str]) -> None:
        category = params.get("e_c", "").strip()
        action, name = params.get("e_a", "").strip(), params.get("e_n", "").strip()
        row = capped_row(day.events, category, MAX_ROWS_EVENTS, EventRow)
        first = _first(visit, ("event", category, action, name))
        value = _event_value(params.get("e_v"))
        _add_event(row, first, (visit.visitor_id, action, name), value)
        others = day.event_rows
        keys: list[tuple[str, object, tuple[str, ...]]] = [
            ("action", action, (visit.visitor_id, category, name)),
            ("name", name or EVENT_NAME_NOT_SET, (visit.visitor_id, category, action)),
        ]
        if action:
            keys.append(("category_action", (category, action), (visit.visitor_id, name)))
        for kind, label, visitor in keys:
            _add_event(capped_row(others[kind], label, MAX_ROWS_EVENTS, EventRow), first, visitor, value)


def _add_event(row: EventRow, first: int, visitor: tuple[str, ...], value: float | None) -> None:
    """One event in a row: its visit if the (category, action, name) row is new to it, its value."""
    row.events += 1
    row.visits += first
    row.visitors.add(visitor)  # Others: the (visitor, ...) pairs of its rows, as Matomo sums them
    if value is not None:
        row.with_value += 1
        row.value_sum += value
        row.value_min = value if row.value_min is None else min(row.value_min, value)
        row.value_max = value if row.value_max is None else max(row.value_max, value)


def product_categories(raw: str) -> list[str]:
    """A product's categories: ``_pkc`` / an item's category is one string or a JSON list of up to 5."""
    raw = raw.strip() if isinstance(raw, str) else raw
    if isinstance(raw, str) and raw.startswith("["):
        try:
            raw = json.loads(raw)
        except ValueError:
            return [raw]
    if isinstance(raw, list):
        return [str(c).strip() for c in raw[:5] if str(c).strip()]
    return [str(raw).strip()] if str(raw).strip() else []


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


def url_prefix(url: str) -> str:
    """The prefix Matomo stores apart from an action URL (``https://www.``...), "" for none."""
    lowered = url.strip()[:12].lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            return prefix
    return ""


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
