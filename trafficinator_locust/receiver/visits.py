"""Matomo's visit grouping for one site: which visit a stored hit belongs to, and when one starts.

A hit joins the active visit of its visitor id (``cid``, else the hashed ``uid``), or without
one the visit of its fingerprint (user agent, language, IP address), unless a rule of Matomo's
starts a new visit: ``new_visit=1``, 30 minutes since the visit's last action, the site's local
midnight, or a campaign other than the visit's. A ping extends an active visit and never starts
one. Per site-local day it counts visits, actions and unique visitors (what ``VisitsSummary.get``
answers).

Example::

    visits = SiteVisits(ZoneInfo("Asia/Tokyo"))
    fingerprint = ("Mozilla/5.0 ...", "en-US", "10.0.0.1")  # user agent, language, IP
    ts = datetime(2026, 11, 25, 15, 30, tzinfo=timezone.utc).timestamp()  # 00:30 in Tokyo
    visit = visits.visit_for({"cid": "aaaaaaaaaaaaaaa1"}, fingerprint, ts, is_ping=False)
    visits.started, visits.by_day()  # 1, {"2026-11-26": 1}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from zoneinfo import ZoneInfo

from trafficinator_locust.core.protocol import VISITOR_ID_RE, campaign_of

__all__ = ["VISIT_TIMEOUT_SECONDS", "Visit", "Day", "SiteVisits", "Fingerprint"]

VISIT_TIMEOUT_SECONDS = 1800.0
"""Matomo's ``visit_standard_length``: a visit ends 30 minutes after its last action."""

Fingerprint = tuple[str, str, str]
"""What Matomo's ``config_id`` hashes: user agent, language and visitor IP address."""


@dataclass
class Visit:
    visitor_id: str
    last_ts: float
    day: date
    campaign: str


@dataclass
class Day:
    """The counters of one site-local day."""

    visits: int = 0
    actions: int = 0
    visitors: set[str] = field(default_factory=set)


class SiteVisits:
    """The visits of one site: the active ones by visitor id and fingerprint, and counts per local day."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.reset()

    def reset(self) -> None:
        """Forget every visit and lookup."""
        self.started = 0
        self.days: dict[date, Day] = {}
        self.by_visitor: dict[str, Visit] = {}
        self.by_config: dict[Fingerprint, Visit] = {}
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
        return stats

    def on(self, day: date) -> Day:
        """The counters of one site-local day, empty when nothing happened on it (creates nothing)."""
        return self.days.get(day) or Day()

    def unique_visitors(self) -> int:
        """Distinct visitor ids over every day."""
        visitors: set[str] = set()
        for stats in self.days.values():
            visitors |= stats.visitors
        return len(visitors)

    def by_day(self) -> dict[str, int]:
        """Visits started per site-local day (ISO dates, days without a visit left out)."""
        return {d.isoformat(): s.visits for d, s in sorted(self.days.items()) if s.visits}

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
    def visit_for(self, params: Mapping[str, str], config: Fingerprint, ts: float, is_ping: bool) -> Visit | None:
        """Find or start the visit of a hit; ``None`` for a ping that has no active visit.

        Lookup by ``cid`` or hashed ``uid`` (visitor id only), else by fingerprint ``config``.
        """
        cid, uid = params.get("cid"), params.get("uid")
        visitor_id = cid.lower() if cid else (_uid_visitor_id(uid) if uid else "")
        found = self.by_visitor.get(visitor_id) if visitor_id else self.by_config.get(config)
        day = self.local_day(ts)
        campaign = campaign_of(params)
        if found is not None and not _starts_new_visit(found, params, ts, day, campaign):
            if ts > found.last_ts:
                found.last_ts = ts
            return found
        if is_ping:
            return None
        return self._start(params, config, visitor_id, ts, day, campaign)

    def seen(self, ts: float) -> None:
        """Note a stored hit's time and, now and then, expire lookups that can no longer match."""
        if ts > self.newest_ts:
            self.newest_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every:
            self._sweep()

    def _start(
        self, params: Mapping[str, str], config: Fingerprint, visitor_id: str, ts: float, day: date, campaign: str
    ) -> Visit:
        lookup_id = visitor_id
        if not visitor_id:
            cookie_id = params.get("_id", "")
            valid_cookie = VISITOR_ID_RE.match(cookie_id)
            visitor_id = cookie_id.lower() if valid_cookie else _config_visitor_id(config)
        visit = Visit(visitor_id, ts, day, campaign)
        self.started += 1
        stats = self.day(day)
        stats.visits += 1
        stats.visitors.add(visitor_id)
        if lookup_id:
            self.by_visitor[lookup_id] = visit
        self.by_config[config] = visit
        return visit

    def _sweep(self) -> None:
        """Drop lookups older than 30 min before the newest hit (amortised O(1) per hit)."""
        horizon = self.newest_ts - VISIT_TIMEOUT_SECONDS
        self.by_visitor = {k: v for k, v in self.by_visitor.items() if v.last_ts >= horizon}
        self.by_config = {k: v for k, v in self.by_config.items() if v.last_ts >= horizon}
        self._since_sweep = 0
        self._sweep_every = max(1024, len(self.by_visitor) + len(self.by_config))


@lru_cache(maxsize=65536)
def _uid_visitor_id(uid: str) -> str:
    """Matomo's visitor id for a user id: the first 16 hex digits of its SHA-1."""
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()[:16]


def _config_visitor_id(config: Fingerprint) -> str:
    return hashlib.blake2b("\x00".join(config).encode("utf-8"), digest_size=8).hexdigest()


def _starts_new_visit(visit: Visit, params: Mapping[str, str], ts: float, day: date, campaign: str) -> bool:
    return (
        params.get("new_visit") == "1"
        or abs(ts - visit.last_ts) > VISIT_TIMEOUT_SECONDS
        or day != visit.day
        or (bool(campaign) and campaign != visit.campaign)
    )
