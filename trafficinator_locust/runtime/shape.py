"""The load shape of paced runs: each target gets the users its pace needs, and the run ends when
every daily budget is spent.

The permit broker already limits each target to its rate; the shape only makes sure enough users
exist to *use* those permits, per target, without the user typing a count. Sizing is Little's law
with headroom: ``users = ceil(peak rate today x mean visit duration x 1.5) + 1``, where the mean
duration comes from the target's traffic settings (pageviews x dwell, add-on actions, pause). The
peak of the local day (not the current hour's rate) is used so the diurnal curve never needs a
shrink: extra users just wait for permits, which costs nothing but an idle greenlet.

Per-target counts are Locust ``fixed_count``s. Locust 2.47's ``UsersDispatcher`` reads fixed counts
only when its private ``_try_dispatch_fixed`` flag is set (at creation, on a rebalance, after a
removal), so a pool that grows mid-run would be ignored: :class:`PoolDispatcher` sets the flag at
every new dispatch. Pools only grow (Locust removes the most recently started users whatever their
class, so shrinking one class is not possible through the dispatcher).

A pool grows when permits wait unused: the target's visits granted since the run started lag the
visits due at its pace by more than its bucket can hold (5 s of rate) plus slack, which happens
when visits take longer than planned (slow tracker, timeouts). Growth is by a quarter, at most every
few seconds and up to 4 x the Little's-law size.
"""

from __future__ import annotations

from locust import LoadTestShape
from locust.dispatch import UsersDispatcher

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from trafficinator_locust.core.config import Target
from trafficinator_locust.runtime.broker import PermitBroker

if TYPE_CHECKING:
    from locust import User

logger = logging.getLogger("trafficinator.shape")

HEADROOM = 1.5
MAX_GROWTH = 4.0
GROWTH_STEP = 1.25
GROWTH_COOLDOWN = 5.0
LAG_SECONDS = 7.0  # the bucket's burst (5 s of rate) plus slack
LAG_MIN = 2.0
MAX_SPAWN_RATE = 100.0


def mean_visit_seconds(target: Target) -> float:
    """Mean time a user spends per visit: every pageview and the closing ping wait one dwell,
    add-on actions wait up to half a dwell, and the user pauses between visits."""
    traffic = target.traffic
    pageviews = (traffic.pageviews.min + traffic.pageviews.max) / 2
    dwell = (traffic.dwell_seconds.min + traffic.dwell_seconds.max) / 2
    actions = traffic.actions
    share = actions.search + actions.outlink + actions.download + actions.event
    pause = (traffic.pause_between_visits.min + traffic.pause_between_visits.max) / 2
    return pageviews * dwell + share * traffic.dwell_seconds.max / 4 + pause


def pool_size(rate: float, visit_seconds: float, headroom: float = HEADROOM) -> int:
    """Little's law with headroom: users busy at ``rate`` visits/s of ``visit_seconds`` each, x1.5, +1."""
    return math.ceil(max(rate, 0.0) * max(visit_seconds, 0.0) * headroom) + 1


class PoolDispatcher(UsersDispatcher):
    """Locust's dispatcher, re-reading every class's ``fixed_count`` at each new dispatch."""

    def new_dispatch(
        self, target_user_count: int, spawn_rate: float, user_classes: list[type[User]] | None = None
    ) -> None:
        super().new_dispatch(target_user_count, spawn_rate, user_classes)
        self._try_dispatch_fixed = True


