"""What Matomo's reports must show for the hits it stored: the sent side of ``verify``, report by report.

Why: a 2xx per hit proves little. A Matomo administrator wants to know whether every report came out
right (goals, revenue, events, abandoned carts, returning visits), so the generator counts each stored
hit the way Matomo's reports count it, and ``verify`` compares those counts with the Reporting API.

The pieces, from the inside out:

* a *delta* is a flat ``Counter`` of integer figures (money in cents, so sums are exact and merge
  like Locust's stats): ``"hits"``, ``"actions"``, ``"pageviews"``, ``"searches"``, ``"outlinks"``,
  ``"downloads"``, ``"events"``, ``"orders"``, ``"revenue"``, ``"abandoned_carts"``,
  ``"returning_visits"``, ``"bot_visits"``, ``"goal:<id>:conversions"``, ``"goal:<id>:revenue"`` and
  ``"referrer:<type>"`` (visits per referrer type, ``core.referrers.TYPES``; shown, not verified);
* :class:`VisitReports` turns one visit's stored hits (fed as Matomo answers them, in the visit's order)
  into deltas, with the per-visit rules of Matomo's Goals plugin: a goal converts once per visit unless
  it allows several (core/Tracker/GoalManager.php ``recordStandardGoals``), an order turns the visit's
  open cart into the order, so a cart is abandoned only while no order follows it
  (``GoalManager::recordEcommerceGoal``, plugins/CoreHome/Columns/VisitGoalBuyer.php);
* :func:`nested` turns a day's summed deltas into the report's JSON (``{"pageviews": 3, "goals": {"2":
  {"conversions": 1, "revenue": 12.5}}, ...}``) and :func:`flat` reads it back.

The one invariant: the sum of a visit's deltas is what that visit adds to Matomo's reports for its day,
whatever order its hits were answered in, and a hit Matomo did not store adds nothing.

Example::

    visit = VisitReports(returning=True, multiple_goals=frozenset())
    day = Counter()
    day.update(visit.stored("pageview", {}))
    day.update(visit.stored("goal", {"idgoal": "2", "revenue": "12.50"}))
    nested(day)  # {"pageviews": 1, "returning_visits": 1, "goals": {"2": {"conversions": 1, "revenue": 12.5}}, ...}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from trafficinator_locust.core.protocol import ACTION_KINDS

__all__ = [
    "COUNT_KEYS",
    "MONEY_KEYS",
    "REPORT_KEYS",
    "RETURNING_UNKNOWN",
    "VisitReports",
    "bot_visit",
    "cents",
    "flat",
    "nested",
]

REPORT_KEYS: tuple[str, ...] = (
    "pageviews",
    "searches",
    "outlinks",
    "downloads",
    "events",
    "orders",
    "revenue",
    "abandoned_carts",
    "returning_visits",
)
"""The keys of a day's ``reports`` besides ``goals``, in the order ``verify`` shows them."""
COUNT_KEYS: tuple[str, ...] = ("hits", "actions", "bot_visits")
"""Figures of a day kept beside ``reports`` (``actions`` is VisitsSummary's ``nb_actions``)."""
MONEY_KEYS = frozenset({"revenue"})
"""Keys counted in cents (goal revenue too)."""
_PER_KIND = {"pageview": "pageviews", "product_view": "pageviews", "search": "searches", "outlink": "outlinks"}
_PER_KIND |= {"download": "downloads", "event": "events"}
_CENT = Decimal("0.01")
RETURNING_UNKNOWN = "returning_unknown"
"""Visits whose visitor Matomo may or may not know: a day with any has no ``returning_visits``."""


def cents(value: str | None) -> int:
    """Money as Matomo stores it (two decimals), in cents; an empty or unreadable amount is 0."""
    try:
        amount = Decimal((value or "").strip() or "0")
        return int(amount.quantize(_CENT) * 100) if amount.is_finite() else 0
    except InvalidOperation:  # not a number, or too large to hold in cents
        return 0


