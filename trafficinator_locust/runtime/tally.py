"""Visits counted per target and per the target's local day, in this process and summed on the master.

Locust counts requests; a Matomo administrator counts visits. A visit is *started* when its first
hit was answered 2xx (Matomo then has the visit). Workers send their counts since the last report
in Locust's own worker reports, under :data:`REPORT_KEY`, like Locust's stats deltas::

    tally.visit_started("Production", ok=True, day="2026-12-03")
    data[REPORT_KEY] = tally.drain()        # on a worker, in report_to_master
    master_tally.merge(data[REPORT_KEY])    # on the master, in worker_report
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

REPORT_KEY = "trafficinator_tally"
IN_FLIGHT_KEY = "trafficinator_in_flight"
"""A worker report's gauge of the visits its users are sending now."""


class VisitTally:
    """Visits started per target in this process (and, on the master, summed from workers)."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.bots: Counter[str] = Counter()  # bot visits Matomo drops by design: not "started"
        self.hits: Counter[str] = Counter()  # hits Matomo's bulk answers counted as tracked (transport: bulk)
        self.in_flight = 0  # visits being sent in this process now (a gauge: never drained or merged)
        # target -> local day (ISO) -> [started, failed]
        self.days: dict[str, dict[str, list[int]]] = {}

    def visit_started(self, target: str, ok: bool, day: str | None = None, stored: bool = True) -> None:
        """Count a visit whose first hit was answered (``ok``); ``stored=False`` for a bot visit Matomo drops."""
        if ok and not stored:
            self.bots[target] += 1
            return
        (self.started if ok else self.failed)[target] += 1
        if day is not None:
            self.days.setdefault(target, {}).setdefault(day, [0, 0])[0 if ok else 1] += 1

    def hits_tracked(self, target: str, count: int) -> None:
        """Hits of a bulk request that Matomo tracked (a single-hit target's hits are its requests)."""
        self.hits[target] += count

    def drain(self) -> dict[str, Any]:
        """Counts since the last drain, for a worker report (workers send deltas, like Locust's stats)."""
        data = {
            "started": dict(self.started),
            "failed": dict(self.failed),
            "bots": dict(self.bots),
            "hits": dict(self.hits),
            "days": self.days,
        }
        self.started = Counter()
        self.failed = Counter()
        self.bots = Counter()
        self.hits = Counter()
        self.days = {}
        return data

    def merge(self, data: Mapping[str, Any]) -> None:
        self.started.update(data.get("started", {}))
        self.failed.update(data.get("failed", {}))
        self.bots.update(data.get("bots", {}))
        self.hits.update(data.get("hits", {}))
        for target, days in data.get("days", {}).items():
            mine = self.days.setdefault(target, {})
            for day, (started, failed) in days.items():
                counts = mine.setdefault(day, [0, 0])
                counts[0] += started
                counts[1] += failed

    def reset(self) -> None:
        self.started.clear()
        self.failed.clear()
        self.bots.clear()
        self.hits.clear()
        self.days = {}
