"""Matomo bulk tracking: payloads, batches, what an answer means and what to do next (pure).

Why bulk: one HTTP request carries up to ``bulk_size`` hits, so a backfill of months of traffic is
not limited by per-request overhead on either side (Matomo's own log importer works this way).

Rules kept here, because Matomo depends on them:

* each item is ``"?" + urlencode(params)``; the token travels once, as the top-level
  ``token_auth`` of the JSON body, never inside an item, a URL, a log line or an error message;
* hits keep the order they are given in: callers pass each visitor's hits in time order and
  :func:`batches` never reorders, so a visit split over two batches still arrives in order;
* Matomo runs a bulk request in ONE database transaction (``plugins/BulkTracking/Tracker/Handler.php``):
  an item with an unknown site or an invalid parameter is skipped and counted ``invalid`` (its
  index in ``invalid_indices`` for a superuser token) while the rest is committed; any other error
  rolls the whole batch back and answers 500 ``{"status": "error", "tracked": N}`` although nothing
  was stored (``N`` counts the items processed before the failure); a deadlock gives the same
  answer with ``tracked`` 0.

The delivery policy (ADR 014) is here, once, for the live sender
(:mod:`trafficinator_locust.runtime.bulk_sender`) and the backfill
(:mod:`trafficinator_locust.ops.backfill`, in and outside Locust):

* :func:`judge` turns an HTTP answer into an :class:`Outcome` (:class:`Fate`: stored, rolled
  back, not processed, too large, rejected, unknown);
* :func:`next_step` says what to do with a piece of a batch after an outcome: done, retry after an
  exponential backoff with jitter, split in halves, give up the single hit (refused), or halt;
* :class:`Delivery` runs one batch through it: which piece to send next (in order, so a visitor's
  hits stay in time order), and the fate of every hit at the end. A stored piece is never resent,
  and a piece is resent only when Matomo cannot have stored any of it, so every hit is stored at
  most once; bisecting isolates the hits Matomo refuses while the others are delivered.

No I/O, no clock, no randomness of its own (jitter draws are passed in): requests are sent by
:mod:`trafficinator_locust.ops.tracker_http` (backfill), :mod:`trafficinator_locust.runtime.bulk_sender`
(live) and ``bench/bulk.py``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import TypeVar
from urllib.parse import parse_qsl, quote_plus

from trafficinator_locust.core.errors import BulkError
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.core.protocol import classify

T = TypeVar("T")

DEFAULT_BULK_SIZE = 50
MAX_BULK_SIZE = 1000
JSON_CONTENT_TYPE = "application/json"
TOKEN_KEY = "token_auth"
DEFAULT_RETRIES = 3
"""Resends of a failed batch (and of a single hit isolated from it) before giving up: 4 tries in all."""
MAX_RETRIES = 10
DEFAULT_RETRY_DELAY = 1.0
"""Seconds before the first resend; each further one waits twice as long (1, 2, 4 s), with jitter."""
MAX_RETRY_DELAY = 60.0
RETRY_DELAY_CAP = 30.0
"""No single wait between two tries is longer than this (before jitter)."""
JITTER = 0.5
"""Each wait is its delay times a factor drawn from [1 - JITTER, 1 + JITTER)."""
SUSPECTS_HALT = 3
"""Hits in a row that failed alone on every try, with no sign yet that Matomo stores anything, that make a
delivery halt: the failure is Matomo's (its database is down), not theirs."""
INVALID_REASON = "skipped by Matomo as invalid (unknown site or invalid parameter)"
"""Why Matomo skipped an item it counted ``invalid`` (its bulk answer gives no message per item)."""
UNKNOWN_KIND = "unknown"
"""The kind of a refused hit Matomo counted without saying which one (no ``invalid_indices``)."""

__all__ = [
    "DEFAULT_BULK_SIZE",
    "MAX_BULK_SIZE",
    "JSON_CONTENT_TYPE",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_DELAY",
    "UNKNOWN_KIND",
    "BulkAnswer",
    "Decision",
    "Delivery",
    "Fate",
    "HitFate",
    "Outcome",
    "RetryPolicy",
    "Send",
    "Verdict",
    "batches",
    "build_payload",
    "deliver",
    "describe",
    "encode_item",
    "form_encode",
    "in_time_order",
    "item_kind",
    "judge",
    "kinds_of",
    "next_step",
    "no_answer",
    "parse_answer",
    "parse_refusal",
    "refusal_message",
]


