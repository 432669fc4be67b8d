"""Backfill inside Locust (``--traffic-backfill FROM:TO``): the same run, seen in Locust's stats and UI.

Why: operators who live in Locust's web UI or its CSV/HTML reports want the history load there too,
with ``[<target>] bulk`` rows, response times and failures per target. The backfill itself is
:func:`backfill.run_backfill`, unchanged (days, placement, checkpoint, resume, throttle); only its
poster differs (:class:`LocustPoster` instead of :class:`~.tracker_http.TrackerPoster`): each bulk
POST goes through a Locust HTTP session, so it fires Locust's ``request`` event. Each piece of a batch
the delivery policy sends (ADR 014: resends, split pieces) is a request of its own there. It runs in one
greenlet of the master (or the local runner), its target threads green too (Locust has patched
``threading``); a load shape keeps 0 users and ends the test when the backfill is done, so no live
visit mixes in.
"""

from __future__ import annotations

from locust import LoadTestShape
from locust.env import Environment

import gevent

import logging
import threading
from datetime import date
from pathlib import Path
from typing import Any

from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, SendError, UsageError
from trafficinator_locust.ops.backfill import BackfillOptions, run_backfill
from trafficinator_locust.ops.tracker_http import Settle
from trafficinator_locust.runtime.bulk_sender import NOT_SENT, own_session, post_bulk

logger = logging.getLogger("trafficinator")


def parse_range(text: str) -> tuple[date, date]:
    """``2026-01-01:2026-01-31`` -> (first, last); ValueError with the expected form otherwise."""
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise ValueError(f"{text!r} is not a day range like 2026-01-01:2026-01-31") from None


class LocustPoster:
    """The backfill's poster through a Locust session: one ``[<target>] bulk`` request per piece of a batch,
    marked in Locust's stats as the backfill's delivery policy decided (``settle``)."""

    def __init__(self, environment: Environment, target: Target, timeout: float):
        self._session = own_session(environment, target, timeout)
        self._target = target

    def post(self, body: bytes, content_type: str, settle: Settle | None = None) -> tuple[int, bytes]:
        """``content_type`` is the bulk JSON type the backfill always sends (post_bulk sets it)."""

        def mark(status: int, answer: bytes, error: BaseException | None) -> str | None:
            if not status:
                return f"no answer ({type(error).__name__})"  # the backfill records it from the SendError
            message = settle(status, answer) if settle is not None else None
            return message if isinstance(message, str) else None

        posted = post_bulk(self._session, self._target, body, mark)
        if not posted.status:
            raise SendError(
                f"no answer from {self._target.name}: {type(posted.error).__name__}",
                retryable=isinstance(posted.error, NOT_SENT),
            )
        return posted.status, posted.body

    def close(self) -> None:
        return None


class BackfillShape(LoadTestShape):
    """No users while the backfill runs; ``None`` (end of test) once it is done."""

    def __init__(self) -> None:
        super().__init__()
        self.done = threading.Event()

    def tick(self) -> tuple[int, float] | None:
        return None if self.done.is_set() else (0, 1)


class LocustBackfill:
    """Runs one backfill in the master's (or local runner's) process when the test starts."""

    def __init__(self, config: Config, options: BackfillOptions):
        self.config = config
        self.options = options
        self.shape = BackfillShape()
        self.stop = threading.Event()
        self.exit_code: int | None = None
        self._greenlet: gevent.Greenlet | None = None

    def install(self, environment: Environment) -> None:
        environment.shape_class = self.shape
        environment.events.test_start.add_listener(lambda environment, **_: self._start(environment))
        environment.events.test_stopping.add_listener(lambda environment, **_: self.stop.set())

    def _start(self, environment: Environment) -> None:
        if self._greenlet is not None:
            return
        self._greenlet = gevent.spawn(self._run, environment)

    def _run(self, environment: Environment) -> None:
        try:
            self.exit_code = run_backfill(
                self.config,
                self.options,
                poster_factory=lambda target, timeout: LocustPoster(environment, target, timeout),
                stop=self.stop,
            )
        except UsageError as error:
            logger.error("trafficinator backfill: %s", error)
            self.exit_code = EXIT_USAGE
        except Exception:  # noqa: BLE001 - reported, and the test still ends
            logger.exception("trafficinator backfill failed")
            self.exit_code = EXIT_FAILED
        finally:
            self.shape.done.set()
            if self.exit_code not in (None, EXIT_OK):
                environment.process_exit_code = self.exit_code


def backfill_options(options: Any) -> BackfillOptions:
    """The backfill's options from Locust's parsed options (``--traffic-backfill*``, ``--traffic-report``)."""
    first, last = parse_range(options.traffic_backfill)
    report = getattr(options, "traffic_report", None)
    return BackfillOptions(
        first=first,
        last=last,
        max_hits_per_second=getattr(options, "traffic_backfill_rate", None),
        checkpoint=Path(options.traffic_backfill_checkpoint),
        report=Path(report) if report else None,
        timeout=getattr(options, "traffic_timeout", 10.0),
        progress_every=30.0,
    )
