"""Historical backfill: past days of planned traffic sent to Matomo with ``cdt`` and bulk requests.

Why: a fresh Matomo (or a new report, a demo, a load test of archiving) needs months of history,
not only what a live Locust run adds from now on. Backfill sends, for each target and each LOCAL
day of a range, exactly the visits the target's pace plans for that day, spread over the day by
its hourly profile, each hit stamped with its own time (``cdt``), in bulk requests.

Layout (pure first, I/O last):

* **Days** (:func:`day_window`): a past local day gets ``Pace.cap(day)`` visits (``visits_per_day``
  times the weekday factor); the target's local *today* gets the visits due between local midnight
  and now (the pace's integral), all placed before now. Days after today are refused.
* **Placement** (:class:`Placer`, :func:`hit_times`): visit ``i`` of ``N`` starts at the
  ``(i + u)/N`` quantile of the day's hourly rate curve (``u`` a seeded jitter), so starts follow
  the profile closely and grow with ``i`` (send order = time order). DST days work in real
  seconds (``Pace`` has the 23/25-hour days). A visit that would run past the day's end is
  shifted back so its last hit stays inside the day.
* **Visit numbers** (:func:`visit_number`): visit ``i`` of local day ``D`` is planner visit
  ``int(D as YYYYMMDD) * 10**9 + i``; its content comes from ``VisitPlanner(target, seed)`` and its
  jitter from ``planner.rng_for(number, 2)``. Same seed, same day, same index: same visit, same
  times, same ``ec_id`` (the encoder's ``run_id`` is derived from seed and target, not random).
* **Checkpoint** (:class:`Checkpoint`): per (target, day) the number of planned visits and a
  cursor (next visit, next hit in it) advanced after each batch Matomo confirmed, written
  atomically; finished days are marked. A resumed run starts at the cursor: nothing is sent twice.
* **Sending** (:class:`Transport`, :func:`run_backfill`): one thread per target (green under
  gevent), a keep-alive HTTP connection, a hits-per-second :class:`TokenBucket`, retries only
  where nothing can have been stored (connection refused, 429/502/503).

The report (``--report``) has the shape ``verify`` reads:
``{"targets": [{"target": NAME, "days": {"YYYY-MM-DD": {"visits": N, "hits": M, ...}}}]}``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import random
import signal
import socket
import sys
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit, urlunsplit

from trafficinator_locust.core.budget import Pace, round_half_up
from trafficinator_locust.core.bulk import (
    DEFAULT_BULK_SIZE,
    JSON_CONTENT_TYPE,
    MAX_BULK_SIZE,
    BulkAnswer,
    batches,
    build_payload,
    encode_item,
    parse_answer,
)
from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import BulkError, SendError, UsageError
from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.protocol import ACTION_KINDS, classify
from trafficinator_locust.core.table import render_table
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visits import PlannedVisit, VisitPlanner

__all__ = [
    "CHECKPOINT_VERSION",
    "DEFAULT_MAX_DAYS",
    "PLACEMENT_STREAM",
    "VISITS_PER_DAY_LIMIT",
    "BackfillOptions",
    "Checkpoint",
    "DayVisit",
    "DayWindow",
    "Placer",
    "TokenBucket",
    "Transport",
    "add_command",
    "cdt",
    "day_visits",
    "day_window",
    "hit_times",
    "run_backfill",
    "run_id_for",
    "visit_number",
]

CHECKPOINT_VERSION = 1
DEFAULT_MAX_DAYS = 400
PLACEMENT_STREAM = 2
"""``planner.rng_for(number, 2)``: the placement jitter (streams 0 and 1 belong to the planner)."""
VISITS_PER_DAY_LIMIT = 10**9
"""Visit numbers keep the index in the low 9 decimal digits, so a day holds fewer visits."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CDT_FORMAT = "%Y-%m-%d %H:%M:%S"
RETRYABLE_STATUSES = frozenset({429, 502, 503})
IDLE_RECONNECT_SECONDS = 5.0


# =============================================================================================
# Pure: days, visit numbers, placement


@dataclass(frozen=True)
class DayWindow:
    """The stretch of one local day that gets ``visits`` visits: ``[start, end)`` in unix seconds.

    ``end`` is the next local midnight for a past day, the planning instant for today.
    """

    day: date
    start: int
    end: int
    visits: int


def local_today(pace: Pace, now: float) -> date:
    return datetime.fromtimestamp(now, pace.zone).date()


