"""One Locust ``FastHttpUser`` subclass per target, and the visit task they share.

Each generated class is named ``Target_<slug>`` on every node, carries its target's tracker URL, and
runs visits planned by ``visits`` and encoded by ``tracking``. Requests use the absolute tracker URL,
so Locust's ``--host`` (which overwrites every class's host) cannot redirect a target's traffic.
"""

from __future__ import annotations

from locust import FastHttpUser, User, between, constant, task
from locust.env import Environment
from locust.exception import InterruptTaskSet, RescheduleTask, StopUser
from locust.user.task import LOCUST_STATE_RUNNING, LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

import gevent
from gevent.event import Event

import itertools
import logging
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import ClassVar

from trafficinator_locust.core.config import Config, Distribution, Target, Transport
from trafficinator_locust.core.protocol import tracker_answer_problem
from trafficinator_locust.core.reports import VisitReports
from trafficinator_locust.core.tracking import FORM_CONTENT_TYPE, TrackingEncoder
from trafficinator_locust.core.visitors import VisitorBook
from trafficinator_locust.core.visits import PlannedVisit, VisitPlanner
from trafficinator_locust.runtime.broker import PermitClient
from trafficinator_locust.runtime.bulk_sender import BulkSender, StoredHit, own_session
from trafficinator_locust.runtime.tally import VisitTally

logger = logging.getLogger("trafficinator")

# Visit numbers of one process start at worker_index * this, so seeded plans never repeat across workers.
VISIT_NUMBERS_PER_WORKER = 1 << 40
# Per-request limits for trackers: a hung Matomo must not hold a user for Locust's default 60 s.
DEFAULT_TIMEOUT = 10.0
# After a visit whose first hit failed, the user backs off (doubling, up to the max) before its next
# visit, so a tracker that is down is not hammered and does not burn its daily budget in seconds.
FAILURE_BACKOFF_FIRST = 0.5
FAILURE_BACKOFF_MAX = 10.0
_visitor_rng = random.Random()  # which free visitor returns: timing decides anyway, no seed
_logged_failures: set[tuple[str, str]] = set()


class NoPermits:
    """The permit source of classes not wired to a broker: never grants (fail closed)."""

    warned = False

    def acquire(self, target: str, wait: Callable[[Event, float], None]) -> None:
        if not NoPermits.warned:
            NoPermits.warned = True
            logger.error(
                "user classes are not connected to a permit broker: no visit is sent (load them through the plugin)"
            )
        while True:
            wait(Event(), 1.0)


class AwaitingConfig(User):
    """The one class of a worker started without a traffic config (``-f -``) until its master's arrives.

    Locust refuses a locustfile without a user class; the master never dispatches this one, and
    the worker swaps in the real classes at the first test start (see :mod:`shipping`).
    """

    weight = 1
    wait_time = constant(1)

    @task
    def idle(self) -> None:
        raise StopUser()