@lru_cache(maxsize=16384)
def _quote(text: str) -> str:
    """``quote_plus`` remembered: page URLs and titles, referrers, event names and a visitor's user
    agent repeat across hits (ids do not, and merely pass through the cache)."""
    return quote_plus(text)


def form_encode(params: Mapping[str, str]) -> str:
    """``urlencode(params)`` for string values, with the quoting of repeated values remembered (hot path)."""
    return "&".join(f"{_quote(key)}={_quote(value)}" for key, value in params.items())


def encode_item(params: Mapping[str, str]) -> str:
    """One bulk item: ``?idsite=1&rec=1&...`` (same text as ``urlencode``). No ``token_auth`` inside."""
    if TOKEN_KEY in params:
        raise ValueError("token_auth must not be inside a bulk item; pass it to build_payload")
    return "?" + form_encode({str(key): str(value) for key, value in params.items()})


def build_payload(items: Sequence[str], token: str | None) -> bytes:
    """The JSON body of one bulk request: ``{"requests": [...], "token_auth": token}``."""
    if not items:
        raise ValueError("a bulk request needs at least one item")
    for item in items:
        if "token_auth=" in item:
            raise ValueError("token_auth must not be inside a bulk item; pass it to build_payload")
    body: dict[str, object] = {"requests": list(items)}
    if token:
        body[TOKEN_KEY] = token
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def batches(items: Iterable[T], size: int = DEFAULT_BULK_SIZE) -> Iterator[list[T]]:
    """Consecutive chunks of at most ``size`` items, in the order given (never reordered)."""
    if size < 1:
        raise ValueError("bulk size must be >= 1")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def in_time_order(visits: Iterable[Sequence[T]], time_of: Callable[[T], float]) -> Iterator[T]:
    """Every visit's hits, visit after visit, each visit's hits sorted by time (stable).

    A visitor's hits must reach Matomo in time order (a later hit sent first would open the
    visit at the wrong time); visits themselves may interleave freely across batches.
    """
    for hits in visits:
        yield from sorted(hits, key=time_of)


