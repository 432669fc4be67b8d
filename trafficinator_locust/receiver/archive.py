"""Bounded, incremental report data: what Matomo's archives keep instead of the raw log.

Why: the sink runs for hours at hundreds of hits/s (millions of visits); keeping every visit to
aggregate it when a report is asked would grow without end. Matomo itself answers reports from
archives, aggregates per site and day whose tables it truncates (core/ArchiveProcessor.php,
core/DataTable/Filter/Truncate.php). So does the receiver:

- :class:`VisitAgg` sums the visit metrics of one report row (the columns of
  core/DataAccess/LogAggregator.php ``getSelectsMetrics``); a visit is added once it can no longer
  change (:mod:`.visits` retires it 30 minutes after its last action), the visits still going on
  are added to a copy when a report is asked.
- :class:`Distinct` counts distinct values (visitors, users): exactly up to ``exact`` values, then
  as a HyperLogLog estimate (2^11 one-byte registers: 2 KB, a standard error of 2.3 %) whose memory
  no longer grows.
  Matomo counts exactly; under the limit the receiver does too.
- :func:`capped_row`: a table holds at most ``cap`` labels per day; a new label beyond them is
  counted in the row :data:`OTHERS_KEY`, shown as "Others" (Matomo's summary row,
  ``DataTable::LABEL_SUMMARY_ROW``). Matomo keeps the top rows by visits when it archives the day;
  the receiver, counting as hits arrive, keeps the first ``cap`` labels. The caps are Matomo's
  defaults (config/global.ini.php): :data:`MAX_ROWS_REFERRERS` 1000
  (``datatable_archiving_maximum_rows_referrers``), :data:`MAX_ROWS_ACTIONS` 500 (``..._actions``,
  ``..._site_search``), :data:`MAX_ROWS_EVENTS` 500, :data:`MAX_ROWS_PRODUCTS` 10000,
  :data:`MAX_ROWS_STANDARD` 500 (devices, browsers, languages, countries).
- :func:`keep_recent_days`: each per-day mapping keeps the :data:`MAX_DAYS` latest site-local days
  that have data; older ones are dropped (reports of a dropped day answer like a day without data).

Example::

    rows: dict[str, VisitAgg] = {}
    capped_row(rows, "example.org", MAX_ROWS_REFERRERS, VisitAgg).add(visit)
    rows["example.org"].metrics()["nb_visits"]  # 1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, MutableMapping
from datetime import date, datetime
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from trafficinator_locust.receiver.visits import Visit

__all__ = [
    "OTHERS",
    "OTHERS_KEY",
    "MAX_DAYS",
    "MAX_ROWS_ACTIONS",
    "MAX_ROWS_EVENTS",
    "MAX_ROWS_PRODUCTS",
    "MAX_ROWS_REFERRERS",
    "MAX_ROWS_STANDARD",
    "ROW_EXACT_DISTINCT",
    "DAY_EXACT_DISTINCT",
    "DIMENSIONS",
    "DayArchive",
    "Distinct",
    "VisitAgg",
    "capped_row",
    "keep_recent_days",
]

OTHERS = "Others"
"""The label of the row that sums what a table's cap left out (Matomo's ``General_Others``)."""
OTHERS_KEY = "\x00Others"
"""The key of that row in a table (no label a hit can produce starts with NUL)."""
MAX_ROWS_REFERRERS = 1000
MAX_ROWS_ACTIONS = 500
MAX_ROWS_EVENTS = 500
MAX_ROWS_PRODUCTS = 10000
MAX_ROWS_STANDARD = 500
MAX_DAYS = 35
"""Site-local days with report data kept per site (and per report store): the latest 35 (five weeks)."""
ROW_EXACT_DISTINCT = 256
"""Distinct visitors (or users) a report row counts exactly before estimating."""
DAY_EXACT_DISTINCT = 20000
"""The same for the day's totals (``VisitsSummary.get``, ``VisitFrequency.get``) and the site's stats."""

_P = 11
_M = 1 << _P
_ALPHA = 0.7213 / (1 + 1.079 / _M)
_MASK64 = (1 << 64) - 1
T = TypeVar("T")


class Distinct:
    """A count of distinct hashable values: exact up to ``exact`` of them, then a HyperLogLog."""

    __slots__ = ("exact", "values", "registers")

    def __init__(self, exact: int = ROW_EXACT_DISTINCT) -> None:
        self.exact = exact
        self.values: set[int] | None = set()
        self.registers: bytearray | None = None

    def add(self, value: object) -> None:
        self.add_hashed(hash(value))

    def add_hashed(self, hashed: int) -> None:
        """Add a value by its ``hash()`` (what :attr:`values` holds)."""
        values = self.values
        if values is not None:
            values.add(hashed)
            if len(values) > self.exact:
                self.registers = bytearray(_M)
                for hashed in values:
                    self._register(hashed)
                self.values = None
        else:
            self._register(hashed)

    def _register(self, hashed: int) -> None:
        assert self.registers is not None
        mixed = hashed & _MASK64  # splitmix64's finaliser: spreads Python's hashes of small ints too
        mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK64
        mixed ^= mixed >> 31
        index = mixed >> (64 - _P)
        rest = mixed & ((1 << (64 - _P)) - 1)
        rank = (64 - _P) - rest.bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def count(self) -> int:
        if self.values is not None:
            return len(self.values)
        assert self.registers is not None
        estimate = _ALPHA * _M * _M / sum(2.0**-r for r in self.registers)
        zeros = self.registers.count(0)
        if estimate <= 2.5 * _M and zeros:
            estimate = _M * math.log(_M / zeros)
        return round(estimate)

    def copy(self) -> Distinct:
        other = Distinct(self.exact)
        other.values = None if self.values is None else set(self.values)
        other.registers = None if self.registers is None else bytearray(self.registers)
        return other

    def update(self, other: Distinct) -> None:
        """Add every value ``other`` counted."""
        if other.values is not None:
            for hashed in other.values:
                self.add_hashed(hashed)
            return
        assert other.registers is not None
        if self.values is not None:
            values, self.values = self.values, None
            self.registers = bytearray(_M)
            for hashed in values:
                self._register(hashed)
        assert self.registers is not None
        self.registers = bytearray(max(a, b) for a, b in zip(self.registers, other.registers, strict=True))


class VisitAgg:
    """The archived visit metrics of one report row (finished visits, or a copy with live ones)."""

    __slots__ = ("visits", "actions", "max_actions", "length", "bounces", "converted", "visitors", "users")

    def __init__(self, exact: int = ROW_EXACT_DISTINCT) -> None:
        self.visits = self.actions = self.max_actions = self.length = self.bounces = self.converted = 0
        self.visitors = Distinct(exact)
        self.users = Distinct(exact)

    def add(self, visit: Visit) -> None:
        user = hash(visit.user_id) if visit.user_id else None
        self.add_figures(visit.actions, visit.length, visit.goal_converted, hash(visit.visitor_id), user)

    def add_figures(self, actions: int, length: int, converted: bool, visitor: int, user: int | None) -> None:
        """One visit by its figures (``visitor`` and ``user``: the ``hash()`` of their ids; no user: None)."""
        self.visits += 1
        self.actions += actions
        if actions > self.max_actions:
            self.max_actions = actions
        self.length += length
        self.bounces += actions <= 1
        self.converted += converted
        self.visitors.add_hashed(visitor)
        if user is not None:
            self.users.add_hashed(user)

    def add_all(self, visits: Iterable[Visit]) -> VisitAgg:
        for visit in visits:
            self.add(visit)
        return self

    def merge(self, other: VisitAgg) -> None:
        self.visits += other.visits
        self.actions += other.actions
        self.max_actions = max(self.max_actions, other.max_actions)
        self.length += other.length
        self.bounces += other.bounces
        self.converted += other.converted
        self.visitors.update(other.visitors)
        self.users.update(other.users)

    def copy(self) -> VisitAgg:
        other = VisitAgg(self.visitors.exact)
        other.merge(self)
        return other

    def metrics(self) -> dict[str, int]:
        return {
            "nb_uniq_visitors": self.visitors.count(),
            "nb_visits": self.visits,
            "nb_actions": self.actions,
            "nb_users": self.users.count(),
            "max_actions": self.max_actions,
            "sum_visit_length": self.length,
            "bounce_count": self.bounces,
            "nb_visits_converted": self.converted,
        }


def capped_row(rows: MutableMapping[object, T], label: object, cap: int, new: Callable[[], T]) -> T:
    """The row of ``label``, created while the table has fewer than ``cap`` labels, else the
    :data:`OTHERS_KEY` row (created on first use)."""
    row = rows.get(label)
    if row is None:
        if len(rows) - (OTHERS_KEY in rows) >= cap:
            label = OTHERS_KEY
            row = rows.get(label)
        if row is None:
            row = rows[label] = new()
    return row


def keep_recent_days(days: MutableMapping[date, object]) -> None:
    """Drop the oldest days of a per-day mapping beyond :data:`MAX_DAYS` (call it after adding one)."""
    while len(days) > MAX_DAYS:
        del days[min(days)]


DimensionKey = Callable[["ZoneInfo", "Visit"], object]


def _server_hour(zone: ZoneInfo, visit: Visit) -> int:
    return datetime.fromtimestamp(visit.first_ts, zone).hour


def _referrer_of_type(kind: str) -> DimensionKey:
    return lambda zone, visit: visit.traits.referrer_name if visit.traits.referrer_type == kind else None


DIMENSIONS: dict[str, tuple[DimensionKey, int]] = {
    "VisitTime.getVisitInformationPerLocalTime": (lambda zone, visit: visit.traits.local_hour, MAX_ROWS_STANDARD),
    "VisitTime.getVisitInformationPerServerTime": (_server_hour, MAX_ROWS_STANDARD),
    "Referrers.getReferrerType": (lambda zone, visit: visit.traits.referrer_type, MAX_ROWS_REFERRERS),
    "Referrers.getSearchEngines": (_referrer_of_type("search"), MAX_ROWS_REFERRERS),
    "Referrers.getSocials": (_referrer_of_type("social"), MAX_ROWS_REFERRERS),
    "Referrers.getWebsites": (_referrer_of_type("website"), MAX_ROWS_REFERRERS),
    "Referrers.getCampaigns": (_referrer_of_type("campaign"), MAX_ROWS_REFERRERS),
    "DevicesDetection.getType": (lambda zone, visit: visit.traits.device_type or "Unknown", MAX_ROWS_STANDARD),
    "DevicesDetection.getBrowsers": (
        lambda zone, visit: (visit.traits.browser_name, visit.traits.browser_code),
        MAX_ROWS_STANDARD,
    ),
    "UserLanguage.getLanguageCode": (lambda zone, visit: visit.traits.language, MAX_ROWS_STANDARD),
    "UserCountry.getCountry": (lambda zone, visit: visit.traits.country, MAX_ROWS_STANDARD),
}
"""Per dimension report: the row a visit counts in (``None``: none) and the table's cap."""


class DayArchive:
    """The finished visits of one site-local day: totals (all, new, returning) and each dimension table."""

    __slots__ = ("total", "new", "returning", "tables")

    def __init__(self) -> None:
        self.total = VisitAgg(DAY_EXACT_DISTINCT)
        self.new = VisitAgg(DAY_EXACT_DISTINCT)
        self.returning = VisitAgg(DAY_EXACT_DISTINCT)
        self.tables: dict[str, dict[object, VisitAgg]] = {method: {} for method in DIMENSIONS}

    def add(self, zone: ZoneInfo, visit: Visit) -> None:
        """Archive a visit that can no longer change."""
        figures = (
            visit.actions,
            visit.length,
            visit.goal_converted,
            hash(visit.visitor_id),
            hash(visit.user_id) if visit.user_id else None,
        )
        self.total.add_figures(*figures)
        (self.returning if visit.returning else self.new).add_figures(*figures)
        tables = self.tables
        for method, (key_of, cap) in DIMENSIONS.items():
            key = key_of(zone, visit)
            if key is not None:
                capped_row(tables[method], key, cap, VisitAgg).add_figures(*figures)
