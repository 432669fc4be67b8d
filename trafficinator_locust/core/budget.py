"""Rates and daily caps per target: the pure arithmetic behind the permit broker.

Nothing here knows about Locust, gevent or HTTP. Every function takes plain values (``now`` is a
unix timestamp in seconds, passed in by the caller) and returns plain values, so the whole budget
can be driven by a fake clock in tests and by the master's wall clock in a run.

The pieces, from the inside out:

* :class:`DayProfile` / :class:`WeekProfile`: relative weights of the hours of a local day and of
  the days of a week.
* :class:`Pace`: one target's schedule in its own time zone. It knows each local day's cap
  (``round(visits_per_day * weekday_factor)``), the rate at any instant and the expected visits
  between two instants (the integral of the rate). A local day, 23, 24 or 25 hours long, always
  integrates to exactly that day's cap.
* :class:`TargetBudget`: a token bucket refilled at the pace (paced runs) and a counter of the
  permits granted in the target's current local day (always), reset at local midnight.
* :class:`Ledger`: all budgets plus the permits leased to holders (workers), with expiry,
  crediting of unused permits, persistence (:meth:`Ledger.to_state` / :meth:`Ledger.from_state`)
  and per-target :class:`TargetStatus`.
* :func:`weight_shares`: split a whole number by weights so the parts sum exactly to it.

The single invariant all of this protects: the permits granted for a target's local day never
exceed that day's cap, across lease expiry, dead workers and master restarts (fail closed).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

STATE_VERSION = 1
DEFAULT_BURST_SECONDS = 5.0
# Float slack when turning accrued tokens into whole permits: a day's integral is its cap up to
# rounding noise (~1e-9), and that noise must neither cost nor add a permit.
_EPSILON = 1e-6
_DAY_PLAN_CACHE = 16

State = Literal["running", "capped", "paused", "unpaced"]


# ---------------------------------------------------------------------------------------------
# Profiles


def check_weights(weights: Sequence[float], length: int, what: str) -> tuple[float, ...]:
    """``length`` finite weights >= 0, not all 0 (an hour or weekday profile); ValueError naming ``what``.

    The one check for the config's ``profile`` and for :class:`DayProfile`/:class:`WeekProfile`.
    """
    values = tuple(float(w) for w in weights)
    if len(values) != length:
        raise ValueError(f"{what} needs exactly {length} weights, got {len(values)}")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ValueError(f"{what} weights must be finite and >= 0")
    if sum(values) <= 0:
        raise ValueError(f"{what} weights must not all be 0 (at least one > 0)")
    return values


@dataclass(frozen=True, slots=True)
class DayProfile:
    """Relative weight of each local hour 0..23 (the diurnal curve); only ratios matter.

    A weight of 0 pauses paced traffic in that hour. The weights are spread over the local hours
    that actually exist on a given day, so a 23- or 25-hour DST day still delivers its whole cap.
    """

    hours: tuple[float, ...] = (1.0,) * 24

    def __post_init__(self) -> None:
        object.__setattr__(self, "hours", check_weights(self.hours, 24, "DayProfile"))


@dataclass(frozen=True, slots=True)
class WeekProfile:
    """Relative weight of each local weekday, Monday first; only ratios matter.

    The weights are normalised to *factors* whose mean over the week is 1:
    ``factor[d] = 7 * weight[d] / sum(weights)``. A day's cap is ``round(visits_per_day * factor)``
    (half up), so ``visits_per_day`` stays "visits on an average day" and a flat profile gives
    every day exactly ``visits_per_day``. Because each day is rounded on its own, a week's total
    may differ from ``7 * visits_per_day`` by at most 3.5 visits.
    """

    days: tuple[float, ...] = (1.0,) * 7

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", check_weights(self.days, 7, "WeekProfile"))

    def factor(self, weekday: int) -> Fraction:
        """The exact factor of ``weekday`` (0 = Monday); mean 1 over the week."""
        total = sum(Fraction(w) for w in self.days)
        return 7 * Fraction(self.days[weekday]) / total


def round_half_up(value: Fraction | float) -> int:
    """Round .5 up (Python's ``round`` goes to even): caps and day counts use it."""
    return math.floor(value + Fraction(1, 2))


# ---------------------------------------------------------------------------------------------
# Local days and their hours


class Segment(NamedTuple):
    """A stretch ``[start, end)`` of one local wall-clock hour, with the paced rate in it."""

    start: int
    end: int
    hour: int
    rate: float  # visits per second


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One local day of a target: its bounds in unix seconds, its cap and its hourly segments."""

    day: date
    start: int
    end: int
    cap: int | None
    segments: tuple[Segment, ...]

    def integral(self, t0: float, t1: float) -> float:
        """Expected visits in ``[t0, t1)`` clipped to this day."""
        total = 0.0
        for segment in self.segments[max(self._index(t0), 0) :]:
            if segment.start >= t1:
                break
            low, high = max(t0, segment.start), min(t1, segment.end)
            if high > low:
                total += segment.rate * (high - low)
        return total

    def rate_at(self, t: float) -> float:
        index = self._index(t)
        if index < 0 or t >= self.segments[index].end:
            return 0.0
        return self.segments[index].rate

    def _index(self, t: float) -> int:
        """Index of the segment starting at or before ``t`` (-1 before the first)."""
        return bisect_right(self.segments, t, key=lambda segment: segment.start) - 1


def _offset(zone: ZoneInfo, t: float) -> int:
    delta = datetime.fromtimestamp(t, zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _local_midnight(zone: ZoneInfo, day: date) -> int:
    """The first instant of ``day`` in ``zone``.

    ``fold=0`` resolves a midnight that falls in a DST gap to the transition instant itself, which
    is exactly when that local day begins.
    """
    return int(round(datetime.combine(day, time(0), zone).timestamp()))


@lru_cache(maxsize=2048)
def _hour_slots(zone_name: str, day: date) -> tuple[tuple[int, int, int], ...]:
    """The local hours that exist on ``day``, as ``(start, end, hour)`` in unix seconds.

    Walks the day in real time and cuts at every local hour boundary and every offset change, so a
    spring-forward day has 23 slots, a fall-back day has hour 1 (or 2) twice, and zones with
    30-minute shifts get partial slots.
    """
    zone = ZoneInfo(zone_name)
    start, end = _local_midnight(zone, day), _local_midnight(zone, day + timedelta(days=1))
    slots: list[tuple[int, int, int]] = []
    t = start
    while t < end:
        offset = _offset(zone, t)
        local = t + offset
        hour = (local // 3600) % 24
        cut = min(t + 3600 - local % 3600, end)
        if _offset(zone, cut - 1) != offset:  # an offset change inside: cut at the first changed second
            low, high = t, cut - 1
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            cut = high
        slots.append((t, cut, hour))
        t = cut
    return tuple(slots)


# ---------------------------------------------------------------------------------------------
# Pace: one target's schedule


@dataclass(frozen=True)
class Pace:
    """The schedule of one target in its own time zone: caps, rate and expected visits.

    ``visits_per_day=None`` means no pace and no cap (``cap``/``rate`` return ``None``);
    ``0`` means a cap of 0 every day.

    Within local day D the rate is ``cap(D) * w[h] / sum(w[h'] * hours_of(h') for existing hours)``
    per hour, i.e. ``cap(D)`` spread over the local hours that exist that day by ``DayProfile``.
    On a plain 24-hour day that is ``round(visits_per_day * weekday_factor) * w[h] / sum(w) / 3600``
    visits per second; using the rounded cap (not the raw product) is what makes a day integrate to
    exactly its cap. If every existing hour of a day has weight 0 (possible only on a DST day whose
    missing hour holds all the weight) the rate is 0 all day.

    ::

        pace = Pace(24000, "Europe/Stockholm")
        pace.cap(date(2026, 12, 3))                          # 24000
        pace.rate(time.time())                               # visits per second now (flat profile: 0.278)
        pace.expected_visits(start, start + 3600)            # 1000.0 over one flat hour
    """

    visits_per_day: int | None
    timezone: str = "UTC"
    hours: DayProfile = DayProfile()
    week: WeekProfile = WeekProfile()
    _plans: dict[date, DayPlan] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)
    _last: list[DayPlan] = field(default_factory=list, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.visits_per_day is not None and self.visits_per_day < 0:
            raise ValueError("visits_per_day must be >= 0 or None")
        ZoneInfo(self.timezone)  # raises ZoneInfoNotFoundError early, not on the first grant

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def day_of(self, now: float) -> date:
        """The target's local date at ``now``."""
        return self.plan_at(now).day

    def plan_at(self, now: float) -> DayPlan:
        """The plan of the local day containing ``now`` (fast path: the day asked for last)."""
        last = self._last[0] if self._last else None
        if last is not None and last.start <= now < last.end:
            return last
        plan = self.plan(datetime.fromtimestamp(now, self.zone).date())
        if not plan.start <= now < plan.end:  # a zone whose local dates disagree with its midnights
            raise RuntimeError(f"inconsistent local day {plan.day} in {self.timezone}")
        self._last[:] = [plan]
        return plan

    def cap(self, day: date) -> int | None:
        """The cap of local ``day``: ``round(visits_per_day * weekday_factor)``, half up."""
        return self.plan(day).cap

    def _exact_cap(self, day: date) -> int | None:
        if self.visits_per_day is None:
            return None
        return round_half_up(self.visits_per_day * self.week.factor(day.weekday()))

    def plan(self, day: date) -> DayPlan:
        """Bounds, cap and hourly rates of local ``day`` (cached: computed once per day)."""
        cached = self._plans.get(day)
        if cached is not None:
            return cached
        slots = _hour_slots(self.timezone, day)
        cap = self._exact_cap(day)
        mass = sum(self.hours.hours[hour] * (end - start) for start, end, hour in slots)
        segments = tuple(
            Segment(start, end, hour, (cap * self.hours.hours[hour] / mass) if cap and mass > 0 else 0.0)
            for start, end, hour in slots
        )
        start = _local_midnight(self.zone, day)
        plan = DayPlan(day, start, _local_midnight(self.zone, day + timedelta(days=1)), cap, segments)
        if len(self._plans) >= _DAY_PLAN_CACHE:
            self._plans.pop(next(iter(self._plans)))
        self._plans[day] = plan
        return plan

    def rate(self, now: float) -> float | None:
        """Paced visits per second at ``now`` (``None`` when unpaced)."""
        if self.visits_per_day is None:
            return None
        return self.plan_at(now).rate_at(now)

    def expected_visits(self, t0: float, t1: float) -> float:
        """The integral of the rate over ``[t0, t1)``: visits due at this pace (0 when unpaced)."""
        if self.visits_per_day is None or t1 <= t0:
            return 0.0
        total, cursor = 0.0, t0
        while cursor < t1:
            plan = self.plan_at(cursor)
            total += plan.integral(cursor, t1)
            cursor = plan.end
        return total


# ---------------------------------------------------------------------------------------------
# One target's budget


class TargetBudget:
    """Token bucket (paced runs) plus the count of permits granted in the current local day.

    * ``paced=True`` and a ``visits_per_day``: permits are limited by the bucket *and* the cap.
    * ``paced=False`` (a stress run sized by user count): only the daily cap applies.
    * ``visits_per_day=None``: no bucket, no cap; every request is granted (and still counted).
    * ``visits_per_day=0``: nothing is ever granted.

    The bucket starts empty (a fresh or restarted master never bursts), holds at most
    ``max(1, burst_seconds * rate)`` tokens (the higher rate at either end of a refill: a paused
    hour holds at most one), and is emptied at local midnight so tokens of
    one day are never spent on the next. A permit is handed out as soon as *any* fraction of it has
    accrued: the bucket may owe less than one token. Were permits only granted once whole, a day's
    last permit would accrue at midnight exactly, which is already the next day, and a full day
    would deliver ``cap - 1``. With the one-token advance a caller asking at least once per permit
    interval gets exactly the cap; what accrues after the last request before midnight is dropped.

    If the clock steps back across midnight the budget keeps counting on the later day (fail
    closed: a day that was already counted is never counted again from zero).
    """

    paused: bool = False
    """An operator's pause (a target disabled live): nothing is granted until it is lifted."""

    def __init__(self, name: str, pace: Pace, *, paced: bool = True, burst_seconds: float = DEFAULT_BURST_SECONDS):
        if burst_seconds <= 0:
            raise ValueError("burst_seconds must be > 0")
        self.name = name
        self.pace = pace
        self.paced = paced
        self.burst_seconds = burst_seconds
        self._day: date | None = None
        self._granted = 0
        self._tokens = 0.0
        self._refilled_at: float | None = None

    @property
    def bucketed(self) -> bool:
        """Whether a token bucket limits the rate (paced run with a ``visits_per_day``)."""
        return self.paced and self.pace.visits_per_day is not None

    @property
    def current_day(self) -> date | None:
        """The local day being counted (as of the last call), ``None`` before any call."""
        return self._day

    @property
    def granted(self) -> int:
        """Permits granted in :attr:`current_day` (as of the last call)."""
        return self._granted

    def day(self, now: float) -> date:
        """The local day being counted at ``now`` (rolls over at local midnight)."""
        return self._roll(now)

    def granted_today(self, now: float) -> int:
        """Permits granted so far in the local day of ``now`` (credits deducted)."""
        self._roll(now)
        return self._granted

    def cap_today(self, now: float) -> int | None:
        """The cap of the local day being counted at ``now`` (``None`` without a rate)."""
        return self.pace.cap(self._roll(now))

    def remaining_today(self, now: float) -> int | None:
        """Permits still grantable in the current local day (``None`` without a cap)."""
        cap = self.cap_today(now)
        return None if cap is None else max(cap - self._granted, 0)

    def grant(self, want: int, now: float) -> int:
        """Grant up to ``want`` permits now; they count against the day at once (fail closed)."""
        if want < 0:
            raise ValueError("want must be >= 0")
        day = self._roll(now)
        if self.paused:
            return 0
        count = want
        cap = self.pace.cap(day)
        if cap is not None:
            count = min(count, max(cap - self._granted, 0))
        if self.bucketed:
            self._refill(now)
            available = math.ceil(self._tokens - _EPSILON) if self._tokens > _EPSILON else 0
            count = min(count, available)
            self._tokens -= count
        self._granted += count
        return count

    def credit(self, day: date, count: int, now: float) -> int:
        """Give back ``count`` unused permits of local ``day``; returns how many were credited.

        Only permits of the current local day are credited (a permit from yesterday must not raise
        today's allowance), and the day's count never goes below 0. The bucket gets the tokens back
        too, up to its capacity, since those permits never became traffic.
        """
        if count <= 0 or day != self._roll(now):
            return 0
        credited = min(count, self._granted)
        self._granted -= credited
        if self.bucketed:
            self._refill(now)
            self._tokens = min(self._capacity(now), self._tokens + credited)
        return credited

    def retarget(self, now: float, *, pace: Pace | None = None, paused: bool | None = None) -> None:
        """Apply an operator's change while running: a new pace (rate, cap, profile) and/or a pause.

        The local day and the permits granted in it are kept, so the cap stays a hard limit: a cap
        lowered below what is already granted leaves the target capped (0 remaining), never
        negative. What accrued at the old pace is settled first; the bucket is then clipped to the
        new pace's burst, and a target that becomes paced (or is resumed) starts with an empty
        bucket (no burst). A time zone change moves the local day itself: it needs a fresh budget
        (next test start).
        """
        if pace is not None:
            if pace.timezone != self.pace.timezone:
                raise ValueError(
                    f"{self.name}: a time zone change ({self.pace.timezone} -> {pace.timezone}) "
                    "applies at the next test start"
                )
            self._roll(now)
            was_bucketed = self.bucketed
            if was_bucketed:
                self._refill(now)
            self.pace = pace
            if not self.bucketed:
                self._tokens = 0.0
            elif not was_bucketed:
                self._tokens, self._refilled_at = 0.0, now
            else:
                self._tokens = min(self._tokens, self._capacity(now))
        if paused is not None:
            if self.paused and not paused and self.bucketed:
                self._tokens, self._refilled_at = (
                    0.0,
                    now,
                )  # resume like a fresh start: no burst of what accrued while paused
            self.paused = paused

    def restore(self, day: date, granted: int, now: float) -> None:
        """Continue a saved count: same day continues, an earlier day is ignored (new day from 0).

        A saved day *later* than today means the clock stepped back: keep counting on that day.
        """
        today = self._roll(now)
        if day > today:
            self._day, self._granted = day, max(granted, 0)
        elif day == today:
            self._granted = max(self._granted, granted)

    def status(self, now: float, outstanding: int = 0) -> TargetStatus:
        """This target's :class:`TargetStatus`; ``outstanding`` comes from the ledger's leases."""
        day = self._roll(now)
        cap = self.pace.cap(day)
        rate = self.pace.rate(now) if self.bucketed else None
        state: State
        if self.paused:
            state = "paused"
        elif cap is not None and self._granted >= cap:
            state = "capped"
        elif not self.bucketed:
            state = "unpaced"
        elif not rate:
            state = "paused"
        else:
            state = "running"
        remaining = None if cap is None else max(cap - self._granted, 0)
        return TargetStatus(self.name, day, self._granted, cap, remaining, rate, outstanding, state)

    # -- internals

    def _roll(self, now: float) -> date:
        today = self.pace.day_of(now)
        if self._day is None:
            self._day, self._refilled_at = today, now
        elif today > self._day:
            start = self.pace.plan(today).start
            self._day, self._granted, self._tokens = today, 0, 0.0
            self._refilled_at = max(self._refilled_at or start, start)
        return self._day

    def _capacity(self, *instants: float) -> float:
        """``burst_seconds`` of the highest rate at ``instants``, at least one token."""
        return max(1.0, self.burst_seconds * max(self.pace.rate(t) or 0.0 for t in instants))

    def _refill(self, now: float) -> None:
        """Add what accrued since the last refill, up to the capacity.

        The capacity uses the rate at both ends of the interval, so the tokens accrued in the last
        moment of a busy hour are not clipped by the (lower) rate of the hour that just began.
        """
        if self._refilled_at is None or now <= self._refilled_at:
            return
        gained = self.pace.expected_visits(self._refilled_at, now)
        self._tokens = min(self._capacity(self._refilled_at, now), self._tokens + gained)
        self._refilled_at = now


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """What the UI and reports show per target.

    ``cap_today``/``remaining_today`` are ``None`` without a cap; ``current_rate`` (visits/s) is
    ``None`` when no bucket limits the target (unpaced or stress). ``state`` is ``paused`` while an
    operator paused the target, else ``capped`` once the day's cap is granted, else ``unpaced``
    without a bucket, ``paused`` when the rate is 0 now (an hour of weight 0), else ``running``.
    """

    name: str
    day: date
    granted_today: int
    cap_today: int | None
    remaining_today: int | None
    current_rate: float | None
    outstanding_leased: int
    state: State

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "day": self.day.isoformat(),
            "granted_today": self.granted_today,
            "cap_today": self.cap_today,
            "remaining_today": self.remaining_today,
            "current_rate": self.current_rate,
            "outstanding_leased": self.outstanding_leased,
            "state": self.state,
        }


