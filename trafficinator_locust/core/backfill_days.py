"""Which visits a past local day gets, when each of its hits happens, and their tracking parameters.

Why a module of its own: a backfill must send, for each target and LOCAL day, exactly the visits
the target's pace plans for that day, placed in time by its hourly profile, and the same ones
again when a run resumes. That arithmetic is pure (no sockets, no threads, no clock of its own:
``now`` is an argument), so it is tested without a network and shared by the backfill's dry run,
its sender and the tests::

    window = day_window(target.pace(), date(2025, 3, 14), time.time())
    for visit in day_visits(VisitPlanner(target, seed), target.pace(), window):
        print(visit.number, [cdt(ts) for ts in visit.times])

* **Days** (:func:`day_window`): a past local day gets ``Pace.cap(day)`` visits (``visits_per_day``
  times the weekday factor); the target's local *today* gets the visits due between local midnight
  and now (the pace's integral), all placed before now. Days after today are refused.
* **Placement** (:class:`Placer`, :func:`hit_times`): visit ``i`` of ``N`` starts at the
  ``(i + u)/N`` quantile of the day's hourly rate curve (``u`` a seeded jitter), so starts follow
  the profile closely and grow with ``i`` (send order = time order). DST days work in real
  seconds (``Pace`` has the 23/25-hour days). A visit that would run past the day's end is
  shifted back so its last hit stays inside the day.
* **Visit numbers** (:func:`visit_number`): visit ``i`` of local day ``D`` is planner visit
  ``int(D as YYYYMMDD) * 10**9 + i``; its content comes from ``VisitPlanner(target, seed)`` and its
  jitter from ``planner.rng_for(number, 2)``. Same seed, same day, same index: same visit, same
  times, same ``ec_id`` (the encoder's ``run_id`` is :func:`run_id_for` seed and target, not random).
* **Visitors** (:class:`BackfillVisitors`): who each visit is, from a
  :class:`~trafficinator_locust.core.visitors.VisitorBook` per target fed with the target's days in
  order, so a returning visit reuses a visitor of an earlier visit of the backfill (an earlier day,
  or earlier that day) and no visitor is in two visits at once (by the planned hit times). The
  tickets depend only on the seed and the days' windows: a resumed run replays the planning of the
  days before it (no sending) and gets the same book, the same tickets, the same visits.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from trafficinator_locust.core.budget import Pace, round_half_up
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visitors import VisitorBook, VisitorTicket
from trafficinator_locust.core.visits import PlannedVisit, VisitPlanner

__all__ = [
    "CDT_FORMAT",
    "PLACEMENT_STREAM",
    "TICKET_STREAM",
    "VISITS_PER_DAY_LIMIT",
    "BackfillVisitors",
    "DayVisit",
    "DayWindow",
    "Placer",
    "cdt",
    "day_visits",
    "day_window",
    "hit_params",
    "hit_times",
    "local_today",
    "run_id_for",
    "visit_number",
]

PLACEMENT_STREAM = 2
"""``planner.rng_for(number, 2)``: the placement jitter (streams 0 and 1 belong to the planner)."""
TICKET_STREAM = 4
"""``planner.rng_for(visit_number(day, 0), 4)``: a day's visitor draws (stream 3 is the planner's visitors)."""
VISITS_PER_DAY_LIMIT = 10**9
"""Visit numbers keep the index in the low 9 decimal digits, so a day holds fewer visits."""
CDT_FORMAT = "%Y-%m-%d %H:%M:%S"
FIXED_PARAMS = {"rec": "1", "apiv": "1"}


@dataclass(frozen=True)
class DayWindow:
    """The stretch of one local day that gets ``visits`` visits: ``[start, end)`` in unix seconds.

    ``end`` is the next local midnight for a past day, the planning instant for today.
    """

    day: date
    start: int
    end: int
    visits: int


def local_today(pace: Pace, now: float) -> date:
    """The date in the pace's time zone at unix time ``now``."""
    return datetime.fromtimestamp(now, pace.zone).date()


def day_window(pace: Pace, day: date, now: float) -> DayWindow:
    """The window and visit count of local ``day`` as planned at ``now``.

    Past day: the whole day and ``pace.cap(day)``. Today: local midnight to ``now`` and the visits
    the pace expects in that stretch (rounded half up). A later day raises ``ValueError``.
    """
    plan = pace.plan(day)
    cap = plan.cap or 0
    if now >= plan.end:
        return DayWindow(day, plan.start, plan.end, cap)
    if now <= plan.start:
        raise ValueError(f"{day} has not begun in {pace.timezone}")
    until = int(now)
    return DayWindow(day, plan.start, until, round_half_up(pace.expected_visits(plan.start, until)))