@dataclass(frozen=True)
class BulkAnswer:
    """What Matomo said about one bulk request."""

    sent: int
    tracked: int
    invalid: int
    invalid_indices: tuple[int, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return self.tracked >= self.sent


def parse_answer(status: int, body: bytes, sent: int, token: str | None = None) -> BulkAnswer:
    """Check Matomo's answer to a bulk request of ``sent`` items, strictly (``bench/bulk.py``: every hit or
    an error; the senders use :func:`judge` and the delivery policy instead).

    Returns the :class:`BulkAnswer` when every item was tracked. Raises :class:`BulkError` on a
    non-200 status, a body that is not Matomo's JSON, ``status != "success"`` or a shortfall
    (``tracked < sent``), with the counts in the message. ``token`` is masked in any message.
    """
    text = body[:2000].decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if status != 200:
        detail = data.get("message") if isinstance(data, dict) else None
        shown = mask_secrets(str(detail or text.strip()[:200] or "no body"), [token] if token else [])
        raise BulkError(f"HTTP {status}: {shown}", status=status)
    if not isinstance(data, dict):
        raise BulkError("the answer is not Matomo's bulk JSON (is the URL a Matomo tracker?)", status=status)
    if data.get("status") != "success":
        shown = mask_secrets(str(data.get("message") or data.get("status")), [token] if token else [])
        raise BulkError(f"Matomo answered status {shown!r}", status=status)
    try:
        tracked = int(data.get("tracked", 0))
        invalid = int(data.get("invalid", 0))
        indices = tuple(int(i) for i in data.get("invalid_indices") or ())
    except (TypeError, ValueError):
        raise BulkError("the answer's tracked/invalid counts are not numbers", status=status) from None
    answer = BulkAnswer(sent, tracked, invalid, indices)
    if tracked < sent:
        where = f" (invalid items: {list(indices)})" if indices else ""
        raise BulkError(
            f"shortfall: sent {sent} hits, Matomo tracked {tracked}, invalid {invalid}{where}",
            status=status,
            answer=answer,
        )
    return answer


# --- what an answer means and what to do next: the one delivery policy (ADR 014) ---------------------


def item_kind(item: str) -> str:
    """The hit kind of one bulk item (``?idsite=1&...``), as :func:`~.protocol.classify` names it."""
    return classify(dict(parse_qsl(item.lstrip("?"), keep_blank_values=True)))


def kinds_of(items: Sequence[str], positions: Iterable[int], unattributed: int = 0) -> Counter[str]:
    """How many hits of each kind are at ``positions`` of ``items``, plus ``unattributed`` of kind ``unknown``."""
    kinds = Counter(item_kind(items[position]) for position in positions)
    if unattributed:
        kinds[UNKNOWN_KIND] += unattributed
    return kinds


class Fate(str, Enum):
    """What became of one bulk request, as far as the answer tells."""

    STORED = "stored"
    """Matomo committed it; items it skipped as invalid (unknown site, invalid parameter) are refused."""
    ROLLED_BACK = "rolled back"
    """Matomo ran it and rolled it back (an error answer, HTTP 500): nothing of it was stored."""
    NOT_PROCESSED = "not processed"
    """It never reached Matomo's tracker: not sent (refused, unreachable), 408, 429, 502 or 503."""
    TOO_LARGE = "too large"
    """HTTP 413: nothing stored; smaller requests may pass."""
    REJECTED = "rejected"
    """Refused as a whole, the same way for every hit (4xx, a redirect, not Matomo's answer): resending or
    splitting cannot help."""
    UNKNOWN = "unknown"
    """Sent, but no answer arrived (a timeout, a reset, 504): Matomo may have stored it."""


@dataclass(frozen=True)
class Outcome:
    """One bulk request's answer, judged: its :class:`Fate`, Matomo's counts, and a masked reason."""

    fate: Fate
    sent: int
    tracked: int = 0
    """Hits Matomo stored (a stored answer's ``tracked``; 0 for every other fate)."""
    invalid: int = 0
    invalid_indices: tuple[int, ...] | None = None
    status: int = 0
    reason: str = ""
    processed: int = 0
    """A rolled-back answer's ``tracked``: items Matomo processed before the failure (then rolled back)."""

    def refused(self) -> tuple[tuple[int, ...], int]:
        """Positions (within the request) that Matomo refused although it stored the rest, and how many more
        it refused without saying which (no ``invalid_indices``, or fewer tracked than sent)."""
        if self.fate is not Fate.STORED:
            return (), 0
        if self.invalid_indices is not None:
            positions = tuple(sorted({i for i in self.invalid_indices if 0 <= i < self.sent}))
        elif self.invalid >= self.sent:
            positions = tuple(range(self.sent))
        else:
            positions = ()
        unsaid = max(self.sent - self.tracked - len(positions), 0)
        return positions, unsaid


def _masked(text: str, token: str | None) -> str:
    """One line of at most 200 characters, masked before it is cut (a cut token could not be found)."""
    return mask_secrets(" ".join(text.split()), [token] if token else [])[:200]


def judge(status: int, body: bytes, sent: int, token: str | None = None) -> Outcome:
    """What Matomo's answer (``status``, ``body``) to a bulk request of ``sent`` items means.

    ``token`` is masked in the reason. A 2xx answer must be Matomo's bulk JSON: ``"success"`` is
    :attr:`Fate.STORED` (with its ``tracked``/``invalid`` counts), ``"error"`` :attr:`Fate.ROLLED_BACK`.
    """
    text = body[:2000].decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    message = data.get("message") if isinstance(data, dict) else None
    if 200 <= status < 300:
        if not isinstance(data, dict):
            return Outcome(
                Fate.REJECTED, sent, status=status, reason=f"HTTP {status}: not Matomo's bulk JSON (a Matomo tracker?)"
            )
        if data.get("status") == "error":
            reason = _error_reason(status, data, token)
            return Outcome(Fate.ROLLED_BACK, sent, status=status, reason=reason, processed=_processed(data))
        if data.get("status") != "success":
            shown = _masked(str(message or data.get("status")), token)
            return Outcome(Fate.REJECTED, sent, status=status, reason=f"Matomo answered status {shown!r}")
        try:
            tracked = int(data.get("tracked", 0))
            invalid = int(data.get("invalid", 0))
            raw = data.get("invalid_indices")
            indices = tuple(int(i) for i in raw) if isinstance(raw, list) else None
        except (TypeError, ValueError):
            reason = "the answer's tracked/invalid counts are not numbers"
            return Outcome(Fate.REJECTED, sent, status=status, reason=reason)
        return Outcome(Fate.STORED, sent, tracked, invalid, indices, status, INVALID_REASON)
    shown = _masked(str(message or text.strip() or "no body"), token)
    if status == 500 or (status > 500 and isinstance(data, dict) and data.get("status") == "error"):
        reason = _error_reason(status, data, token, shown)
        return Outcome(Fate.ROLLED_BACK, sent, status=status, reason=reason, processed=_processed(data))
    if status in (408, 429, 502, 503):
        fate = Fate.NOT_PROCESSED
    elif status == 413:
        fate = Fate.TOO_LARGE
    elif status >= 500:
        fate = Fate.UNKNOWN  # 504 and the like: the tracker may still be running it
    else:
        fate = Fate.REJECTED
    return Outcome(fate, sent, status=status, reason=f"HTTP {status}: {shown}")


def _processed(data: object) -> int:
    try:
        return max(int(data.get("tracked", 0)), 0) if isinstance(data, dict) else 0
    except (TypeError, ValueError):
        return 0


def _error_reason(status: int, data: object, token: str | None, shown: str = "") -> str:
    if not isinstance(data, dict):
        return f"HTTP {status}: {shown}"
    message = data.get("message")
    detail = f": {_masked(str(message), token)}" if message else ""
    return f"HTTP {status} status error, tracked {data.get('tracked', '?')}{detail}"


def no_answer(sent: int, *, reached: bool, reason: str) -> Outcome:
    """A request without an answer: :attr:`Fate.UNKNOWN` once it was sent (``reached``), else not processed."""
    return Outcome(Fate.UNKNOWN if reached else Fate.NOT_PROCESSED, sent, reason=reason)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before a piece of a batch is tried again (ADR 014).

    ``retries`` resends after the first try, each after ``delay`` x 2^(n-1) seconds (at most
    :data:`RETRY_DELAY_CAP`) times a jitter factor from [1 - ``jitter``, 1 + ``jitter``), so that
    senders that failed together (a deadlock between two of them) do not retry together.
    """

    retries: int = DEFAULT_RETRIES
    delay: float = DEFAULT_RETRY_DELAY
    jitter: float = JITTER
    max_delay: float = RETRY_DELAY_CAP

    def backoff(self, retry: int, draw: float) -> float:
        """The wait before resend number ``retry`` (1-based); ``draw`` is uniform in [0, 1)."""
        base = min(self.delay * 2 ** (retry - 1), self.max_delay)
        return base * (1 - self.jitter + 2 * self.jitter * draw)


class Verdict(str, Enum):
    """What to do with a piece of a batch after an answer (:func:`next_step`)."""

    DONE = "done"
    """Stored: never resend it (the hits Matomo skipped as invalid are refused)."""
    RETRY = "retry"
    """Nothing stored: send the same piece again after the backoff."""
    SPLIT = "split"
    """Nothing stored, again and again: send its two halves on their own, to isolate the hit Matomo refuses."""
    REFUSED = "refused"
    """A single hit that failed alone on every try: give it up (bounded; never retried forever)."""
    HALT = "halt"
    """Stop this batch: the failure is not one hit's (Matomo unavailable, the request refused as a whole), or
    the piece may have been stored (no answer). Nothing more of the batch is sent."""


def next_step(outcome: Outcome, tries: int, policy: RetryPolicy, *, split_from_batch: bool = False) -> Verdict:
    """The policy, for one piece that has now been sent ``tries`` times and got ``outcome``.

    * stored -> DONE;
    * rolled back -> RETRY while tries remain (``policy.retries``; none for a piece of more than one
      hit cut from a failing batch, which splits at once), then SPLIT, or REFUSED for a single hit;
    * too large -> SPLIT (REFUSED for a single hit);
    * not processed -> RETRY while tries remain, then HALT (Matomo is away: splitting cannot help);
    * rejected, unknown -> HALT (a resend could not help, or could store it twice).
    """
    fate, size = outcome.fate, outcome.sent
    if fate is Fate.STORED:
        return Verdict.DONE
    if fate is Fate.ROLLED_BACK:
        allowed = 0 if split_from_batch and size > 1 else policy.retries
        if tries <= allowed:
            return Verdict.RETRY
        return Verdict.SPLIT if size > 1 else Verdict.REFUSED
    if fate is Fate.TOO_LARGE:
        return Verdict.SPLIT if size > 1 else Verdict.REFUSED
    if fate is Fate.NOT_PROCESSED:
        return Verdict.RETRY if tries <= policy.retries else Verdict.HALT
    return Verdict.HALT


@dataclass(frozen=True)
class Send:
    """The next request of a delivery: items ``[start, end)`` of the batch, after waiting ``delay`` seconds."""

    start: int
    end: int
    delay: float
    attempt: int  # 1 for a piece's first try

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Decision:
    """What :meth:`Delivery.record` decided about one answer: the verdict and the hits it gave up.

    ``refused`` are batch positions given up in this step (skipped as invalid in a stored answer, or a
    single hit that failed alone on every try); ``unattributed`` more that Matomo refused without saying
    which. ``reason`` is masked (never the token).
    """

    verdict: Verdict
    send: Send
    outcome: Outcome
    refused: tuple[int, ...] = ()
    unattributed: int = 0
    delay: float = 0.0
    reason: str = ""


class HitFate(str, Enum):
    """What became of one hit of a batch by the end of its delivery."""

    PENDING = "pending"  # not settled: never tried, or its delivery halted before it was stored
    DELIVERED = "delivered"
    REFUSED = "refused"
    UNCONFIRMED = "unconfirmed"  # sent without an answer: maybe stored, never resent


@dataclass
class _Piece:
    start: int
    end: int
    tries: int = 0
    split_from_batch: bool = False
    delay: float = 0.0


class Delivery:
    """One batch of ``size`` hits through :func:`next_step`: pieces in order, every hit's fate at the end.

    The caller sends what :meth:`next` says (after its ``delay``) and gives the answer to :meth:`record`,
    until :meth:`next` returns ``None`` (:func:`deliver` is that loop)::

        delivery = Delivery(len(items), RetryPolicy(), draw=random.random)
        while (send := delivery.next()) is not None:
            sleep(send.delay)
            status, body = post(build_payload(items[send.start : send.end], token))
            delivery.record(judge(status, body, send.size, token))
        delivery.fates  # DELIVERED / REFUSED / PENDING / UNCONFIRMED per hit

    Pieces go in batch order, and a piece goes only once everything before it is settled, so a
    visitor's hits keep their time order and the settled hits always form a prefix (:attr:`settled`:
    a backfill's checkpoint can move that far). A hit that failed alone on every try is refused only when
    Matomo showed it works (another piece of the batch was stored, or an error answer counted hits
    ``tracked`` before the failure) or when it is the batch's only hit; :data:`SUSPECTS_HALT` such hits in
    a row with no such sign are Matomo's failure, not theirs: the delivery halts and they stay pending.
    """

    def __init__(self, size: int, policy: RetryPolicy | None = None, *, draw: Callable[[], float] = lambda: 0.5):
        if size < 1:
            raise ValueError("a delivery needs at least one hit")
        self.size = size
        self.policy = policy or RetryPolicy()
        self._draw = draw
        self._queue: list[_Piece] = [_Piece(0, size)]
        self.fates: list[HitFate] = [HitFate.PENDING] * size
        self.reasons: dict[int, str] = {}
        """Why each refused hit was refused (masked)."""
        self.unattributed = 0
        """Hits Matomo refused without saying which (counted, never placed)."""
        self.unattributed_reason = ""
        self.tracked = 0
        """Hits Matomo's stored answers counted as tracked."""
        self.sends = 0
        self.halted: str | None = None
        """Why the delivery stopped early (masked), or ``None``."""
        self.stopped = False
        """:func:`deliver` was asked to stop while waiting to resend."""
        self._suspects: list[int] = []
        self._works = False

    def next(self) -> Send | None:
        """The next request to send (the first unsettled piece), or ``None`` when the batch is settled or
        halted. Asking again before :meth:`record` gives the same piece."""
        if not self._queue:
            self._finish()
            return None
        piece = self._queue[0]
        return Send(piece.start, piece.end, piece.delay, piece.tries + 1)

    def record(self, outcome: Outcome) -> Decision:
        """The answer to the piece :meth:`next` gave; returns what the policy decided about it."""
        if not self._queue:
            raise RuntimeError("nothing left to send")
        piece = self._queue[0]
        if outcome.sent != piece.end - piece.start:
            raise ValueError(f"the outcome is for {outcome.sent} hits, the piece has {piece.end - piece.start}")
        send = Send(piece.start, piece.end, piece.delay, piece.tries + 1)
        piece.tries += 1
        self.sends += 1
        verdict = next_step(outcome, piece.tries, self.policy, split_from_batch=piece.split_from_batch)
        if outcome.processed > 0:
            self._works = True  # Matomo processed hits of it before the one that failed
        if verdict is Verdict.DONE:
            return self._stored(piece, send, outcome)
        if verdict is Verdict.RETRY:
            piece.delay = self.policy.backoff(piece.tries, self._draw())
            return Decision(verdict, send, outcome, delay=piece.delay, reason=outcome.reason)
        self._queue.pop(0)
        if verdict is Verdict.SPLIT:
            cut = _split_point(piece, outcome)
            self._queue[:0] = [_Piece(piece.start, cut, 0, True), _Piece(cut, piece.end, 0, True)]
            return Decision(verdict, send, outcome, reason=outcome.reason)
        if verdict is Verdict.REFUSED:
            reason = f"{outcome.reason} (alone, {piece.tries} tries)"
            self.reasons[piece.start] = reason
            self.fates[piece.start] = HitFate.REFUSED
            if not self._works:
                self._suspects.append(piece.start)
                if len(self._suspects) >= SUSPECTS_HALT:
                    self._halt(f"{outcome.reason}: every try failed, also of single hits: Matomo's failure")
                    return Decision(Verdict.HALT, send, outcome, reason=self.halted or "")
            return Decision(verdict, send, outcome, refused=(piece.start,), reason=reason)
        if outcome.fate is Fate.UNKNOWN:
            for position in range(piece.start, piece.end):
                self.fates[position] = HitFate.UNCONFIRMED
            self._halt(f"{outcome.reason}; not resent: Matomo may have stored it")
        elif outcome.fate is Fate.NOT_PROCESSED:
            self._halt(f"{outcome.reason} (after {piece.tries} tries)")
        else:
            self._halt(outcome.reason)
        return Decision(verdict, send, outcome, reason=self.halted or outcome.reason)

    def _stored(self, piece: _Piece, send: Send, outcome: Outcome) -> Decision:
        self._queue.pop(0)
        self._works = True
        for suspect in self._suspects:  # Matomo works: the hits that failed alone are its refusals
            self.fates[suspect] = HitFate.REFUSED
        self._suspects = []
        positions, unsaid = outcome.refused()
        refused = tuple(piece.start + position for position in positions)
        for position in range(piece.start, piece.end):
            self.fates[position] = HitFate.DELIVERED
        for position in refused:
            self.fates[position] = HitFate.REFUSED
            self.reasons[position] = outcome.reason
        self.tracked += outcome.tracked
        reason = outcome.reason if refused else ""
        if unsaid:
            self.unattributed += unsaid
            reason = self.unattributed_reason = (
                f"Matomo tracked {outcome.tracked} of {outcome.sent} hits and did not say which it refused"
                if not refused
                else outcome.reason
            )
        return Decision(Verdict.DONE, send, outcome, refused=refused, unattributed=unsaid, reason=reason)

    def _halt(self, reason: str) -> None:
        self.halted = reason
        self._queue = []
        for suspect in self._suspects:  # no sign that Matomo would take anything: not their fault
            self.fates[suspect] = HitFate.PENDING
            self.reasons.pop(suspect, None)
        self._suspects = []

    def _finish(self) -> None:
        self._suspects = []  # the batch's only hit, or Matomo stored others after all: refused stands

    @property
    def done(self) -> bool:
        return not self._queue

    @property
    def settled(self) -> int:
        """How many hits from the start of the batch are settled (delivered or refused), in a row."""
        count = 0
        for fate in self.fates:
            if fate not in (HitFate.DELIVERED, HitFate.REFUSED) or count in self._suspects:
                break
            count += 1
        return count

    def positions(self, fate: HitFate) -> list[int]:
        return [position for position, seen in enumerate(self.fates) if seen is fate]


def deliver(
    size: int,
    send_one: Callable[[Send, Callable[[Outcome], Decision]], object],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], object],
    draw: Callable[[], float],
) -> Delivery:
    """Run one batch of ``size`` hits through a :class:`Delivery`; the I/O is the caller's.

    ``send_one(send, record)`` sends items ``[send.start, send.end)`` and calls ``record(outcome)`` once
    with the judged answer (it returns the :class:`Decision`, e.g. for :func:`describe` while the
    request is still open). ``sleep(seconds)`` waits before a resend; when it returns ``True`` (asked
    to stop) the delivery ends early, unsettled hits pending.
    """
    delivery = Delivery(size, policy, draw=draw)
    while (send := delivery.next()) is not None:
        if send.delay and sleep(send.delay) is True:
            delivery.stopped = True
            break
        sends = delivery.sends
        send_one(send, delivery.record)
        if delivery.sends != sends + 1:
            raise RuntimeError("send_one must record exactly one outcome per send")
    return delivery


