"""Matomo's visit grouping for one site: which visit a stored hit belongs to, when one starts, and
whether its visitor is new or returning.

Lookup, as Matomo's core/Tracker/VisitorRecognizer.php and ``Model::findVisitor`` do it:

- ``uid``: the visitor id is the first 16 hex digits of the SHA-1 of the user id
  (core/Tracker/Request.php, ``getUserIdHashed``; it wins over ``cid``). Looked up by that id (any
  earlier visit), else by fingerprint among the visits active within 30 minutes whose user id is
  empty or the same; a visit found by fingerprint takes the uid's visitor id
  (``Visit::setIdVisitorForExistingVisit``).
- ``cid`` (no ``uid``): by that visitor id only, never by fingerprint
  (``shouldLookupOneVisitorFieldOnly``).
- ``_id`` only: by that visitor id, else by fingerprint.
- no id: by fingerprint (the config id of :mod:`.devices`) only.

The found visit continues unless a rule of Matomo's starts a new one (plugins/CoreHome/Tracker/
VisitRequestProcessor.php, ``isVisitNew``; plugins/Referrers/Columns/Campaign.php):
``new_visit=1``, 30 minutes since its last action, the site's local midnight, or a campaign other
than the visit's. A ping extends an ongoing visit and never starts one.

A visit's visitor is *returning* when the lookup found an earlier visit (plugins/CoreHome/Columns/
VisitorReturning.php), whatever ``_idvc`` or ``new_visit`` claim; *returningCustomer* when that
visitor ordered before or the hit that starts the visit carries ``ec_id``; its ``visit_count`` is
the previous visit's plus one (plugins/CoreHome/Columns/VisitsCount.php). Both are set when the
visit starts. For that the receiver keeps the visitor ids it stored (active visits in full, older
ones as a visit count and an "ordered" flag), at most :data:`HISTORY_MAX` of the older ones (the
least recently retired are forgotten first: such a visitor comes back as new).

A visit that can no longer continue (30 minutes after its last action, seen from the newest hit:
the sweep) is archived into its day's :class:`~.archive.DayArchive` and forgotten (but the last
:data:`RECENT_VISITS`); a report adds the visits still going on to a copy of the archive, so the
memory of a day no longer grows with its visits (:mod:`.archive`).

Per site-local day it counts visits, actions and unique visitors (what ``VisitsSummary.get``
answers), and the same of returning visits (``VisitFrequency.get``: Matomo's VisitsSummary with the
segment ``visitorType==returning,visitorType==returningCustomer``, plugins/VisitFrequency/API.php);
over all days the visits by visitor type and by referrer type; and it keeps the last
:data:`RECENT_VISITS` visits for ``Live.getLastVisitsDetails``.

Example::

    visits = SiteVisits(ZoneInfo("Asia/Tokyo"))
    ts = datetime(2026, 11, 25, 15, 30, tzinfo=timezone.utc).timestamp()  # 00:30 in Tokyo
    visit, started = visits.visit_for({"cid": "aaaaaaaaaaaaaaa1"}, "0f1e2d3c4b5a6978", ts, is_ping=False)
    visits.started, visits.by_day(), visit.visitor_type  # 1, {"2026-11-26": 1}, "new"
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from trafficinator_locust.core.protocol import VISITOR_ID_RE, campaign_of
from trafficinator_locust.receiver.archive import DAY_EXACT_DISTINCT, DayArchive, Distinct, keep_recent_days
from trafficinator_locust.receiver.profile import VisitTraits

__all__ = [
    "VISIT_TIMEOUT_SECONDS",
    "RECENT_VISITS",
    "HISTORY_MAX",
    "NEW",
    "RETURNING",
    "RETURNING_CUSTOMER",
    "Visit",
    "Day",
    "SiteVisits",
    "uid_visitor_id",
]

VISIT_TIMEOUT_SECONDS = 1800.0
"""Matomo's ``visit_standard_length``: a visit ends 30 minutes after its last action."""
RECENT_VISITS = 1000
"""How many of a site's latest visits the receiver keeps in full, for ``Live.getLastVisitsDetails``."""
HISTORY_MAX = 250_000
"""Visitor ids of ended visits a site remembers (for returning visitors and visit counts)."""
NEW, RETURNING, RETURNING_CUSTOMER = "new", "returning", "returningCustomer"
"""Matomo's visitor types (``visitor_returning`` 0, 1, 2)."""

