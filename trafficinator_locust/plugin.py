"""Wiring into Locust: command-line options, config discovery at import, and event listeners.

Locust imports the locustfile before it parses the full command line, so the config path is
pre-parsed here with Locust's own parser (which honours ``--config``, ``locust.conf`` and
``pyproject.toml``). Listeners are attached per environment in :func:`register` so Locust's test
base (which swaps ``locust.events``) and real runs behave alike.

Per process role:

* master or local runner: the permit broker (the day's budget, persisted to the state file), its
  upkeep every second (lease expiry, ending the run once every budget is spent), the load shape
  of paced runs, and the per-target summary;
* worker or local runner: the permit client every user takes a permit from before a visit.
"""

from __future__ import annotations

from locust import events
from locust.argument_parser import LocustArgumentParser, get_empty_argument_parser
from locust.env import Environment
from locust.runners import (
    STATE_INIT,
    STATE_MISSING,
    STATE_RUNNING,
    STATE_SPAWNING,
    STATE_STOPPED,
    MasterRunner,
    Runner,
    WorkerRunner,
)

import gevent

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trafficinator_locust.core.checks import EXIT_CHECK_FAILED, METRICS, Rule, evaluate, parse_rules
from trafficinator_locust.core.checks import exit_code as check_exit_code
from trafficinator_locust.core.config import Config, load_config
from trafficinator_locust.core.errors import CheckSyntaxError, ConfigError, Problem, StateError, UsageError
from trafficinator_locust.core.legacy import is_legacy_environment, legacy_config
from trafficinator_locust.ops.backfill import Checkpoint, prepare
from trafficinator_locust.runtime.backfill_locust import LocustBackfill, backfill_options
from trafficinator_locust.runtime.broker import (
    DEFAULT_TTL,
    MSG_GRANT,
    MSG_LIMITS,
    TICK_SECONDS,
    PermitBroker,
    PermitClient,
    StateFile,
    build_budgets,
    default_state_path,
    restore_ledger,
    spawn_every,
)
from trafficinator_locust.runtime.config_shipping import received, ship
from trafficinator_locust.runtime.shape import PoolDispatcher, TrafficShape
from trafficinator_locust.runtime.summary import (
    REPORT_KEY,
    BudgetView,
    VisitTally,
    check_figures,
    summarize,
    summary_table,
    write_report,
)
from trafficinator_locust.runtime.users import (
    DEFAULT_TIMEOUT,
    AwaitingConfig,
    TargetUser,
    build_user_classes,
    set_permits,
    set_timeouts,
    set_worker_index,
    start_bulk_senders,
    stop_bulk_senders,
)
from trafficinator_locust.web.app import add_web_arguments
from trafficinator_locust.web.app import install as install_web_ui

logger = logging.getLogger("trafficinator")

