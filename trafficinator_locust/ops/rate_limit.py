"""A token bucket that paces calls by sleeping once per wait, never by polling.

Why a module of its own: the backfill paces its hits per target (``--max-hits-per-second``),
``verify`` and ``/api/verify`` pace their Reporting API calls (``--calls-per-minute``; Matomo Cloud
limits its API), and all of them want the same rule: a batch may take many tokens at once and the
caller sleeps the debt off in one sleep. Standard library only::

    bucket = TokenBucket(100, burst=50)  # 100 hits per second, a batch of 50 at once
    for batch in batches:
        bucket.acquire(len(batch))  # sleeps 0.5 s from the second batch on
        send(batch)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket that may go into debt: ``reserve(n)`` takes ``n`` tokens at once and says how
    long to wait before using them, so a batch of 50 hits needs no bucket of 50 (no busy wait: the
    caller sleeps the returned seconds once). Starts full (``burst`` tokens).

    Over any stretch of ``T`` seconds at most ``burst + rate * T`` tokens are used. One bucket may
    be shared by threads (``/api/verify`` paces every target's calls with one): ``reserve`` holds a
    lock while it counts, never while anyone sleeps.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if not burst > 0:
            raise ValueError("burst must be > 0")
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self._tokens = float(burst)
        self._at: float | None = None
        self._lock = threading.Lock()

    def reserve(self, n: float = 1.0, now: float | None = None) -> float:
        """Take ``n`` tokens; returns the seconds to wait before acting on them (0 when available)."""
        with self._lock:
            now = self.clock() if now is None else now
            if self._at is not None and now > self._at:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now if self._at is None else max(self._at, now)
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, n: float = 1.0, sleep: Callable[[float], Any] = time.sleep) -> float:
        """:meth:`reserve` and sleep the wait (``sleep`` may be an event's ``wait`` to stay stoppable)."""
        wait = self.reserve(n)
        if wait > 0:
            sleep(wait)
        return wait