def day_window(pace: Pace, day: date, now: float) -> DayWindow:
    """The window and visit count of local ``day`` as planned at ``now``.

    Past day: the whole day and ``pace.cap(day)``. Today: local midnight to ``now`` and the visits
    the pace expects in that stretch (rounded half up). A later day raises ``ValueError``.
    """
    plan = pace.plan(day)
    cap = plan.cap or 0
    if now >= plan.end:
        return DayWindow(day, plan.start, plan.end, cap)
    if now <= plan.start:
        raise ValueError(f"{day} has not begun in {pace.timezone}")
    until = int(now)
    return DayWindow(day, plan.start, until, round_half_up(pace.expected_visits(plan.start, until)))


def visit_number(day: date, index: int) -> int:
    """The planner's visit number of visit ``index`` of local ``day``: ``YYYYMMDD * 10**9 + index``.

    Readable in logs (``20250314000000017`` is visit 17 of 14 March 2025) and unique per target.
    """
    if not 0 <= index < VISITS_PER_DAY_LIMIT:
        raise ValueError(f"visit index {index} out of range")
    return (day.year * 10000 + day.month * 100 + day.day) * VISITS_PER_DAY_LIMIT + index


def run_id_for(seed: int, target_name: str) -> str:
    """The order-id prefix of a target's backfill: fixed by seed and target, so a resumed (or
    repeated) run sends the same ``ec_id`` for the same visit and Matomo refuses a second copy."""
    return "bf" + hashlib.blake2b(f"{seed}|{target_name}".encode(), digest_size=4).hexdigest()


class Placer:
    """Maps a quantile ``q`` in [0, 1) to an instant of a day window by its hourly rate curve.

    The curve is the pace's segments clipped to the window. A window whose rate is 0 everywhere
    (every existing hour weighted 0) falls back to a uniform spread.
    """

    def __init__(self, pace: Pace, window: DayWindow):
        pieces: list[tuple[float, float, float]] = []  # (start, end, rate)
        for segment in pace.plan(window.day).segments:
            low, high = max(segment.start, window.start), min(segment.end, window.end)
            if high > low:
                pieces.append((low, high, segment.rate))
        if not any(rate > 0 for _, _, rate in pieces):
            pieces = [(window.start, window.end, 1.0)] if window.end > window.start else []
        pieces = [piece for piece in pieces if piece[2] > 0]
        self._pieces = pieces
        self._cumulative: list[float] = []
        total = 0.0
        for low, high, rate in pieces:
            total += rate * (high - low)
            self._cumulative.append(total)
        self._total = total
        self.window = window

    def at(self, quantile: float) -> float:
        """The instant below which ``quantile`` of the window's expected visits fall."""
        if not self._pieces:
            return float(self.window.start)
        target = min(max(quantile, 0.0), 1.0) * self._total
        index = min(bisect_right(self._cumulative, target), len(self._pieces) - 1)
        low, high, rate = self._pieces[index]
        before = self._cumulative[index - 1] if index else 0.0
        return min(low + (target - before) / rate, high)


def hit_times(start: float, waits: Sequence[float], window_start: int, window_end: int) -> tuple[int, ...]:
    """Whole-second instants of a visit's hits, in order, all inside ``[window_start, window_end)``.

    Hit ``k`` comes ``waits[1..k]`` seconds after the first (``waits[0]``, the wait before the
    first hit, is ignored). A visit that would end after the window is shifted back so its last
    hit falls on the window's last second; one longer than the whole window is squeezed into it.
    """
    offsets = [0.0]
    for wait in waits[1:]:
        offsets.append(offsets[-1] + max(wait, 0.0))
    duration = offsets[-1]
    last = window_end - 1
    scale = 1.0
    if start + duration > last:
        start = last - duration
    if start < window_start:
        start = float(window_start)
        scale = (last - window_start) / duration if duration > 0 else 1.0
    return tuple(min(max(int(math.floor(start + offset * scale)), window_start), last) for offset in offsets)


def cdt(ts: int) -> str:
    """Matomo's ``cdt``: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime(CDT_FORMAT)


@dataclass(frozen=True)
class DayVisit:
    """One planned visit of a day with its hits' instants (unix seconds, same order as its hits)."""

    index: int
    number: int
    visit: PlannedVisit
    times: tuple[int, ...]

    @property
    def start(self) -> int:
        return self.times[0]


