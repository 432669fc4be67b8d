"""Live bulk transport (``transport: bulk``): a target's hits batched into Matomo bulk requests.

Why one sender per target and process rather than per user: a visit has a few hits spread over
minutes, so per-user batches would be tiny or late; pooled across the target's users, a batch fills
in moments. The rules that keep Matomo's reports right:

* a visitor's hits travel in time order: a visitor always maps to the same lane, and a lane has at
  most one request in flight (lanes run side by side for throughput);
* a batch leaves when it holds ``size`` hits or its oldest hit has waited ``max_delay`` seconds;
  every hit carries its own ``cdt`` (``TrackingEncoder.item``), so Matomo dates it when it happened;
* a lane holds at most ``capacity`` hits: a user adding to a full lane waits (stoppably), so a slow
  or failing tracker slows its own target's users and nobody else's;
* each batch goes through the one delivery policy, :class:`~trafficinator_locust.core.bulk.Delivery`
  (ADR 014): an answer saying Matomo stored nothing (a rolled-back batch, a deadlock, 503) is resent
  after a backoff with jitter; a batch that keeps failing is split to isolate the hits Matomo refuses;
  hits Matomo skipped as invalid are refused and never resent; a stored batch is never resent, nor
  one that may have been stored (no answer);
* every request is a ``[<target>] bulk`` row in Locust's stats; a request that Matomo failed, or that
  gave up hits, is a failure whose text says why (refused hits as ``refused N hits (kind n, ...): reason``,
  which the run summary counts per kind, :mod:`.summary`); the visits whose first hit was not delivered
  count as failed;
* after a batch that could not be delivered the lane backs off (doubling up to 10 s), as single-hit
  users do.
"""

from __future__ import annotations

from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment

import gevent
from gevent.event import Event

import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from trafficinator_locust.core.bulk import (
    JSON_CONTENT_TYPE,
    Decision,
    HitFate,
    Outcome,
    RetryPolicy,
    Send,
    build_payload,
    deliver,
    describe,
    judge,
    no_answer,
)
from trafficinator_locust.core.config import Target
from trafficinator_locust.core.reports import VisitReports
from trafficinator_locust.runtime.tally import VisitTally

LANES = 4
MAX_DELAY = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
_HEADERS = {"Content-Type": JSON_CONTENT_TYPE}
NOT_SENT = (ConnectionRefusedError, socket.gaierror)
"""Errors raised before a request left: Matomo cannot have stored it."""

Settle = Callable[[int, bytes, BaseException | None], str | None]
"""``settle(status, body, error)`` -> the failure text of the request, or ``None`` for a success."""
SendOne = Callable[[Send, Callable[[Outcome], Decision]], None]


def own_session(environment: Environment, target: Target, timeout: float) -> FastHttpSession:
    """A Locust HTTP session for one target's bulk requests: its own connections, stats through
    Locust's ``request`` event, and no cookie jar (its requests carry hits of many visitors)."""
    session = FastHttpSession(
        target.origin, environment.events.request, None, connection_timeout=timeout, network_timeout=timeout
    )
    session.client.cookiejar = None
    return session


def policy_of(target: Target) -> RetryPolicy:
    """The target's resend policy (``bulk_retries``, ``bulk_retry_delay``)."""
    return RetryPolicy(target.bulk_retries, target.bulk_retry_delay)


class Posted(NamedTuple):
    """What one bulk request got: ``status`` 0 when no answer came (``error`` says why)."""

    status: int
    body: bytes
    error: BaseException | None = None


def post_bulk(session: Any, target: Target, payload: bytes, settle: Settle) -> Posted:
    """One ``[<target>] bulk`` request through a Locust session.

    ``settle(status, body, error)`` judges the answer (status 0: none came, ``error`` says why) and
    returns the failure text, or ``None``: the request is marked as such in Locust's stats. Its texts
    come from :func:`~trafficinator_locust.core.bulk.describe`, which never holds the token.
    """
    with session.post(
        target.url, data=payload, headers=_HEADERS, name=f"[{target.name}] bulk", catch_response=True
    ) as response:
        status = response.status_code or 0
        error = getattr(response, "error", None) if not status else None
        body = (response.content or b"") if status else b""
        message = settle(status, body, error)
        if message:
            response.failure(message)
        else:
            response.success()
        return Posted(status, body, error)


def outcome_of(status: int, body: bytes, error: BaseException | None, sent: int, token: str | None) -> Outcome:
    """The judged answer of a request through a Locust session (no answer: ``status`` 0 and ``error``)."""
    if status:
        return judge(status, body, sent, token)
    name = type(error).__name__ if error is not None else "no error"
    return no_answer(sent, reached=not isinstance(error, NOT_SENT), reason=f"no answer ({name})")


def send_through(session: Any, target: Target, items: list[str]) -> SendOne:
    """The ``send_one`` of :func:`~trafficinator_locust.core.bulk.deliver` for a batch of ``items``: each
    piece is one ``[<target>] bulk`` request through ``session``, marked as the policy decided."""
    token = target.token

    def send_one(send: Send, record: Callable[[Outcome], Decision]) -> None:
        def settle(status: int, body: bytes, error: BaseException | None) -> str | None:
            return describe(record(outcome_of(status, body, error, send.size, token)), items)

        post_bulk(session, target, build_payload(items[send.start : send.end], token), settle)

    return send_one