# ---------------------------------------------------------------------------------------------
# Leases


@dataclass(frozen=True, slots=True)
class Lease:
    """Permits of one target handed to one holder (a worker id) until ``expires_at``.

    ``day`` is the local day the permits were counted against; ``used`` is the holder's latest
    cumulative report. The holder must not start a visit with a permit of this lease after
    ``expires_at`` (a holder measures the ttl on its own clock from receipt, minus a margin).
    """

    id: str
    holder: str
    target: str
    count: int
    day: date
    expires_at: float
    used: int = 0
    released: bool = False

    @property
    def unused(self) -> int:
        return self.count - self.used

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "holder": self.holder,
            "target": self.target,
            "count": self.count,
            "day": self.day.isoformat(),
            "expires_at": self.expires_at,
            "used": self.used,
            "released": self.released,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Lease:
        return cls(
            id=str(raw["id"]),
            holder=str(raw["holder"]),
            target=str(raw["target"]),
            count=int(raw["count"]),
            day=date.fromisoformat(raw["day"]),
            expires_at=float(raw["expires_at"]),
            used=int(raw.get("used", 0)),
            released=bool(raw.get("released", False)),
        )


class Settled(NamedTuple):
    """A lease that left the ledger and how many of its unused permits went back to the day."""

    lease: Lease
    credited: int


