"""The coordinating role, on the master or the local runner: the day's budgets and the run's verdict.

It owns the permit broker (each target's budget, persisted to the state file) and its upkeep every
second (lease expiry; ending a run once every budget is spent), the load shape of paced runs, the
config staged by the web UI, the ``--traffic-check`` rules, a ``--traffic-backfill`` run, and the
per-target summary at the end. A worker has none of this: it runs a :class:`~.sender.Sender`.

Bad input found while setting up (a check rule, a state file, a backfill range) raises
:class:`~trafficinator_locust.core.errors.UsageError` before anything starts; the plugin turns it
into exit code 2::

    coordinator = Coordinator(deployment, environment)   # reads the options, starts the broker
    coordinator.stage_config(new_config)                 # the web UI: from the next test start on
"""

from __future__ import annotations

from locust.dispatch import _kl_generator
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, STATE_STOPPED, MasterRunner, Runner

import gevent

import logging
import math
import sys
import time
from collections import Counter
from typing import Any

from trafficinator_locust.core.checks import Rule, evaluate, parse_rules
from trafficinator_locust.core.checks import exit_code as check_exit_code
from trafficinator_locust.core.config import Config, Distribution
from trafficinator_locust.core.errors import (
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    CheckSyntaxError,
    UsageError,
)
from trafficinator_locust.core.ramp import RampSpec, parse_ramp
from trafficinator_locust.ops.backfill import prepare
from trafficinator_locust.ops.checkpoint import Checkpoint
from trafficinator_locust.ops.verify import DEFAULT_THRESHOLD, parse_report, render_results, results_json, verify_sent
from trafficinator_locust.runtime.backfill_locust import LocustBackfill, backfill_options
from trafficinator_locust.runtime.broker import (
    DEFAULT_TTL,
    TICK_SECONDS,
    PermitBroker,
    build_budgets,
    restore_ledger,
    spawn_every,
    state_file_for,
)
from trafficinator_locust.runtime.config_shipping import ship
from trafficinator_locust.runtime.deployment import HELLO, Deployment, refusal
from trafficinator_locust.runtime.html_report import write_html
from trafficinator_locust.runtime.options import option
from trafficinator_locust.runtime.ramp_control import RampControl
from trafficinator_locust.runtime.shape import PoolDispatcher, TrafficShape
from trafficinator_locust.runtime.step_window import report_lag
from trafficinator_locust.runtime.summary import (
    BudgetView,
    TargetSummary,
    check_figures,
    report_entry,
    summarize,
    summary_table,
    write_report,
)
from trafficinator_locust.runtime.tally import IN_FLIGHT_KEY, REPORT_KEY, VisitTally
from trafficinator_locust.runtime.timeline import TimelineCollector

logger = logging.getLogger("trafficinator")

DEFAULT_STOP_TIMEOUT = 10.0
UNMANNED_EXACT_UP_TO = 100_000
"""Up to this many users the warning counts Locust's dispatch order exactly; above, by share."""


def shape_wanted(options: Any, config: Config) -> bool:
    """Paced run, a target with a rate, and no -u (or an explicit --traffic-shape)."""
    choice = option(options, "traffic_shape", None)
    if choice is False:
        return False
    if not paced(options):
        if choice:
            logger.warning("--traffic-shape sizes users from rates: it needs --traffic-pacing paced; ignored")
        return False
    if choice or ramping(options):
        return True  # a ramp's rates need users sized to them
    return option(options, "num_users", None) is None and any(
        t.visits_per_day is not None for t in config.enabled_targets
    )


def paced(options: Any) -> bool:
    """Budgets grant at a rate: ``paced`` (each target's pace) and ``ramp`` (each target's ramp)."""
    return option(options, "traffic_pacing", "paced") in ("paced", "ramp")


def ramping(options: Any) -> bool:
    return option(options, "traffic_pacing", "paced") == "ramp"


def check_rules(options: Any, config: Config) -> list[Rule]:
    """The --traffic-check rules, for the targets of ``config``; CheckSyntaxError on a bad rule."""
    texts = option(options, "traffic_check", None) or []
    return parse_rules(texts, known_targets=[t.name for t in config.enabled_targets])


