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

The totals use Matomo's report keys: the goal id (``"1"``), ``ecommerceOrder`` and
``ecommerceAbandonedCart``, each with ``conversions`` and ``revenue``.

Example::

    conversions = Conversions()
    conversions.goal(visit, ReceiverGoal(2), {"revenue": "12.50"}, ts)  # True: converted
    conversions.stats()  # {"2": {"conversions": 1, "revenue": 12.5}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from trafficinator_locust.receiver.instances import ReceiverGoal
from trafficinator_locust.receiver.visits import Visit

__all__ = ["ORDER", "ABANDONED_CART", "Conversions"]

ORDER = "ecommerceOrder"
ABANDONED_CART = "ecommerceAbandonedCart"
_ZERO = Decimal(0)


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

    def _add(self, key: str, count: int, revenue: Decimal) -> None:
        self.counts[key] = self.counts.get(key, 0) + count
        self.revenue[key] = self.revenue.get(key, _ZERO) + revenue

    def goal(self, visit: Visit, goal: ReceiverGoal, params: Mapping[str, str], ts: float) -> bool:
        """Convert ``goal`` in ``visit``; False when the visit already converted it (dropped silently)."""
        marker: object = (goal.id, int(ts)) if goal.allow_multiple else goal.id
        if visit.converted is None:
            visit.converted = set()
        elif marker in visit.converted:
            return False
        visit.converted.add(marker)
        self._add(str(goal.id), 1, _revenue(params, goal.revenue))
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
            self._add(ABANDONED_CART, -1, -visit.cart)
            visit.cart = None
        visit.ordered = True
        self._add(ORDER, 1, _revenue(params))

    def cart(self, visit: Visit, params: Mapping[str, str]) -> None:
        """Book a cart update: replace the visit's open cart row, or open one (an abandoned cart)."""
        amount = _revenue(params)
        if visit.cart is None:
            self._add(ABANDONED_CART, 1, amount)
        else:
            self._add(ABANDONED_CART, 0, amount - visit.cart)
        visit.cart = amount

    def stats(self) -> dict[str, Any]:
        """``{key: {"conversions": n, "revenue": r}}`` for every key with a conversion."""
        return {
            key: {"conversions": count, "revenue": float(self.revenue[key])}
            for key, count in sorted(self.counts.items())
            if count
        }
