"""A receiver with a capacity: at most N tracked hits per second per instance, a FIFO queue in front of the tracker.

Matomo behind php-fpm serves what its workers can (``pm.max_children``); beyond that requests wait,
and once they wait too long nginx answers 502/503. The receiver models one server per instance:
each hit of a tracking request (1 for a single hit, the number of items for a bulk request) takes
``1 / hits_per_second`` s of the instance's service time. Requests are served in the order they
arrived (FIFO per instance) and answered when their own service time is over, so latency grows once
the offered rate exceeds the capacity. A request that would wait longer than ``queue_seconds``
before its service starts is answered 503 at once, storing nothing, and counted (``saturated`` in
the stats). Waiting is gevent-cooperative (``gevent.sleep`` and an event per request), never
blocking the loop, and each instance has its own queue: a saturated ``/small`` never slows ``/big``.
The Reporting API and the stats are never queued. The queue runs on a monotonic clock, not on the
app's (possibly fake) clock; tests give the queue a fake ``clock`` and ``sleep`` to check its
schedule without waiting.

Example::

    queue = ServiceQueue(50, queue_seconds=2.0)
    turn = queue.admit(20)  # None: it would wait more than 2 s, answer 503
    if turn is not None:
        with turn:  # returns once the 20 hits' service time is over and every earlier request is served
            ...  # store the hits
    capacity_limits(["20", "/big=200"], ["/small", "/big"])  # {"/small": 20.0, "/big": 200.0}
"""

from __future__ import annotations

import gevent
import gevent.event

import math
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from trafficinator_locust.receiver.instances import normalise_prefix

__all__ = ["DEFAULT_QUEUE_SECONDS", "ServiceQueue", "Turn", "check_capacity", "capacity_limits"]

DEFAULT_QUEUE_SECONDS = 2.0
"""How much work (in seconds of service time) may wait before new requests are answered 503."""


def check_capacity(hits_per_second: float, queue_seconds: float = DEFAULT_QUEUE_SECONDS) -> None:
    """ValueError unless the capacity is a finite number of hits per second > 0 and the queue bound
    a finite number of seconds > 0 (NaN is neither)."""
    if not 0 < hits_per_second < math.inf:
        raise ValueError(f"capacity must be a finite number of hits per second > 0, not {hits_per_second!r}")
    if not 0 < queue_seconds < math.inf:
        raise ValueError(f"capacity_queue must be a finite number of seconds > 0, not {queue_seconds!r}")


class Turn:
    """One admitted request's place in its instance's queue: ``with turn:`` waits (cooperatively)
    until the request's service time is over and the request before it was served, and marks it
    served on leaving, whatever happened inside."""

    __slots__ = ("done_at", "waited", "_previous", "_served", "_clock", "_sleep")

    def __init__(
        self,
        done_at: float,
        waited: float,
        previous: gevent.event.Event | None,
        served: gevent.event.Event,
        clock: Callable[[], float],
        sleep: Callable[[float], object] = gevent.sleep,
    ) -> None:
        self.done_at = done_at
        """When (on the queue's clock) the request's service time is over."""
        self.waited = waited
        """How long it waited for the requests before it, in seconds of service time."""
        self._previous = previous
        self._served = served
        self._clock = clock
        self._sleep = sleep

    def __enter__(self) -> Turn:
        try:
            remaining = self.done_at - self._clock()
            if remaining > 0:
                self._sleep(remaining)
            if self._previous is not None:
                self._previous.wait()  # FIFO even when timers wake greenlets out of order
                self._previous = None
        except BaseException:  # killed while waiting (server.stop): never hold up the requests after it
            self._served.set()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._served.set()


class ServiceQueue:
    """The service time of one instance: ``hits_per_second`` hits per second, at most
    ``queue_seconds`` of waiting before a request is refused. ValueError for values that are not
    finite and > 0 (see :func:`check_capacity`). ``clock`` (monotonic seconds) and ``sleep`` (a
    cooperative wait of that many seconds of the clock) are the real ones unless a test gives fakes."""

    def __init__(
        self,
        hits_per_second: float,
        queue_seconds: float = DEFAULT_QUEUE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = gevent.sleep,
    ) -> None:
        check_capacity(hits_per_second, queue_seconds)
        self.hits_per_second = float(hits_per_second)
        self.queue_seconds = float(queue_seconds)
        self._clock = clock
        self._sleep = sleep
        self._free_at = -math.inf  # when the work admitted so far is served
        self._last: gevent.event.Event | None = None  # set once the latest admitted request is served

    def backlog(self) -> float:
        """Seconds of admitted work not served yet (0 when idle)."""
        return max(0.0, self._free_at - self._clock())

    def admit(self, hits: int) -> Turn | None:
        """A place in the queue for a request of ``hits`` hits (at least 1), or ``None`` when it would
        wait longer than ``queue_seconds`` for the requests before it (then nothing is reserved)."""
        now = self._clock()
        start = max(now, self._free_at)
        waited = start - now
        if waited > self.queue_seconds:
            return None
        self._free_at = start + max(1, hits) / self.hits_per_second
        served = gevent.event.Event()
        turn = Turn(self._free_at, waited, self._last, served, self._clock, self._sleep)
        self._last = served
        return turn

    def stats(self) -> dict[str, float]:
        """The capacity, the queue bound and the current backlog, for the instance's stats."""
        return {
            "hits_per_second": self.hits_per_second,
            "queue_seconds": self.queue_seconds,
            "backlog_seconds": round(self.backlog(), 3),
        }


def capacity_limits(
    options: Iterable[str], prefixes: Iterable[str], queue_seconds: float = DEFAULT_QUEUE_SECONDS
) -> dict[str, float]:
    """The capacity of each instance from ``trafficinator sink --capacity [PREFIX=]N`` (repeatable):
    a bare ``N`` applies to every instance that no ``PREFIX=N`` names (``/=N`` is the instance on
    ``/``); the last value given for an instance wins; instances without one are unlimited (left out).
    ValueError, naming ``--capacity`` or ``--capacity-queue``, for an N that is not a finite number
    > 0, a prefix that is not served, or a ``queue_seconds`` that is not a finite number > 0."""
    if not 0 < queue_seconds < math.inf:
        raise ValueError(f"--capacity-queue must be a finite number of seconds > 0 (e.g. 2), not {queue_seconds!r}")
    served = [normalise_prefix(prefix) for prefix in prefixes]
    default: float | None = None
    named: dict[str, float] = {}
    for option in options:
        prefix, sep, raw = option.rpartition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:  # NaN fails too
            raise ValueError(f"--capacity {option!r}: N must be a finite number of hits per second > 0, e.g. 50")
        if not sep:
            default = value
            continue
        instance = normalise_prefix(prefix)
        if instance not in served:
            shown = ", ".join(p or "/" for p in served) or "none"
            raise ValueError(f"--capacity {option!r}: no instance {instance or '/'} is served (served: {shown})")
        named[instance] = value
    limits = {prefix: named.get(prefix, default) for prefix in served}
    return {prefix: value for prefix, value in limits.items() if value is not None}