def visit_number(day: date, index: int) -> int:
    """The planner's visit number of visit ``index`` of local ``day``: ``YYYYMMDD * 10**9 + index``.

    Readable in logs (``20250314000000017`` is visit 17 of 14 March 2025) and unique per target.
    """
    if not 0 <= index < VISITS_PER_DAY_LIMIT:
        raise ValueError(f"visit index {index} out of range")
    return (day.year * 10000 + day.month * 100 + day.day) * VISITS_PER_DAY_LIMIT + index


def run_id_for(seed: int, target_name: str) -> str:
    """The order-id prefix of a target's backfill: fixed by seed and target, so a resumed (or
    repeated) run sends the same ``ec_id`` for the same visit and Matomo refuses a second copy."""
    return "bf" + hashlib.blake2b(f"{seed}|{target_name}".encode(), digest_size=4).hexdigest()


class Placer:
    """Maps a quantile ``q`` in [0, 1) to an instant of a day window by its hourly rate curve.

    The curve is the pace's segments clipped to the window. A window whose rate is 0 everywhere
    (every existing hour weighted 0) falls back to a uniform spread.
    """

    def __init__(self, pace: Pace, window: DayWindow):
        pieces: list[tuple[float, float, float]] = []  # (start, end, rate)
        for segment in pace.plan(window.day).segments:
            low, high = max(segment.start, window.start), min(segment.end, window.end)
            if high > low:
                pieces.append((low, high, segment.rate))
        if not any(rate > 0 for _, _, rate in pieces):
            pieces = [(window.start, window.end, 1.0)] if window.end > window.start else []
        pieces = [piece for piece in pieces if piece[2] > 0]
        self._pieces = pieces
        self._cumulative: list[float] = []
        total = 0.0
        for low, high, rate in pieces:
            total += rate * (high - low)
            self._cumulative.append(total)
        self._total = total
        self.window = window

    def at(self, quantile: float) -> float:
        """The instant below which ``quantile`` of the window's expected visits fall."""
        if not self._pieces:
            return float(self.window.start)
        target = min(max(quantile, 0.0), 1.0) * self._total
        index = min(bisect_right(self._cumulative, target), len(self._pieces) - 1)
        low, high, rate = self._pieces[index]
        before = self._cumulative[index - 1] if index else 0.0
        return min(low + (target - before) / rate, high)


def hit_times(start: float, waits: Sequence[float], window_start: int, window_end: int) -> tuple[int, ...]:
    """Whole-second instants of a visit's hits, in order, all inside ``[window_start, window_end)``.

    Hit ``k`` comes ``waits[1..k]`` seconds after the first (``waits[0]``, the wait before the
    first hit, is ignored). A visit that would end after the window is shifted back so its last
    hit falls on the window's last second; one longer than the whole window is squeezed into it.
    """
    offsets = [0.0]
    for wait in waits[1:]:
        offsets.append(offsets[-1] + max(wait, 0.0))
    duration = offsets[-1]
    last = window_end - 1
    scale = 1.0
    if start + duration > last:
        start = last - duration
    if start < window_start:
        start = float(window_start)
        scale = (last - window_start) / duration if duration > 0 else 1.0
    return tuple(min(max(int(math.floor(start + offset * scale)), window_start), last) for offset in offsets)


def cdt(ts: int) -> str:
    """Matomo's ``cdt``: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime(CDT_FORMAT)


@dataclass(frozen=True)
class DayVisit:
    """One planned visit of a day with its hits' instants (unix seconds, same order as its hits)."""

    index: int
    number: int
    visit: PlannedVisit
    times: tuple[int, ...]

    @property
    def start(self) -> int:
        return self.times[0]


def day_visits(
    planner: VisitPlanner,
    pace: Pace,
    window: DayWindow,
    first: int = 0,
    tickets: Sequence[VisitorTicket | None] | None = None,
) -> Iterator[DayVisit]:
    """The visits of ``window`` from index ``first`` on, lazily (a day may hold many visits).

    ``tickets`` (from :meth:`BackfillVisitors.tickets` of this window) says who visit ``i`` is;
    without them a returning visit draws from the planner's fixed pool (checkpoints written before
    backfills had visitor books keep planning that way).
    """
    if window.visits >= VISITS_PER_DAY_LIMIT:
        raise ValueError(f"{window.day}: {window.visits} visits exceed {VISITS_PER_DAY_LIMIT - 1} per day")
    if tickets is not None and len(tickets) != window.visits:
        raise ValueError(f"{window.day}: {len(tickets)} tickets for {window.visits} visits")
    placer = Placer(pace, window)
    for index in range(first, window.visits):
        number = visit_number(window.day, index)
        visit = planner.plan(number, None if tickets is None else tickets[index])
        yield DayVisit(index, number, visit, _place(planner, placer, window, index, visit))


