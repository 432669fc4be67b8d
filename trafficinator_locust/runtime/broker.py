"""Permit broker: the pure budget of :mod:`budget` enforced across Locust processes.

The :class:`~trafficinator_locust.core.budget.Ledger` lives in one place, the master (or the local
runner). Every process that runs users holds small *leases* of permits per target and takes one
permit before each visit. Leases travel as Locust custom messages; ``LocalRunner.send_message``
calls the handler in the same process, so one code path serves a local run, ``--processes N`` and
master + workers.

Messages (all names start with ``trafficinator:``)::

    client -> broker  lease   {req, target, want, waiting}
    broker -> client  grant   {req, broker, target, lease, count, ttl, rate, retry_after, state}
    client -> broker  report  {broker, used: {lease_id: cumulative used}}
    client -> broker  return  {broker, leases: {lease_id: cumulative used}}
    broker -> clients limits  {targets: [names that must ask the broker]}   (after a live change)

Rules that keep a daily cap a hard limit (see docs/adr/006-permit-broker.md):

* The broker writes the ledger to the state file (atomically) *before* it sends a grant, so a
  restarted master never hands out a permit it forgot about.
* A client reports a permit as used *before* the visit it allows starts (and again every second,
  cumulatively). Whatever a dead worker had not reported when its lease expires is therefore
  truly unused, and the broker credits it back at expiry.
* A client never takes a permit from a lease after ``sent + ttl - margin`` on its own monotonic
  clock, where ``sent`` is when it *asked* (earlier than the grant, so any message delay only
  shortens the lease); the broker expires leases at ``grant + ttl`` on its clock.
* Leases found in a state file at start-up belong to a previous master; whether their holders used
  them is unknown, so they are settled as fully used (fail closed).

Nothing here blocks in a message handler except the small atomic state write.
"""

from __future__ import annotations

import gevent
from gevent.event import Event

import hashlib
import itertools
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trafficinator_locust.core.budget import Ledger, Pace, TargetBudget, TargetStatus, parse_state, state_json
from trafficinator_locust.core.config import Config
from trafficinator_locust.core.errors import StateError
from trafficinator_locust.core.files import write_atomic

logger = logging.getLogger("trafficinator.broker")

MSG_LEASE = "trafficinator:lease"
MSG_GRANT = "trafficinator:grant"
MSG_REPORT = "trafficinator:report"
MSG_RETURN = "trafficinator:return"
MSG_LIMITS = "trafficinator:limits"

DEFAULT_TTL = 30.0
TICK_SECONDS = 1.0
# A batch is about this many seconds of the target's rate (paced rate, or this process's observed
# consumption in stress runs), plus the users already waiting; at least 1, at most MAX_BATCH.
BATCH_SECONDS = 1.5
LOW_WATER_SECONDS = 0.5
MAX_BATCH = 500
# A lease request without an answer is given up after this long (lost message, restarted master).
REQUEST_TIMEOUT = 3.0
# Users wait at most this long at a time for a permit, then look again (and stay stoppable).
MAX_WAIT = 1.0
# How soon a client asks again after an empty grant, by the target's state.
RETRY_CAPPED = 5.0
RETRY_PAUSED = 5.0
RETRY_MIN, RETRY_MAX = 0.05, 5.0

Send = Callable[[str, dict[str, Any], "str | None"], None]


def lease_margin(ttl: float) -> float:
    """How long before its TTL a client stops using a lease: 1/5 of the TTL, at most 5 s."""
    return min(5.0, ttl / 5)


# ---------------------------------------------------------------------------------------------
# Building the ledger and keeping it on disk


def build_budgets(config: Config, paced: bool) -> list[TargetBudget]:
    return [TargetBudget(target.name, target.pace(), paced=paced) for target in config.enabled_targets]


def state_folder(env: Mapping[str, str] | None = None) -> Path:
    """The user's trafficinator state folder: ``$XDG_STATE_HOME/trafficinator`` (default ``~/.local/state``)."""
    env = os.environ if env is None else env
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "trafficinator"