class Coordinator:
    """The master's (or local runner's) half of the plugin."""

    def __init__(self, deployment: Deployment, environment: Environment):
        assert deployment.config is not None and environment.runner is not None
        self.deployment = deployment
        self.environment = environment
        self.runner: Runner = environment.runner
        self.broker: PermitBroker | None = None
        self.shape: TrafficShape | None = None
        self.backfill: LocustBackfill | None = None
        self._staged: Config | None = None
        self._ending = False
        self._spent_since: float | None = None
        self._worker_in_flight: dict[str, int] = {}
        self.timeline: TimelineCollector | None = None  # the run's per-target samples (charts)
        options = environment.parsed_options
        try:
            self.rules = check_rules(options, deployment.config)
        except CheckSyntaxError as error:
            raise UsageError(f"--traffic-check: {error}") from None
        self.ramp_spec: RampSpec | None = None
        self.ramps: RampControl | None = None
        if ramping(options):
            self.ramp_spec = parse_ramp(option(options, "traffic_ramp", "") or "")  # UsageError: exit 2
        if option(options, "traffic_backfill", None):
            self._prepare_backfill()
        if isinstance(self.runner, MasterRunner):
            self.runner.register_message(HELLO, lambda environment, msg, **_: self._on_hello(msg))
        self._start_broker()
        ship(options, deployment.config, deployment.generation)

    @property
    def config(self) -> Config:
        """The config of the current generation."""
        assert self.deployment.config is not None
        return self.deployment.config

    @property
    def tally(self) -> VisitTally:
        return self.deployment.tally

    # -- set-up

    def _start_broker(self) -> None:
        options, runner = self.environment.parsed_options, self.runner
        state_file = state_file_for(options, self.config)
        state = state_file.load() if state_file else None  # StateError (a UsageError) on a bad file
        ledger = restore_ledger(build_budgets(self.config, paced(options)), state, time.time())
        alive = None
        if isinstance(runner, MasterRunner):
            clients = runner.clients
            alive = lambda holder: holder in clients and clients[holder].state != STATE_MISSING
        self.broker = PermitBroker(
            ledger,
            send=lambda msg_type, data, client_id: runner.send_message(msg_type, data, client_id=client_id),
            state_file=state_file,
            ttl=option(options, "traffic_lease_ttl", DEFAULT_TTL),
            alive=alive,
        )
        self.broker.attach(runner)
        self.broker.save()
        spawn_every(runner.greenlet, TICK_SECONDS, self._upkeep, "budget upkeep")
        if self.environment.shape_class is None and shape_wanted(options, self.config):
            self._install_shape()
        where = state_file.path if state_file else "not kept (--traffic-state '')"
        logger.info(
            "trafficinator: pacing %s; users %s; budget state %s",
            option(options, "traffic_pacing", "paced"),
            "sized per target by the shape" if self.shape else "from -u / the web UI",
            where,
        )

    def _prepare_backfill(self) -> None:
        """``--traffic-backfill``: check the range and targets now (exit 2 before anything starts), then take
        over the test."""
        try:
            options = backfill_options(self.environment.parsed_options)
            prepare(self.config, options, Checkpoint(None), time.time())
        except (ValueError, UsageError) as error:
            raise UsageError(f"--traffic-backfill: {error}") from None
        self.backfill = LocustBackfill(self.config, options)
        self.backfill.install(self.environment)

    def _install_shape(self) -> None:
        assert self.broker is not None
        by_target = {cls.target.name: cls for cls in self.deployment.user_classes.values()}
        self.shape = TrafficShape(
            self.broker,
            self.config.enabled_targets,
            by_target,
            run_time=lambda: option(self.environment.parsed_options, "run_time", None),
            settled=self._settled,
        )
        self.shape.runner = self.runner
        self.environment.shape_class = self.shape
        self.environment.dispatcher_class = PoolDispatcher

    def _on_hello(self, msg: Any) -> None:
        """Refuse a worker that would build other classes (see :func:`~.deployment.refusal`)."""
        theirs = msg.data or {}
        if theirs.get("pending"):
            logger.info(
                "trafficinator: worker %s has no traffic config; it gets the master's with the first spawn",
                msg.node_id,
            )
            return
        reason = refusal(theirs, self.deployment.identity(), self.deployment.generation)
        if reason is None:
            return
        logger.error(
            "trafficinator: worker %s runs a different traffic config (%s); refusing it and stopping. "
            "Start every worker with the same --traffic-config and the same token variables.",
            msg.node_id,
            reason,
        )
        self.environment.process_exit_code = EXIT_USAGE
        gevent.spawn(_refuse_and_exit, self.environment)

    # -- a new config, staged by the web UI

    def stage_config(self, config: Config) -> None:
        """Run ``config`` from the next test start on (the web UI's targets API).

        Applied at once when no test runs, else when the running test stops; workers take it with
        the next spawn message. Each target's count for its local day carries over by name.
        """
        self._staged = config
        if self.runner.state in (STATE_INIT, STATE_STOPPED):
            self._apply_staged()

    def _apply_staged(self) -> None:
        config, self._staged = self._staged, None
        if config is None:
            return
        self.deployment.use(self.environment, config, self.deployment.generation + 1)
        if self.broker is not None:
            budgets = build_budgets(config, paced(self.environment.parsed_options))
            self.broker.ledger = restore_ledger(budgets, self.broker.ledger.to_state(), time.time())
            self.broker.save()
        if self.shape is not None:
            self._install_shape()
        try:
            self.rules = check_rules(self.environment.parsed_options, config)
        except CheckSyntaxError as error:
            logger.error(
                "trafficinator: --traffic-check no longer fits the new config (%s); rules naming a missing target fail",
                error,
            )
        ship(self.environment.parsed_options, config, self.deployment.generation)
        logger.info(
            "trafficinator: config generation %d with %d enabled targets is in use from the next test start",
            self.deployment.generation,
            len(config.enabled_targets),
        )

    # -- every second

    def _upkeep(self) -> None:
        """Expire leases; end a run (without our shape) once every budget is spent."""
        assert self.broker is not None
        self.broker.tick()
        if self.timeline is not None and self.runner.state in (STATE_SPAWNING, STATE_RUNNING):
            self.timeline.tick()
        if self.ramps is not None and self.runner.state in (STATE_SPAWNING, STATE_RUNNING):
            self.ramps.tick()
            if self.ramps.done and self.shape is not None:
                self.shape.end("every target's knee is found")
        spent = self.broker.all_spent()
        if not spent:
            self._spent_since = None  # budgets came back (a new day, a raised cap): a later spend gets its full grace
        if self.shape is not None or self._ending or self.runner.state not in (STATE_SPAWNING, STATE_RUNNING):
            return
        if spent and self._settled():
            self._ending = True
            headless = bool(option(self.environment.parsed_options, "headless", False))
            logger.info(
                "trafficinator: every target's daily budget is spent; %s",
                "ending the run" if headless else "stopping the test",
            )
            gevent.spawn(self.runner.quit if headless else self.runner.stop)

    def visits_in_flight(self) -> int:
        """Visits being sent now: this process's users, plus each worker's latest report."""
        return self.tally.in_flight + sum(self._worker_in_flight.values())

    def _settled(self) -> bool:
        """Once every budget is spent, may the run end? When no visit is still being sent (their
        permits are spent, so they finish rather than being cut), or after ``--stop-timeout``."""
        now = time.monotonic()
        if self._spent_since is None:
            self._spent_since = now
        stop_timeout = self.environment.stop_timeout or DEFAULT_STOP_TIMEOUT
        return self.visits_in_flight() == 0 or now - self._spent_since >= stop_timeout

    # -- Locust's events (called by the plugin, in order with the sender's)

    def on_test_start(self) -> None:
        self.tally.reset()
        ledger = self.broker.ledger if self.broker is not None else None
        self.timeline = TimelineCollector(
            [t.name for t in self.config.enabled_targets],
            self.environment.stats,
            self.tally,
            lambda name: ledger.budget(name).pace if ledger is not None and name in ledger.targets else None,
            lag=report_lag(self.runner),
        )
        self._ending = False
        self._spent_since = None
        if self.broker is not None:
            self.broker.start_run()
            if self.ramp_spec is not None:
                planners = {cls.target.name: cls.planner for cls in self.deployment.user_classes.values()}
                specs = {t.name: t.ramp_spec(self.ramp_spec) for t in self.config.enabled_targets}
                self.ramps = RampControl(self.config, self.broker, self.environment, self.tally, specs, planners)
                self.ramps.shape = self.shape
                self.ramps.start()
        users = getattr(self.environment.runner, "target_user_count", None)
        if users and self.environment.shape_class is None:  # the shape gives every target its own pool
            for warning in unmanned(self.config, int(users)):
                logger.warning(warning)

    def on_test_stopping(self) -> None:
        """The run's window ends when stopping starts, not after users took their stop timeout."""
        if self.broker is not None:
            self.broker.end_run()

    def on_test_stop(self) -> None:
        if self.timeline is not None:
            self.timeline.finish()
        if self.broker is not None:
            self.broker.end_run()
        if self._staged is not None:
            self._apply_staged()

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        self.tally.merge(data.get(REPORT_KEY, {}))
        self._worker_in_flight[client_id] = int(data.get(IN_FLIGHT_KEY, 0))

    def on_quitting(self) -> None:
        """The per-target summary, the checks (their exit code) and the JSON report."""
        if self.backfill is not None:
            return  # a backfill prints its own summary and writes its report (the shape verify reads)
        if self.broker is not None:
            self.broker.end_run()
        environment = self.environment
        view = self.budget_view()
        capacities = None
        if self.ramps is not None:
            self.ramps.finish()
            capacities = {t.name: self.ramps.capacity(t.name) for t in self.config.enabled_targets}
        rows = summarize(self.config, environment.stats, self.tally, view, capacities)
        print("\nTrafficinator per-target summary\n" + summary_table(rows), flush=True)
        if self.ramps is not None and environment.process_exit_code is None:
            # a ramp drives each Matomo past its knee: failures up there are the measurement, not an error
            environment.process_exit_code = 0
        results = evaluate(self.rules, check_figures(rows))
        if results:
            print("Trafficinator checks\n" + "\n".join(f"  {result}" for result in results), flush=True)
            if check_exit_code(results):
                environment.process_exit_code = check_exit_code(results)
        wait = option(environment.parsed_options, "traffic_verify", None)
        verdict = self._verify(rows, wait) if wait is not None else None
        html = option(environment.parsed_options, "traffic_html", None)
        if html:  # the timeline's last window was sampled at test stop (not after a --traffic-verify wait)
            seconds = round(view.window[1] - view.window[0], 1) if view and view.window else None
            pacing = option(environment.parsed_options, "traffic_pacing", "paced")
            write_html(html, self.config, rows, self.timeline, {"pacing": pacing, "seconds": seconds})
        path = option(environment.parsed_options, "traffic_report", None)
        if path:
            run: dict[str, Any] | None = None
            if view is not None and view.window is not None:
                run = {
                    "pacing": "paced" if view.paced else "stress",
                    "started": view.window[0],
                    "ended": view.window[1],
                    "seconds": round(view.window[1] - view.window[0], 3),
                }
            if results:
                checks = [
                    {"target": r.target, "rule": str(r.rule), "actual": r.actual, "passed": r.passed} for r in results
                ]
                run = {**(run or {}), "checks": checks}
            write_report(path, self.config, rows, run, verdict)

    def _verify(self, rows: list[TargetSummary], wait: float) -> dict[str, Any]:
        """``--traffic-verify``: after ``wait`` seconds (archiving), every report of the run's days as
        ``trafficinator verify`` checks them; a failure is exit code 4 unless a check already failed (3)."""
        print(f"Trafficinator verify: waiting {wait:g} s for Matomo's archiving, then asking each target", flush=True)
        gevent.sleep(wait)
        sent = parse_report({"targets": [report_entry(row) for row in rows]}, "the run")
        try:
            results = verify_sent(self.config, sent)
        except UsageError as error:  # cannot happen with the run's own config; said, never a traceback
            print(f"Trafficinator verify: {error}", file=sys.stderr, flush=True)
            results = []
        print("Trafficinator verify (what each Matomo stored)", flush=True)
        passed = render_results(results, DEFAULT_THRESHOLD, sys.stdout, sys.stderr)
        sys.stdout.flush()
        if not passed and self.environment.process_exit_code != EXIT_CHECK_FAILED:
            self.environment.process_exit_code = EXIT_VERIFY_FAILED
        return results_json(results, DEFAULT_THRESHOLD)

    # -- views for reports and the web UI

    def budget_view(self, now: float | None = None) -> BudgetView | None:
        """Each target's pace, budget status and the run's window."""
        if self.broker is None:
            return None
        now = time.time() if now is None else now
        ledger = self.broker.ledger
        start, end = self.broker.run_started_at, self.broker.run_ended_at
        return BudgetView(
            paces={name: ledger.budget(name).pace for name in ledger.targets},
            statuses={status.name: status for status in ledger.status(now)},
            window=(start, end if end is not None else now) if start is not None else None,
            paced=any(ledger.budget(name).paced for name in ledger.targets),
        )


