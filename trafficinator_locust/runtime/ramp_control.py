"""``--traffic-pacing ramp``: each target's offered rate follows its own capacity ramp (:mod:`.core.ramp`).

Why per target: the question is how much *each* Matomo takes while the others are loaded too, so
every target climbs, refines and holds on its own; a small Matomo that found its knee never holds
back a big one. The pieces:

* the ramp speaks hits per second; the permit broker grants visits, so the target's rate becomes a
  flat pace of ``hits/s / hits per visit`` (the mean of the target's own planned visits) and the
  shape sizes its users from that pace, so the offered rate is really offered;
* at the end of each step, :class:`~.step_window.TargetWindow` gives the step's requests, failures
  and p95; delivered hits are the answered requests (single) or the hits Matomo's bulk answers
  counted as tracked (bulk); :class:`~.core.ramp.Ramp` judges the step and picks the next rate;
* the generator must really offer the rate: the shape gets a floor of users per target (Little's law
  over the planned visit plus the hits' measured latency), and a step that offered under 90 % of
  its rate while Matomo answered fast and without failures is the generator's shortfall, not
  Matomo's: it is measured again (at most :data:`SHORT_REPEATS` times) with more users;
* a step is measured only after a short warm-up (:data:`WARM_UP_SECONDS`: new users spawn, the
  permits reach the new rate), and a step that failed is followed by a pause of its target
  (:func:`settle_seconds`) before the next rate: a Matomo past its knee has a backlog (its queue, its
  database), and the next, lower rate must not be judged by the previous rate's backlog;
* a stopped ramp pauses its target; the run ends once every target's knee is known (or at ``-t``).

Example::

    control = RampControl(config, broker, environment, tally, specs, planners)
    control.start()            # at test start: every target at its ramp's first rate
    control.tick()             # every second (the coordinator's upkeep)
    control.capacity("Prod")   # the report's "capacity" object
"""

from __future__ import annotations

from locust.env import Environment

import logging
import math
import time
from collections.abc import Callable, Mapping

from trafficinator_locust.core.budget import DayProfile, Pace, WeekProfile
from trafficinator_locust.core.config import Config, Target, Transport
from trafficinator_locust.core.ramp import KEEP_UP, Ramp, RampSpec, StepResult
from trafficinator_locust.core.visits import VisitPlanner
from trafficinator_locust.runtime.broker import PermitBroker
from trafficinator_locust.runtime.shape import TrafficShape, mean_visit_seconds
from trafficinator_locust.runtime.step_window import TargetWindow, report_lag
from trafficinator_locust.runtime.tally import VisitTally

logger = logging.getLogger("trafficinator")

SHORT_REPEATS = 3
"""How often a step the generator fell short of is measured again before it is judged as it is."""
SAMPLE_VISITS = 200
"""Visits planned to learn a target's mean hits per visit (seeded: the same plans as the run's)."""
WARM_UP_SECONDS = 2.0
"""At most this long (and a quarter of the step) a new rate runs before its step is measured."""
MIN_SETTLE_SECONDS = 2.0
"""The shortest pause of a target after a failed step."""


def settle_seconds(failed: StepResult, step_seconds: float) -> float:
    """How long a target pauses after a failed step: twice the step's p95 (the backlog it showed),
    at least :data:`MIN_SETTLE_SECONDS`, at most one step::

        settle_seconds(StepResult(80, 60, 900, 2000, 0.0, 6), 6.0)   # 4.0
    """
    return min(max(MIN_SETTLE_SECONDS, 2 * failed.p95_ms / 1000), max(step_seconds, MIN_SETTLE_SECONDS))


def warm_up_seconds(step_seconds: float, lag: float = 0.0) -> float:
    """A new rate runs this long before its step is measured; on a master also the report lag, so
    the lagged window (:class:`~.step_window.TargetWindow`) starts after the rate changed."""
    return min(WARM_UP_SECONDS, step_seconds / 4) + lag


def hits_per_visit(planner: VisitPlanner, sample: int = SAMPLE_VISITS) -> float:
    """The mean number of hits of a target's visits (bots included: they are sent too)."""
    return sum(len(planner.plan(number).hits) for number in range(sample)) / sample


def flat_pace(target: Target, visits_per_second: float) -> Pace:
    """A pace of ``visits_per_second`` all day, every day, in the target's time zone."""
    return Pace(max(1, math.ceil(visits_per_second * 86400)), target.timezone, DayProfile(), WeekProfile())


class TargetRamp:
    """One target's ramp, its current step window and how its hits are counted."""

    def __init__(self, target: Target, spec: RampSpec, per_visit: float, window: TargetWindow, now: float):
        self.target = target
        self.ramp = Ramp(spec)
        self.per_visit = per_visit
        self.window = window
        self.applied_at = now  # the current rate was given to the broker (the warm-up starts)
        self.step_started: float | None = None  # the window was marked: the step is measured from here
        self.settle_until: float | None = None  # paused after a failed step, until then
        self.repeats = 0  # times the current step was measured again (the generator fell short)
        self.latency = 0.0  # seconds per hit, the last step's median answer