CONFIG_ENV = "TRAFFICINATOR_CONFIG"
HELLO = "trafficinator:hello"
IN_FLIGHT_KEY = "trafficinator_in_flight"
DEFAULT_STOP_TIMEOUT = 10.0
EXIT_CONFIG_ERROR = 2
PACINGS = ("paced", "stress")


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def add_arguments(parser: LocustArgumentParser) -> None:
    """The plugin's options. Safe to call many times (Locust's web UI re-fires the hook)."""
    if any("--traffic-config" in action.option_strings for action in parser._actions):
        return
    group = parser.add_argument_group("trafficinator", "Matomo traffic for many targets")
    group.add_argument(
        "--traffic-config", metavar="FILE", env_var=CONFIG_ENV, default=None, help=f"Traffic YAML (or ${CONFIG_ENV})."
    )
    group.add_argument(
        "--traffic-report", metavar="FILE", default=None, help="Write the per-target run summary as JSON."
    )
    group.add_argument(
        "--traffic-pacing",
        choices=PACINGS,
        default="paced",
        help="paced: each target at its visits_per_day rate (shaped by its profile) and daily cap; "
        "stress: daily caps only, the user count drives the load. Targets without visits_per_day are never limited.",
    )
    group.add_argument(
        "--traffic-shape",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Size each target's users from its rate and end the run when every budget is spent. "
        "Default: on in paced runs without -u/--users when a target has visits_per_day.",
    )
    group.add_argument(
        "--traffic-state",
        metavar="FILE",
        default=None,
        help="File keeping each target's count for its local day across restarts "
        "(default: $XDG_STATE_HOME/trafficinator/<hash of the config path>.json; '' keeps nothing).",
    )
    group.add_argument(
        "--traffic-lease-ttl",
        metavar="SECONDS",
        type=_positive,
        default=DEFAULT_TTL,
        help="Lifetime of a batch of permits held by a process.",
    )
    group.add_argument(
        "--traffic-check",
        metavar="RULES",
        action="append",
        default=None,
        help="CI thresholds per target, e.g. 'fail_ratio<0.01,p95<800,Production:delivered>=0.98'; "
        f"exit code {EXIT_CHECK_FAILED} when one fails. Metrics: {', '.join(METRICS)}.",
    )
    timeout = group.add_argument(
        "--traffic-timeout",
        metavar="SECONDS",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        help="Connect and read timeout of each tracking request.",
    )
    # Options added to a group lack Locust's UI attributes, so they stay off the web UI's form;
    # the timeout may be changed per test there.
    timeout.include_in_web_ui, timeout.is_secret, timeout.is_required, timeout.is_multiple = True, False, False, False
    backfill = parser.add_argument_group(
        "trafficinator backfill", "Send past days (cdt + bulk) inside Locust instead of live visits"
    )
    backfill.add_argument(
        "--traffic-backfill",
        metavar="FROM:TO",
        default=None,
        help="Backfill these local days (e.g. 2026-01-01:2026-01-31) with Locust stats per target; the test ends when done. See docs/backfill.md.",
    )
    backfill.add_argument(
        "--traffic-backfill-checkpoint",
        metavar="FILE",
        default="backfill-checkpoint.json",
        help="Resume file of --traffic-backfill (default: %(default)s).",
    )
    backfill.add_argument(
        "--traffic-backfill-rate",
        metavar="HITS",
        type=_positive,
        default=None,
        help="Max hits per second per target for --traffic-backfill.",
    )
    add_web_arguments(parser)


