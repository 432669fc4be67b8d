"""The action, event and product table reports of the Reporting API, shaped like Matomo 5's.

Why apart from :mod:`.actions`: that module counts per hit; this one turns a day's rows into
Matomo's tables, labels and segments (``flat=1`` or not). The rules:

- page URLs (plugins/Actions/API.php ``getPageUrls``, plugins/Actions/ArchivingHelper.php
  ``getActionExplodedNames``): the action URL's path, split on ``/`` (``action_url_category_delimiter``),
  an empty or ``/``-ending path ending in ``index`` (``action_default_name``), the last part
  prefixed with ``/``: ``shop.example/shoes/red`` is the folder ``shoes`` and the page ``/red``.
  Without ``flat``: the top level (folders summed); with ``flat=1`` the flattened label
  (core/API/DataTableManipulator/Flattener.php, separator ``/`` for Actions, a part's leading ``/``
  dropped after a folder): ``shoes/red``, ``/index``. Rows: ``label``, ``nb_visits``, ``nb_hits``,
  ``sum_time_spent``, ``avg_time_on_page`` (``sum_time_spent / nb_hits``, no decimals,
  plugins/Actions/Columns/Metrics/AverageTimeOnPage.php) and, for a page, ``url`` and the segment
  ``pageUrl==<url>``.
- page titles: the title (``action_title_category_delimiter`` is empty, so no folders), segment
  ``pageTitle==<title>``.
- outlinks and downloads: the host, then ``/`` and the rest of the URL (flat: ``other.example/path``),
  ``url``, segment ``outlinkUrl==`` / ``downloadUrl==<url>``.
- site search keywords (``getSiteSearchKeywords``, ``getSiteSearchNoResultKeywords``): the keyword,
  ``nb_visits``, ``nb_hits``, segment ``siteSearchKeyword==<keyword>``; no-result ones: those whose
  every search sending ``search_count`` had 0.
- events (plugins/Events/API.php): ``getAction``, ``getName`` like ``getCategory``; ``getCategory``
  with ``flat=1`` (secondary dimension ``eventAction``, the default): "Category - Action" rows
  (the Flattener's default separator `` - ``).
- items (plugins/Goals/API.php ``getItemsSku``, ``getItemsName``, ``getItemsCategory``,
  plugins/Goals/RecordBuilders/ProductRecord.php: ordered items and product views, a product only
  viewed is a row too): ``label``, ``revenue``, ``quantity``, ``price`` (the lines' prices summed),
  ``orders``, ``avg_price`` (price / orders, Columns/Metrics/AveragePrice.php), ``avg_quantity``
  (quantity / orders), ``nb_visits`` (visits that viewed the product page), ``conversion_rate``
  (orders / those visits, ProductConversionRate.php), segment ``productSku==`` / ``productName==``
  / ``productCategory==<value>``; most revenue first; whole numbers as integers.
- ``Goals.getGoals`` (plugins/Goals/API.php ``getGoals``, ``formatGoal``): the site's goals keyed
  by id (one site), values as Matomo's database gives them (strings), a manual goal without
  ``pattern``, ``pattern_type`` and ``case_sensitive``; the receiver's goals are named "Goal <id>".

Rows are in the archive's order (most hits, then the label) and cut at ``filter_limit`` by the caller.
A report's labels beyond its cap per day (:mod:`.archive`) are summed in a last row "Others"
(Matomo's summary row), without ``url`` nor ``segment``.

Example::

    page_url_rows(site, day, flat=True)[0]  # {"label": "shoes/red", "nb_visits": 1, "nb_hits": 2, ...}
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from trafficinator_locust.receiver.actions import EventRow, PageRow
from trafficinator_locust.receiver.archive import OTHERS, OTHERS_KEY
from trafficinator_locust.receiver.dimensions import percent, php_urlencode
from trafficinator_locust.receiver.goals import ItemRow
from trafficinator_locust.receiver.store import SiteState

__all__ = [
    "page_url_rows",
    "page_title_rows",
    "link_rows",
    "keyword_rows",
    "event_rows",
    "item_rows",
    "goal_definitions",
]

_CENT = Decimal("0.01")
_URL_SEGMENTS = {"outlink": "outlinkUrl", "download": "downloadUrl"}
_ITEM_SEGMENTS = {"sku": "productSku", "name": "productName", "category": "productCategory"}


def _page_parts(name: str) -> list[str]:
    """``getActionExplodedNames`` of a page URL (its name without the prefix)."""
    _host, _, path = name.partition("/")
    path = path.partition("#")[0]
    if not path or path.endswith("/"):
        path += "index"
    parts = [part.strip() for part in path.split("/", 9)]  # action_category_level_limit = 10
    parts = [part for part in parts if part]
    if not parts:
        return ["Page URL not defined"]
    parts[-1] = "/" + parts[-1]
    return parts


def _link_parts(name: str) -> list[str]:
    host, _, path = name.partition("/")
    return [host.strip(), "/" + path.partition("#")[0].strip()]


def _flat_label(parts: list[str]) -> str:
    """The Flattener's label with the ``/`` separator."""
    label = parts[0]
    for part in parts[1:]:
        label += "/" + (part[1:] if part.startswith("/") else part)
    return label