class TargetUser(FastHttpUser):
    """Base of the generated classes: one simulated visitor after another, for one target."""

    abstract = True
    target: ClassVar[Target]
    planner: ClassVar[VisitPlanner]
    encoder: ClassVar[TrackingEncoder]
    tally: ClassVar[VisitTally]
    tracker_url: ClassVar[str]
    permits: ClassVar[PermitClient | NoPermits] = NoPermits()
    bulk: ClassVar[BulkSender | None] = None  # transport: bulk (set per test run by start_bulk_senders)
    # Who visits (new, or returning and free); None with distribution: mirror, whose one planner
    # sends visit n as the same visitor to every target.
    visitors: ClassVar[VisitorBook | None] = None
    network_timeout = DEFAULT_TIMEOUT
    connection_timeout = DEFAULT_TIMEOUT
    _numbers: ClassVar[Iterator[int]]
    _headers: ClassVar[dict[str, str]] = {"Content-Type": FORM_CONTENT_TYPE}
    _failures: int = 0
    _counted: bool = False  # the current visit was counted (started or failed) by the tally

    def on_start(self) -> None:
        # One user sends visit after visit of different simulated visitors: a cookie one visit got
        # (Matomo may set _pk_* cookies) must not travel with the next one. It also saves ~7% CPU.
        self.client.client.cookiejar = None

    @task
    def visit(self) -> None:
        self._checkpoint()  # a stop issued during Locust's wait between tasks lands here, not after a permit
        route = self.route()
        # No permit, no visit: wait (stoppable, in bounded steps) until the broker grants one.
        self.permits.acquire(route.target.name, self.pause_until)
        book = route.visitors
        ticket = book.check_out(_visitor_rng) if book is not None else None
        self.tally.in_flight += 1  # a run whose budgets are spent waits for these to finish (plugin)
        started = self._counted = False
        visit = None
        try:
            visit = route.planner.plan(route.next_visit_number(), ticket)
            started = self.run_visit(visit, route)
        except (StopUser, InterruptTaskSet, RescheduleTask):
            raise  # Locust's own control flow (a stop landing in a pause), not a failure
        except Exception as error:  # noqa: BLE001  (planning, encoding or sending: counted, never lost)
            self._visit_failed(route, error)
        finally:
            self.tally.in_flight -= 1
            if ticket is not None and book is not None:
                # Bulk: queued counts as stored (its batch is answered later; a retried batch is
                # delivered): a visitor returns only after this visit's hits were handed over.
                book.check_in(ticket, stored=started and visit is not None and visit.stored_by_matomo)
        if not started:
            self._failures += 1
            self.pause(min(FAILURE_BACKOFF_FIRST * 2 ** (self._failures - 1), FAILURE_BACKOFF_MAX))
        else:
            self._failures = 0

    def _visit_failed(self, route: type[TargetUser], error: Exception) -> None:
        """A visit that raised (a bug, a config value no check caught): a failed request of its target,
        ``[<target>] error`` with the exception's message, and a failed visit, where the user looks."""
        name = route.target.name
        message = f"{error.__class__.__name__}: {error}"[:300]
        self.environment.events.request.fire(
            request_type="VISIT",
            name=f"[{name}] error",
            response_time=0,
            response_length=0,
            exception=RuntimeError(message),
            context={},
        )
        if not self._counted:  # its first hit was not counted yet: the visit failed
            self.tally.visit_started(name, False, datetime.now(route.target.tzinfo).date().isoformat())
        if (name, message) not in _logged_failures:  # once per target and message: the stats count the rest
            _logged_failures.add((name, message))
            logger.error("target %s: a visit failed: %s (counted as [%s] error)", name, message, name)

    @classmethod
    def next_visit_number(cls) -> int:
        return next(cls._numbers)

    @classmethod
    def route(cls) -> type[TargetUser]:
        """The class whose target the next visit goes to: its own, except with ``distribution: random``."""
        return cls

    def run_visit(self, visit: PlannedVisit, route: type[TargetUser] | None = None) -> bool:
        """Send the visit's hits in order, waiting between them like a reader would.

        Returns whether the visit started (its first hit was answered 2xx).
        """
        route = route or type(self)
        reports = visit_reports(visit, route)
        if route.bulk is not None:
            return self._queue_visit(visit, route, route.bulk, reports)
        name = route.target.name
        day = ""
        for index, hit in enumerate(visit.hits):
            if hit.wait_before:
                self.pause(hit.wait_before)
            now = datetime.now(timezone.utc)
            body = route.encoder.body(hit, visit.visitor, now)
            with self.client.post(
                route.tracker_url, data=body, headers=self._headers, name=f"[{name}] {hit.kind}", catch_response=True
            ) as response:
                status = response.status_code or 0
                problem = answer_problem(status, response)
                ok = problem is None
                if not ok:
                    response.failure(problem)
            if index == 0:
                day = now.astimezone(route.target.tzinfo).date().isoformat()
                self.tally.visit_started(name, ok, day, visit.stored_by_matomo)
                self._counted = True
                if not ok:
                    return False  # Matomo stored nothing: the rest would be orphan hits
            if ok and reports is not None:
                self.tally.hit_stored(name, day, reports, hit.kind, hit.params)
        return True

    def _queue_visit(
        self, visit: PlannedVisit, route: type[TargetUser], sender: BulkSender, reports: VisitReports | None
    ) -> bool:
        """``transport: bulk``: each hit joins its target's batches when it happens (dated by ``cdt``).

        Whether the visit started is known only when its batch is answered; the sender counts it.
        """
        zone = route.target.tzinfo
        day = ""
        for index, hit in enumerate(visit.hits):
            if hit.wait_before:
                self.pause(hit.wait_before)
            now = datetime.now(timezone.utc)
            if index == 0:
                day = now.astimezone(zone).date().isoformat()
            first = (day, visit.stored_by_matomo) if index == 0 else None
            self._counted = True  # the sender counts it (started or failed) when its batch is answered
            counted = None if reports is None else StoredHit(day, reports, hit.kind, hit.params)
            sender.add(visit.visitor.cid, route.encoder.item(hit, visit.visitor, now), first, self.pause_until, counted)
        return True

    def pause(self, seconds: float) -> None:
        """Sleep between hits where Locust may stop the user; never stop it during a request.

        Mirrors ``TaskSet.wait``: a user asked to stop while a request is in flight finishes that
        request (so it is counted) and stops here, at its next pause.
        """
        self._stoppable(gevent.sleep, seconds)

    def pause_until(self, event: Event, timeout: float) -> None:
        """Like :meth:`pause`, but returns early when ``event`` is set (a permit arrived)."""
        self._stoppable(event.wait, timeout)

    def _stoppable(self, wait: Callable[[float], object], seconds: float) -> None:
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_WAITING  # Locust kills a waiting user at once when it stops
        wait(seconds)
        # Locust's kill is asynchronous: if it was issued just as the wait ended, this greenlet
        # runs first and the GreenletExit arrives at its next switch. Switch here, still
        # "waiting", so the kill lands before a permit is taken or a hit half-sent.
        gevent.sleep(0)
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_RUNNING

    def _checkpoint(self) -> None:
        """Let a pending stop land (see :meth:`_stoppable`) before something that must not be cut."""
        gevent.sleep(0)
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()