def day_visits(planner: VisitPlanner, pace: Pace, window: DayWindow, first: int = 0) -> Iterator[DayVisit]:
    """The visits of ``window`` from index ``first`` on, lazily (a day may hold many visits)."""
    if window.visits >= VISITS_PER_DAY_LIMIT:
        raise ValueError(f"{window.day}: {window.visits} visits exceed {VISITS_PER_DAY_LIMIT - 1} per day")
    placer = Placer(pace, window)
    for index in range(first, window.visits):
        number = visit_number(window.day, index)
        visit = planner.plan(number)
        jitter = planner.rng_for(number, PLACEMENT_STREAM).random()
        start = placer.at((index + jitter) / window.visits)
        yield DayVisit(
            index, number, visit, hit_times(start, [hit.wait_before for hit in visit.hits], window.start, window.end)
        )


FIXED_PARAMS = {"rec": "1", "apiv": "1"}


def hit_params(encoder: TrackingEncoder, site_id: int, day_visit: DayVisit, position: int) -> dict[str, str]:
    """Every parameter of one backfilled hit except the token: fixed ones, the encoder's, ``cdt``."""
    hit = day_visit.visit.hits[position]
    ts = day_visit.times[position]
    sent_at = datetime.fromtimestamp(ts, timezone.utc)
    return {
        "idsite": str(site_id),
        **FIXED_PARAMS,
        **encoder.params(hit, day_visit.visit.visitor, sent_at),
        "cdt": cdt(ts),
    }


# =============================================================================================
# Pure: rate limiting


class TokenBucket:
    """A token bucket that may go into debt: ``reserve(n)`` takes ``n`` tokens at once and says how
    long to wait before using them, so a batch of 50 hits needs no bucket of 50 (no busy wait: the
    caller sleeps the returned seconds once). Starts full (``burst`` tokens).

    Over any stretch of ``T`` seconds at most ``burst + rate * T`` tokens are used.
    """

    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if not burst > 0:
            raise ValueError("burst must be > 0")
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self._tokens = float(burst)
        self._at: float | None = None

    def reserve(self, n: float = 1.0, now: float | None = None) -> float:
        """Take ``n`` tokens; returns the seconds to wait before acting on them (0 when available)."""
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


# =============================================================================================
# Checkpoint


def target_fingerprint(target: Target) -> str:
    """What shapes a target's planned visits and where they go (token, weight, enabled excluded)."""
    data = target.model_dump(mode="json", exclude={"token_auth", "weight", "enabled"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _new_day(window: DayWindow, full_day_end: int) -> dict[str, Any]:
    day = {
        "planned": window.visits,
        "cursor": [0, 0],
        "visits": 0,
        "hits": 0,
        "tracked": 0,
        "invalid": 0,
        "actions": 0,
        "done": window.visits == 0,
    }
    if window.end != full_day_end:
        day["until"] = window.end
    return day


class Checkpoint:
    """Progress per target and local day, saved atomically after every confirmed batch.

    File layout (version 1)::

        {"version": 1, "targets": {NAME: {"fingerprint": ..., "seed": ..., "run_id": ...,
            "days": {"YYYY-MM-DD": {"planned": N, "until": TS (today only), "cursor": [visit, hit],
                                     "visits": .., "hits": .., "tracked": .., "invalid": ..,
                                     "actions": .., "done": bool}}}}}

    ``cursor`` is the next hit to send: visit index and hit index within that visit. ``path=None``
    keeps everything in memory (dry runs, tests).
    """

    def __init__(self, path: Path | None, data: dict[str, Any] | None = None):
        self.path = path
        self.data: dict[str, Any] = data or {"version": CHECKPOINT_VERSION, "targets": {}}
        self.lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None) -> Checkpoint:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"--checkpoint {path}: not a readable checkpoint ({exc.__class__.__name__}); move it away to start over"
            ) from None
        if (
            not isinstance(data, dict)
            or data.get("version") != CHECKPOINT_VERSION
            or not isinstance(data.get("targets"), dict)
        ):
            raise UsageError(
                f"--checkpoint {path}: not a backfill checkpoint of version {CHECKPOINT_VERSION}; move it away to start over"
            )
        return cls(path, data)

    def target(self, name: str) -> dict[str, Any] | None:
        return self.data["targets"].get(name)

    def adopt(self, name: str, fingerprint: str, seed: int, run_id: str) -> dict[str, Any]:
        return self.data["targets"].setdefault(
            name, {"fingerprint": fingerprint, "seed": seed, "run_id": run_id, "days": {}}
        )

    def save(self) -> None:
        if self.path is not None:
            write_atomic(self.path, json.dumps(self.data, separators=(",", ":"), sort_keys=True), durable=True)


# =============================================================================================
# Transport


def display_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Poster(Protocol):
    def post(self, body: bytes, content_type: str) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