Traits = Callable[[], VisitTraits]
"""Called once when a visit starts: its dimensions (:class:`~.profile.VisitTraits`)."""
_NO_TRAITS = VisitTraits()


@dataclass(slots=True, eq=False)
class Visit:
    """One stored visit (a row of Matomo's ``log_visit``)."""

    idvisit: int
    visitor_id: str
    config_id: str
    user_id: str
    first_ts: float
    last_ts: float
    day: date
    campaign: str
    visit_count: int = 1
    visitor_type: str = NEW
    ordered_before: bool = False
    """The visitor had ordered in an earlier visit."""
    referrer_type: str = "direct"
    referrer_name: str = ""
    device_type: str = ""
    actions: int = 0
    ordered: bool = False
    """An order was booked in this visit."""
    cart: Decimal | None = None
    """The revenue of the visit's open cart row (an abandoned cart while it stays open)."""
    converted: set[object] | None = None
    """Goals converted in this visit (see :mod:`.goals`)."""
    goal_converted: bool = False
    """A goal or an order converted the visit (Matomo's ``visit_goal_converted``; a cart does not)."""
    seen: set[tuple[str, ...]] | None = None
    """Page URLs, downloads, outlinks and events already counted in this visit (see :mod:`.actions`);
    forgotten when the visit can no longer continue (the sweep)."""
    traits: VisitTraits = _NO_TRAITS
    """What the dimension reports read (:mod:`.profile`)."""
    since_last: int = 0
    """Seconds between the latest hit of the visit and the one before it (0 for its first hit):
    Matomo's ``time_spent_ref_action`` (plugins/Actions/Columns/TimeSpentRefAction.php)."""
    continued: bool = False
    """A later hit joined the visit (then Matomo's ``visit_total_time`` is 1 + last - first)."""
    last_page: tuple[object, object] | None = None
    """The page URL and page title rows (:class:`~.actions.PageRow`) of the visit's latest pageview:
    where the time of its next action goes."""

    @property
    def length(self) -> int:
        """Matomo's ``visit_total_time``: 0 for a visit of one hit, else 1 + its last hit's time
        minus its first's, at most 65534 (plugins/CoreHome/Columns/VisitTotalTime.php)."""
        return min(65534, 1 + int(self.last_ts) - int(self.first_ts)) if self.continued else 0

    @property
    def returning(self) -> bool:
        """Whether the visitor is ``returning`` or ``returningCustomer`` (VisitFrequency's segment)."""
        return self.visitor_type != NEW


@dataclass
class Day:
    """The counters of one site-local day."""

    visits: int = 0
    actions: int = 0
    returning_visits: int = 0
    returning_actions: int = 0
    archive: DayArchive = field(default_factory=DayArchive)
    """The day's visits that ended (the visits still going on are added when a report is asked)."""