class RampControl:
    """Drives every enabled target's ramp through the permit broker (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        broker: PermitBroker,
        environment: Environment,
        tally: VisitTally,
        specs: Mapping[str, RampSpec],
        planners: Mapping[str, VisitPlanner],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.broker = broker
        self.environment = environment
        self.tally = tally
        self.specs = dict(specs)
        self.planners = dict(planners)
        self.clock = clock
        self.targets: dict[str, TargetRamp] = {}
        self.shape: TrafficShape | None = None  # its user floors follow the rates (set by the coordinator)
        self.lag = report_lag(environment.runner)

    def start(self) -> None:
        """Every enabled target at its ramp's first rate; a fresh ramp each test start."""
        now = self.clock()
        self.targets = {}
        for target in self.config.enabled_targets:
            per_visit = hits_per_visit(self.planners[target.name])
            window = TargetWindow(self.environment.stats, target.name, lag=self.lag)
            state = self.targets[target.name] = TargetRamp(target, self.specs[target.name], per_visit, window, now)
            self._apply(state)
            logger.info(
                "trafficinator: %s ramps from %.1f hits/s (%.2f hits a visit), x%.2f every %.0f s",
                target.name,
                state.ramp.rate,
                per_visit,
                state.ramp.spec.factor,
                state.ramp.step_seconds,
            )

    def tick(self) -> None:
        """Move every target through its step: warm up, measure, judge; settle after a failure."""
        now = self.clock()
        for state in self.targets.values():
            ramp = state.ramp
            if ramp.phase == "stopped":
                continue
            if state.settle_until is not None:
                if now < state.settle_until:
                    continue
                state.settle_until = None
                self._apply(state)
                state.applied_at = now
            if state.step_started is None:
                if now - state.applied_at >= warm_up_seconds(ramp.step_seconds, self.lag):
                    state.window.mark()
                    state.step_started = now
                continue
            if now - state.step_started < ramp.step_seconds:
                continue
            self._end_step(state, now)

    def _end_step(self, state: TargetRamp, now: float) -> None:
        ramp = state.ramp
        result, offered = self._measure(state)
        state.step_started = None
        state.applied_at = now
        state.latency = result.p50_ms / 1000
        if self._generator_short(state, result, offered):
            state.repeats += 1
            logger.info(
                "trafficinator: %s offered %.1f of %.1f hits/s with Matomo answering in %.0f ms: more users, "
                "same step again",
                state.target.name,
                offered,
                ramp.rate,
                result.p95_ms,
            )
            self._apply(state)
            return
        state.repeats = 0
        before, steps = ramp.phase, len(ramp.steps)
        ramp.record(result)
        if ramp.phase != before and ramp.phase in ("holding", "stopped"):
            logger.info(
                "trafficinator: %s knee %.1f hits/s (limited by %s); %s",
                state.target.name,
                ramp.knee_hits_per_second or 0.0,
                ramp.limited_by,
                "holding it" if ramp.phase == "holding" else "stopping",
            )
        failed = len(ramp.steps) > steps and ramp.steps[-1].verdict is not None
        if failed and ramp.phase == "refining":  # the next rate is measured: on a drained Matomo
            state.settle_until = now + settle_seconds(result, ramp.step_seconds)
            self.broker.retarget(state.target.name, paused=True)
            return
        self._apply(state)

    @property
    def done(self) -> bool:
        """Every target's knee is known (or its ramp stopped)."""
        ramps = [state.ramp for state in self.targets.values()]
        return bool(ramps) and all(ramp.done or ramp.phase == "stopped" for ramp in ramps)

    def finish(self) -> None:
        """The run ended: ramps still searching keep what they found (a lower bound)."""
        for state in self.targets.values():
            state.ramp.finish()

    def capacity(self, name: str) -> dict | None:
        state = self.targets.get(name)
        return None if state is None else state.ramp.as_dict(hits_per_visit=state.per_visit)

    def _measure(self, state: TargetRamp) -> tuple[StepResult, float]:
        """The step's result (offered = the rate asked) and the hits per second really sent."""
        figures = state.window.measure()
        seconds = max(figures.seconds, 1e-6)
        if state.target.transport is Transport.bulk:
            # the hits Matomo's bulk answers counted as tracked, in the same whole (lagged) seconds
            delivered = self.tally.hits_in(state.target.name, state.window.last_seconds)
            sent = state.ramp.rate  # hits leave in batches: what the users handed over is not counted here
        else:
            delivered = figures.answered
            sent = figures.requests / seconds
        result = StepResult(
            offered_hits_per_second=state.ramp.rate,
            delivered_hits_per_second=delivered / seconds,
            p50_ms=float(figures.p50_ms),
            p95_ms=float(figures.p95_ms),
            fail_ratio=figures.fail_ratio,
            seconds=seconds,
        )
        return result, sent

    def _generator_short(self, state: TargetRamp, result: StepResult, offered: float) -> bool:
        """Sent under 90 % of the rate while Matomo answered within the limits: the users were too few."""
        spec = state.ramp.spec
        return (
            state.repeats < SHORT_REPEATS
            and offered < KEEP_UP * state.ramp.rate
            and result.p95_ms <= spec.p95
            and result.fail_ratio <= spec.fail
        )

    def _apply(self, state: TargetRamp) -> None:
        """The broker grants at the ramp's rate; a stopped ramp pauses its target."""
        name = state.target.name
        if state.ramp.phase == "stopped":
            self.broker.retarget(name, paused=True)
            return
        visits_per_second = state.ramp.rate / state.per_visit
        self.broker.retarget(name, pace=flat_pace(state.target, visits_per_second), paused=False)
        if self.shape is not None:  # Little's law: the planned visit plus each hit's answer, x2 headroom per repeat
            busy = mean_visit_seconds(state.target) + state.per_visit * state.latency
            self.shape.floors[name] = math.ceil(visits_per_second * busy * (2 + state.repeats)) + 1
