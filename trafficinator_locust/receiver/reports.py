"""The figures of each day report of the Reporting API subset, computed from what the tracker stored.

Why apart from :mod:`.reporting`: that module speaks the API (tokens, parameters, errors, bulk
requests); this one only reads one site's stored state for one site-local day, the same day
``VisitsSummary.get`` counts a visit on (:mod:`.visits`, :mod:`.actions`, :mod:`.goals`). Shapes and
rules follow Matomo 5 with ``format=JSON`` and its default ``format_metrics=bc`` (only percentages
formatted, core/API/Inconsistencies.php):

- ``Actions.get`` (plugins/Actions/API.php ``get``, plugins/Actions/Reports/Get.php): the counts of
  :class:`~.actions.ActionsDay`; a numeric report, so a day without data answers every metric 0
  (core/Archive/DataTableFactory.php fills the queried names with 0), like ``VisitsSummary.get``.
- ``Events.getCategory`` (plugins/Events/API.php): one row per category, most visits first; a day
  without events answers ``[]`` (a blob report: an empty table).
- ``Goals.get`` (plugins/Goals/API.php ``get``, ``getMetrics``): ``nb_conversions``,
  ``nb_visits_converted``, ``revenue``, ``conversion_rate`` (visits converted / visits, as
  ``"12.5%"``), and ``avg_order_revenue`` for the ecommerce goals; each again suffixed
  ``_new_visit`` and ``_returning_visit`` (the same for new and returning visitors). Without
  ``idGoal``: every goal and the orders, never the abandoned carts
  (plugins/Goals/RecordBuilders/GeneralGoalsRecords.php), and the visits a goal or an order
  converted. An ``idGoal`` the site does not have answers 0s (its archive records do not exist).
- ``VisitsSummary.get`` (plugins/VisitsSummary/API.php): :func:`~.dimensions.summary_metrics` of
  the day's visits (``nb_uniq_visitors``, ``nb_users``, ``nb_visits``, ``nb_actions``,
  ``nb_visits_converted``, ``bounce_count``, ``sum_visit_length``, ``max_actions``,
  ``bounce_rate``, ``nb_actions_per_visit``, ``avg_time_on_site``).
- ``VisitFrequency.get`` (plugins/VisitFrequency/API.php): VisitsSummary's figures for
  ``visitorType==new`` (suffix ``_new``) and ``visitorType==returning,visitorType==returningCustomer``
  (suffix ``_returning``).

Example::

    goals(site, date(2026, 12, 2), "ecommerceOrder")["nb_conversions"]  # 3
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from trafficinator_locust.receiver.actions import EventRow
from trafficinator_locust.receiver.archive import OTHERS, OTHERS_KEY
from trafficinator_locust.receiver.dimensions import day_totals, summary_metrics
from trafficinator_locust.receiver.goals import ABANDONED_CART, ORDER, VISITS_CONVERTED, GoalFigures
from trafficinator_locust.receiver.store import SiteState

__all__ = ["visits_summary", "actions", "events_by_category", "event_row", "goals", "visit_frequency"]

_ECOMMERCE = {"ecommerceOrder": ORDER, "ecommerceAbandonedCart": ABANDONED_CART}
"""``idGoal`` names of the ecommerce goals (``Piwik::LABEL_ID_GOAL_IS_ECOMMERCE_*``)."""
_RECORD_IDS = {"0": ORDER, "-1": ABANDONED_CART}
"""Numeric ids of the same records (``GoalManager::IDGOAL_ORDER``, ``IDGOAL_CART``): Matomo reads
``Goal_0_*`` / ``Goal_-1_*`` for them, without the ecommerce-only ``avg_order_revenue``."""
_SEGMENTS: tuple[tuple[str, bool | None], ...] = (("", None), ("_new_visit", False), ("_returning_visit", True))
"""Goals.get's column suffixes and the visitors they cover (all, new, returning)."""
_CENT = Decimal("0.01")


def visits_summary(site: SiteState, day: date) -> dict[str, Any]:
    """``VisitsSummary.get``: the visit metrics of the day (see the module docstring)."""
    return summary_metrics(day_totals(site, day))


def actions(site: SiteState, day: date) -> dict[str, int]:
    """``Actions.get``: Matomo's nine metrics of the day (zeros without data)."""
    stats = site.action_reports.on(day)
    return {
        "nb_pageviews": stats.pageviews,
        "nb_uniq_pageviews": stats.uniq_pageviews,
        "nb_downloads": stats.downloads,
        "nb_uniq_downloads": stats.uniq_downloads,
        "nb_outlinks": stats.outlinks,
        "nb_uniq_outlinks": stats.uniq_outlinks,
        "nb_searches": stats.searches,
        "nb_keywords": stats.keywords.count(),
        "nb_hits": stats.hits,
    }


