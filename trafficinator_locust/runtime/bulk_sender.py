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
* the answer is checked by ``bulk.parse_answer``: an error or a shortfall (``tracked`` < sent) is a
  failure of the ``[<target>] bulk`` request and is never resent (Matomo may have stored part of
  it); the visits whose first hit was in a failed batch count as failed;
* after a failed batch the lane backs off (doubling up to 10 s), as single-hit users do.
"""

from __future__ import annotations

from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment

import gevent
from gevent.event import Event

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from trafficinator_locust.core.bulk import JSON_CONTENT_TYPE, build_payload, parse_answer
from trafficinator_locust.core.config import Target
from trafficinator_locust.core.errors import BulkError
from trafficinator_locust.runtime.tally import VisitTally

LANES = 4
MAX_DELAY = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
_HEADERS = {"Content-Type": JSON_CONTENT_TYPE}


def own_session(environment: Environment, target: Target, timeout: float) -> FastHttpSession:
    """A Locust HTTP session for one target's bulk requests: its own connections, stats through
    Locust's ``request`` event, and no cookie jar (its requests carry hits of many visitors)."""
    session = FastHttpSession(
        target.origin, environment.events.request, None, connection_timeout=timeout, network_timeout=timeout
    )
    session.client.cookiejar = None
    return session


class Posted(NamedTuple):
    """What one bulk request got: ``status`` 0 when no answer came (``error`` says why)."""

    status: int
    body: bytes
    tracked: int
    error: BaseException | None = None


def post_bulk(session: Any, target: Target, payload: bytes, sent: int) -> Posted:
    """One ``[<target>] bulk`` request through a Locust session; no answer, an error or a shortfall
    (``bulk.parse_answer``, which masks the token) is marked as a failure in Locust's stats."""
    token = target.token
    with session.post(
        target.url, data=payload, headers=_HEADERS, name=f"[{target.name}] bulk", catch_response=True
    ) as response:
        status = response.status_code or 0
        if not status:
            error = getattr(response, "error", None)
            response.failure(f"no answer ({type(error).__name__})")
            return Posted(0, b"", 0, error)
        body = response.content or b""
        try:
            tracked = parse_answer(status, body, sent, token).tracked
        except BulkError as failed:
            response.failure(str(failed))
            tracked = failed.answer.tracked if failed.answer else 0
        return Posted(status, body, tracked)


class _Pending(NamedTuple):
    item: str
    first_of_visit: tuple[str, bool] | None  # (local day, stored by Matomo) on a visit's first hit
    at: float


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
    ):
        self.target = target
        self.size = target.bulk_size
        self.capacity = capacity or 4 * self.size
        self.max_delay = max_delay
        self._session = session
        self._tally = tally
        self._clock = clock
        self._token = target.token
        self._lanes = [_Lane() for _ in range(lanes)]
        self._greenlets: list[gevent.Greenlet] = []
        self._draining = False

    def add(
        self, visitor_key: str, item: str, first_of_visit: tuple[str, bool] | None, wait: Callable[[Event, float], None]
    ) -> None:
        """Queue one hit; waits (through ``wait``, so the user stays stoppable) while its lane is full."""
        lane = self._lanes[hash(visitor_key) % len(self._lanes)]
        while len(lane.items) >= self.capacity:
            lane.room.clear()
            wait(lane.room, 1.0)
        lane.items.append(_Pending(item, first_of_visit, self._clock()))
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
            finally:
                lane.busy = False
            failures = 0 if ok else failures + 1
            if failures and not self._draining:
                gevent.sleep(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))

    def _send(self, batch: list[_Pending]) -> bool:
        """One bulk request; returns whether Matomo tracked every hit of it."""
        payload = build_payload([pending.item for pending in batch], self._token)
        tracked = post_bulk(self._session, self.target, payload, len(batch)).tracked
        ok = tracked >= len(batch)
        self._tally.hits_tracked(self.target.name, tracked)
        for pending in batch:
            if pending.first_of_visit is not None:
                day, stored = pending.first_of_visit
                self._tally.visit_started(self.target.name, ok, day, stored)
        return ok
