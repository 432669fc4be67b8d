"""Visits counted per target and per the target's local day, in this process and summed on the master.

Besides visits, each stored hit adds what Matomo's reports will show for it (:mod:`.core.reports`):
pageviews, events, goal conversions, revenue, ... per target and the local day its visit started.

Locust counts requests; a Matomo administrator counts visits. A visit is *started* when its first
hit was answered 2xx (Matomo then has the visit). Workers send their counts since the last report
in Locust's own worker reports, under :data:`REPORT_KEY`, like Locust's stats deltas::

    tally.visit_started("Production", ok=True, day="2026-12-03")
    tally.hit_stored("Production", "2026-12-03", visit_reports, "goal", {"idgoal": "2"})
    data[REPORT_KEY] = tally.drain()        # on a worker, in report_to_master
    master_tally.merge(data[REPORT_KEY])    # on the master, in worker_report
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from trafficinator_locust.core.reports import VisitReports, bot_visit

REPORT_KEY = "trafficinator_tally"
HIT_SECONDS_KEPT = 900
"""Seconds of per-second tracked hits a process keeps (a capacity ramp's steps read the last few)."""
IN_FLIGHT_KEY = "trafficinator_in_flight"
"""A worker report's gauge of the visits its users are sending now."""


class VisitTally:
    """Visits started per target in this process (and, on the master, summed from workers)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.started: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.bots: Counter[str] = Counter()  # bot visits Matomo drops by design: not "started"
        self.hits: Counter[str] = Counter()  # hits Matomo's bulk answers counted as tracked (transport: bulk)
        # the same per wall-clock second (as Locust keys its per-second counts): target -> second -> hits
        self.hits_per_second: dict[str, Counter[int]] = {}
        self.in_flight = 0  # visits being sent in this process now (a gauge: never drained or merged)
        # target -> local day (ISO) -> [started, failed]
        self.days: dict[str, dict[str, list[int]]] = {}
        # target -> local day -> figures of Matomo's reports (core.reports deltas, money in cents)
        self.reports: dict[str, dict[str, Counter[str]]] = {}

    def visit_started(self, target: str, ok: bool, day: str | None = None, stored: bool = True) -> None:
        """Count a visit whose first hit was answered (``ok``); ``stored=False`` for a bot visit Matomo drops."""
        if ok and not stored:
            self.bots[target] += 1
            if day is not None:
                self._day_reports(target, day).update(bot_visit())
            return
        (self.started if ok else self.failed)[target] += 1
        if day is not None:
            self.days.setdefault(target, {}).setdefault(day, [0, 0])[0 if ok else 1] += 1

    def hit_stored(self, target: str, day: str, visit: VisitReports, kind: str, params: Mapping[str, str]) -> None:
        """A hit of ``visit`` (started on local ``day``) that Matomo stored: what it adds to the reports."""
        self._day_reports(target, day).update(visit.stored(kind, params))

    def _day_reports(self, target: str, day: str) -> Counter[str]:
        days = self.reports.setdefault(target, {})
        counts = days.get(day)
        if counts is None:
            counts = days[day] = Counter()
        return counts

    def hits_tracked(self, target: str, count: int) -> None:
        """Hits of a bulk request that Matomo tracked (a single-hit target's hits are its requests)."""
        self.hits[target] += count
        self._add_second(target, int(self._wall()), count)

    def _add_second(self, target: str, second: int, count: int) -> None:
        seconds = self.hits_per_second.setdefault(target, Counter())
        seconds[second] += count
        if len(seconds) > HIT_SECONDS_KEPT:
            newest = max(seconds)
            for old in [s for s in seconds if s <= newest - HIT_SECONDS_KEPT]:
                del seconds[old]

    def hits_in(self, target: str, seconds: range) -> int:
        """Tracked hits of ``target`` whose bulk answers came in the wall-clock ``seconds``."""
        counts = self.hits_per_second.get(target, Counter())
        return sum(counts.get(second, 0) for second in seconds)

    def drain(self) -> dict[str, Any]:
        """Counts since the last drain, for a worker report (workers send deltas, like Locust's stats)."""
        data = {
            "started": dict(self.started),
            "failed": dict(self.failed),
            "bots": dict(self.bots),
            "hits": dict(self.hits),
            "hits_per_second": {name: sorted(c.items()) for name, c in self.hits_per_second.items()},
            "days": self.days,
            "reports": {name: {day: dict(c) for day, c in days.items()} for name, days in self.reports.items()},
        }
        self.started = Counter()
        self.failed = Counter()
        self.bots = Counter()
        self.hits = Counter()
        self.hits_per_second = {}
        self.days = {}
        self.reports = {}
        return data

    def merge(self, data: Mapping[str, Any]) -> None:
        self.started.update(data.get("started", {}))
        self.failed.update(data.get("failed", {}))
        self.bots.update(data.get("bots", {}))
        self.hits.update(data.get("hits", {}))
        for target, pairs in data.get("hits_per_second", {}).items():
            for second, count in pairs:
                self._add_second(target, int(second), int(count))
        for target, days in data.get("days", {}).items():
            mine = self.days.setdefault(target, {})
            for day, (started, failed) in days.items():
                counts = mine.setdefault(day, [0, 0])
                counts[0] += started
                counts[1] += failed
        for target, days in data.get("reports", {}).items():
            for day, counts in days.items():
                self._day_reports(target, day).update(counts)

    def reset(self) -> None:
        self.started.clear()
        self.failed.clear()
        self.bots.clear()
        self.hits.clear()
        self.hits_per_second = {}
        self.days = {}
        self.reports = {}