def _metrics(row: PageRow, timed: bool) -> dict[str, Any]:
    metrics: dict[str, Any] = {"nb_visits": row.visits, "nb_hits": row.hits}
    if timed:
        metrics["sum_time_spent"] = row.time_spent
        metrics["avg_time_on_page"] = int(_round(Decimal(row.time_spent) / row.hits, 0)) if row.hits else 0
    return metrics


def _tree_rows(rows: dict[str, PageRow], split: Any, flat: bool, timed: bool, segment: str) -> list[dict[str, Any]]:
    """Page URLs, outlinks or downloads: flattened leaves, or the top level with folders summed."""
    answer: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():
        parts = [OTHERS] if name == OTHERS_KEY else split(name)
        leaf = flat or len(parts) == 1
        label = _flat_label(parts) if flat else parts[0]
        entry = answer.get(label)
        if entry is None:
            entry = answer[label] = {"label": label, "row": PageRow(), "url": row.url if leaf else ""}
        total = entry["row"]
        total.hits += row.hits
        total.visits += row.visits
        total.time_spent += row.time_spent
    result = []
    for entry in answer.values():
        out = {"label": entry["label"], **_metrics(entry["row"], timed)}
        if entry["url"]:
            out["url"] = entry["url"]
            out["segment"] = f"{segment}=={php_urlencode(entry['url'])}"
        result.append(out)
    return _by_hits(result)


def _by_hits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: (_is_others(row), -row["nb_hits"], row["label"]))


def _is_others(row: dict[str, Any]) -> bool:
    """The summary row: labelled "Others" and without a segment (a real label has one)."""
    return row["label"] == OTHERS and "segment" not in row


def _segmented(label: str, segment: str) -> dict[str, Any]:
    """A row's label and segment; the summary row is "Others" without one."""
    if label == OTHERS_KEY:
        return {"label": OTHERS}
    return {"label": label, "segment": f"{segment}=={php_urlencode(label)}"}


def page_url_rows(site: SiteState, day: date, flat: bool) -> list[dict[str, Any]]:
    """``Actions.getPageUrls``."""
    return _tree_rows(site.action_reports.rows_on(day, "page_url"), _page_parts, flat, True, "pageUrl")


def page_title_rows(site: SiteState, day: date) -> list[dict[str, Any]]:
    """``Actions.getPageTitles`` (flat or not: titles have no folders)."""
    rows = site.action_reports.rows_on(day, "page_title")
    return _by_hits([_with_segment(_segmented(title, "pageTitle"), _metrics(row, True)) for title, row in rows.items()])


def link_rows(site: SiteState, day: date, kind: str, flat: bool) -> list[dict[str, Any]]:
    """``Actions.getOutlinks`` (``kind`` ``outlink``) or ``Actions.getDownloads`` (``download``)."""
    return _tree_rows(site.action_reports.rows_on(day, kind), _link_parts, flat, False, _URL_SEGMENTS[kind])


