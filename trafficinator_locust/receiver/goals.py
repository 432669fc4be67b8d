"""Goal conversions and ecommerce, the way Matomo 5 books them per visit.

- A manual conversion (``idgoal=N`` of an existing goal) converts once per visit unless the goal
  allows several (``allow_multiple``; then once per goal and second, Matomo's "buster"); the
  revenue is the ``revenue`` parameter, else the goal's default (core/Tracker/GoalManager.php,
  ``recordStandardGoals``, plugins/Goals/Tracker/GoalsRequestProcessor.php).
- A pageview whose URL contains a goal's pattern converts it too (``detectGoalsMatchingUrl``).
- ``idgoal=0`` with ``ec_id`` is an order, without one a cart update
  (plugins/Ecommerce/Tracker/EcommerceRequestProcessor.php). A visit holds at most one cart row:
  a cart update replaces it, an order converts it into the order; a cart update after an order
  opens a new one (``GoalManager::recordEcommerceGoal``, ``detectIsThereExistingCartInVisit``,
  plugins/CoreHome/Columns/VisitGoalBuyer.php). A cart row still open is an abandoned cart.
- Conversions add no action.
- A manual or URL goal conversion and an order convert the visit (``visit_goal_converted``), a cart
  update does not (plugins/Goals/Tracker/GoalsRequestProcessor.php, plugins/Ecommerce/Tracker/
  EcommerceRequestProcessor.php): that is ``nb_visits_converted`` of all goals.

The totals use Matomo's report keys: the goal id (``"1"``), ``ecommerceOrder`` and
``ecommerceAbandonedCart``, each with ``conversions`` and ``revenue``. ``Goals.get`` reads the same
figures per site-local day (the visit's day: a visit never spans the site's midnight) and visitor type
(new or returning), with the visits that converted each key (Matomo's ``count(distinct idvisit)`` of
``log_conversion``); a cart row that became an order leaves the abandoned carts of its day.

The items of each order (``ec_items``: ``[sku, name, category, price, quantity]``, a category
one string or a list of up to five) are kept per day by SKU, name and category: revenue
(price x quantity), quantity, the sum of the lines' prices and orders, what ``Goals.getItemsSku``, ``getItemsName`` and
``getItemsCategory`` read (plugins/Goals/RecordBuilders/ProductRecord.php, from
``log_conversion_item`` of the orders; a quantity of 0 or none counts 1, as the tracker stores it).
Abandoned carts' items are not kept. Each items report holds at most
:data:`~.archive.MAX_ROWS_PRODUCTS` labels per day (``datatable_archiving_maximum_rows_products``,
config/global.ini.php), the rest summed in "Others"; the latest :data:`~.archive.MAX_DAYS` days are kept.

Example::

    conversions = Conversions()
    conversions.goal(visit, ReceiverGoal(2), {"revenue": "12.50"}, ts)  # True: converted
    conversions.stats()  # {"2": {"conversions": 1, "revenue": 12.5}}
    conversions.on(visit.day, "2").visits  # 1
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from trafficinator_locust.receiver.archive import MAX_ROWS_PRODUCTS, capped_row, keep_recent_days
from trafficinator_locust.receiver.instances import ReceiverGoal
from trafficinator_locust.receiver.visits import Visit

__all__ = ["ORDER", "ABANDONED_CART", "VISITS_CONVERTED", "GoalFigures", "ItemRow", "Conversions"]

ORDER = "ecommerceOrder"
ABANDONED_CART = "ecommerceAbandonedCart"
VISITS_CONVERTED = ""
"""The key whose ``visits`` are the visits a goal or an order converted (all goals' ``nb_visits_converted``)."""
_ZERO = Decimal(0)


@dataclass
class GoalFigures:
    """One key's conversions, revenue and converted visits (of a day and visitor type, or summed)."""

    conversions: int = 0
    revenue: Decimal = _ZERO
    visits: int = 0

    def add(self, other: GoalFigures) -> None:
        self.conversions += other.conversions
        self.revenue += other.revenue
        self.visits += other.visits


@dataclass
class ItemRow:
    """One SKU's, name's or category's ordered items of a day."""

    revenue: Decimal = _ZERO
    quantity: int = 0
    price: Decimal = _ZERO
    """The sum of the item lines' unit prices (Matomo's ``price``, the base of ``avg_price``)."""
    orders: int = 0


def _item_number(value: object) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return _ZERO
    return number if number.is_finite() else _ZERO


def _categories(value: object) -> list[str]:
    values = value[:5] if isinstance(value, list) else [value]
    return [str(c).strip() for c in values if str(c).strip()]


def _revenue(params: Mapping[str, str], default: float = 0.0) -> Decimal:
    value = (params.get("revenue") or "").strip()
    if not value:
        return Decimal(str(default))
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return Decimal(str(default))
    return amount if amount.is_finite() else Decimal(str(default))


class Conversions:
    """A site's conversions: per visit on the :class:`Visit`, totals here by report key."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, int] = {}
        self.revenue: dict[str, Decimal] = {}
        self.days: dict[date, dict[tuple[str, bool], GoalFigures]] = {}
        """Per site-local day, by (key, returning visitor)."""
        self.items: dict[date, dict[str, dict[str, ItemRow]]] = {}
        """Per site-local day, by ``sku``, ``name`` or ``category``, then by value."""

    def items_on(self, day: date, kind: str) -> dict[str, ItemRow]:
        """The ordered items of a day by ``sku``, ``name`` or ``category``."""
        return self.items.get(day, {}).get(kind, {})

    def _order_items(self, visit: Visit, params: Mapping[str, str]) -> None:
        try:
            items = json.loads(params.get("ec_items") or "[]")
        except ValueError:
            return
        rows = self.items.get(visit.day)
        if rows is None:
            rows = self.items[visit.day] = {"sku": {}, "name": {}, "category": {}}
            keep_recent_days(self.items)
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, list) or len(item) < 1:
                continue
            sku, name, category, price, quantity = (list(item) + ["", "", "", 0, 1])[:5]
            count = int(_item_number(quantity)) or 1
            revenue = _item_number(price) * count
            keys = [("sku", str(sku).strip()), ("name", str(name).strip())]
            keys += [("category", value) for value in _categories(category)]
            seen: set[int] = set()
            for kind, value in keys:
                if not value:
                    continue
                row = capped_row(rows[kind], value, MAX_ROWS_PRODUCTS, ItemRow)
                row.revenue += revenue
                row.quantity += count
                row.price += _item_number(price)
                if id(row) not in seen:  # an order with two lines of one category is one order of it
                    row.orders += 1
                    seen.add(id(row))

    def on(self, day: date, key: str, returning: bool | None = None) -> GoalFigures:
        """One key's figures of a day, for new (False), returning (True) or all (None) visitors."""
        total = GoalFigures()
        for (name, is_returning), figures in self.days.get(day, {}).items():
            if name == key and returning in (None, is_returning):
                total.add(figures)
        return total

    def keys_on(self, day: date) -> set[str]:
        """The keys with figures on a day (``VISITS_CONVERTED`` included)."""
        return {key for key, _ in self.days.get(day, {})}

    def _figures(self, visit: Visit, key: str) -> GoalFigures:
        day = self.days.get(visit.day)
        if day is None:
            day = self.days[visit.day] = {}
            keep_recent_days(self.days)
        slot = (key, visit.returning)
        figures = day.get(slot)
        if figures is None:
            figures = day[slot] = GoalFigures()
        return figures

    def _add(self, visit: Visit, key: str, count: int, revenue: Decimal, visits: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + count
        self.revenue[key] = self.revenue.get(key, _ZERO) + revenue
        figures = self._figures(visit, key)
        figures.conversions += count
        figures.revenue += revenue
        figures.visits += visits

    def _convert_visit(self, visit: Visit) -> None:
        """A goal or an order converts the visit, once."""
        if not visit.goal_converted:
            visit.goal_converted = True
            self._figures(visit, VISITS_CONVERTED).visits += 1

    def goal(self, visit: Visit, goal: ReceiverGoal, params: Mapping[str, str], ts: float) -> bool:
        """Convert ``goal`` in ``visit``; False when the visit already converted it (dropped silently)."""
        marker: object = (goal.id, int(ts)) if goal.allow_multiple else goal.id
        if visit.converted is None:
            visit.converted = set()
        elif marker in visit.converted:
            return False
        first = goal.id not in visit.converted  # the goal id itself marks "converted in this visit"
        visit.converted.update((marker, goal.id))
        self._add(visit, str(goal.id), 1, _revenue(params, goal.revenue), 1 if first else 0)
        self._convert_visit(visit)
        return True

    def url_goals(self, visit: Visit, goals: Iterable[ReceiverGoal], url: str, ts: float) -> int:
        """Convert the goals whose pattern the pageview's URL contains; how many converted."""
        lowered = url.lower()
        converted = 0
        for goal in goals:
            if goal.url_contains and goal.url_contains.lower() in lowered:
                converted += self.goal(visit, goal, {}, ts)
        return converted

    def order(self, visit: Visit, params: Mapping[str, str]) -> None:
        """Book an order; an open cart row of the visit becomes the order (no abandoned cart)."""
        if visit.cart is not None:
            self._add(visit, ABANDONED_CART, -1, -visit.cart, -1)
            visit.cart = None
        first = not visit.ordered
        visit.ordered = True
        self._add(visit, ORDER, 1, _revenue(params), 1 if first else 0)
        self._convert_visit(visit)
        self._order_items(visit, params)

    def cart(self, visit: Visit, params: Mapping[str, str]) -> None:
        """Book a cart update: replace the visit's open cart row, or open one (an abandoned cart)."""
        amount = _revenue(params)
        if visit.cart is None:
            self._add(visit, ABANDONED_CART, 1, amount, 1)
        else:
            self._add(visit, ABANDONED_CART, 0, amount - visit.cart, 0)
        visit.cart = amount

    def stats(self) -> dict[str, Any]:
        """``{key: {"conversions": n, "revenue": r}}`` for every key with a conversion."""
        return {
            key: {"conversions": count, "revenue": float(self.revenue[key])}
            for key, count in sorted(self.counts.items())
            if count
        }