def answer_problem(status: int, response: object) -> str | None:
    """Why a tracker answer is a failure (an HTTP error, no answer, a 2xx that is not Matomo's), or None."""
    if not status:
        return f"no answer ({getattr(response, 'error', None).__class__.__name__})"
    if not 200 <= status < 300:
        return f"HTTP {status}"
    headers = getattr(response, "headers", None) or {}
    return tracker_answer_problem(
        status, headers.get("Content-Type", ""), len(getattr(response, "content", b"") or b"")
    )


def visit_reports(visit: PlannedVisit, route: type[TargetUser]) -> VisitReports | None:
    """What the visit's stored hits add to Matomo's reports; None for a bot visit Matomo drops.

    Returning as Matomo decides it: a visitor of the target's visitor book returns only after a
    stored visit; with ``distribution: mirror`` (no book) the generator cannot know (None).
    """
    if not visit.stored_by_matomo:
        return None
    returning = visit.visitor.returning if route.visitors is not None else None
    return VisitReports(returning, route.target.traffic.multiple_goals, visit.channel)


def build_user_classes(config: Config, tally: VisitTally, worker_index: int = 0) -> dict[str, type[TargetUser]]:
    """One user class per enabled target, keyed by class name (the name Locust dispatches by)."""
    classes: dict[str, type[TargetUser]] = {}
    mirrored = _mirror_planner(config) if config.distribution is Distribution.mirror else None
    for target in config.enabled_targets:
        seed = target.seed if target.seed is not None else config.seed
        pause = target.traffic.pause_between_visits
        attributes = {
            "abstract": False,
            "target": target,
            "planner": mirrored or VisitPlanner(target, seed),
            "encoder": TrackingEncoder(target),
            "tally": tally,
            "tracker_url": target.url,
            "host": target.origin,
            "weight": 1.0 if config.distribution is Distribution.round_robin else target.weight,
            "wait_time": between(pause.min, pause.max),
            "_numbers": itertools.count(worker_index * VISIT_NUMBERS_PER_WORKER),
            "visitors": None if mirrored else visitor_book(target, worker_index),
            "__module__": __name__,
            "__doc__": f"Visits for target {target.name!r} (site {target.site_id}).",
        }
        classes[target.class_name] = type(target.class_name, (TargetUser,), attributes)
    if config.distribution is Distribution.random:
        router = RandomRoute(list(classes.values()))
        for cls in classes.values():
            cls.route = router  # type: ignore[method-assign]
    return classes