class StoredHit(NamedTuple):
    """What a queued hit adds to Matomo's reports once delivered (``VisitTally.hit_stored``)."""

    day: str
    visit: VisitReports
    kind: str
    params: Mapping[str, str]


class _Pending(NamedTuple):
    item: str
    first_of_visit: tuple[str, bool] | None  # (local day, stored by Matomo) on a visit's first hit
    at: float
    counted: StoredHit | None = None  # None: a bot hit Matomo drops


class _Lane:
    __slots__ = ("items", "wake", "room", "busy")

    def __init__(self) -> None:
        self.items: list[_Pending] = []
        self.wake = Event()
        self.room = Event()
        self.busy = False


class BulkSender:
    """Batches one target's hits in this process; ``session`` is a Locust HTTP session (stats per request)."""

    def __init__(
        self,
        target: Target,
        session: Any,
        tally: VisitTally,
        *,
        max_delay: float = MAX_DELAY,
        lanes: int = LANES,
        capacity: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        policy: RetryPolicy | None = None,
    ):
        self.target = target
        self.size = target.bulk_size
        self.policy = policy or policy_of(target)
        self._random = random.Random()
        self.capacity = capacity or 4 * self.size
        self.max_delay = max_delay
        self._session = session
        self._tally = tally
        self._clock = clock
        self._lanes = [_Lane() for _ in range(lanes)]
        self._greenlets: list[gevent.Greenlet] = []
        self._draining = False

    def add(
        self,
        visitor_key: str,
        item: str,
        first_of_visit: tuple[str, bool] | None,
        wait: Callable[[Event, float], None],
        counted: StoredHit | None = None,
    ) -> None:
        """Queue one hit; waits (through ``wait``, so the user stays stoppable) while its lane is full."""
        lane = self._lanes[hash(visitor_key) % len(self._lanes)]
        while len(lane.items) >= self.capacity:
            lane.room.clear()
            wait(lane.room, 1.0)
        lane.items.append(_Pending(item, first_of_visit, self._clock(), counted))
        lane.wake.set()

    def start(self) -> None:
        self._draining = False
        self._greenlets = [gevent.spawn(self._run, lane) for lane in self._lanes]

    def stop(self, timeout: float) -> None:
        """Send what is queued (the visits already took their permits), then stop; bounded by ``timeout``."""
        self._draining = True
        for lane in self._lanes:
            lane.wake.set()
        deadline = self._clock() + timeout
        while any(lane.items or lane.busy for lane in self._lanes) and self._clock() < deadline:
            gevent.sleep(0.05)
        gevent.killall(self._greenlets, block=True, timeout=1)
        self._greenlets = []

    @property
    def queued(self) -> int:
        return sum(len(lane.items) for lane in self._lanes)

    def _run(self, lane: _Lane) -> None:
        failures = 0
        while True:
            if not lane.items:
                lane.wake.clear()
                lane.wake.wait()
                continue
            waited = self._clock() - lane.items[0].at
            if len(lane.items) < self.size and waited < self.max_delay and not self._draining:
                lane.wake.clear()
                lane.wake.wait(self.max_delay - waited)
                continue
            batch = lane.items[: self.size]
            del lane.items[: self.size]
            if (
                len(lane.items) <= self.capacity // 2
            ):  # wake the waiting users once there is room for many hits, not for each batch
                lane.room.set()
            lane.busy = True
            try:
                ok = self._send(batch)
            except Exception as error:  # noqa: BLE001  (a bug must not kill the lane and lose its hits silently)
                ok = False
                self._batch_raised(batch, error)
            finally:
                lane.busy = False
            failures = 0 if ok else failures + 1
            if failures and not self._draining:
                gevent.sleep(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))

    def _batch_raised(self, batch: list[_Pending], error: Exception) -> None:
        """A batch whose sending raised: a failed ``[<target>] bulk`` request with the message, and its
        visits failed (their hits are dropped: whether Matomo got them is unknown)."""
        name = self.target.name
        message = f"{error.__class__.__name__}: {error}"[:300]
        request_event = getattr(self._session, "request_event", None)
        if request_event is not None:
            request_event.fire(
                request_type="POST",
                name=f"[{name}] bulk",
                response_time=0,
                response_length=0,
                exception=RuntimeError(f"sending a batch of {len(batch)} hits raised {message}"),
                context={},
            )
        for pending in batch:
            if pending.first_of_visit is not None:
                day, stored = pending.first_of_visit
                self._tally.visit_started(name, False, day, stored)

    def _send(self, batch: list[_Pending]) -> bool:
        """One batch through the delivery policy; returns whether it was settled (every hit delivered or
        refused) rather than halted."""
        items = [pending.item for pending in batch]
        delivery = deliver(
            len(items),
            send_through(self._session, self.target, items),
            self.policy,
            sleep=gevent.sleep,
            draw=self._random.random,
        )
        self._tally.hits_tracked(self.target.name, delivery.tracked)
        name = self.target.name
        for position, pending in enumerate(batch):
            ok = delivery.fates[position] is HitFate.DELIVERED
            if pending.first_of_visit is not None:
                day, stored = pending.first_of_visit
                self._tally.visit_started(name, ok, day, stored)
            if ok and pending.counted is not None:
                counted = pending.counted
                self._tally.hit_stored(name, counted.day, counted.visit, counted.kind, counted.params)
        return delivery.halted is None