class SiteVisits:
    """The visits of one site: active ones by visitor id and fingerprint, every visitor's history,
    counts per local day and in total."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.reset()

    def reset(self) -> None:
        """Forget every visit, visitor and lookup."""
        self.started = 0
        self.days: dict[date, Day] = {}
        self.active: dict[str, Visit] = {}  # visitor id -> its latest visit, while it may continue
        self.by_config: dict[str, list[Visit]] = {}  # config id -> visits that may still continue
        self.history: dict[str, int] = {}  # visitor id -> visit_count << 1 | ordered, for ended visits
        self.visitors = Distinct(DAY_EXACT_DISTINCT)  # the visitor ids of every archived visit
        self.visitor_types: Counter[str] = Counter()
        self.referrer_types: Counter[str] = Counter()
        self.recent: deque[Visit] = deque(maxlen=RECENT_VISITS)
        self.newest_ts = 0.0
        self._since_sweep = 0
        self._sweep_every = 1024
        self._day_span: tuple[float, float, date | None] = (0.0, 0.0, None)

    # -- counts ---------------------------------------------------------------------------------
    def day(self, day: date) -> Day:
        """The counters of one site-local day, created on first use."""
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = Day()
            keep_recent_days(self.days)
        return stats

    def on(self, day: date) -> Day:
        """The counters of one site-local day, empty when nothing happened on it (creates nothing)."""
        return self.days.get(day) or Day()

    def unique_visitors(self) -> int:
        """Distinct visitor ids over every day (archived visits and those going on)."""
        visitors = self.visitors.copy()
        for visit in self.live():
            visitors.add(visit.visitor_id)
        return visitors.count()

    def live(self) -> Iterator[Visit]:
        """The visits that may still continue (not archived yet)."""
        for visits in self.by_config.values():
            yield from visits

    def live_on(self, day: date) -> list[Visit]:
        """The visits of a site-local day that may still continue."""
        return [visit for visit in self.live() if visit.day == day]

    def by_day(self) -> dict[str, int]:
        """Visits started per site-local day (ISO dates, days without a visit left out)."""
        return {d.isoformat(): s.visits for d, s in sorted(self.days.items()) if s.visits}

    def returning_visits(self) -> int:
        """Visits of returning visitors (``returning`` and ``returningCustomer``)."""
        return self.visitor_types[RETURNING] + self.visitor_types[RETURNING_CUSTOMER]

    def count_action(self, visit: Visit) -> None:
        """One more action (pageview, search, event, outlink, download) in ``visit``."""
        visit.actions += 1
        stats = self.day(visit.day)
        stats.actions += 1
        if visit.visitor_type != NEW:
            stats.returning_actions += 1

    def local_day(self, ts: float) -> date:
        """The site-local calendar day of a unix time (cached for the current day)."""
        start, end, day = self._day_span
        if day is not None and start <= ts < end:
            return day
        day = datetime.fromtimestamp(ts, self.zone).date()
        start = datetime.combine(day, dtime.min, self.zone).timestamp()
        end = datetime.combine(day + timedelta(days=1), dtime.min, self.zone).timestamp()
        self._day_span = (start, end, day)
        return day

    # -- grouping -------------------------------------------------------------------------------
    def visit_for(
        self,
        params: Mapping[str, str],
        config_id: str | Callable[[], str],
        ts: float,
        is_ping: bool,
        traits: Traits | None = None,
    ) -> tuple[Visit | None, bool]:
        """Find or start the visit of a hit: ``(visit, started)``; ``(None, False)`` for a ping
        without an ongoing visit. ``config_id`` is the hit's fingerprint, or a function computing
        it (called only when a fingerprint lookup or a new visit needs it); ``traits`` describes a
        visit that starts (see the module docstring for the rules)."""
        config = config_id if isinstance(config_id, str) else ""
        cid, uid = params.get("cid"), params.get("uid")
        forced = uid_visitor_id(uid) if uid else (cid.lower() if cid else "")
        cookie = params.get("_id", "")
        cookie = cookie.lower() if cookie and VISITOR_ID_RE.match(cookie) else ""
        lookup = forced or cookie
        found: Visit | None = None
        known = False
        visit_count, ordered_before = 0, False
        if lookup:
            found = self.active.get(lookup)
            if found is None and lookup in self.history:
                packed = self.history[lookup]
                known, visit_count, ordered_before = True, packed >> 1, bool(packed & 1)
        if found is None and not known and (uid or not cid):
            if not config:
                config = config_id() if callable(config_id) else config_id
            found = self._by_fingerprint(config, ts, uid or "")
        day = self.local_day(ts)
        campaign = campaign_of(params)
        if found is not None:
            if not _starts_new_visit(found, params, ts, day, campaign):
                found.since_last = max(0, int(ts) - int(found.last_ts))  # Matomo's times are whole seconds
                found.continued = True
                if ts > found.last_ts:
                    found.last_ts = ts
                if uid:
                    self._adopt(found, forced, uid)
                return found, False
            known, visit_count = True, found.visit_count
            ordered_before = found.ordered_before or found.ordered
        if is_ping:
            return None, False
        if not config:
            config = config_id() if callable(config_id) else config_id
        visitor_id = forced or (found.visitor_id if found is not None else cookie)
        if not visitor_id:
            visitor_id = _derived_visitor_id(config, self.started)
        if ordered_before or params.get("ec_id"):
            visitor_type = RETURNING_CUSTOMER
        else:
            visitor_type = RETURNING if known else NEW
        self.started += 1
        visit = Visit(
            self.started,
            visitor_id,
            config,
            uid or "",
            ts,
            ts,
            day,
            campaign,
            visit_count=visit_count + 1 if known else 1,
            visitor_type=visitor_type,
            ordered_before=ordered_before,
        )
        if traits is not None:
            visit.traits = traits()
            visit.referrer_type = visit.traits.referrer_type
            visit.referrer_name = visit.traits.referrer_name
            visit.device_type = visit.traits.device_type
        stats = self.day(day)
        stats.visits += 1
        if visitor_type != NEW:
            stats.returning_visits += 1
        self.visitor_types[visitor_type] += 1
        self.referrer_types[visit.referrer_type] += 1
        self.recent.append(visit)
        if forced or cookie:
            self.active[visitor_id] = visit
        self.by_config.setdefault(config, []).append(visit)
        return visit, True

    def seen(self, ts: float) -> None:
        """Note a stored hit's time and, now and then, retire visits that can no longer continue."""
        if ts > self.newest_ts:
            self.newest_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every:
            self._sweep()

    def _by_fingerprint(self, config_id: str, ts: float, uid: str) -> Visit | None:
        """The latest visit of this config id active within 30 min of ``ts`` (for a ``uid``, only
        visits without a user id or with the same one), as ``Model::findVisitor`` selects it."""
        best: Visit | None = None
        for visit in self.by_config.get(config_id, ()):
            if abs(visit.last_ts - ts) > VISIT_TIMEOUT_SECONDS:
                continue
            if uid and visit.user_id and visit.user_id != uid:
                continue
            if best is None or visit.last_ts >= best.last_ts:  # a tie: the visit started last
                best = visit
        return best

    def _adopt(self, visit: Visit, visitor_id: str, uid: str) -> None:
        """A uid's hit joins ``visit``: the visit takes the uid's visitor id and user id."""
        visit.user_id = uid
        old = visit.visitor_id
        if old == visitor_id:
            return
        if self.active.get(old) is visit:
            del self.active[old]
            if visit.visit_count > 1:  # what is known of the old id's earlier visits
                self.history[old] = (visit.visit_count - 1) << 1 | visit.ordered_before
        self.active[visitor_id] = visit
        visit.visitor_id = visitor_id

    def _sweep(self) -> None:
        """Retire visits whose last action is over 30 min before the newest hit (amortised O(1) per
        hit): their visitors move to the compact history, their fingerprints are forgotten, the
        visits are archived in their day (:meth:`_archive`)."""
        horizon = self.newest_ts - VISIT_TIMEOUT_SECONDS
        active: dict[str, Visit] = {}
        for visitor_id, visit in self.active.items():
            if visit.last_ts >= horizon:
                active[visitor_id] = visit
            else:
                self.history.pop(visitor_id, None)  # re-inserted last: the most recently retired
                self.history[visitor_id] = visit.visit_count << 1 | (visit.ordered_before or visit.ordered)
        while len(self.history) > HISTORY_MAX:
            del self.history[next(iter(self.history))]
        self.active = active
        by_config: dict[str, list[Visit]] = {}
        for key, visits in self.by_config.items():
            kept = []
            for visit in visits:
                if visit.last_ts >= horizon:
                    kept.append(visit)
                else:
                    self._archive(visit)
            if kept:
                by_config[key] = kept
        self.by_config = by_config
        self._since_sweep = 0
        self._sweep_every = max(1024, len(self.active) + len(self.by_config))

    def _archive(self, visit: Visit) -> None:
        """A visit that can no longer continue: into its day's archive (if the day is still kept);
        what it counted once and where its time went are forgotten."""
        visit.seen = None
        visit.last_page = None
        self.visitors.add(visit.visitor_id)
        stats = self.days.get(visit.day)
        if stats is not None:
            stats.archive.add(self.zone, visit)


@lru_cache(maxsize=65536)
def uid_visitor_id(uid: str) -> str:
    """Matomo's visitor id for a user id: the first 16 hex digits of its SHA-1 (``getUserIdHashed``)."""
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()[:16]


def _derived_visitor_id(config_id: str, serial: int) -> str:
    """A new visitor id for a visit that has none (Matomo generates a random one): unique per visit."""
    return hashlib.blake2b(f"{config_id}:{serial}".encode(), digest_size=8).hexdigest()


def _starts_new_visit(visit: Visit, params: Mapping[str, str], ts: float, day: date, campaign: str) -> bool:
    return (
        params.get("new_visit") == "1"
        or abs(ts - visit.last_ts) > VISIT_TIMEOUT_SECONDS
        or day != visit.day
        or (bool(campaign) and campaign != visit.campaign)
    )