class TrafficShape(LoadTestShape):
    """Per-target user pools sized from each target's pace; stops when budgets or --run-time end.

    ``classes`` maps target name to its user class; ``run_time()`` returns the run-time limit in
    seconds (or ``None``): Locust does not apply ``-t`` to a shape, so the shape does.
    """

    def __init__(
        self,
        broker: PermitBroker,
        targets: Sequence[Target],
        classes: Mapping[str, type[User]],
        run_time: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        settled: Callable[[], bool] = lambda: True,
    ):
        """``settled()`` says whether a spent run may end now (no visit still being sent, or waited long enough)."""
        super().__init__()
        self.settled = settled
        self._last: tuple[int, float] = (0, 1.0)
        self.broker = broker
        self.targets = tuple(targets)
        self.classes = dict(classes)
        self._run_time = run_time
        self._clock = clock
        self._visit_seconds = {t.name: mean_visit_seconds(t) for t in self.targets}
        self.pools: dict[str, int] = {}
        self._base: dict[str, int] = {}
        self._grown_at: dict[str, float] = {}
        self.stop_reason: str | None = None
        self._ending: str | None = None  # end() was called: the next tick ends the run
        self.floors: dict[str, int] = {}  # users a target needs at least (a ramp's rate: runtime.ramp_control)

    def end(self, reason: str) -> None:
        """End the run at the next tick, as when the budgets are spent (SIGTERM: :mod:`.stop_signal`)."""
        self._ending = reason

    def reset_time(self) -> None:
        super().reset_time()
        self.pools.clear()
        self._base.clear()
        self._grown_at.clear()
        self.stop_reason = None
        self._ending = None

    def tick(self) -> tuple[int, float] | None:
        if self._ending is not None:
            return self._stop(self._ending)
        now = self._clock()
        limit = self._run_time()
        if limit and self.get_run_time() >= limit:
            return self._stop("--run-time limit reached")
        if self.broker.all_spent(now):
            if self.settled():
                return self._stop("every target's daily budget is spent")
            return self._last  # no new permits: the users finish the visits they started
        pools = self.size_pools(now)
        for name, count in pools.items():
            self.classes[name].fixed_count = count
        total = sum(pools.values())
        self._last = (total, min(max(float(total), 1.0), MAX_SPAWN_RATE))
        return self._last

    def size_pools(self, now: float) -> dict[str, int]:
        """Each target's pool now (never smaller than before)."""
        statuses = {s.name: s for s in self.broker.status(now)}
        for target in self.targets:
            status = statuses.get(target.name)
            base = max(self._sized(target, now, status), self.floors.get(target.name, 0))
            self._base[target.name] = max(self._base.get(target.name, 0), base)
            pool = max(self.pools.get(target.name, 0), base)
            if (
                status is not None
                and status.state == "running"
                and self._lagging(target.name, status.current_rate or 0.0, now)
            ):
                ceiling = math.ceil(self._base[target.name] * MAX_GROWTH)
                grown = min(max(pool + 1, math.ceil(pool * GROWTH_STEP)), ceiling)
                if grown > pool:
                    logger.info(
                        "%s: permits wait unused (lag %.1f visits); growing its users %d -> %d",
                        target.name,
                        self.broker.lag(target.name, now),
                        pool,
                        grown,
                    )
                    pool = grown
                    self._grown_at[target.name] = now
            self.pools[target.name] = pool
        return dict(self.pools)

    def _sized(self, target: Target, now: float, status: Any) -> int:
        pace = self.broker.ledger.budget(target.name).pace  # the config's, or a ramp's (runtime.ramp_control)
        if pace.visits_per_day is None or status is None or status.state == "capped":
            return 1  # unpaced: nothing to size from (give it a rate, or run with -u)
        plan = pace.plan_at(now)
        peak = max((segment.rate for segment in plan.segments), default=0.0)
        return pool_size(peak, self._visit_seconds[target.name])

    def _lagging(self, name: str, rate: float, now: float) -> bool:
        if not rate or now - self._grown_at.get(name, -math.inf) < GROWTH_COOLDOWN:
            return False
        if self.get_run_time() < GROWTH_COOLDOWN:
            return False
        return self.broker.lag(name, now) > rate * LAG_SECONDS + LAG_MIN

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            logger.info("trafficinator: %s; ending the run", reason)
        self.stop_reason = reason
        return None


__all__ = ["PoolDispatcher", "TrafficShape", "mean_visit_seconds", "pool_size"]