class Ledger:
    """All targets' budgets plus the permits leased out to holders.

    Counting is fail closed: leased permits count against the day when leased and are given back
    only when they can no longer be used (expiry, or the holder returning them). Invariant for each
    target's current local day: ``granted_today == sum(used of the day's leases) + sum(unused of the
    day's open leases)`` (plus any direct :meth:`TargetBudget.grant` calls).
    """

    def __init__(self, budgets: Iterable[TargetBudget], *, next_lease: int = 1):
        self._budgets: dict[str, TargetBudget] = {}
        for budget in budgets:
            if budget.name in self._budgets:
                raise ValueError(f"duplicate target name {budget.name!r}")
            self._budgets[budget.name] = budget
        self._leases: dict[str, Lease] = {}
        self._next_lease = next_lease
        # Saved counts of targets not configured now: kept and saved again, so a target removed and
        # added back within its day continues its count instead of starting its cap afresh.
        self._dormant: dict[str, dict[str, Any]] = {}

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self._budgets)

    def budget(self, target: str) -> TargetBudget:
        return self._budgets[target]

    def leases(self, holder: str | None = None) -> list[Lease]:
        """Open leases, of one holder or all."""
        return [lease for lease in self._leases.values() if holder is None or lease.holder == holder]

    def outstanding(self, target: str) -> int:
        """Permits of ``target`` leased and not yet reported used (any day)."""
        return sum(lease.unused for lease in self._leases.values() if lease.target == target)

    def lease(self, holder: str, target: str, want: int, now: float, ttl: float) -> Lease:
        """Grant up to ``want`` permits of ``target`` to ``holder`` until ``now + ttl``.

        A lease of 0 permits is returned but not recorded (there is nothing to track). The holder
        reports what it used; the rest comes back when it expires or is returned::

            ledger = Ledger([TargetBudget("Production", Pace(100), paced=False)])
            lease = ledger.lease("worker-1", "Production", 30, now=time.time(), ttl=30.0)
            lease.count                                      # 30 (of today's 100)
        """
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        budget = self._budgets[target]
        count = budget.grant(want, now)
        lease = Lease(str(self._next_lease), holder, target, count, budget.day(now), now + ttl)
        self._next_lease += 1
        if count:
            self._leases[lease.id] = lease
        return lease

    def report_used(self, holder: str, lease_id: str, used: int) -> bool:
        """Record that ``holder`` has used ``used`` permits of a lease so far (cumulative).

        Cumulative so a repeated message is harmless; it never goes down and is clamped to the
        lease's count. A fully used lease is closed. Returns ``False`` for an unknown lease (e.g.
        already expired: its unused permits were credited, so the TTL must outlast any permit) or
        a lease of another holder.
        """
        lease = self._leases.get(lease_id)
        if lease is None or lease.holder != holder:
            return False
        lease = replace(lease, used=min(max(used, lease.used), lease.count))
        if lease.unused == 0:
            del self._leases[lease_id]
        else:
            self._leases[lease_id] = lease
        return True

    def return_lease(self, holder: str, lease_id: str, used: int, now: float) -> Settled | None:
        """The holder is done with a lease (e.g. stopping): record ``used`` and credit the rest now.

        Safe to credit at once because the holder itself says none of the rest is in flight.
        """
        if not self.report_used(holder, lease_id, used):
            return None
        lease = self._leases.pop(lease_id, None)
        if lease is None:  # fully used: closed by report_used
            return None
        return Settled(lease, self._budgets[lease.target].credit(lease.day, lease.unused, now))

    def release(self, holder: str) -> list[Lease]:
        """Mark the leases of a holder known to be dead; do NOT credit them yet.

        A worker is declared dead after missing heartbeats, but requests it started with these
        permits may still reach Matomo and their usage reports may never arrive. Crediting now
        would let the same permits be leased again while the old ones are still landing, pushing
        the day past its cap. Waiting for ``expires_at`` (after which the holder's contract forbids
        using them) keeps the cap a hard limit; the cost is that up to a TTL's worth of permits
        stay idle. Reports that still arrive before expiry are accepted.
        """
        marked = []
        for lease_id, lease in self._leases.items():
            if lease.holder == holder and not lease.released:
                self._leases[lease_id] = replace(lease, released=True)
                marked.append(self._leases[lease_id])
        return marked

    def expire(self, now: float) -> list[Settled]:
        """Close leases past ``expires_at`` and credit their unused permits to the current day.

        A lease counted against an earlier local day credits nothing: yesterday's unused permits
        must not raise today's allowance.
        """
        settled = []
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            lease = self._leases.pop(lease_id)
            settled.append(Settled(lease, self._budgets[lease.target].credit(lease.day, lease.unused, now)))
        return settled

    def retarget(
        self, target: str, now: float, *, pace: Pace | None = None, paused: bool | None = None
    ) -> TargetStatus:
        """Change one target's pace and/or pause it live (see :meth:`TargetBudget.retarget`).

        Leases already granted stay valid (they were counted against the day when granted), so a
        pause or a lowered cap never lets the day's total exceed the cap in force when they were
        granted, and nothing more is granted past the new one.
        """
        if target not in self._budgets:
            raise KeyError(f"no budget for target {target!r} (it was not enabled at the test start)")
        budget = self._budgets[target]
        budget.retarget(now, pace=pace, paused=paused)
        return budget.status(now, self.outstanding(target))

    def status(self, now: float) -> list[TargetStatus]:
        """One :class:`TargetStatus` per target, in construction order."""
        return [budget.status(now, self.outstanding(name)) for name, budget in self._budgets.items()]

    # -- persistence

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot: each target's local day and granted count, and the open leases."""
        return {
            "version": STATE_VERSION,
            "next_lease": self._next_lease,
            "targets": {
                **self._dormant,
                **{
                    name: {"day": budget.current_day.isoformat(), "granted": budget.granted}
                    for name, budget in self._budgets.items()
                    if budget.current_day is not None
                },
            },
            "leases": [lease.as_dict() for lease in self._leases.values()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], budgets: Iterable[TargetBudget], now: float) -> Ledger:
        """A ledger of fresh ``budgets`` continuing a saved snapshot at ``now``.

        A target saved on its current local day continues its count (a restarted master never
        overshoots the cap); one saved on an earlier day starts from 0. Targets no longer
        configured (or renamed) lose their leases but keep their count, dormant, for as long as
        their day may still be today somewhere (saved again with the ledger); buckets start empty.
        """
        _check_state(state)
        ledger = cls(budgets, next_lease=int(state.get("next_lease", 1)))
        for name, saved in state.get("targets", {}).items():
            if name in ledger._budgets:
                ledger._budgets[name].restore(date.fromisoformat(saved["day"]), int(saved["granted"]), now)
            elif date.fromisoformat(saved["day"]) >= _utc_date(now) - DORMANT_DAYS:
                ledger._dormant[name] = {"day": str(saved["day"]), "granted": int(saved["granted"])}
        for raw in state.get("leases", []):
            lease = Lease.from_dict(raw)
            if lease.target in ledger._budgets and lease.unused > 0:
                ledger._leases[lease.id] = lease
        return ledger