class RandomRoute:
    """``distribution: random``: each visit's target drawn at random by weight, whichever user sends it."""

    def __init__(self, classes: list[type[TargetUser]]):
        self.classes = classes
        self.weights = [cls.target.weight for cls in classes]

    def __call__(self) -> type[TargetUser]:
        return random.choices(self.classes, self.weights)[0]


def _mirror_planner(config: Config) -> VisitPlanner:
    """One planner for every target (mirror): visit ``n`` is the same visitor and hits everywhere.

    It plans with the first enabled target's traffic model and one seed for the process (the
    config's, else a random one), so each target's class sending visits 0, 1, 2... sends the same
    visits; each target's encoder still adds its own site, token and order-id prefix.
    """
    seed = config.seed if config.seed is not None else random.SystemRandom().getrandbits(63)
    return VisitPlanner(config.enabled_targets[0], seed, salt_name="mirror")


def set_worker_index(classes: dict[str, type[TargetUser]], worker_index: int) -> None:
    """Move each class's visit numbers into this worker's range (known only once the runner exists)."""
    for cls in classes.values():
        cls._numbers = itertools.count(worker_index * VISIT_NUMBERS_PER_WORKER)
        if cls.visitors is not None and cls.visitors.next_index < worker_index * VISIT_NUMBERS_PER_WORKER:
            cls.visitors = visitor_book(cls.target, worker_index)


def visitor_book(target: Target, worker_index: int) -> VisitorBook:
    """A target's visitors in this process: its own index range, so no two processes share a visitor."""
    visitors = target.traffic.visitors
    return VisitorBook(visitors.returning, visitors.pool_size, first_index=worker_index * VISIT_NUMBERS_PER_WORKER)


def set_timeouts(classes: dict[str, type[TargetUser]], seconds: float) -> None:
    """Per-request connect and read timeout of every target's users (``--traffic-timeout``)."""
    for cls in classes.values():
        cls.network_timeout = cls.connection_timeout = seconds


def start_bulk_senders(classes: dict[str, type[TargetUser]], environment: Environment, timeout: float) -> None:
    """Give each ``transport: bulk`` class a sender for this run, with its own connections (its own session)."""
    for cls in classes.values():
        if cls.target.transport is Transport.bulk:
            cls.bulk = BulkSender(cls.target, own_session(environment, cls.target, timeout), cls.tally)
            cls.bulk.start()


def stop_bulk_senders(classes: dict[str, type[TargetUser]], timeout: float) -> None:
    """Send what the run queued (its visits took their permits), then drop the senders."""
    senders = [cls.bulk for cls in classes.values() if cls.bulk is not None]
    for cls in classes.values():
        cls.bulk = None
    gevent.joinall([gevent.spawn(sender.stop, timeout) for sender in senders])


def set_permits(classes: dict[str, type[TargetUser]], permits: PermitClient) -> None:
    """Connect the classes to this process's permit client (every visit takes a permit first)."""
    for cls in classes.values():
        cls.permits = permits
