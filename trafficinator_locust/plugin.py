"""Wiring into Locust: command-line options, config discovery at import, and event listeners.

Locust imports the locustfile before it parses the full command line, so the config path is
pre-parsed here with Locust's own parser (which honours ``--config``, ``locust.conf`` and
``pyproject.toml``). Listeners are attached per environment in :func:`register` so Locust's test
base (which swaps ``locust.events``) and real runs behave alike.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from locust import events
from locust.argument_parser import LocustArgumentParser, get_empty_argument_parser
from locust.env import Environment
from locust.runners import WorkerRunner

from .config import Config, load_config
from .legacy import is_legacy_environment, legacy_config
from .report import REPORT_KEY, VisitTally, summarize, summary_table, write_report
from .users import TargetUser, build_user_classes, set_worker_index
from .yaml_source import ConfigError, Problem

logger = logging.getLogger("trafficinator")

CONFIG_ENV = "TRAFFICINATOR_CONFIG"
DEFAULT_STOP_TIMEOUT = 10.0
EXIT_CONFIG_ERROR = 2


def add_arguments(parser: LocustArgumentParser) -> None:
    """The plugin's options. Safe to call many times (Locust's web UI re-fires the hook)."""
    if any("--traffic-config" in action.option_strings for action in parser._actions):
        return
    group = parser.add_argument_group("trafficinator", "Matomo traffic for many targets")
    group.add_argument("--traffic-config", metavar="FILE", env_var=CONFIG_ENV, default=None, help=f"Traffic YAML (or ${CONFIG_ENV}).")
    group.add_argument("--traffic-report", metavar="FILE", default=None, help="Write the per-target run summary as JSON.")


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
    raise ConfigError([Problem("command line", None, "", f"no traffic config: pass --traffic-config FILE, set {CONFIG_ENV}, or set MATOMO_URL (single-target variables)")])


def exit_on_config_error(error: ConfigError) -> None:
    """Print every problem, no traceback, exit code 2: the contract for bad input."""
    count = len(error.problems)
    sys.stderr.write(f"trafficinator: {count} problem{'s' if count != 1 else ''} in the traffic config:\n")
    for problem in error.problems:
        sys.stderr.write(f"  {problem}\n")
    sys.exit(EXIT_CONFIG_ERROR)


@dataclass
class Plugin:
    """What the locustfile exposes: the config, its user classes, and the shared tally."""

    config: Config
    user_classes: dict[str, type[TargetUser]]
    tally: VisitTally = field(default_factory=VisitTally)

    def register(self, environment: Environment) -> None:
        """Attach listeners to one environment (called from the ``init`` event)."""
        if not environment.stop_timeout:
            # Let a hit in flight finish and be counted; users stop at their next pause.
            environment.stop_timeout = DEFAULT_STOP_TIMEOUT
        if environment.host:
            logger.warning("--host is ignored: each target sends to the tracker URL from the traffic config")
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.report_to_master.add_listener(self._on_report_to_master)
        environment.events.worker_report.add_listener(self._on_worker_report)
        environment.events.quitting.add_listener(self._on_quitting)

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            set_worker_index(self.user_classes, environment.runner.worker_index)
        else:
            self.tally.reset()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.tally.drain()

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        self.tally.merge(data.get(REPORT_KEY, {}))

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        rows = summarize(self.config, environment.stats, self.tally)
        print("\nTrafficinator per-target summary\n" + summary_table(rows), flush=True)
        path = environment.parsed_options.traffic_report if environment.parsed_options else None
        if path:
            write_report(path, self.config, rows)


def load_plugin(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Plugin | None:
    """Import-time entry point for the locustfile; exits with code 2 on a bad config."""
    events.init_command_line_parser.add_listener(add_arguments)
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