# A local day is at most 14 hours away from UTC's: a count two UTC days old is surely of a past day.
DORMANT_DAYS = timedelta(days=2)


def _utc_date(now: float) -> date:
    return datetime.fromtimestamp(now, timezone.utc).date()


def _check_state(state: Mapping[str, Any]) -> None:
    if not isinstance(state, Mapping):
        raise ValueError("budget state must be a JSON object")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported budget state version {state.get('version')!r} (expected {STATE_VERSION})")
    if not isinstance(state.get("targets", {}), Mapping) or not isinstance(state.get("leases", []), list):
        raise ValueError("budget state needs a 'targets' object and a 'leases' list")


def state_json(ledger: Ledger) -> str:
    """The ledger's snapshot as JSON text (writing it atomically is the caller's job)."""
    return json.dumps(ledger.to_state(), sort_keys=True, indent=1)


def parse_state(text: str) -> dict[str, Any]:
    """Parse and check a snapshot written by :func:`state_json`; raises ``ValueError`` if unusable."""
    state = json.loads(text)
    _check_state(state)
    return state


# ---------------------------------------------------------------------------------------------
# Splitting totals


def weight_shares(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Split ``total`` by ``weights`` so the shares sum exactly to ``total`` (largest remainder).

    Each key gets the floor of its exact quota; the leftover units go to the largest fractional
    parts, ties to the earlier key. Truncation alone (``int(total * share)``) loses up to one unit
    per key. Exact fractions keep thirds and similar splits free of float noise.
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError("weights must be finite and >= 0")
    exact = {key: Fraction(w) for key, w in weights.items()}
    weight_sum = sum(exact.values(), Fraction(0))
    if total == 0:
        return {key: 0 for key in weights}
    if weight_sum == 0:
        raise ValueError("cannot split a positive total among zero weights")
    quotas = {key: total * w / weight_sum for key, w in exact.items()}
    shares = {key: math.floor(q) for key, q in quotas.items()}
    leftover = total - sum(shares.values())
    order = sorted(enumerate(quotas), key=lambda item: (-(quotas[item[1]] - shares[item[1]]), item[0]))
    for _, key in order[:leftover]:
        shares[key] += 1
    return shares


__all__ = [
    "DayPlan",
    "DayProfile",
    "Lease",
    "Ledger",
    "Pace",
    "round_half_up",
    "Segment",
    "Settled",
    "TargetBudget",
    "TargetStatus",
    "WeekProfile",
    "parse_state",
    "state_json",
    "weight_shares",
]