def _split_point(piece: _Piece, outcome: Outcome) -> int:
    """Where to cut a failing piece: after the hits Matomo's error answer says it processed before the
    failure (``tracked``), when that is inside the piece; else in the middle."""
    size = piece.end - piece.start
    hint = outcome.processed
    return piece.start + (hint if 0 < hint < size else size // 2)


# --- messages: what Locust's failures and the reports say --------------------------------------------

_REFUSAL = re.compile(r"refused (\d+) hits? \(((?:[a-z_]+ \d+)(?:, [a-z_]+ \d+)*)\): (.*)", re.DOTALL)


def refusal_message(kinds: Mapping[str, int], reason: str) -> str:
    """``refused 2 hits (goal 1, pageview 1): <reason>``: the failure text of a request that gave up hits.

    :func:`parse_refusal` reads it back (the run summary counts refused hits per kind from Locust's
    failures, which Locust already collects from every worker)."""
    total = sum(kinds.values())
    listed = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
    return f"refused {total} hit{'s' if total != 1 else ''} ({listed}): {reason}"


def parse_refusal(text: str) -> tuple[dict[str, int], str] | None:
    """The kinds and reason of a :func:`refusal_message` found in ``text`` (also inside Locust's
    ``CatchResponseError('...')`` form), or ``None``."""
    found = _REFUSAL.search(text)
    if found is None:
        return None
    kinds = {kind: int(count) for kind, count in (part.rsplit(" ", 1) for part in found.group(2).split(", "))}
    reason = found.group(3)
    if text.startswith("CatchResponseError(") and reason.endswith("')"):
        reason = reason[:-2]
    return kinds, reason.rstrip("'\"")


def describe(decision: Decision, items: Sequence[str]) -> str | None:
    """The failure text of the request ``decision`` is about (``None``: a success), for Locust's stats.

    ``items`` are the batch's items (to name the kinds of refused hits). Never contains the token.
    """
    send, verdict = decision.send, decision.verdict
    if verdict is Verdict.DONE:
        if not decision.refused and not decision.unattributed:
            return None
        return refusal_message(kinds_of(items, decision.refused, decision.unattributed), decision.reason)
    if verdict is Verdict.REFUSED:
        return refusal_message(kinds_of(items, decision.refused), decision.reason)
    if verdict is Verdict.RETRY:
        return f"{decision.reason}; nothing stored, resent in {decision.delay:.1f} s (try {send.attempt + 1})"
    if verdict is Verdict.SPLIT:
        return f"{decision.reason}; nothing stored, split {send.size} hits to isolate the one Matomo refuses"
    return f"{decision.reason}; the batch stops here"
