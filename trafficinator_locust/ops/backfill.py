"""Historical backfill: past days of planned traffic sent to Matomo with ``cdt`` and bulk requests.

Why: a fresh Matomo (or a new report, a demo, a load test of archiving) needs months of history,
not only what a live Locust run adds from now on. Backfill sends, for each target and each LOCAL
day of a range, exactly the visits the target's pace plans for that day, spread over the day by
its hourly profile, each hit stamped with its own time (``cdt``), in bulk requests.

The pieces, by job:

* **Days, placement, visit numbers** (:mod:`trafficinator_locust.core.backfill_days`, pure): how
  many visits a local day gets, when each hit happens, and that a rerun plans the same ones.
* **Checkpoint** (:mod:`.checkpoint`): per (target, day) the planned visits and a cursor advanced
  after each batch Matomo confirmed, written atomically. A resumed run starts at the cursor:
  nothing is sent twice.
* **Visitors** (:class:`~trafficinator_locust.core.backfill_days.BackfillVisitors`): a visitor book
  per target, fed with the target's days in date order, done days included (their planning is
  replayed, nothing sent), so a resumed run gives every visit the visitor an uninterrupted one would.
* **Sending** (:mod:`.tracker_http`, :mod:`.rate_limit`): a keep-alive connection per target, a
  hits-per-second token bucket.
* **Delivery** (:class:`trafficinator_locust.core.bulk.Delivery`, pure, the same policy as live bulk,
  ADR 014): a batch Matomo rolled back or did not process (a deadlock between targets of one Matomo,
  500, 503, connection refused) is resent after a backoff with jitter; one that keeps failing is split
  to isolate the hits Matomo refuses, which are counted per kind and never resent; a stored batch, or
  one without an answer, is never resent. The checkpoint moves past the settled hits only.
* **This module**: checking the options and targets (:func:`prepare`), the run (:func:`run_backfill`:
  one OS thread per target, Ctrl-C/SIGTERM handling), progress, the summary and the report. The
  command line (``trafficinator backfill``) is :mod:`trafficinator_locust.cli`; the same run inside
  Locust is :mod:`trafficinator_locust.runtime.backfill_locust`.

Threads: each target's thread owns its job, its poster and its bucket; what they share is the
checkpoint (changed and saved only under ``Checkpoint.lock``), the stop event and the batch
counter (under its own lock). The main thread only reads progress counters and statuses.

The report (``--report``) has the shape ``verify`` reads:
``{"targets": [{"target": NAME, "days": {"YYYY-MM-DD": {"visits": N, "hits": M, ...}}}]}``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from trafficinator_locust.core.backfill_days import (
    BackfillVisitors,
    DayWindow,
    cdt,
    day_visits,
    day_window,
    hit_params,
    local_today,
    run_id_for,
)
from trafficinator_locust.core.budget import Pace
from trafficinator_locust.core.bulk import (
    DEFAULT_BULK_SIZE,
    JSON_CONTENT_TYPE,
    MAX_BULK_SIZE,
    MAX_RETRIES,
    MAX_RETRY_DELAY,
    Decision,
    Delivery,
    HitFate,
    Outcome,
    RetryPolicy,
    Send,
    batches,
    build_payload,
    deliver,
    describe,
    encode_item,
    judge,
    kinds_of,
    no_answer,
)
from trafficinator_locust.core.config import Config, Target
from trafficinator_locust.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, SendError, UsageError
from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.protocol import ACTION_KINDS, classify
from trafficinator_locust.core.reports import VisitReports, bot_visit, nested
from trafficinator_locust.core.table import render_table
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visitors import VisitorTicket
from trafficinator_locust.core.visits import VisitPlanner
from trafficinator_locust.ops.checkpoint import VISITOR_BOOK, Checkpoint, new_day, target_fingerprint
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.ops.tracker_http import Poster, TrackerPoster, display_url

__all__ = [
    "DEFAULT_MAX_DAYS",
    "BackfillOptions",
    "PosterFactory",
    "Progress",
    "TargetJob",
    "dry_run",
    "prepare",
    "report_document",
    "run_backfill",
    "select_targets",
    "send_batch",
]

DEFAULT_MAX_DAYS = 400
ALL_REFUSED_STOPS = 10
"""A batch of at least this many hits that Matomo refused entirely stops its target (a token or site problem)."""

PosterFactory = Callable[[Target, float], Poster]
"""``factory(target, timeout)``: what a target's thread sends through (one poster per thread)."""


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
    retries: int | None = None  # None: each target's bulk_retries
    retry_delay: float | None = None  # None: each target's bulk_retry_delay
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
    policy: RetryPolicy = RetryPolicy()
    status: str = "pending"  # pending | running | complete | failed | interrupted
    error: str | None = None
    open_visit: tuple[int, bool] = (-1, False)  # (visit index, a hit of it delivered) across batches
    visitors: BackfillVisitors | None = None  # None: returning visitors from the planner's fixed pool (old checkpoints)

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
            f"--from {options.first} --to {options.last} covers {span} days, more than --max-days {options.max_days}; "
            "split the range or raise --max-days"
        )
    if not 1 <= options.bulk_size <= MAX_BULK_SIZE:
        raise UsageError(f"--bulk-size must be between 1 and {MAX_BULK_SIZE}")
    if options.max_hits_per_second is not None and not options.max_hits_per_second > 0:
        raise UsageError("--max-hits-per-second must be > 0")
    if options.retries is not None and not 0 <= options.retries <= MAX_RETRIES:
        raise UsageError(f"--retries must be between 0 and {MAX_RETRIES}")
    if options.retry_delay is not None and not 0 <= options.retry_delay <= MAX_RETRY_DELAY:
        raise UsageError(f"--retry-delay must be between 0 and {MAX_RETRY_DELAY:g} seconds")
    selected = select_targets(config, options.targets)
    problems = []
    for index, target in selected:
        where = f"{_config_label(config, index)} ({target.name})"
        if target.visits_per_day is None:
            problems.append(
                f"{where}: no visits_per_day; backfill sends each day's planned visits, "
                "so set visits_per_day on the target, in defaults, or as the top-level total"
            )
        if target.token_auth is None:
            problems.append(
                f"{where}: no token_auth; Matomo accepts hits older than 24 hours (cdt) only with a token "
                f"with write access to site {target.site_id}: set token_auth: ${{YOUR_TOKEN_VARIABLE}}"
            )
        pace = Pace(None, target.timezone)
        today = local_today(pace, now)
        if options.last > today:
            problems.append(
                f"{where}: --to {options.last} is in the future for this target "
                f"(local today in {target.timezone}: {today}); backfill only sends past days and today up to now"
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
                "(url, site, pace, time zone, traffic or seed changed); restore them, "
                "or use a new --checkpoint (days already sent stay in Matomo)"
            )
        seed = (
            int(saved["seed"])
            if saved is not None
            else (configured if configured is not None else random.SystemRandom().getrandbits(62))
        )
        run_id = str(saved["run_id"]) if saved is not None else run_id_for(seed, target.name)
        # A target saved before visitor books resumes as it began: its half-sent day must not change visitors.
        ticketed = saved is None or saved.get("visitors") == VISITOR_BOOK
        if not options.dry_run:
            checkpoint.adopt(target.name, fingerprint, seed, run_id)
        planner, pace = VisitPlanner(target, seed), target.pace()
        jobs.append(
            TargetJob(
                target,
                index,
                pace,
                days,
                seed,
                run_id,
                planner,
                TrackingEncoder(target, run_id=run_id),
                RetryPolicy(
                    target.bulk_retries if options.retries is None else options.retries,
                    target.bulk_retry_delay if options.retry_delay is None else options.retry_delay,
                ),
                visitors=BackfillVisitors(planner, pace) if ticketed else None,
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
    counted: tuple[VisitReports, str, dict[str, str]] | None = None  # what it adds to the reports once delivered


def _items(
    job: TargetJob,
    window: DayWindow,
    cursor: Sequence[int],
    tickets: Sequence[VisitorTicket | None] | None = None,
) -> Iterator[_Item]:
    first_visit, first_hit = int(cursor[0]), int(cursor[1])
    site = job.target.site_id
    multiple_goals = job.target.traffic.multiple_goals
    for day_visit in day_visits(job.planner, job.pace, window, first_visit, tickets):
        hits = day_visit.visit.hits
        stored = day_visit.visit.stored_by_matomo
        start = first_hit if day_visit.index == first_visit else 0
        reports = None
        if stored:
            visitor = day_visit.visit.visitor
            returning = visitor.returning if job.visitors is not None else None
            reports = VisitReports(returning, multiple_goals, day_visit.visit.channel)
            for position in range(start):  # resumed mid-visit: its first hits were confirmed by an earlier run
                reports.stored(hits[position].kind, hit_params(job.encoder, site, day_visit, position))
        for position in range(start, len(hits)):
            params = hit_params(job.encoder, site, day_visit, position)
            kind = classify(params)
            yield _Item(
                encode_item(params),
                day_visit.index,
                position,
                position == len(hits) - 1,
                stored,
                stored and kind in ACTION_KINDS,
                None if reports is None else (reports, kind, params),
            )


def send_batch(
    poster: Poster,
    queries: list[str],
    token: str | None,
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    bucket: TokenBucket | None = None,
    draw: Callable[[], float] = random.random,
) -> Delivery:
    """One batch of bulk ``queries`` through ``poster`` by the delivery policy (ADR 014); returns its
    :class:`~trafficinator_locust.core.bulk.Delivery` (every hit's fate, what Matomo tracked, why it halted).

    Waits between tries on ``stop`` (set: the delivery ends early, its unsettled hits pending); resends and
    split pieces take their hits from ``bucket`` too. A request without an answer is never resent.

    Example::

        delivery = send_batch(TrackerPoster(target.url), queries, target.token, RetryPolicy())
        delivery.positions(HitFate.REFUSED), delivery.halted
    """
    stop = stop or threading.Event()

    def send_one(send: Send, record: Callable[[Outcome], Decision]) -> None:
        if bucket is not None and (send.attempt > 1 or send.size < len(queries)):
            bucket.acquire(send.size, sleep=stop.wait)

        def settle(status: int, body: bytes) -> str | None:
            return describe(record(judge(status, body, send.size, token)), queries)

        payload = build_payload(queries[send.start : send.end], token)
        try:
            poster.post(payload, JSON_CONTENT_TYPE, settle)
        except SendError as exc:
            record(no_answer(send.size, reached=not exc.retryable, reason=str(exc)))

    return deliver(len(queries), send_one, policy, sleep=stop.wait, draw=draw)


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
        poster_factory: PosterFactory | None = None,
        stop: threading.Event | None = None,
    ):
        self.jobs = jobs
        self.checkpoint = checkpoint
        self.options = options
        self.now = now
        self.progress = progress
        self.poster_factory = poster_factory or (lambda target, timeout: TrackerPoster(target.url, timeout))
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
        poster = self.poster_factory(job.target, self.options.timeout)
        rate = self.options.max_hits_per_second
        bucket = TokenBucket(rate, burst=max(float(self.options.bulk_size), 1.0)) if rate else None
        token = job.target.token
        try:
            self._replay_earlier_days(job)
            for day in job.days:
                if self.stop.is_set():
                    job.status = "interrupted"
                    return
                if not self._run_day(job, day, poster, bucket, token):
                    return
            job.status = "complete"
        except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
            job.status, job.error = "failed", f"{exc.__class__.__name__}: {exc}"
        finally:
            poster.close()

    def _replay_earlier_days(self, job: TargetJob) -> None:
        """Feed the visitor book the target's checkpointed days before the range (earlier runs), in date order."""
        if job.visitors is None or not job.days:
            return
        with self.checkpoint.lock:
            saved = self.checkpoint.data["targets"].get(job.name, {}).get("days", {})
            earlier = sorted((date.fromisoformat(key), dict(state)) for key, state in saved.items())
        for day, state in earlier:
            if day < job.days[0]:
                job.visitors.tickets(window_of(job, day, state, self.now))

    def _day_state(self, job: TargetJob, day: date) -> dict[str, Any]:
        with self.checkpoint.lock:
            days = self.checkpoint.data["targets"][job.name]["days"]
            state = days.get(day.isoformat())
            if state is None:
                window = day_window(job.pace, day, self.now)
                state = days[day.isoformat()] = new_day(window, job.pace.plan(day).end)
            return state

    def _run_day(
        self, job: TargetJob, day: date, poster: Poster, bucket: TokenBucket | None, token: str | None
    ) -> bool:
        state = self._day_state(job, day)
        window = window_of(job, day, state, self.now)
        tickets = job.visitors.tickets(window) if job.visitors is not None else None  # done days too: the replay
        if state["done"]:
            self._day_finished(job)
            return True
        job.open_visit = (-1, False)
        rng = random.Random()
        for batch in batches(_items(job, window, state["cursor"], tickets), self.options.bulk_size):
            if self.stop.is_set():
                job.status = "interrupted"
                return False
            if bucket is not None:
                bucket.acquire(len(batch), sleep=self.stop.wait)
                if self.stop.is_set():
                    job.status = "interrupted"
                    return False
            queries = [item.query for item in batch]
            delivery = send_batch(poster, queries, token, job.policy, stop=self.stop, bucket=bucket, draw=rng.random)
            settled = delivery.settled
            refused = delivery.positions(HitFate.REFUSED)
            if len(batch) >= ALL_REFUSED_STOPS and len(refused) == len(batch):
                job.status = "failed"
                job.error = (
                    f"{day}: Matomo refused every hit of a batch of {len(batch)} ({delivery.reasons.get(0, '')}); "
                    f"check the token (write access to site {job.target.site_id}) and the site id"
                )
                return False  # not confirmed: after the fix, the next run sends these hits again
            if settled:
                self._confirm(job, state, batch[:settled], delivery, queries)
            if delivery.stopped:
                job.status = "interrupted"
                return False
            if delivery.halted is not None:
                job.status, job.error = "failed", f"{day}: {delivery.halted}"
                return False
            self.batch_done()
        with self.checkpoint.lock:
            state["done"] = True
            state["cursor"] = [state["planned"], 0]
            self.checkpoint.save()
        self._day_finished(job)
        return True

    def _confirm(
        self, job: TargetJob, state: dict[str, Any], settled: list[_Item], delivery: Delivery, queries: list[str]
    ) -> None:
        """Record the settled hits of a batch (a prefix of it) in the checkpoint and move its cursor past them."""
        last = settled[-1]
        cursor = [last.visit + 1, 0] if last.last_of_visit else [last.visit, last.hit + 1]
        visits = actions = 0
        figures: Counter[str] = Counter()
        for position, item in enumerate(settled):
            delivered = delivery.fates[position] is HitFate.DELIVERED
            if delivered and item.counted is not None:
                figures.update(item.counted[0].stored(item.counted[1], item.counted[2]))
            elif delivered and item.last_of_visit and not item.stored_visit:
                figures.update(bot_visit())
            visit, seen = job.open_visit
            if visit != item.visit:  # a new visit; one resumed mid-visit had its earlier hits confirmed
                seen = item.hit > 0
            seen = seen or delivered
            job.open_visit = (item.visit, seen)
            if item.last_of_visit and item.stored_visit and seen:
                visits += 1
            if delivered and item.action:
                actions += 1
        refused = [position for position in range(len(settled)) if delivery.fates[position] is HitFate.REFUSED]
        kinds = kinds_of(queries, refused, delivery.unattributed)
        with self.checkpoint.lock:
            state["cursor"] = cursor
            state["hits"] += len(settled)
            state["tracked"] += delivery.tracked
            state["invalid"] += sum(kinds.values())
            state["visits"] += visits
            state["actions"] += actions
            day_figures = state.setdefault("reports", {})
            for key, value in figures.items():
                day_figures[key] = day_figures.get(key, 0) + value
            if kinds:
                saved = self.checkpoint.data["targets"][job.name]
                by_kind = saved.setdefault("refused", {})
                for kind, count in kinds.items():
                    by_kind[kind] = by_kind.get(kind, 0) + count
                sample = delivery.reasons.get(refused[0]) if refused else delivery.unattributed_reason
                saved.setdefault("refused_sample", sample)
            self.checkpoint.save()
        if self.progress is not None:
            self.progress.hits[job.name] += len(settled)

    def _day_finished(self, job: TargetJob) -> None:
        if self.progress is not None:
            self.progress.done[job.name] += 1


class _Signals:
    """SIGINT/SIGTERM during a run (installed from the main thread only): the first asks the target
    threads to stop after the batches in flight (the run then saves and returns 130); a second one
    exits at once.

    The handler only sets flags: the notice is written by the main thread's loop
    (:meth:`show_notice`), because a handler that writes to a stream the main thread is writing to
    can raise "reentrant call" inside that write.
    """

    def __init__(self, stop: threading.Event, out: TextIO):
        self.stop = stop
        self.out = out
        self.notice: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def restore(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            # The one exit outside the command line, on purpose: a second Ctrl-C means "now", and the
            # target threads may sit in a request for up to --timeout seconds (a thread cannot be
            # interrupted). Safe for resuming: the checkpoint is replaced atomically, so it is always
            # whole and at most the batches in flight are sent again by the next run.
            with suppress(Exception):  # leaving anyway: a reentrant write must not stop the exit
                self.show_notice()
                self.out.flush()
            os._exit(EXIT_INTERRUPTED)
        self.stop.set()
        self.notice = (
            f"\n{signal.Signals(signum).name}: stopping after the batches in flight; "
            "run the same command again to resume\n"
        )

    def show_notice(self) -> None:
        notice, self.notice = self.notice, None
        if notice:
            self.out.write(notice)
            self.out.flush()


def report_document(
    config: Config, options: BackfillOptions, jobs: Sequence[TargetJob], checkpoint: Checkpoint, now: float
) -> dict[str, Any]:
    """The JSON report: per target and local day, visits and hits sent and confirmed.

    Built from the checkpoint, so days sent by an earlier (interrupted) run are included.
    """
    targets = []
    for job in jobs:
        entry = checkpoint.target(job.name) or {}
        saved = entry.get("days", {})
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
            figures = state.get("reports")
            days[day.isoformat()] = {
                "visits": state["visits"],
                "hits": state["hits"],
                "actions": state["actions"],
                **({} if figures is None else {"bot_visits": figures.get("bot_visits", 0), "reports": nested(figures)}),
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
                "refused_hits": {
                    "total": sum(entry.get("refused", {}).values()),
                    "by_kind": dict(sorted(entry.get("refused", {}).items())),
                    "sample": entry.get("refused_sample"),
                },
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
    """The table printed at the end: one row per target, its days summed."""
    rows = []
    for entry in document["targets"]:
        days = list(entry["days"].values())
        total = lambda key, days=days: sum(d[key] for d in days)
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
        ["target", "timezone", "days", "planned", "visits sent", "hits sent", "tracked", "refused", "status"], rows
    )


def dry_run(jobs: Sequence[TargetJob], now: float, out: TextIO) -> int:
    """Plan every day without sending: visits, hits and the first/last ``cdt`` per target."""

    rows = []
    for job in jobs:
        visits = hits = 0
        first = last = None
        for day in job.days:
            window = day_window(job.pace, day, now)
            tickets = job.visitors.tickets(window) if job.visitors is not None else None
            for day_visit in day_visits(job.planner, job.pace, window, 0, tickets):
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
    poster_factory: PosterFactory | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Send every day of ``options`` to every chosen target; returns the exit code.

    Why: months of history in a Matomo, exactly as the targets' paces plan them, resumable (the
    checkpoint) and bounded (``max_hits_per_second``). Checks everything first and raises
    :class:`UsageError` before sending anything for bad input (see :func:`prepare`); then one OS
    thread per target sends, progress goes to ``out``, failed targets to ``err``, and the report
    (``options.report``) is written. Returns ``EXIT_OK`` (done), ``EXIT_FAILED`` (a target failed)
    or ``EXIT_INTERRUPTED`` (stopped: run it again to resume).

    ``poster_factory(target, timeout)`` replaces the plain :class:`TrackerPoster` (Locust mode
    records each bulk request in Locust's stats); with ``stop`` given, the caller owns stopping and
    no signal handler is installed.

    Example::

        options = BackfillOptions(first=date(2025, 1, 1), last=date(2025, 1, 31), max_hits_per_second=200)
        code = run_backfill(load_config("traffic.yaml"), options)
    """
    out = out or sys.stdout
    err = err or sys.stderr
    now = time.time() if now is None else now
    checkpoint = Checkpoint(None) if options.dry_run else Checkpoint.load(options.checkpoint)
    jobs = prepare(config, options, checkpoint, now)
    if options.dry_run:
        return dry_run(jobs, now, out)
    progress = Progress(jobs, out, options.progress_every)
    run = _Run(jobs, checkpoint, options, now, progress, poster_factory, stop)
    with checkpoint.lock:
        checkpoint.save()
    signals = _Signals(run.stop, out).install() if stop is None else None
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
            if signals is not None:
                signals.show_notice()
            progress.show()
    finally:
        if signals is not None:
            signals.restore()
            signals.show_notice()
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
            f"{len(failed)} of {len(jobs)} target(s) failed; "
            f"fix the cause and run the same command again to continue{where}\n"
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