class VisitReports:
    """One visit's contribution to Matomo's reports, hit by hit as Matomo confirms storing them.

    ``returning`` is whether Matomo knows the visitor from an earlier visit (None: not known here).
    ``multiple_goals`` are the ids of goals set to "allow multiple conversions per visit" in Matomo
    (``allow_multiple`` in the traffic model); every other goal converts once per visit.
    """

    __slots__ = ("returning", "multiple_goals", "channel", "_seen", "_converted", "_cart_open", "_orders")

    def __init__(
        self, returning: bool | None, multiple_goals: Collection[int] = frozenset(), channel: str | None = None
    ):
        self.returning = returning
        self.multiple_goals = multiple_goals
        self.channel = channel
        self._seen = False
        self._converted: set[str] = set()
        self._cart_open = False
        self._orders: set[str | None] = set()

    def stored(self, kind: str, params: Mapping[str, str]) -> Counter[str]:
        """What one stored hit of ``kind`` (``protocol.classify``'s kinds) adds; may be negative (an
        order closes the abandoned cart an earlier cart update opened)."""
        delta: Counter[str] = Counter(hits=1)
        if not self._seen:
            self._seen = True
            if self.returning:
                delta["returning_visits"] = 1
            elif self.returning is None:  # the generator cannot know (distribution: mirror's visitor pool)
                delta[RETURNING_UNKNOWN] = 1
            if self.channel is not None:  # the referrer type Matomo gives the visit (core.referrers.TYPES)
                delta[f"referrer:{self.channel}"] = 1
        if kind in ACTION_KINDS:
            delta["actions"] = 1
        report = _PER_KIND.get(kind)
        if report is not None:
            delta[report] = 1
        elif kind == "goal":
            goal = (params.get("idgoal") or "").strip()
            if goal not in self._converted or _as_int(goal) in self.multiple_goals:
                self._converted.add(goal)
                delta[f"goal:{goal}:conversions"] = 1
                delta[f"goal:{goal}:revenue"] = cents(params.get("revenue"))
        elif kind == "cart":
            if not self._cart_open:
                self._cart_open = True
                delta["abandoned_carts"] = 1
        elif kind == "order" and params.get("ec_id") not in self._orders:  # Matomo skips a known order id
            self._orders.add(params.get("ec_id"))
            delta["orders"] = 1
            delta["revenue"] = cents(params.get("revenue"))
            if self._cart_open:
                self._cart_open = False
                delta["abandoned_carts"] = -1
        return delta


def bot_visit() -> Counter[str]:
    """The delta of a bot visit Matomo drops by design (sent without ``bots=1``): counted, never stored."""
    return Counter(bot_visits=1)


def _as_int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _money(value: int) -> float:
    return round(value / 100, 2)


def nested(day: Mapping[str, int]) -> dict[str, Any]:
    """A day's summed deltas as the report's ``reports`` object (money back in currency units)."""
    reports: dict[str, Any] = {}
    for key in REPORT_KEYS:
        if key == "returning_visits" and day.get(RETURNING_UNKNOWN):
            continue
        value = day.get(key, 0)
        reports[key] = _money(value) if key in MONEY_KEYS else value
    goals: dict[str, dict[str, Any]] = {}
    for key, value in sorted(day.items()):
        if key.startswith("goal:"):
            _, goal, figure = key.split(":", 2)
            entry = goals.setdefault(goal, {"conversions": 0, "revenue": 0.0})
            entry[figure] = _money(value) if figure == "revenue" else value
    reports["goals"] = dict(sorted(goals.items(), key=lambda item: (len(item[0]), item[0])))
    referrers = {key.split(":", 1)[1]: value for key, value in sorted(day.items()) if key.startswith("referrer:")}
    if referrers:
        reports["referrers"] = referrers
    return reports


def flat(reports: Mapping[str, Any]) -> dict[str, int]:
    """The inverse of :func:`nested` for what ``verify`` compares (money in cents; ``referrers`` and
    unknown keys are left out). Values must be numbers."""
    out: dict[str, int] = {}
    for key in REPORT_KEYS:
        if key in reports:
            out[key] = cents(str(reports[key])) if key in MONEY_KEYS else int(reports[key])
    for goal, entry in (reports.get("goals") or {}).items():
        out[f"goal:{goal}:conversions"] = int(entry.get("conversions", 0))
        out[f"goal:{goal}:revenue"] = cents(str(entry.get("revenue", 0)))
    return out
