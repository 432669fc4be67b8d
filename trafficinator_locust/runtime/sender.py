"""The sending role, on a worker or the local runner: the users' permits, bulk senders and visit counts.

Every user takes a permit from this process's :class:`~.broker.PermitClient` before a visit; the
client leases them in batches from the coordinator's broker through Locust's messages (on a local
runner the messages loop back). Each target's :class:`~trafficinator_locust.core.visitors.VisitorBook`
(who may return) is kept beside the budget state, one file per worker index, so a restart keeps
the visitors Matomo has already seen. A worker also adopts the config its master ships at each test
start (workers started with ``-f -`` have none of their own) and reports its visit counts in
Locust's worker reports::

    sender = Sender(deployment, environment)   # registers the message handlers, says hello
    sender.on_test_start()                     # permits and bulk senders for this run
"""

from __future__ import annotations

from locust.env import Environment
from locust.runners import Runner, WorkerRunner

import json
import logging
from pathlib import Path
from typing import Any

from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.runtime.broker import (
    MSG_GRANT,
    MSG_LIMITS,
    TICK_SECONDS,
    PermitClient,
    spawn_every,
    state_file_for,
)
from trafficinator_locust.runtime.config_shipping import received
from trafficinator_locust.runtime.deployment import HELLO, Deployment
from trafficinator_locust.runtime.options import option
from trafficinator_locust.runtime.tally import IN_FLIGHT_KEY, REPORT_KEY
from trafficinator_locust.runtime.users import (
    DEFAULT_TIMEOUT,
    set_permits,
    set_timeouts,
    set_worker_index,
    start_bulk_senders,
    stop_bulk_senders,
)

logger = logging.getLogger("trafficinator")


class Sender:
    """The worker's (or local runner's) half of the plugin."""

    def __init__(self, deployment: Deployment, environment: Environment):
        assert environment.runner is not None
        self.deployment = deployment
        self.environment = environment
        self.runner: Runner = environment.runner
        self.permits: PermitClient | None = None
        # Grants go to whichever permit client is current: a new config brings a new one.
        self.runner.register_message(MSG_GRANT, lambda environment, msg, **_: self._grant(msg.data))
        self.runner.register_message(MSG_LIMITS, lambda environment, msg, **_: self._limits(msg.data))
        self._new_permit_client()
        deployment.on_change(self._new_permit_client)
        spawn_every(self.runner.greenlet, TICK_SECONDS, self._tick, "permit reports")
        if self.is_worker:
            config = deployment.config
            self.runner.send_message(HELLO, deployment.identity() if config is not None else {"pending": True})

    @property
    def is_worker(self) -> bool:
        return isinstance(self.runner, WorkerRunner)

    @property
    def timeout(self) -> float:
        return option(self.environment.parsed_options, "traffic_timeout", DEFAULT_TIMEOUT)

    def _new_permit_client(self) -> None:
        config = self.deployment.config
        limited = [t.name for t in config.enabled_targets if t.visits_per_day is not None] if config else []
        runner = self.runner
        self.permits = PermitClient(limited, send=lambda msg_type, data, client_id: runner.send_message(msg_type, data))
        set_permits(self.deployment.user_classes, self.permits)

    def _grant(self, data: Any) -> None:
        if self.permits is not None:
            self.permits.on_grant(data)

    def _limits(self, data: Any) -> None:
        if self.permits is not None:
            self.permits.on_limits(data)

    def _tick(self) -> None:
        if self.permits is not None:
            self.permits.tick()

    def adopt_shipped(self) -> None:
        """On a worker at test start: take the master's config when this one has none or an older one."""
        shipment = received(self.environment.parsed_options)
        deployment = self.deployment
        if shipment is None:
            if deployment.config is None:
                logger.error(
                    "trafficinator: the master sent no traffic config; "
                    "start it with --traffic-config (and the same plugin version)"
                )
            return
        if deployment.config is not None and shipment.generation <= deployment.generation:
            return
        deployment.use(self.environment, shipment.config, shipment.generation)
        self.runner.send_message(HELLO, deployment.identity())

    # -- Locust's events (called by the plugin, in order with the coordinator's)

    def on_test_start(self) -> None:
        if self.is_worker:
            self.adopt_shipped()
        classes = self.deployment.user_classes
        set_timeouts(classes, self.timeout)
        if isinstance(self.runner, WorkerRunner):
            set_worker_index(classes, self.runner.worker_index)
        self._restore_visitors()
        if self.permits is not None:
            self.permits.start()
        start_bulk_senders(classes, self.environment, self.timeout)

    def on_test_stop(self) -> None:
        stop_bulk_senders(self.deployment.user_classes, self.timeout)
        if self.permits is not None:
            self.permits.return_all()
        self._save_visitors()

    # -- the visitor books, kept across runs

    def visitors_path(self) -> Path | None:
        """``<budget state>.visitors-<worker index>.json``; ``None`` when no state is kept (``--traffic-state ''``)."""
        config = self.deployment.config
        state = state_file_for(self.environment.parsed_options, config) if config is not None else None
        if state is None:
            return None
        index = self.runner.worker_index if isinstance(self.runner, WorkerRunner) else 0
        return state.path.with_name(f"{state.path.stem}.visitors-{index}.json")

    def _booked(self) -> list[Any]:
        """The user classes that keep a visitor book (not mirror's, not a worker's placeholder)."""
        return [cls for cls in self.deployment.user_classes.values() if getattr(cls, "visitors", None) is not None]

    def _restore_visitors(self) -> None:
        path = self.visitors_path()
        if path is None or not path.is_file():
            return
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            for cls in self._booked():
                state = saved.get(cls.target.name)
                if state is not None and not cls.visitors.checked_out:
                    # The people of the saved book: the identities an earlier process planned.
                    cls.planner.visitor_salt = int(state["identities"], 16)
                    cls.visitors.restore(state)
        except (OSError, ValueError, TypeError, KeyError) as error:
            # Only returning visitors suffer (the first visits are new again): say so, go on.
            logger.warning(
                "trafficinator: visitor history %s not used (%s); returning visitors start afresh", path, error
            )

    def _save_visitors(self) -> None:
        path, booked = self.visitors_path(), self._booked()
        if path is None or not booked:
            return
        books = {
            cls.target.name: {**cls.visitors.to_state(), "identities": f"{cls.planner.visitor_salt:x}"}
            for cls in booked
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(books, separators=(",", ":")))
        except OSError as error:
            logger.warning("trafficinator: visitor history not saved to %s (%s)", path, error)

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.deployment.tally.drain()
        data[IN_FLIGHT_KEY] = self.deployment.tally.in_flight