TransportFactory = Callable[[Target, float], Poster]


class Transport:
    """POSTs to one URL over a keep-alive connection (``http.client``; green under gevent).

    A connection idle for more than a few seconds is replaced before use, so a server closing idle
    connections never turns a sent batch into an ambiguous failure.
    """

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {display_url(url)}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path or "/"
        self._timeout = timeout
        self._headers: dict[str, str] = {"User-Agent": "trafficinator-backfill"}
        self._connection: http.client.HTTPConnection | None = None
        self._used_at = 0.0

    def _connect(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        if self._connection is not None and now - self._used_at > IDLE_RECONNECT_SECONDS:
            self.close()
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        return self._connection

    def post(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """Send one POST; returns ``(status, body)`` or raises :class:`SendError`."""
        connection = self._connect()
        headers = {**self._headers, "Content-Type": content_type, "Content-Length": str(len(body))}
        try:
            connection.request("POST", self._path, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, unreachable, reset while sending
            self.close()
            raise SendError(f"cannot send to {display_url(self.url)}: {_reason(exc)}", retryable=True) from None
        try:
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendError(f"no answer from {display_url(self.url)}: {_reason(exc)}", retryable=False) from None
        self._used_at = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return text[:200]


# =============================================================================================
# The run


@dataclass
class BackfillOptions:
    """What the command line asks for (see ``trafficinator backfill --help``)."""

    first: date
    last: date
    targets: Sequence[str] = ()
    max_hits_per_second: float | None = None
    checkpoint: Path | None = Path("backfill-checkpoint.json")
    report: Path | None = Path("backfill-report.json")
    bulk_size: int = DEFAULT_BULK_SIZE
    max_days: int = DEFAULT_MAX_DAYS
    dry_run: bool = False
    retries: int = 2
    timeout: float = 30.0
    stop_after_batches: int | None = None  # test hook: behave as if interrupted after N batches
    progress_every: float = 1.0


@dataclass
class TargetJob:
    """One target's share of the run: what to plan, where to send it, and how it went."""

    target: Target
    index: int
    pace: Pace
    days: list[date]
    seed: int
    run_id: str
    planner: VisitPlanner
    encoder: TrackingEncoder
    status: str = "pending"  # pending | running | complete | failed | interrupted
    error: str | None = None

    @property
    def name(self) -> str:
        return self.target.name


def _config_label(config: Config, job_or_index: int) -> str:
    return f"{config.source}: targets[{job_or_index}]"


def select_targets(config: Config, names: Sequence[str]) -> list[tuple[int, Target]]:
    """The enabled targets, or those named (case-insensitive); an unknown name is a usage error."""
    indexed = list(enumerate(config.targets))
    if not names:
        return [(i, t) for i, t in indexed if t.enabled]
    by_name = {t.name.casefold(): (i, t) for i, t in indexed}
    chosen, unknown = [], []
    for name in names:
        found = by_name.get(name.casefold())
        if found is None:
            unknown.append(name)
        elif found not in chosen:
            chosen.append(found)
    if unknown:
        known = ", ".join(t.name for t in config.targets)
        raise UsageError(f"--target {', '.join(unknown)}: no such target in {config.source} (targets: {known})")
    return chosen


def prepare(config: Config, options: BackfillOptions, checkpoint: Checkpoint, now: float) -> list[TargetJob]:
    """Check everything that can be checked before sending; build one job per target.

    Raises :class:`UsageError` (exit 2) for: a bad range, a range over ``max_days``, a day after a
    target's local today, a target without ``visits_per_day`` or ``token_auth``, a checkpoint
    written for different settings.
    """
    if options.first > options.last:
        raise UsageError(f"--from {options.first} is after --to {options.last}")
    span = (options.last - options.first).days + 1
    if span > options.max_days:
        raise UsageError(
            f"--from {options.first} --to {options.last} covers {span} days, more than --max-days {options.max_days}; split the range or raise --max-days"
        )
    if not 1 <= options.bulk_size <= MAX_BULK_SIZE:
        raise UsageError(f"--bulk-size must be between 1 and {MAX_BULK_SIZE}")
    if options.max_hits_per_second is not None and not options.max_hits_per_second > 0:
        raise UsageError("--max-hits-per-second must be > 0")
    selected = select_targets(config, options.targets)
    problems = []
    for index, target in selected:
        where = f"{_config_label(config, index)} ({target.name})"
        if target.visits_per_day is None:
            problems.append(
                f"{where}: no visits_per_day; backfill sends each day's planned visits, so set visits_per_day on the target, in defaults, or as the top-level total"
            )
        if target.token_auth is None:
            problems.append(
                f"{where}: no token_auth; Matomo accepts hits older than 24 hours (cdt) only with a token with write access to site {target.site_id}: set token_auth: ${{YOUR_TOKEN_VARIABLE}}"
            )
        pace = Pace(None, target.timezone)
        today = local_today(pace, now)
        if options.last > today:
            problems.append(
                f"{where}: --to {options.last} is in the future for this target (local today in {target.timezone}: {today}); backfill only sends past days and today up to now"
            )
    if problems:
        raise UsageError("\n".join(problems))
    days = [options.first + timedelta(days=n) for n in range(span)]
    jobs = []
    for index, target in selected:
        fingerprint = target_fingerprint(target)
        configured = target.seed if target.seed is not None else config.seed
        saved = checkpoint.target(target.name)
        if saved is not None and saved.get("fingerprint") != fingerprint:
            raise UsageError(
                f"--checkpoint {checkpoint.path}: target {target.name} was backfilled with other settings "
                f"(url, site, pace, time zone, traffic or seed changed); restore them, or use a new --checkpoint (days already sent stay in Matomo)"
            )
        seed = (
            int(saved["seed"])
            if saved is not None
            else (configured if configured is not None else random.SystemRandom().getrandbits(62))
        )
        run_id = str(saved["run_id"]) if saved is not None else run_id_for(seed, target.name)
        if not options.dry_run:
            checkpoint.adopt(target.name, fingerprint, seed, run_id)
        jobs.append(
            TargetJob(
                target,
                index,
                target.pace(),
                days,
                seed,
                run_id,
                VisitPlanner(target, seed),
                TrackingEncoder(target, run_id=run_id),
            )
        )
    return jobs


def window_of(job: TargetJob, day: date, state: Mapping[str, Any] | None, now: float) -> DayWindow:
    """The day's window: from the checkpoint when it was planned before (today stays as planned)."""
    if state is None:
        return day_window(job.pace, day, now)
    plan = job.pace.plan(day)
    return DayWindow(day, plan.start, int(state.get("until", plan.end)), int(state["planned"]))


@dataclass
class _Item:
    """One encoded hit on its way, with what a confirmation of it means for the checkpoint."""

    query: str
    visit: int
    hit: int
    last_of_visit: bool
    stored_visit: bool
    action: bool


def _items(job: TargetJob, window: DayWindow, cursor: Sequence[int]) -> Iterator[_Item]:
    first_visit, first_hit = int(cursor[0]), int(cursor[1])
    site = job.target.site_id
    for day_visit in day_visits(job.planner, job.pace, window, first_visit):
        hits = day_visit.visit.hits
        stored = day_visit.visit.stored_by_matomo
        start = first_hit if day_visit.index == first_visit else 0
        for position in range(start, len(hits)):
            params = hit_params(job.encoder, site, day_visit, position)
            yield _Item(
                encode_item(params),
                day_visit.index,
                position,
                position == len(hits) - 1,
                stored,
                stored and classify(params) in ACTION_KINDS,
            )


class Progress:
    """Days done of all and hits per target: a ``\\r`` bar on a terminal, plain lines otherwise."""

    def __init__(self, jobs: Sequence[TargetJob], stream: TextIO, every: float):
        self.jobs = jobs
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = every
        self.total = sum(len(job.days) for job in jobs)
        self.done: dict[str, int] = {job.name: 0 for job in jobs}
        self.hits: dict[str, int] = {job.name: 0 for job in jobs}
        self._last_line = ""

    def line(self) -> str:
        done = sum(self.done.values())
        width = 20
        filled = int(width * done / self.total) if self.total else width
        parts = []
        for job in self.jobs:
            mark = {"failed": " FAILED", "interrupted": " stopped"}.get(job.status, "")
            parts.append(f"{job.name} {self.hits[job.name]:,} hits{mark}")
        return f"backfill [{'#' * filled}{'-' * (width - filled)}] {done}/{self.total} days | " + " | ".join(parts)

    def show(self, final: bool = False) -> None:
        line = self.line()
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)) + ("\n" if final else ""))
        elif line != self._last_line or final:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_line = line