def _place(
    planner: VisitPlanner, placer: Placer, window: DayWindow, index: int, visit: PlannedVisit
) -> tuple[int, ...]:
    jitter = planner.rng_for(visit.number, PLACEMENT_STREAM).random()
    start = placer.at((index + jitter) / window.visits)
    return hit_times(start, [hit.wait_before for hit in visit.hits], window.start, window.end)


_PROBE = VisitorTicket(0, 0)
"""Any ticket plans the same hits and waits (the visitor comes from its own RNG), so one probe times them all."""


class BackfillVisitors:
    """Who each backfilled visit of one target is: a :class:`VisitorBook` fed with its days in order.

    :meth:`tickets` takes the target's day windows in increasing date order. For a day it plans
    every visit once to learn its hit times (the times do not depend on the ticket), then takes
    the visits in start-time order: the visits that ended before this start are checked back in
    (stored: a backfill cannot know Matomo's answer while planning, and must plan the same on
    resume), then this visit checks a visitor out, from a seeded RNG of the day. Every visit of a
    day ends inside the day, so a day ends with everyone checked back in and the next day starts
    from the pool alone. Bot visits take no ticket (Matomo does not store them as visitors)::

        visitors = BackfillVisitors(planner, pace)
        for window in windows:                         # in date order, done days too (replay)
            tickets = visitors.tickets(window)
            visits = day_visits(planner, pace, window, first, tickets)
    """

    def __init__(self, planner: VisitPlanner, pace: Pace):
        settings = planner.traffic.visitors
        self.planner = planner
        self.pace = pace
        self.book = VisitorBook(settings.returning, settings.pool_size)
        self.last_day: date | None = None

    def tickets(self, window: DayWindow) -> list[VisitorTicket | None]:
        """The ticket of each visit of ``window`` (``None`` for a bot); advances the book past the day."""
        if self.last_day is not None and window.day <= self.last_day:
            raise ValueError(f"{window.day}: visitor tickets go day by day, after {self.last_day}")
        if window.visits >= VISITS_PER_DAY_LIMIT:
            raise ValueError(f"{window.day}: {window.visits} visits exceed {VISITS_PER_DAY_LIMIT - 1} per day")
        self.last_day = window.day
        planner, placer = self.planner, Placer(self.pace, window)
        spans: list[tuple[int, int, int]] = []  # (first hit, index, last hit) of the human visits
        for index in range(window.visits):
            visit = planner.plan(visit_number(window.day, index), _PROBE)
            if not visit.visitor.bot:
                times = _place(planner, placer, window, index, visit)
                spans.append((times[0], index, times[-1]))
        spans.sort()
        rng = planner.rng_for(visit_number(window.day, 0), TICKET_STREAM)
        book = self.book
        tickets: list[VisitorTicket | None] = [None] * window.visits
        in_flight: list[tuple[int, int]] = []  # (last hit, index): a heap by end time
        for start, index, end in spans:
            while in_flight and in_flight[0][0] < start:  # ended strictly before: never the same second
                book.check_in(tickets[heapq.heappop(in_flight)[1]], stored=True)  # type: ignore[arg-type]
            tickets[index] = book.check_out(rng)
            heapq.heappush(in_flight, (end, index))
        for _, index in sorted(in_flight):
            book.check_in(tickets[index], stored=True)  # type: ignore[arg-type]
        return tickets


def hit_params(encoder: TrackingEncoder, site_id: int, day_visit: DayVisit, position: int) -> dict[str, str]:
    """Every parameter of one backfilled hit except the token: fixed ones, the encoder's, ``cdt``."""
    hit = day_visit.visit.hits[position]
    ts = day_visit.times[position]
    sent_at = datetime.fromtimestamp(ts, timezone.utc)
    return {
        "idsite": str(site_id),
        **FIXED_PARAMS,
        **encoder.params(hit, day_visit.visit.visitor, sent_at),
        "cdt": cdt(ts),
    }