def unmanned(config: Config, users: int) -> list[str]:
    """Targets that ``users`` split by weight leave without a user: they would send nothing, silently.

    Counted with Locust's own weighted order (``locust.dispatch._kl_generator``, what its dispatcher
    spawns by), so the warning names exactly the classes Locust starts no user of.
    """
    if config.distribution is Distribution.random:
        return []  # any user sends any target's visits
    enabled = config.enabled_targets
    weights = [(t.name, 1.0 if config.distribution is Distribution.round_robin else t.weight) for t in enabled]
    picks = _kl_generator(weights)
    counts = Counter(next(picks) for _ in range(min(users, UNMANNED_EXACT_UP_TO)))
    total = sum(weight for _, weight in weights)
    return [
        f"target {name} gets no user: {users} user(s) split by weight leave none for its share "
        f"{weight / total:.2%}; run with at least -u {math.ceil(total / weight)}, raise its weight, "
        "or drop -u (the shape sizes every target's users)"
        for name, weight in weights
        if not counts[name] and (users <= UNMANNED_EXACT_UP_TO or users * weight / total < 1)
    ]


def _refuse_and_exit(environment: Environment) -> None:
    """Tell the workers to quit, then end the master's main greenlet with exit code 2.

    A headless master may still sit in Locust's wait for ``--expect-workers``, which no runner
    call ends; raising in the main greenlet is the one way out that leaves no process behind.
    """
    if environment.runner is not None:
        environment.runner.quit()
    gevent.get_hub().parent.throw(SystemExit(EXIT_USAGE))