class _Run:
    """The shared state of one backfill: jobs, checkpoint, stop flag, counters."""

    def __init__(
        self,
        jobs: list[TargetJob],
        checkpoint: Checkpoint,
        options: BackfillOptions,
        now: float,
        progress: Progress | None,
        transport_factory: TransportFactory | None = None,
        stop: threading.Event | None = None,
    ):
        self.jobs = jobs
        self.checkpoint = checkpoint
        self.options = options
        self.now = now
        self.progress = progress
        self.transport_factory = transport_factory or (lambda target, timeout: Transport(target.url, timeout))
        self.stop = stop or threading.Event()
        self.batches = 0
        self._count_lock = threading.Lock()

    def batch_done(self) -> None:
        limit = self.options.stop_after_batches
        with self._count_lock:
            self.batches += 1
            if limit is not None and self.batches >= limit:
                self.stop.set()

    def run_target(self, job: TargetJob) -> None:
        job.status = "running"
        transport = self.transport_factory(job.target, self.options.timeout)
        rate = self.options.max_hits_per_second
        bucket = TokenBucket(rate, burst=max(float(self.options.bulk_size), 1.0)) if rate else None
        token = job.target.token_auth.get_secret_value() if job.target.token_auth else None
        try:
            for day in job.days:
                if self.stop.is_set():
                    job.status = "interrupted"
                    return
                if not self._run_day(job, day, transport, bucket, token):
                    return
            job.status = "complete"
        except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
            job.status, job.error = "failed", f"{exc.__class__.__name__}: {exc}"
        finally:
            transport.close()

    def _day_state(self, job: TargetJob, day: date) -> dict[str, Any]:
        with self.checkpoint.lock:
            days = self.checkpoint.data["targets"][job.name]["days"]
            state = days.get(day.isoformat())
            if state is None:
                window = day_window(job.pace, day, self.now)
                state = days[day.isoformat()] = _new_day(window, job.pace.plan(day).end)
            return state

    def _run_day(
        self, job: TargetJob, day: date, transport: Transport, bucket: TokenBucket | None, token: str | None
    ) -> bool:
        state = self._day_state(job, day)
        if state["done"]:
            self._day_finished(job)
            return True
        window = window_of(job, day, state, self.now)
        for batch in batches(_items(job, window, state["cursor"]), self.options.bulk_size):
            if self.stop.is_set():
                job.status = "interrupted"
                return False
            if bucket is not None:
                bucket.acquire(len(batch), sleep=self.stop.wait)
                if self.stop.is_set():
                    job.status = "interrupted"
                    return False
            payload = build_payload([item.query for item in batch], token)
            try:
                answer = self._send(job, transport, payload, len(batch), token)
            except BulkError as exc:
                if exc.answer is not None:  # processed with a shortfall: never resend it
                    self._confirm(job, state, batch, exc.answer, confirmed=False)
                job.status, job.error = "failed", f"{day}: {exc}"
                return False
            except SendError as exc:
                job.status, job.error = "failed", f"{day}: {exc}"
                return False
            except _Stopped:
                job.status = "interrupted"
                return False
            self._confirm(job, state, batch, answer, confirmed=True)
            self.batch_done()
        with self.checkpoint.lock:
            state["done"] = True
            state["cursor"] = [state["planned"], 0]
            self.checkpoint.save()
        self._day_finished(job)
        return True

    def _send(self, job: TargetJob, transport: Transport, payload: bytes, count: int, token: str | None) -> BulkAnswer:
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            try:
                status, body = transport.post(payload, JSON_CONTENT_TYPE)
            except SendError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    suffix = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise SendError(f"{exc}{suffix}", exc.retryable) from None
            else:
                if status not in RETRYABLE_STATUSES or attempt == attempts - 1:
                    return parse_answer(status, body, count, token)
            if self.stop.wait(min(0.5 * 2**attempt, 10.0)):
                raise _Stopped()
        raise AssertionError("unreachable")

    def _confirm(
        self, job: TargetJob, state: dict[str, Any], batch: list[_Item], answer: BulkAnswer, confirmed: bool
    ) -> None:
        last = batch[-1]
        cursor = [last.visit + 1, 0] if last.last_of_visit else [last.visit, last.hit + 1]
        with self.checkpoint.lock:
            state["cursor"] = cursor
            state["hits"] += len(batch)
            state["tracked"] += answer.tracked
            state["invalid"] += answer.invalid
            if confirmed:
                state["visits"] += sum(1 for item in batch if item.last_of_visit and item.stored_visit)
                state["actions"] += sum(1 for item in batch if item.action)
            self.checkpoint.save()
        if self.progress is not None:
            self.progress.hits[job.name] += len(batch)

    def _day_finished(self, job: TargetJob) -> None:
        if self.progress is not None:
            self.progress.done[job.name] += 1


