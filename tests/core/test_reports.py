"""What each stored hit adds to Matomo's reports (core.reports): the sent side of verify."""

from __future__ import annotations

from collections import Counter

from trafficinator_locust.core.reports import RETURNING_UNKNOWN, VisitReports, bot_visit, cents, flat, nested


def day_of(visit: VisitReports, *hits: tuple[str, dict[str, str]]) -> Counter[str]:
    day: Counter[str] = Counter()
    for kind, params in hits:
        day.update(visit.stored(kind, params))
    return day


def test_actions_and_per_kind_counts_follow_matomo_action_types():
    day = day_of(
        VisitReports(returning=False),
        ("pageview", {}),
        ("pageview", {"_pks": "SKU"}),  # a product view is a page view
        ("product_view", {}),
        ("search", {"search": "x"}),
        ("outlink", {"link": "https://x"}),
        ("download", {"download": "https://x/a.pdf"}),
        ("event", {"e_c": "c", "e_a": "a"}),
        ("goal", {"idgoal": "2"}),
        ("ping", {}),
    )
    assert day["hits"] == 9
    assert day["actions"] == 7  # goals and pings are not actions
    assert (day["pageviews"], day["searches"], day["outlinks"], day["downloads"], day["events"]) == (3, 1, 1, 1, 1)


def test_a_goal_converts_once_per_visit_unless_it_allows_several():
    once = day_of(
        VisitReports(False), ("goal", {"idgoal": "2", "revenue": "3.50"}), ("goal", {"idgoal": "2", "revenue": "9"})
    )
    assert (once["goal:2:conversions"], once["goal:2:revenue"]) == (1, 350)
    several = day_of(
        VisitReports(False, multiple_goals={2}),
        ("goal", {"idgoal": "2", "revenue": "3.50"}),
        ("goal", {"idgoal": "2", "revenue": "9"}),
    )
    assert (several["goal:2:conversions"], several["goal:2:revenue"]) == (2, 1250)


def test_a_cart_is_abandoned_until_an_order_follows_and_one_order_id_counts_once():
    abandoned = day_of(VisitReports(False), ("cart", {"revenue": "10"}), ("cart", {"revenue": "12"}))
    assert abandoned["abandoned_carts"] == 1
    ordered = day_of(
        VisitReports(False),
        ("cart", {"revenue": "10"}),
        ("order", {"ec_id": "a", "revenue": "12.34"}),
        ("order", {"ec_id": "a", "revenue": "12.34"}),  # Matomo skips an order id it has
    )
    assert (ordered["abandoned_carts"], ordered["orders"], ordered["revenue"]) == (0, 1, 1234)
    reopened = day_of(VisitReports(False), ("order", {"ec_id": "a", "revenue": "1"}), ("cart", {"revenue": "2"}))
    assert reopened["abandoned_carts"] == 1  # a cart after the order is a new, abandoned cart (VisitGoalBuyer)


def test_a_returning_visit_counts_once_at_its_first_stored_hit():
    assert day_of(VisitReports(True), ("pageview", {}), ("pageview", {}))["returning_visits"] == 1
    assert day_of(VisitReports(False), ("pageview", {}))["returning_visits"] == 0
    unknown = day_of(VisitReports(None), ("pageview", {}))
    assert unknown[RETURNING_UNKNOWN] == 1
    assert "returning_visits" not in nested(unknown)


def test_money_is_counted_in_cents_and_bad_amounts_count_zero():
    assert cents("12.34") == 1234 and cents("-5") == -500 and cents(" 7.5 ") == 750
    assert cents("0.1") + cents("0.2") == 30
    assert cents("") == cents(None) == cents("abc") == cents("nan") == cents("1e999999") == 0


def test_nested_and_flat_are_inverse():
    day = day_of(
        VisitReports(True),
        ("pageview", {}),
        ("goal", {"idgoal": "10", "revenue": "1.10"}),
        ("goal", {"idgoal": "2"}),
        ("cart", {}),
        ("order", {"ec_id": "x", "revenue": "99.99"}),
    )
    day.update(bot_visit())
    reports = nested(day)
    assert list(reports["goals"]) == ["2", "10"]
    assert reports["goals"]["10"] == {"conversions": 1, "revenue": 1.1}
    assert reports["revenue"] == 99.99 and reports["orders"] == 1 and reports["abandoned_carts"] == 0
    back = flat(reports)
    for key, value in back.items():
        assert day.get(key, 0) == value, key