def discover_config(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Config | None:
    """Find and load the config: --traffic-config / TRAFFICINATOR_CONFIG / locust.conf, else legacy env.

    Returns ``None`` only when nothing is configured and the user asked for help.
    """
    env = os.environ if env is None else env
    parser = get_empty_argument_parser(add_help=False)
    add_arguments(parser)
    options, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    path = options.traffic_config or env.get(CONFIG_ENV)
    if path:
        return load_config(path, env=env)
    if is_legacy_environment(env):
        return legacy_config(env)
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        return None
    raise ConfigError(
        [
            Problem(
                "command line",
                None,
                "",
                f"no traffic config: pass --traffic-config FILE, set {CONFIG_ENV}, or set MATOMO_URL (single-target variables)",
            )
        ]
    )


def awaits_shipped_config(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> bool:
    """A worker given no config at all (e.g. ``locust -f - --worker``): its master will ship one."""
    env = os.environ if env is None else env
    args = sys.argv[1:] if argv is None else argv
    parser = get_empty_argument_parser(add_help=False)
    add_arguments(parser)
    parser.add_argument("--worker", action="store_true")
    options, _ = parser.parse_known_args(args)
    worker = options.worker or env.get("LOCUST_MODE_WORKER", "").lower() in ("1", "true", "yes")
    configured = options.traffic_config or env.get(CONFIG_ENV) or is_legacy_environment(env)
    return bool(worker) and not configured


def exit_on_config_error(error: ConfigError) -> None:
    """Print every problem, no traceback, exit code 2: the contract for bad input."""
    count = len(error.problems)
    sys.stderr.write(f"trafficinator: {count} problem{'s' if count != 1 else ''} in the traffic config:\n")
    for problem in error.problems:
        sys.stderr.write(f"  {problem}\n")
    sys.exit(EXIT_CONFIG_ERROR)


def _option(options: Any, name: str, default: Any) -> Any:
    return getattr(options, name, default) if options is not None else default


def state_file_for(options: Any, config: Config, env: Mapping[str, str] | None = None) -> StateFile | None:
    """``--traffic-state`` (``''`` disables persistence), else the default path for this config."""
    chosen = _option(options, "traffic_state", None)
    if chosen == "":
        return None
    return StateFile(chosen if chosen else default_state_path(config.source, env))


def shape_wanted(options: Any, config: Config) -> bool:
    """Paced run, a target with a rate, and no -u (or an explicit --traffic-shape)."""
    choice = _option(options, "traffic_shape", None)
    paced = _option(options, "traffic_pacing", "paced") == "paced"
    if choice is False:
        return False
    if not paced:
        if choice:
            logger.warning("--traffic-shape sizes users from rates: it needs --traffic-pacing paced; ignored")
        return False
    if choice:
        return True
    return _option(options, "num_users", None) is None and any(
        t.visits_per_day is not None for t in config.enabled_targets
    )


@dataclass
class Plugin:
    """What the locustfile exposes: the config, its user classes, and the shared tally.

    ``config`` is ``None`` only on a worker started without one (``-f -``): it holds a placeholder
    class until the master's config arrives with the first spawn message (see :mod:`shipping`).
    ``generation`` counts configs: 0 at start, +1 for each one staged through :meth:`stage_config`.
    """

    config: Config | None
    user_classes: dict[str, type[TargetUser]]
    tally: VisitTally = field(default_factory=VisitTally)
    broker: PermitBroker | None = None
    permits: PermitClient | None = None
    shape: TrafficShape | None = None
    rules: list[Rule] = field(default_factory=list)
    generation: int = 0
    environment: Environment | None = None
    backfill: LocustBackfill | None = None
    _staged: Config | None = None
    _ending: bool = False
    _spent_since: float | None = None
    _worker_in_flight: dict[str, int] = field(default_factory=dict)

    def register(self, environment: Environment) -> None:
        """Attach listeners to one environment (called from the ``init`` event)."""
        self.environment = environment
        if not environment.stop_timeout:
            # Let a hit in flight finish and be counted; users stop at their next pause.
            environment.stop_timeout = DEFAULT_STOP_TIMEOUT
        if environment.host:
            logger.warning("--host is ignored: each target sends to the tracker URL from the traffic config")
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(HELLO, lambda environment, msg, **_: self._on_hello(environment, msg))
        if isinstance(runner, WorkerRunner):
            runner.send_message(HELLO, self.identity() if self.config is not None else {"pending": True})
        if runner is not None and not isinstance(runner, WorkerRunner):
            self.rules = self._parse_checks(environment)
            if _option(environment.parsed_options, "traffic_backfill", None):
                self._prepare_backfill(environment)
            self._start_broker(environment, runner)
            ship(environment.parsed_options, self.config, self.generation)
        if runner is not None and not isinstance(runner, MasterRunner):
            self._start_client(runner)
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stopping.add_listener(self._on_test_stopping)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.report_to_master.add_listener(self._on_report_to_master)
        environment.events.worker_report.add_listener(self._on_worker_report)
        environment.events.quitting.add_listener(self._on_quitting)
        if getattr(environment, "web_ui", None) is not None:
            install_web_ui(environment, self)

    def identity(self) -> dict[str, Any]:
        """What must match between master and workers: the config (tokens hashed) and the class names."""
        assert self.config is not None
        return {
            "fingerprint": self.config.fingerprint(),
            "classes": sorted(self.user_classes),
            "generation": self.generation,
        }

    def _on_hello(self, environment: Environment, msg: Any) -> None:
        """Refuse a worker that would build other classes (Locust would crash it with a KeyError).

        A worker without a config, or with an older generation than the master's, takes the
        master's config at the next test start; only one that claims the same generation with a
        different config is refused.
        """
        theirs, mine = msg.data or {}, self.identity()
        if theirs.get("pending"):
            logger.info(
                "trafficinator: worker %s has no traffic config; it gets the master's with the first spawn", msg.node_id
            )
            return
        if theirs == mine or theirs.get("generation", 0) < self.generation:
            return
        extra = sorted(set(theirs.get("classes", [])) ^ set(mine["classes"]))
        logger.error(
            "trafficinator: worker %s runs a different traffic config (fingerprint %s, master %s%s); refusing it and stopping. "
            "Start every worker with the same --traffic-config and the same token variables.",
            msg.node_id,
            theirs.get("fingerprint"),
            mine["fingerprint"],
            f"; classes differing: {', '.join(extra)}" if extra else "",
        )
        environment.process_exit_code = EXIT_CONFIG_ERROR
        gevent.spawn(_refuse_and_exit, environment)

    def _parse_checks(self, environment: Environment) -> list[Rule]:
        """Read --traffic-check before anything starts: a typo exits 2, not after a long run."""
        assert self.config is not None
        try:
            return _check_rules(environment, self.config)
        except CheckSyntaxError as error:
            sys.stderr.write(f"trafficinator: --traffic-check: {error}\n")
            sys.exit(EXIT_CONFIG_ERROR)

    # -- set-up per role

    def _start_broker(self, environment: Environment, runner: Runner) -> None:
        assert self.config is not None
        options = environment.parsed_options
        state_file = state_file_for(options, self.config)
        try:
            state = state_file.load() if state_file else None
        except StateError as error:
            sys.stderr.write(f"trafficinator: {error}\n")
            sys.exit(EXIT_CONFIG_ERROR)
        ledger = restore_ledger(build_budgets(self.config, _paced(options)), state, time.time())
        alive = None
        if isinstance(runner, MasterRunner):
            clients = runner.clients
            alive = lambda holder: holder in clients and clients[holder].state != STATE_MISSING  # noqa: E731
        self.broker = PermitBroker(
            ledger,
            send=lambda msg_type, data, client_id: runner.send_message(msg_type, data, client_id=client_id),
            state_file=state_file,
            ttl=_option(options, "traffic_lease_ttl", DEFAULT_TTL),
            alive=alive,
        )
        self.broker.attach(runner)
        self.broker.save()
        spawn_every(runner.greenlet, TICK_SECONDS, lambda: self._upkeep(environment, runner), "budget upkeep")
        self.shape = None
        if environment.shape_class is None and shape_wanted(options, self.config):
            self._install_shape(environment, runner)
        where = state_file.path if state_file else "not kept (--traffic-state '')"
        logger.info(
            "trafficinator: pacing %s; users %s; budget state %s",
            "paced" if _paced(options) else "stress",
            "sized per target by the shape" if self.shape else "from -u / the web UI",
            where,
        )

    def _prepare_backfill(self, environment: Environment) -> None:
        """``--traffic-backfill``: check the range and targets now (exit 2 before anything starts), then take over the test."""
        assert self.config is not None
        try:
            options = backfill_options(environment.parsed_options)
            prepare(self.config, options, Checkpoint(None), time.time())
        except (ValueError, UsageError) as error:
            sys.stderr.write(f"trafficinator: --traffic-backfill: {error}\n")
            sys.exit(EXIT_CONFIG_ERROR)
        self.backfill = LocustBackfill(self.config, options)
        self.backfill.install(environment)

    def _install_shape(self, environment: Environment, runner: Runner) -> None:
        assert self.config is not None and self.broker is not None
        by_target = {cls.target.name: cls for cls in self.user_classes.values()}
        self.shape = TrafficShape(
            self.broker,
            self.config.enabled_targets,
            by_target,
            run_time=lambda: _option(environment.parsed_options, "run_time", None),
            settled=lambda: self._settled(environment),
        )
        self.shape.runner = runner
        environment.shape_class = self.shape
        environment.dispatcher_class = PoolDispatcher

    def _start_client(self, runner: Runner) -> None:
        # Grants go to whichever permit client is current: a new config brings a new one.
        runner.register_message(
            MSG_GRANT, lambda environment, msg, **_: self.permits.on_grant(msg.data) if self.permits else None
        )
        runner.register_message(
            MSG_LIMITS, lambda environment, msg, **_: self.permits.on_limits(msg.data) if self.permits else None
        )
        self._new_permit_client(runner)
        spawn_every(
            runner.greenlet, TICK_SECONDS, lambda: self.permits.tick() if self.permits else None, "permit reports"
        )

    def _new_permit_client(self, runner: Runner) -> None:
        config = self.config
        limited = [t.name for t in config.enabled_targets if t.visits_per_day is not None] if config is not None else []
        self.permits = PermitClient(limited, send=lambda msg_type, data, client_id: runner.send_message(msg_type, data))
        set_permits(self.user_classes, self.permits)

    # -- a new config: shipped to a worker, or staged on the master

    def stage_config(self, config: Config) -> None:
        """Run ``config`` from the next test start on (master or local runner; the web UI's targets API).

        Applied at once when no test runs, else when the running test stops; workers take it with
        the next spawn message. Each target's count for its local day carries over by name.
        """
        self._staged = config
        runner = self.environment.runner if self.environment is not None else None
        if runner is not None and runner.state in (STATE_INIT, STATE_STOPPED):
            self._apply_staged()

    def _apply_staged(self) -> None:
        environment, config = self.environment, self._staged
        if environment is None or config is None or environment.runner is None:
            return
        self._staged = None
        runner = environment.runner
        self._use_config(environment, config, self.generation + 1)
        if self.broker is not None:
            now = time.time()
            self.broker.ledger = restore_ledger(
                build_budgets(config, _paced(environment.parsed_options)), self.broker.ledger.to_state(), now
            )
            self.broker.save()
        if self.shape is not None:
            self._install_shape(environment, runner)
        try:
            self.rules = _check_rules(environment, config)
        except CheckSyntaxError as error:
            logger.error(
                "trafficinator: --traffic-check no longer fits the new config (%s); rules naming a missing target fail",
                error,
            )
        ship(environment.parsed_options, config, self.generation)
        logger.info(
            "trafficinator: config generation %d with %d enabled targets is in use from the next test start",
            self.generation,
            len(config.enabled_targets),
        )

    def _adopt_shipped(self, environment: Environment) -> None:
        """On a worker at test start: take the master's config when this one has none or an older one."""
        shipment = received(environment.parsed_options)
        if shipment is None:
            if self.config is None:
                logger.error(
                    "trafficinator: the master sent no traffic config; start it with --traffic-config (and the same plugin version)"
                )
            return
        if self.config is not None and shipment.generation <= self.generation:
            return
        self._use_config(environment, shipment.config, shipment.generation)
        assert environment.runner is not None
        environment.runner.send_message(HELLO, self.identity())

    def _use_config(self, environment: Environment, config: Config, generation: int) -> None:
        """Swap in ``config``: new user classes (Locust looks them up by name in ``environment.user_classes``)."""
        self.config, self.generation = config, generation
        self.user_classes = build_user_classes(config, self.tally)
        environment.user_classes[:] = list(self.user_classes.values())
        if self.permits is not None and environment.runner is not None:
            self._new_permit_client(environment.runner)

    # -- listeners

    def _upkeep(self, environment: Environment, runner: Runner) -> None:
        """Every second on the master: expire leases; end a run (without our shape) once every budget is spent."""
        assert self.broker is not None
        self.broker.tick()
        spent = self.broker.all_spent()
        if not spent:
            self._spent_since = None  # budgets came back (a new day, a raised cap): a later spend gets its full grace
        if self.shape is not None or self._ending or runner.state not in (STATE_SPAWNING, STATE_RUNNING):
            return
        if spent and self._settled(environment):
            self._ending = True
            headless = bool(_option(environment.parsed_options, "headless", False))
            logger.info(
                "trafficinator: every target's daily budget is spent; %s",
                "ending the run" if headless else "stopping the test",
            )
            gevent.spawn(runner.quit if headless else runner.stop)

    def visits_in_flight(self) -> int:
        """Visits being sent now: this process's users, plus each worker's latest report."""
        return self.tally.in_flight + sum(self._worker_in_flight.values())

    def _settled(self, environment: Environment) -> bool:
        """Once every budget is spent, may the run end? When no visit is still being sent (their
        permits are spent, so they finish rather than being cut), or after ``--stop-timeout``."""
        now = time.monotonic()
        if self._spent_since is None:
            self._spent_since = now
        return self.visits_in_flight() == 0 or now - self._spent_since >= (
            environment.stop_timeout or DEFAULT_STOP_TIMEOUT
        )

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            self._adopt_shipped(environment)
        set_timeouts(self.user_classes, _option(environment.parsed_options, "traffic_timeout", DEFAULT_TIMEOUT))
        if isinstance(runner, WorkerRunner):
            set_worker_index(self.user_classes, runner.worker_index)
        else:
            self.tally.reset()
            self._ending = False
            self._spent_since = None
            if self.broker is not None:
                self.broker.start_run()
        if self.permits is not None and not isinstance(runner, MasterRunner):
            self.permits.start()
            start_bulk_senders(
                self.user_classes, environment, _option(environment.parsed_options, "traffic_timeout", DEFAULT_TIMEOUT)
            )

    def _on_test_stopping(self, environment: Environment, **_: Any) -> None:
        """The run's window ends when stopping starts, not after users took their stop timeout."""
        if self.broker is not None and not isinstance(environment.runner, WorkerRunner):
            self.broker.end_run()

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.permits is not None and not isinstance(environment.runner, MasterRunner):
            stop_bulk_senders(
                self.user_classes, _option(environment.parsed_options, "traffic_timeout", DEFAULT_TIMEOUT)
            )
            self.permits.return_all()
        if self.broker is not None and not isinstance(environment.runner, WorkerRunner):
            self.broker.end_run()
        if self._staged is not None and not isinstance(environment.runner, WorkerRunner):
            self._apply_staged()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.tally.drain()
        data[IN_FLIGHT_KEY] = self.tally.in_flight

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        self.tally.merge(data.get(REPORT_KEY, {}))
        self._worker_in_flight[client_id] = int(data.get(IN_FLIGHT_KEY, 0))

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner) or self.backfill is not None:
            return  # a backfill prints its own summary and writes its report (the shape verify reads)
        if self.broker is not None:
            self.broker.end_run()
        assert self.config is not None
        view = self.budget_view()
        rows = summarize(self.config, environment.stats, self.tally, view)
        print("\nTrafficinator per-target summary\n" + summary_table(rows), flush=True)
        results = evaluate(self.rules, check_figures(rows))
        if results:
            print("Trafficinator checks\n" + "\n".join(f"  {result}" for result in results), flush=True)
            if check_exit_code(results):
                environment.process_exit_code = check_exit_code(results)
        path = environment.parsed_options.traffic_report if environment.parsed_options else None
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
                run = {
                    **(run or {}),
                    "checks": [
                        {"target": r.target, "rule": str(r.rule), "actual": r.actual, "passed": r.passed}
                        for r in results
                    ],
                }
            write_report(path, self.config, rows, run)

    # -- views for reports and the web UI

    def budget_view(self, now: float | None = None) -> BudgetView | None:
        """Each target's pace, budget status and the run's window (master or local runner only)."""
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


def _check_rules(environment: Environment, config: Config) -> list[Rule]:
    """The --traffic-check rules, for the targets of ``config``; CheckSyntaxError on a bad rule."""
    texts = _option(environment.parsed_options, "traffic_check", None) or []
    return parse_rules(texts, known_targets=[t.name for t in config.enabled_targets])


def _paced(options: Any) -> bool:
    return _option(options, "traffic_pacing", "paced") == "paced"


def _refuse_and_exit(environment: Environment) -> None:
    """Tell the workers to quit, then end the master's main greenlet with exit code 2.

    A headless master may still sit in Locust's wait for ``--expect-workers``, which no runner
    call ends; raising in the main greenlet is the one way out that leaves no process behind.
    """
    if environment.runner is not None:
        environment.runner.quit()
    gevent.get_hub().parent.throw(SystemExit(EXIT_CONFIG_ERROR))


def load_plugin(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Plugin | None:
    """Import-time entry point for the locustfile; exits with code 2 on a bad config."""
    events.init_command_line_parser.add_listener(add_arguments)
    if awaits_shipped_config(argv, env):
        plugin = Plugin(config=None, user_classes={AwaitingConfig.__name__: AwaitingConfig})
        events.init.add_listener(lambda environment, **_: plugin.register(environment))
        return plugin
    try:
        config = discover_config(argv, env)
    except ConfigError as error:
        exit_on_config_error(error)
        raise  # unreachable: keeps type checkers honest
    if config is None:
        return None
    plugin = Plugin(config=config, user_classes={})
    plugin.user_classes = build_user_classes(config, plugin.tally)
    events.init.add_listener(lambda environment, **_: plugin.register(environment))
    return plugin