def events_by_category(site: SiteState, day: date, limit: int = 100) -> list[dict[str, Any]]:
    """``Events.getCategory``: a row per category, most visits (then events) first; at most
    ``limit`` rows (Matomo's ``filter_limit``, default 100; negative: all)."""
    rows = sorted(site.action_reports.events_on(day).items(), key=_event_order)
    if limit >= 0:
        rows = rows[:limit]
    return [event_row(label, row) for label, row in rows]


def _event_order(item: tuple[str, EventRow]) -> tuple[bool, int, int, str]:
    """Most visits first, as Matomo's archive sorts the rows (``ORDER BY nb_visits DESC``); "Others" last."""
    label, row = item
    return label == OTHERS_KEY, -row.visits, -row.events, label


def event_row(label: str, row: EventRow) -> dict[str, Any]:
    """Matomo's columns of an event row; min and max are 0 when no event had a value."""
    return {
        "label": OTHERS if label == OTHERS_KEY else label,
        "nb_uniq_visitors": row.visitors.count(),
        "nb_visits": row.visits,
        "nb_events": row.events,
        "nb_events_with_value": row.with_value,
        "sum_event_value": _round2(row.value_sum),
        "min_event_value": _round2(row.value_min) if row.value_min is not None else 0,
        "max_event_value": _round2(row.value_max) if row.value_max is not None else 0,
        "avg_event_value": _round2(row.value_sum / row.with_value) if row.with_value else 0,
    }


def goals(site: SiteState, day: date, id_goal: str = "") -> dict[str, Any]:
    """``Goals.get`` for one goal id, ``ecommerceOrder``, ``ecommerceAbandonedCart``, or ("") all goals."""
    stats = site.visits.on(day)
    visits = {None: stats.visits, False: stats.visits - stats.returning_visits, True: stats.returning_visits}
    answer: dict[str, Any] = {}
    for suffix, returning in _SEGMENTS:
        figures = _goal_figures(site, day, id_goal, returning)
        metrics: dict[str, Any] = {
            "nb_conversions": figures.conversions,
            "nb_visits_converted": figures.visits,
            "revenue": _money(figures.revenue),
            "conversion_rate": _percent(figures.visits, visits[returning]),
        }
        if id_goal in _ECOMMERCE:
            metrics["avg_order_revenue"] = _money(_quotient(figures.revenue, figures.conversions))
        answer.update((name + suffix, value) for name, value in metrics.items())
    return answer


def _goal_figures(site: SiteState, day: date, id_goal: str, returning: bool | None) -> GoalFigures:
    """One goal's figures, or all goals' (every key but abandoned carts; visits: those converted)."""
    conversions = site.conversions
    if id_goal:
        return conversions.on(day, _ECOMMERCE.get(id_goal) or _RECORD_IDS.get(id_goal) or id_goal, returning)
    total = GoalFigures()
    for key in conversions.keys_on(day) - {ABANDONED_CART, VISITS_CONVERTED}:
        figures = conversions.on(day, key, returning)
        total.conversions += figures.conversions
        total.revenue += figures.revenue
    total.visits = conversions.on(day, VISITS_CONVERTED, returning).visits
    return total


def visit_frequency(site: SiteState, day: date) -> dict[str, Any]:
    """``VisitFrequency.get``: VisitsSummary's metrics of new and of returning visitors (the
    receiver's own returning decision, :mod:`.visits`), suffixed ``_new`` and ``_returning``."""
    answer: dict[str, Any] = {}
    for suffix, returning in (("_new", False), ("_returning", True)):
        metrics = summary_metrics(day_totals(site, day, returning))
        answer.update((name + suffix, value) for name, value in metrics.items())
    return answer


def _quotient(dividend: Decimal, divisor: int) -> Decimal:
    """Matomo's ``getQuotientSafe``: 0 for a 0 divisor."""
    return dividend / divisor if divisor else Decimal(0)


def _money(amount: Decimal) -> float:
    """Money as Matomo stores it: two decimals, half up."""
    return float(amount.quantize(_CENT, ROUND_HALF_UP))


def _round2(value: float) -> float:
    """PHP's ``round($value, 2)``: half away from zero on the shortest decimal (5.245 -> 5.25)."""
    return float(Decimal(repr(value)).quantize(_CENT, ROUND_HALF_UP))


def _percent(part: int, whole: int) -> str:
    """Matomo's ``getPrettyPercentFromQuotient`` of a quotient rounded to 4 places: ``"33.33%"``, ``"0%"``."""
    if not whole:
        return "0%"
    quotient = (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
    return f"{(quotient * 100).normalize():f}%"