def default_state_path(source: str, env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/trafficinator/<hash of the absolute config path>.json``.

    Keyed by the config file's location (not its content), so editing a config keeps its day's
    count; a config without a file (legacy environment variables) is keyed by its source label.
    """
    path = Path(source)
    key = str(path.resolve()) if path.is_file() else source
    return state_folder(env) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


class StateFile:
    """The ledger's snapshot on disk, replaced atomically (temp file + ``os.replace``).

    No fsync: the guarantee is against a crashed or killed master (the page cache survives it),
    not against a power cut.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read the budget state {self.path}: {exc}") from None
        try:
            return parse_state(text)
        except ValueError as exc:
            raise StateError(
                f"the budget state {self.path} is unusable ({exc}); "
                "delete it to start the day's counts from 0, or pass --traffic-state ''"
            ) from None

    def save(self, text: str) -> None:
        write_atomic(self.path, text)


def state_file_for(options: Any, config: Config, env: Mapping[str, str] | None = None) -> StateFile | None:
    """``--traffic-state`` (``''`` disables persistence), else the default path for this config."""
    chosen = getattr(options, "traffic_state", None) if options is not None else None
    if chosen == "":
        return None
    return StateFile(chosen if chosen else default_state_path(config.source, env))


def restore_ledger(budgets: Iterable[TargetBudget], state: Mapping[str, Any] | None, now: float) -> Ledger:
    """A ledger continuing ``state``; leases of the previous master are settled as fully used.

    Their holders may have used every permit without the report reaching the old master, so
    crediting them could overshoot the cap. The cost is at most one batch per target and holder.
    """
    if state is None:
        return Ledger(budgets)
    ledger = Ledger.from_state(state, budgets, now)
    for lease in ledger.leases():
        ledger.report_used(lease.holder, lease.id, lease.count)
    return ledger


# ---------------------------------------------------------------------------------------------
# The broker (master / local runner)


class PermitBroker:
    """Answers lease requests from the ledger; expires, credits and persists.

    ``send(msg_type, data, client_id)`` delivers a message to a holder; ``alive(holder)`` says
    whether Locust still sees that worker (used only to log and mark dead holders' leases).
    ``clock`` is wall-clock time (the ledger's days are local calendar days).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        send: Send,
        state_file: StateFile | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        alive: Callable[[str], bool] | None = None,
    ):
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.ledger = ledger
        self.ttl = ttl
        self.id = uuid.uuid4().hex[:12]
        self._send = send
        self._state_file = state_file
        self._clock = clock
        self._alive = alive
        self._released: set[str] = set()
        self._save_failed = False
        self.run_started_at: float | None = None
        self.run_ended_at: float | None = None
        self.granted_in_run: dict[str, int] = {name: 0 for name in ledger.targets}
        self._unknown_targets: set[str] = set()

    # -- wiring

    def attach(self, runner: Any) -> None:
        """Register the broker's message handlers on a Locust runner (master or local)."""
        runner.register_message(MSG_LEASE, lambda environment, msg, **_: self.on_lease(msg.node_id, msg.data))
        runner.register_message(MSG_REPORT, lambda environment, msg, **_: self.on_report(msg.node_id, msg.data))
        runner.register_message(MSG_RETURN, lambda environment, msg, **_: self.on_return(msg.node_id, msg.data))

    # -- run bookkeeping

    def start_run(self, now: float | None = None) -> None:
        self.run_started_at = self._now(now)
        self.run_ended_at = None
        self.granted_in_run = {name: 0 for name in self.ledger.targets}

    def end_run(self, now: float | None = None) -> None:
        if self.run_started_at is not None and self.run_ended_at is None:
            self.run_ended_at = self._now(now)
        self.save()

    # -- message handlers (fast: ledger arithmetic and one small atomic write)

    def on_lease(self, holder: str, data: Mapping[str, Any]) -> None:
        target = str(data.get("target"))
        now = self._clock()
        reply: dict[str, Any] = {
            "req": data.get("req"),
            "broker": self.id,
            "target": target,
            "lease": None,
            "count": 0,
            "ttl": self.ttl,
        }
        if target not in self.granted_in_run:
            if target not in self._unknown_targets:
                self._unknown_targets.add(target)
                logger.error(
                    "a node asked for permits of unknown target %r: its traffic config differs from the master's",
                    target,
                )
            self._send(MSG_GRANT, {**reply, "rate": None, "retry_after": RETRY_MAX, "state": "unknown"}, holder)
            return
        want = max(0, min(int(data.get("want", 1)), MAX_BATCH))
        lease = self.ledger.lease(holder, target, want, now, self.ttl)
        self.granted_in_run[target] += lease.count
        # Persist before granting. If the write fails, fail closed: the permits stay counted and
        # come back when the (never delivered) lease expires.
        count = lease.count if lease.count and self.save() else 0
        status = self.ledger.budget(target).status(now)
        reply.update(
            lease=lease.id if count else None,
            count=count,
            rate=status.current_rate,
            retry_after=0.0 if count >= want else self._retry_after(status),
            state=status.state,
        )
        self._send(MSG_GRANT, reply, holder)

    def on_report(self, holder: str, data: Mapping[str, Any]) -> None:
        if data.get("broker") != self.id:
            return  # a lease of an earlier master: settled as used at our start
        for lease_id, used in dict(data.get("used", {})).items():
            self.ledger.report_used(holder, str(lease_id), int(used))

    def on_return(self, holder: str, data: Mapping[str, Any]) -> None:
        if data.get("broker") != self.id:
            return
        now = self._clock()
        credited = False
        for lease_id, used in dict(data.get("leases", {})).items():
            settled = self.ledger.return_lease(holder, str(lease_id), int(used), now)
            if settled is not None and settled.credited:
                self.granted_in_run[settled.lease.target] -= settled.credited
                credited = True
        if credited:
            self.save()

    # -- periodic work

    def tick(self, now: float | None = None) -> None:
        """Expire leases (crediting what is unused) and note holders that are gone; ~1/s."""
        now = self._now(now)
        credited = False
        for settled in self.ledger.expire(now):
            if settled.credited:
                credited = True
                self.granted_in_run[settled.lease.target] -= settled.credited
                logger.info(
                    "lease %s of %s expired: %d unused %s permits credited back",
                    settled.lease.id,
                    settled.lease.holder,
                    settled.credited,
                    settled.lease.target,
                )
        if self._alive is not None:
            self._released = {holder for holder in self._released if not self._alive(holder)}  # a worker may come back
            for holder in {lease.holder for lease in self.ledger.leases()} - self._released:
                if not self._alive(holder):
                    self._released.add(holder)
                    marked = self.ledger.release(holder)
                    unused = sum(lease.unused for lease in marked)
                    logger.warning(
                        "worker %s is gone: its %d unreported permits return when their leases expire (ttl %gs)",
                        holder,
                        unused,
                        self.ttl,
                    )
        if credited:
            self.save()

    def save(self) -> bool:
        """Write the ledger's snapshot; ``False`` (and one logged error) when it cannot be written."""
        if self._state_file is None:
            return True
        try:
            self._state_file.save(state_json(self.ledger))
        except OSError as exc:
            if not self._save_failed:
                logger.error(
                    "cannot write the budget state %s (%s): no permits are granted until it can be written",
                    self._state_file.path,
                    exc,
                )
            self._save_failed = True
            return False
        if self._save_failed:
            logger.info("the budget state %s is writable again", self._state_file.path)
            self._save_failed = False
        return True

    # -- live changes (the web UI's control plane)

    def retarget(
        self, target: str, *, pace: Pace | None = None, paused: bool | None = None, now: float | None = None
    ) -> TargetStatus:
        """Change a target's pace or pause it while running; persisted, then announced to clients.

        Raises ``KeyError`` for a target without a budget and ``ValueError`` for a time zone change.
        """
        status = self.ledger.retarget(target, self._now(now), pace=pace, paused=paused)
        self.save()
        self.announce_limits()
        return status

    def limited_targets(self) -> list[str]:
        """Targets whose users must ask for permits: those with a rate or cap, and paused ones."""
        return [
            name
            for name in self.ledger.targets
            if self.ledger.budget(name).paused or self.ledger.budget(name).pace.visits_per_day is not None
        ]

    def announce_limits(self) -> None:
        """Tell every client which targets go through the broker (a target paused or given a rate
        live may have been unlimited at start, so its users never asked)."""
        self._send(MSG_LIMITS, {"targets": self.limited_targets()}, None)

    # -- views

    def status(self, now: float | None = None) -> list[TargetStatus]:
        return self.ledger.status(self._now(now))

    def all_spent(self, now: float | None = None) -> bool:
        """Every target not paused by an operator has a cap, has been granted all of today's cap,
        and no permit is left unused.

        Waiting for the leased permits to be used (not just granted) is what makes a run that ends
        here deliver exactly its caps.
        """
        statuses = [s for s in self.status(now) if not self.ledger.budget(s.name).paused]
        return bool(statuses) and all(s.state == "capped" and s.outstanding_leased == 0 for s in statuses)

    def lag(self, target: str, now: float | None = None) -> float:
        """Visits due at the target's pace since the run started minus permits granted in the run."""
        if self.run_started_at is None:
            return 0.0
        pace = self.ledger.budget(target).pace
        return pace.expected_visits(self.run_started_at, self._now(now)) - self.granted_in_run.get(target, 0)

    # -- internals

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    @staticmethod
    def _retry_after(status: TargetStatus) -> float:
        if status.state == "capped":
            return RETRY_CAPPED
        if status.state == "paused":
            return RETRY_PAUSED
        if status.current_rate:
            return min(max(1.0 / status.current_rate, RETRY_MIN), RETRY_MAX)
        return RETRY_MIN


# ---------------------------------------------------------------------------------------------
# The client (every process that runs users)


@dataclass
class _Lease:
    broker: str
    id: str
    count: int
    deadline: float  # on the client's monotonic clock
    used: int = 0

    @property
    def unused(self) -> int:
        return self.count - self.used


@dataclass
class _Permits:
    """One target's permits in this process."""

    name: str
    leases: list[_Lease] = field(default_factory=list)
    pending: int | None = None
    pending_since: float = 0.0
    not_before: float = 0.0
    rate: float | None = None
    waiting: int = 0
    event: Event = field(default_factory=Event)
    takes: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_BATCH))
    state: str = "unknown"

    def available(self, now: float) -> int:
        return sum(lease.unused for lease in self.leases if lease.deadline > now)