def keyword_rows(site: SiteState, day: date, no_result: bool) -> list[dict[str, Any]]:
    """``Actions.getSiteSearchKeywords`` or, ``no_result``, ``getSiteSearchNoResultKeywords``."""
    rows = site.action_reports.rows_on(day, "keyword")
    return sorted(
        (_keyword_row(keyword, row) for keyword, row in rows.items() if not no_result or row.max_results == 0),
        key=lambda row: (_is_others(row), -row["nb_visits"], -row["nb_hits"], row["label"]),
    )


def _with_segment(labelled: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """``label``, the metrics, then the segment (if any): Matomo's order of a row's columns."""
    segment = labelled.pop("segment", None)
    return {**labelled, **metrics, **({"segment": segment} if segment is not None else {})}


def _keyword_row(keyword: str, row: PageRow) -> dict[str, Any]:
    return _with_segment(_segmented(keyword, "siteSearchKeyword"), {"nb_visits": row.visits, "nb_hits": row.hits})


def event_rows(site: SiteState, day: date, kind: str) -> list[tuple[str, EventRow]]:
    """The (label, row) pairs of ``Events.getAction`` (``action``), ``getName`` (``name``) or
    ``getCategory`` flattened by action (``category_action``: "Category - Action")."""
    rows = site.action_reports.event_rows_on(day, kind)
    labelled = [(f"{key[0]} - {key[1]}" if isinstance(key, tuple) else str(key), row) for key, row in rows.items()]
    return sorted(labelled, key=lambda item: (item[0] == OTHERS_KEY, -item[1].visits, -item[1].events, item[0]))


def item_rows(site: SiteState, day: date, kind: str) -> list[dict[str, Any]]:
    """``Goals.getItemsSku`` (``sku``), ``getItemsName`` (``name``) or ``getItemsCategory`` (``category``)."""
    items = site.conversions.items_on(day, kind)
    views = site.action_reports.product_visits_on(day, kind)
    rows = []
    for label in items.keys() | views.keys():  # a product only viewed is a row too (ProductRecord)
        item = items.get(label) or ItemRow()
        visits = views.get(label, 0)
        labelled = _segmented(label, _ITEM_SEGMENTS[kind])
        segment = labelled.pop("segment", None)
        rows.append(
            {
                **labelled,
                "revenue": _number(item.revenue, 2),
                "quantity": item.quantity,
                "price": _number(item.price, 2),
                "orders": item.orders,
                "avg_price": _number(item.price / item.orders, 2) if item.orders else 0,
                "avg_quantity": _number(Decimal(item.quantity) / item.orders, 1) if item.orders else 0,
                "nb_visits": visits,
                "conversion_rate": percent(item.orders, visits, 4),
                **({"segment": segment} if segment is not None else {}),
            }
        )
    return sorted(rows, key=lambda row: (_is_others(row), -row["revenue"], row["label"]))


def _number(value: Decimal, places: int) -> float | int:
    """A figure as Matomo's JSON gives it: rounded, an integer when it is one (``roundColumnValues``)."""
    rounded = _round(value, places)
    return int(rounded) if rounded == rounded.to_integral_value() else float(rounded)


def goal_definitions(site: SiteState) -> dict[str, dict[str, Any]]:
    """``Goals.getGoals``: every goal of the site, keyed by its id (as a string)."""
    goals: dict[str, dict[str, Any]] = {}
    for goal_id, goal in sorted(site.goal_rules.items()):
        definition = {
            "idsite": str(site.site.site_id),
            "idgoal": str(goal_id),
            "name": f"Goal {goal_id}",
            "description": "",
            "match_attribute": "url" if goal.url_contains else "manually",
            "pattern": goal.url_contains,
            "pattern_type": "contains",
            "case_sensitive": "0",
            "allow_multiple": "1" if goal.allow_multiple else "0",
            "revenue": f"{goal.revenue:g}",
            "deleted": "0",
            "event_value_as_revenue": "0",
        }
        if not goal.url_contains:  # formatGoal: a manual goal has no pattern
            for name in ("pattern", "pattern_type", "case_sensitive"):
                del definition[name]
        goals[str(goal_id)] = definition
    return goals


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
