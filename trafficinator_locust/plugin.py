"""Wiring into Locust: command-line options, config discovery at import, and the roles per process.

Locust imports the locustfile before it parses the full command line, so the config path is
pre-parsed here with Locust's own parser (which honours ``--config``, ``locust.conf`` and
``pyproject.toml``). Listeners are attached per environment in :meth:`Plugin.register` so Locust's
test base (which swaps ``locust.events``) and real runs behave alike.

Like Locust's runners, the plugin has one class per role and composes them by the runner it gets:

* a :class:`~trafficinator_locust.runtime.coordinator.Coordinator` on the master or local runner
  (budgets and their broker, shape, staging, checks, summary, backfill);
* a :class:`~trafficinator_locust.runtime.sender.Sender` on a worker or local runner (permits,
  bulk senders, visit counts).

This is the plugin's top level: here, and only here (with the CLI's entry), bad input becomes
a message and exit code 2.
"""

from __future__ import annotations

from locust import events
from locust.argument_parser import LocustArgumentParser, get_empty_argument_parser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trafficinator_locust.core.checks import METRICS
from trafficinator_locust.core.config import Config, load_config
from trafficinator_locust.core.errors import (
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    ConfigError,
    Problem,
    UsageError,
    describe,
)
from trafficinator_locust.core.legacy import is_legacy_environment, legacy_config
from trafficinator_locust.runtime.broker import DEFAULT_TTL
from trafficinator_locust.runtime.coordinator import DEFAULT_STOP_TIMEOUT, Coordinator
from trafficinator_locust.runtime.deployment import Deployment
from trafficinator_locust.runtime.sender import Sender
from trafficinator_locust.runtime.stop_signal import install_stop_signal
from trafficinator_locust.runtime.users import DEFAULT_TIMEOUT, TargetUser
from trafficinator_locust.web.app import add_web_arguments
from trafficinator_locust.web.app import install as install_web_ui

logger = logging.getLogger("trafficinator")

CONFIG_ENV = "TRAFFICINATOR_CONFIG"
PACINGS = ("paced", "stress", "ramp")
DEFAULT_VERIFY_WAIT = 60.0


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: must be a number of seconds >= 0")
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
        "--traffic-html",
        metavar="FILE",
        default=None,
        help="Write a self-contained HTML report (no network): per target, visits/min vs expected pace, "
        "failures and p95 over time; ramp runs add delivered and p95 vs offered rate.",
    )
    group.add_argument(
        "--traffic-pacing",
        choices=PACINGS,
        default="paced",
        help="paced: each target at its visits_per_day rate (shaped by its profile) and daily cap; "
        "stress: daily caps only, the user count drives the load. Targets without visits_per_day are never limited. "
        "ramp: each target's hits/s grows step by step until its Matomo's knee is found (--traffic-ramp; "
        "docs/capacity.md).",
    )
    group.add_argument(
        "--traffic-ramp",
        metavar="SPEC",
        default="",
        help="The capacity ramp of --traffic-pacing ramp, e.g. 'start=10,factor=1.5,step=30s,p95=800,fail=0.01,"
        "after=hold' (hits/s, every key optional; these are the defaults).",
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
    group.add_argument(
        "--traffic-verify",
        metavar="SECONDS",
        nargs="?",
        type=_non_negative,
        const=DEFAULT_VERIFY_WAIT,
        default=None,
        help="After the run, wait SECONDS (default without a value: %(const)s; Matomo's archiving) and compare "
        "every report of every target and day with what was sent, as `trafficinator verify` does; printed under "
        f"the summary, added to --traffic-report; exit code {EXIT_VERIFY_FAILED} when a report is off.",
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
        help="Backfill these local days (e.g. 2026-01-01:2026-01-31) with Locust stats per target; "
        "the test ends when done. See docs/backfill.md.",
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
                f"no traffic config: pass --traffic-config FILE, set {CONFIG_ENV}, "
                "or set MATOMO_URL (single-target variables)",
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


@dataclass
class Plugin:
    """What the locustfile exposes: the deployment (config, user classes, tally) and, once Locust
    made its runner, the roles of this process."""

    deployment: Deployment
    coordinator: Coordinator | None = None
    sender: Sender | None = None
    environment: Environment | None = None

    @property
    def config(self) -> Config | None:
        return self.deployment.config

    @property
    def user_classes(self) -> dict[str, type[TargetUser]]:
        return self.deployment.user_classes

    def register(self, environment: Environment) -> None:
        """Attach the roles and listeners to one environment (called from the ``init`` event).

        Bad input found on the way (a check rule, the state file, a backfill range, the presets
        file, half a login) ends the process with its message and exit code 2, before anything starts.
        """
        try:
            self._register(environment)
        except UsageError as error:
            sys.stderr.write(describe(error) + "\n")
            sys.exit(EXIT_USAGE)

    def _register(self, environment: Environment) -> None:
        self.environment = environment
        if not environment.stop_timeout:
            # Let a hit in flight finish and be counted; users stop at their next pause.
            environment.stop_timeout = DEFAULT_STOP_TIMEOUT
        if environment.host:
            logger.warning("--host is ignored: each target sends to the tracker URL from the traffic config")
        runner = environment.runner
        if runner is not None and not isinstance(runner, WorkerRunner):
            self.coordinator = Coordinator(self.deployment, environment)
            install_stop_signal(environment)
        if runner is not None and not isinstance(runner, MasterRunner):
            self.sender = Sender(self.deployment, environment)
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stopping.add_listener(self._on_test_stopping)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.report_to_master.add_listener(self._on_report_to_master)
        environment.events.worker_report.add_listener(self._on_worker_report)
        environment.events.quitting.add_listener(self._on_quitting)
        if getattr(environment, "web_ui", None) is not None and self.coordinator is not None:
            install_web_ui(environment, self.coordinator)

    # Locust's events, passed to the roles in the order they need: at the start the coordinator
    # resets the run before the sender takes permits; at the stop the sender returns its permits
    # and stops its bulk senders before the coordinator closes the run and swaps in a staged config.

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.on_test_start()
        if self.sender is not None:
            self.sender.on_test_start()

    def _on_test_stopping(self, environment: Environment, **_: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.on_test_stopping()

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        if self.sender is not None:
            self.sender.on_test_stop()
        if self.coordinator is not None:
            self.coordinator.on_test_stop()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        if self.sender is not None:
            self.sender.on_report_to_master(client_id, data)

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if self.coordinator is not None:
            self.coordinator.on_worker_report(client_id, data)

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.on_quitting()


def load_plugin(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Plugin | None:
    """Import-time entry point for the locustfile; exits with code 2 on a bad config.

    ``None`` when nothing is configured and the user asked for ``--help``::

        plugin = load_plugin()
        globals().update(plugin.user_classes)   # Locust finds the generated Target_* classes
    """
    events.init_command_line_parser.add_listener(add_arguments)
    if awaits_shipped_config(argv, env):
        plugin = Plugin(Deployment.awaiting())
    else:
        try:
            config = discover_config(argv, env)
        except ConfigError as error:
            sys.stderr.write(describe(error) + "\n")
            sys.exit(EXIT_USAGE)
        if config is None:
            return None
        plugin = Plugin(Deployment.of(config))
    events.init.add_listener(lambda environment, **_: plugin.register(environment))
    return plugin