class PermitClient:
    """Holds this process's leases and hands out permits to its users.

    ``limited`` names the targets that go through the broker; any other target (no
    ``visits_per_day``: no pace, no cap) is always allowed without a message. ``send(msg_type,
    data, client_id)`` sends to the broker; ``clock`` is monotonic.
    """

    def __init__(self, limited: Iterable[str], *, send: Send, clock: Callable[[], float] = time.monotonic):
        self._send = send
        self._clock = clock
        self._targets = {name: _Permits(name) for name in limited}
        self._requests: dict[int, tuple[str, float]] = {}
        self._req_ids = itertools.count(1)
        self.active = True

    def attach(self, runner: Any) -> None:
        """Register the grant and live-limits handlers on a Locust runner (worker or local).

        The plugin registers its own delegating handlers instead, since a new config brings a new client.
        """
        runner.register_message(MSG_GRANT, lambda environment, msg, **_: self.on_grant(msg.data))
        runner.register_message(MSG_LIMITS, lambda environment, msg, **_: self.on_limits(msg.data))

    def limit(self, targets: Iterable[str]) -> None:
        """Send ``targets`` through the broker from now on, and let every waiting user ask at once.

        A target becomes limited when an operator pauses it or gives it a rate while running; a
        limited target is never unlimited again in this process (the broker grants freely when it
        has no cap, so asking costs only a message). A live change may also have lifted a pause
        or a cap, so no target keeps waiting out a ``retry_after`` given under the old settings.
        """
        for name in targets:
            self._targets.setdefault(name, _Permits(name))
        for permits in self._targets.values():
            permits.not_before = 0.0
            old, permits.event = permits.event, Event()
            old.set()

    def on_limits(self, data: Mapping[str, Any]) -> None:
        self.limit(str(name) for name in data.get("targets", []))

    # -- what users call

    def try_acquire(self, target: str) -> bool:
        """Take one permit of ``target`` now if this process holds one (asking for more if low)."""
        permits = self._targets.get(target)
        if permits is None:
            return True
        if not self.active:
            return False
        now = self._clock()
        self._prune(permits, now)
        if self._take(permits, now):
            return True
        self._request(permits, now, extra=1)
        return self._take(permits, self._clock())  # a local runner answers synchronously

    def acquire(self, target: str, wait: Callable[[Event, float], None]) -> None:
        """Block until a permit of ``target`` is taken; ``wait(event, timeout)`` is the user's
        stoppable wait (it returns on the event, the timeout, or raises to stop the user)."""
        while not self.try_acquire(target):
            permits = self._targets[target]
            permits.waiting += 1
            try:
                wait(permits.event, self._wait_timeout(permits))
            finally:
                permits.waiting -= 1

    # -- message handler

    def on_grant(self, data: Mapping[str, Any]) -> None:
        now = self._clock()
        permits = self._targets.get(str(data.get("target")))
        if permits is None:
            return
        request = self._requests.pop(data.get("req"), None)
        if permits.pending == data.get("req"):
            permits.pending = None
        permits.rate = data.get("rate")
        permits.state = str(data.get("state", "unknown"))
        retry_after = float(data.get("retry_after") or 0.0)
        permits.not_before = now + retry_after if retry_after else 0.0
        count = int(data.get("count") or 0)
        if count > 0:
            # The lease runs from when we asked; a grant we have no record of (forgotten at
            # test stop, or older than a ttl) cannot be dated safely, so it goes straight back.
            ttl = float(data["ttl"])
            asked_at = request[1] if request is not None else now - ttl
            lease = _Lease(str(data["broker"]), str(data["lease"]), count, asked_at + ttl - lease_margin(ttl))
            if not self.active or lease.deadline <= now:
                self._return([lease])  # too late to use: the broker may credit it at once
            else:
                permits.leases.append(lease)
                permits.leases.sort(key=lambda item: item.deadline)
        old, permits.event = permits.event, Event()
        old.set()  # wake every user waiting for this target; they look again

    # -- periodic work and shutdown

    def tick(self) -> None:
        """Drop (and return) leases past their deadline; report cumulative use of the rest (~1/s)."""
        now = self._clock()
        for req, (_, asked_at) in list(self._requests.items()):
            if now - asked_at > 2 * DEFAULT_TTL:  # unanswered for good; its grant would be unusable anyway
                del self._requests[req]
        used: dict[str, dict[str, int]] = {}
        for permits in self._targets.values():
            self._prune(permits, now)
            for lease in permits.leases:
                if lease.used:
                    used.setdefault(lease.broker, {})[lease.id] = lease.used
        for broker, leases in used.items():
            self._safe_send(MSG_REPORT, {"broker": broker, "used": leases})

    def start(self) -> None:
        self.active = True

    def return_all(self) -> None:
        """Give every lease back with its use (the test stopped; nothing of it is in flight)."""
        self.active = False
        leases = [lease for permits in self._targets.values() for lease in permits.leases]
        self._return(leases)
        self._requests.clear()
        for permits in self._targets.values():
            permits.leases.clear()
            permits.pending = None
            permits.not_before = 0.0
            permits.takes.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """What this process holds per target (for tests and debugging)."""
        now = self._clock()
        return {
            name: {
                "available": p.available(now),
                "leases": len(p.leases),
                "pending": p.pending is not None,
                "waiting": p.waiting,
                "state": p.state,
            }
            for name, p in self._targets.items()
        }

    # -- internals

    def _take(self, permits: _Permits, now: float) -> bool:
        for lease in permits.leases:
            if lease.deadline > now and lease.unused > 0:
                lease.used += 1
                # Report before the visit starts: if this process dies now, the broker still
                # knows the permit was used and will not credit it back at expiry.
                if not self._safe_send(MSG_REPORT, {"broker": lease.broker, "used": {lease.id: lease.used}}):
                    lease.used -= 1
                    return False
                permits.takes.append(now)
                if permits.available(now) < self._low_water(permits, now):
                    self._request(permits, now)
                return True
        return False

    def _request(self, permits: _Permits, now: float, extra: int = 0) -> None:
        if permits.pending is not None and now - permits.pending_since < REQUEST_TIMEOUT:
            return
        if now < permits.not_before:
            return
        req = next(self._req_ids)
        permits.pending, permits.pending_since = req, now
        self._requests[req] = (permits.name, now)
        want = self._batch(permits, now) + permits.waiting + extra
        if not self._safe_send(
            MSG_LEASE, {"req": req, "target": permits.name, "want": min(want, MAX_BATCH), "waiting": permits.waiting}
        ):
            permits.pending = None
            self._requests.pop(req, None)

    def _rate(self, permits: _Permits, now: float) -> float:
        """The paced rate from the broker, else what this process used over the last 2 seconds."""
        if permits.rate is not None:
            return permits.rate
        while permits.takes and permits.takes[0] < now - 2.0:
            permits.takes.popleft()
        return len(permits.takes) / 2.0

    def _batch(self, permits: _Permits, now: float) -> int:
        return max(1, math.ceil(self._rate(permits, now) * BATCH_SECONDS))

    def _low_water(self, permits: _Permits, now: float) -> int:
        return max(1, math.ceil(self._rate(permits, now) * LOW_WATER_SECONDS))

    def _prune(self, permits: _Permits, now: float) -> None:
        expired = [lease for lease in permits.leases if lease.deadline <= now or lease.unused == 0]
        if expired:
            permits.leases = [lease for lease in permits.leases if lease not in expired]
            self._return([lease for lease in expired if lease.unused > 0])

    def _return(self, leases: list[_Lease]) -> None:
        by_broker: dict[str, dict[str, int]] = {}
        for lease in leases:
            by_broker.setdefault(lease.broker, {})[lease.id] = lease.used
        for broker, returned in by_broker.items():
            self._safe_send(MSG_RETURN, {"broker": broker, "leases": returned})

    def _wait_timeout(self, permits: _Permits) -> float:
        now = self._clock()
        until = permits.not_before - now if permits.not_before > now else MAX_WAIT
        return min(max(until, 0.01), MAX_WAIT)

    def _safe_send(self, msg_type: str, data: dict[str, Any]) -> bool:
        try:
            self._send(msg_type, data, None)
        except Exception as exc:  # noqa: BLE001  (a lost connection must not kill a user)
            logger.warning("cannot send %s to the master: %s", msg_type, exc)
            return False
        return True


def spawn_every(group: Any, seconds: float, work: Callable[[], None], what: str) -> gevent.Greenlet:
    """Run ``work`` every ``seconds`` in ``group`` (a runner's greenlet group: it dies with it)."""

    def loop() -> None:
        while True:
            gevent.sleep(seconds)
            try:
                work()
            except Exception:  # noqa: BLE001  (keep the loop alive; the error is logged)
                logger.exception("%s failed", what)

    return group.spawn(loop)


__all__ = [
    "DEFAULT_TTL",
    "MSG_GRANT",
    "MSG_LEASE",
    "MSG_LIMITS",
    "MSG_REPORT",
    "MSG_RETURN",
    "PermitBroker",
    "PermitClient",
    "StateFile",
    "build_budgets",
    "default_state_path",
    "lease_margin",
    "restore_ledger",
    "spawn_every",
    "state_folder",
]
