"""What a config change from the web UI does to a running generator: now, or at the next start.

Why: a target's traffic is shaped by three things that change at different speeds (ADR 010). The
budget on the master (rate, cap, pause) is consulted before every visit, so ``enabled`` and a
target's pace (``visits_per_day``, its share of a total, ``profile``) apply at once through the
permit broker. The user classes are built at a test start and dispatched by name to workers, so
new targets, URLs, tokens, time zones and the split of users wait for the next start
(:meth:`Coordination.stage_config`). :func:`pending_changes` says which is which, in words an operator reads.

:class:`ControlPlane` ties the edited :class:`~.workspace.Workspace` to the running generator's
coordinating role (broker, tally, staging; typed as :class:`Coordination`), the presets and the
status view. No Flask here.
"""

from __future__ import annotations

from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from trafficinator_locust.core.config import Config
from trafficinator_locust.core.target_charts import target_charts
from trafficinator_locust.runtime.broker import PermitBroker
from trafficinator_locust.runtime.ramp_control import RampControl
from trafficinator_locust.runtime.summary import BudgetView
from trafficinator_locust.runtime.tally import VisitTally
from trafficinator_locust.runtime.timeline import TimelineCollector
from trafficinator_locust.web.presets import PresetStore
from trafficinator_locust.web.target_status import RecentRate, status_document
from trafficinator_locust.web.workspace import Workspace

__all__ = ["Coordination", "ControlPlane", "pending_changes"]


class Coordination(Protocol):
    """What the web side needs of the master's (or local runner's) role: the runtime's
    :class:`~trafficinator_locust.runtime.coordinator.Coordinator` is one."""

    @property
    def config(self) -> Config: ...

    @property
    def tally(self) -> VisitTally: ...

    broker: PermitBroker | None
    timeline: TimelineCollector | None  # the run's per-target samples (None before the first start)
    ramps: RampControl | None  # --traffic-pacing ramp: each target's steps so far

    def budget_view(self, now: float | None = None) -> BudgetView | None: ...

    def stage_config(self, config: Config) -> None: ...


def pending_changes(running: Config, new: Config) -> list[str]:
    """What of ``new`` waits for the next test start, relative to the config the run started with."""
    before = {t.name.casefold(): t for t in running.targets}
    after = {t.name.casefold(): t for t in new.targets}
    notes = [f"{t.name}: added" for key, t in after.items() if key not in before]
    notes += [f"{t.name}: removed (paused now)" for key, t in before.items() if key not in after]
    for key, target in after.items():
        old = before.get(key)
        if old is None:
            continue
        if target.enabled and not old.enabled:
            notes.append(f"{target.name}: enabled (its users start at the next test start)")
        fields = [
            f
            for f in ("name", "url", "site_id", "token_auth", "timezone", "seed", "traffic")
            if getattr(old, f) != getattr(target, f)
        ]
        if old.weight != target.weight:
            fields.append("weight (the split of users)")
        if fields:
            notes.append(f"{target.name}: {', '.join(fields)}")
    for field in ("distribution", "seed"):
        if getattr(running, field) != getattr(new, field):
            notes.append(f"{field}: {getattr(new, field)}")
    return notes


class ControlPlane:
    """The workspace, the coordinating role (broker, tally, staging), presets and status."""

    def __init__(
        self,
        environment: Environment,
        coordinator: Coordination,
        workspace: Workspace,
        presets: PresetStore,
        clock: Callable[[], float] = time.time,
    ):
        self.environment = environment
        self.coordinator = coordinator
        self.workspace = workspace
        self.presets = presets
        self.clock = clock
        self.started_config: Config = coordinator.config
        self.staged: Config | None = None
        self.rates = RecentRate()
        self.lock = threading.RLock()
        self.changed_live = False

    # -- changes

    def change(
        self, data: dict[str, Any], *, save: bool, extra_secrets: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Validate a whole new document, make it current, apply what can be applied now, stage the rest."""
        with self.lock:
            self.workspace.check_limits(data)
            config = self.workspace.validate(data, extra_secrets)
            if save:
                self.workspace.check_savable(data)
            self.workspace.commit(data, config, extra_secrets or {})
            applied = self._apply(config)
            if save:
                applied["saved"] = self.workspace.save(self.clock())
            return applied

    def _apply(self, config: Config) -> dict[str, Any]:
        live = self._apply_live(config)
        self.coordinator.stage_config(config)
        self.staged = config
        return {"live": live, "next_start": pending_changes(self.started_config, config), "staged": True}

    def _apply_live(self, config: Config) -> list[str]:
        """Pause disabled/removed targets, resume enabled ones, give each its new pace, through the broker."""
        broker = self.coordinator.broker
        if broker is None:
            return []
        wanted = {t.name: t for t in config.targets}
        done = []
        for name in broker.ledger.targets:
            budget, target = broker.ledger.budget(name), wanted.get(name)
            paused = target is None or not target.enabled
            pace = target.pace() if target is not None else None
            if pace is not None and (pace == budget.pace or pace.timezone != budget.pace.timezone):
                pace = None  # unchanged, or a new time zone (next test start)
            if paused == budget.paused and pace is None:
                continue
            broker.retarget(name, pace=pace, paused=paused)
            self.changed_live = True
            what = "paused" if paused else "running"
            if pace is not None:
                what += f", {pace.visits_per_day if pace.visits_per_day is not None else 'no'} visits/day cap"
            done.append(f"{name}: {what}")
        return done

    def on_test_start(self) -> None:
        """A staged config is the running one from now on; clients learn the live limits again
        (a worker that joined after a live change never heard them)."""
        if self.staged is not None:
            self.started_config, self.staged = self.staged, None
        if self.changed_live and self.coordinator.broker is not None:
            self.coordinator.broker.announce_limits()

    # -- status

    def status(self) -> dict[str, Any]:
        """``GET /api/status`` (see :func:`target_status.status_document`); samples the visit rate."""
        now = self.clock()
        tally = self.coordinator.tally
        self.rates.add(now, tally.started)
        runner = self.environment.runner
        return status_document(
            self.workspace.config,
            self.environment.stats,
            tally,
            self.coordinator.budget_view(now),
            self.rates,
            now=now,
            runner_state=runner.state if runner else None,
            running=bool(runner and runner.state in (STATE_SPAWNING, STATE_RUNNING)),
            secret_values=self.workspace.secret_values(),
        )

    def charts(self) -> dict[str, Any]:
        """``GET /api/charts``: per target its live charts (SVG text, :mod:`.core.target_charts`) and its
        progress toward today's cap, from the status rows (every target of the current config)."""
        status = self.status()
        timeline = self.coordinator.timeline
        ramps = self.coordinator.ramps
        targets = []
        for row in status["targets"]:
            name = row["name"]
            samples = timeline.current(name) if timeline is not None else []
            capacity = ramps.capacity(name) if ramps is not None else None
            targets.append(
                {
                    "name": name,
                    "state": row["state"],
                    "visits_today": row["visits_today"],
                    "granted_today": row["granted_today"],
                    "cap_today": row["cap_today"],
                    "samples": len(samples),
                    "charts": [
                        {"key": chart.key, "title": chart.title, "svg": chart.svg}
                        for chart in target_charts(samples, capacity)
                    ],
                }
            )
        return {"runner": status["runner"], "running": status["running"], "time": status["time"], "targets": targets}