class _Stopped(Exception):
    """The run was asked to stop while waiting to retry."""


def _install_signals(stop: threading.Event, out: TextIO) -> Callable[[], None]:
    """SIGINT/SIGTERM: finish the batches in flight, save, exit 130. A second signal exits at once
    (the checkpoint file is always whole; at most the batch in flight is sent again on resume)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            out.flush()
            os._exit(EXIT_INTERRUPTED)
        stop.set()
        out.write(
            f"\n{signal.Signals(signum).name}: stopping after the batches in flight; run the same command again to resume\n"
        )
        out.flush()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def report_document(
    config: Config, options: BackfillOptions, jobs: Sequence[TargetJob], checkpoint: Checkpoint, now: float
) -> dict[str, Any]:
    """The JSON report: per target and local day, visits and hits sent and confirmed.

    Built from the checkpoint, so days sent by an earlier (interrupted) run are included.
    """
    targets = []
    for job in jobs:
        saved = (checkpoint.target(job.name) or {}).get("days", {})
        days: dict[str, Any] = {}
        for day in job.days:
            state = saved.get(day.isoformat())
            if state is None:
                planned = day_window(job.pace, day, now).visits
                state = {
                    "planned": planned,
                    "visits": 0,
                    "hits": 0,
                    "tracked": 0,
                    "invalid": 0,
                    "actions": 0,
                    "done": planned == 0,
                }
            days[day.isoformat()] = {
                "visits": state["visits"],
                "hits": state["hits"],
                "actions": state["actions"],
                "planned": state["planned"],
                "tracked": state["tracked"],
                "invalid": state["invalid"],
                "complete": bool(state["done"]),
            }
        targets.append(
            {
                "target": job.name,
                "site_id": job.target.site_id,
                "url": display_url(job.target.url),
                "timezone": job.target.timezone,
                "status": job.status,
                "error": job.error,
                "days": days,
            }
        )
    return {
        "kind": "trafficinator-backfill",
        "config": config.source,
        "from": options.first.isoformat(),
        "to": options.last.isoformat(),
        "generated_at": datetime.fromtimestamp(time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complete": all(job.status == "complete" for job in jobs),
        "targets": targets,
    }


def _summary(document: Mapping[str, Any]) -> str:

    rows = []
    for entry in document["targets"]:
        days = entry["days"].values()
        total = lambda key: sum(d[key] for d in days)  # noqa: E731
        done = sum(1 for d in days if d["complete"])
        rows.append(
            [
                entry["target"],
                entry["timezone"],
                f"{done}/{len(entry['days'])}",
                total("planned"),
                total("visits"),
                total("hits"),
                total("tracked"),
                total("invalid"),
                entry["status"],
            ]
        )
    return render_table(
        ["target", "timezone", "days", "planned", "visits sent", "hits sent", "tracked", "invalid", "status"], rows
    )


def dry_run(jobs: Sequence[TargetJob], now: float, out: TextIO) -> int:
    """Plan every day without sending: visits, hits and the first/last ``cdt`` per target."""

    rows = []
    for job in jobs:
        visits = hits = 0
        first = last = None
        for day in job.days:
            window = day_window(job.pace, day, now)
            for day_visit in day_visits(job.planner, job.pace, window):
                visits += 1
                hits += len(day_visit.times)
                first = day_visit.start if first is None else min(first, day_visit.start)
                last = day_visit.times[-1] if last is None else max(last, day_visit.times[-1])
        rows.append(
            [
                job.name,
                job.target.timezone,
                len(job.days),
                visits,
                hits,
                cdt(first) if first else "-",
                cdt(last) if last else "-",
            ]
        )
    out.write("dry run: nothing sent, no checkpoint written\n")
    out.write(
        render_table(["target", "timezone", "days", "visits", "hits", "first cdt (UTC)", "last cdt (UTC)"], rows) + "\n"
    )
    return EXIT_OK


def run_backfill(
    config: Config,
    options: BackfillOptions,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: float | None = None,
    transport_factory: TransportFactory | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run a backfill; returns the exit code (0 done, 1 a target failed, 2 bad input, 130 stopped).

    ``transport_factory(target, timeout)`` replaces the plain HTTP transport (Locust mode records
    each bulk request in Locust's stats); with ``stop`` given, the caller owns stopping and no
    signal handler is installed.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    now = time.time() if now is None else now
    checkpoint = Checkpoint(None) if options.dry_run else Checkpoint.load(options.checkpoint)
    jobs = prepare(config, options, checkpoint, now)
    if options.dry_run:
        return dry_run(jobs, now, out)
    progress = Progress(jobs, out, options.progress_every)
    run = _Run(jobs, checkpoint, options, now, progress, transport_factory, stop)
    with checkpoint.lock:
        checkpoint.save()
    restore = _install_signals(run.stop, out) if stop is None else (lambda: None)
    threads = [
        threading.Thread(target=run.run_target, args=(job,), name=f"backfill-{job.name}", daemon=True) for job in jobs
    ]
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=options.progress_every)
                if thread.is_alive():
                    break
            progress.show()
    finally:
        restore()
    progress.show(final=True)
    document = report_document(config, options, jobs, checkpoint, now)
    if options.report is not None:
        write_atomic(options.report, json.dumps(document, indent=1) + "\n")
    out.write("\n" + _summary(document) + "\n")
    failed = [job for job in jobs if job.status == "failed"]
    for job in failed:
        err.write(f"trafficinator backfill: target {job.name} failed: {job.error}\n")
    where = f"; report: {options.report}" if options.report else ""
    if failed:
        out.write(
            f"{len(failed)} of {len(jobs)} target(s) failed; fix the cause and run the same command again to continue{where}\n"
        )
        return EXIT_FAILED
    if any(job.status != "complete" for job in jobs):
        out.write(
            f"interrupted; checkpoint saved to {options.checkpoint}: run the same command again to resume{where}\n"
        )
        return EXIT_INTERRUPTED
    out.write(f"backfill complete: {len(jobs)} target(s), {len(jobs[0].days) if jobs else 0} day(s){where}\n")
    out.write("Matomo: re-run archiving for these past days (see docs/backfill.md), then `trafficinator verify`.\n")
    return EXIT_OK


# =============================================================================================
# Command line


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2025-03-14") from None


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def add_command(commands: Any) -> None:
    """Register ``trafficinator backfill`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "backfill",
        help="send the planned traffic of past days (cdt + bulk requests) to every target",
        description="Send each target's planned visits for every local day of a past range, with cdt and bulk requests. Resumable (--checkpoint). See docs/backfill.md.",
    )
    parser.add_argument("config", help="traffic YAML")
    parser.add_argument(
        "--from", dest="first", required=True, type=_iso_date, metavar="YYYY-MM-DD", help="first local day"
    )
    parser.add_argument(
        "--to",
        dest="last",
        required=True,
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="last local day (at most the target's today)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target (repeatable; default: every enabled target)",
    )
    parser.add_argument(
        "--max-hits-per-second", type=float, default=None, metavar="N", help="per target (default: unthrottled)"
    )
    parser.add_argument(
        "--checkpoint",
        default="backfill-checkpoint.json",
        metavar="FILE",
        help="progress file for resuming (default: %(default)s)",
    )
    parser.add_argument(
        "--report",
        default="backfill-report.json",
        metavar="FILE",
        help="JSON report per target and day, read by `trafficinator verify` (default: %(default)s)",
    )
    parser.add_argument(
        "--bulk-size",
        type=_positive_int,
        default=DEFAULT_BULK_SIZE,
        metavar="N",
        help="hits per bulk request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-days",
        type=_positive_int,
        default=DEFAULT_MAX_DAYS,
        metavar="N",
        help="refuse longer ranges (default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="retries of a batch Matomo cannot have stored (refused, 429/502/503); default %(default)s",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="plan and count, send nothing")
    parser.add_argument("--stop-after-batches", type=_positive_int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    """``trafficinator backfill``: config errors propagate (the CLI prints them, exit 2)."""
    from trafficinator_locust.core.config import load_config

    config = load_config(args.config)
    options = BackfillOptions(
        first=args.first,
        last=args.last,
        targets=args.target,
        max_hits_per_second=args.max_hits_per_second,
        checkpoint=Path(args.checkpoint),
        report=Path(args.report) if args.report else None,
        bulk_size=args.bulk_size,
        max_days=args.max_days,
        dry_run=args.dry_run,
        retries=max(args.retries, 0),
        timeout=args.timeout,
        stop_after_batches=args.stop_after_batches,
    )
    try:
        return run_backfill(config, options)
    except UsageError as error:
        print_usage_error("backfill", error)
        return EXIT_USAGE


def print_usage_error(command_name: str, error: UsageError) -> None:
    """One line for one problem; a count and an indented list for several."""
    lines = str(error).splitlines()
    if len(lines) == 1:
        sys.stderr.write(f"trafficinator {command_name}: {lines[0]}\n")
    else:
        sys.stderr.write(
            f"trafficinator {command_name}: {len(lines)} problems:\n" + "".join(f"  {line}\n" for line in lines)
        )
