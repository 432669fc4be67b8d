"""Matomo bulk tracking payloads: build them, split hits into batches, check the answer (pure).

Why bulk: one HTTP request carries up to ``bulk_size`` hits, so a backfill of months of traffic is
not limited by per-request overhead on either side (Matomo's own log importer works this way).

Rules kept here, because Matomo depends on them:

* each item is ``"?" + urlencode(params)``; the token travels once, as the top-level
  ``token_auth`` of the JSON body, never inside an item, a URL, a log line or an error message;
* hits keep the order they are given in: callers pass each visitor's hits in time order and
  :func:`batches` never reorders, so a visit split over two batches still arrives in order;
* Matomo answers ``{"status": "success", "tracked": N, "invalid": M}``; fewer ``tracked`` than
  items sent is a :class:`BulkError` carrying the counts (invalid items are skipped by Matomo,
  so the caller must stop and look, not resend).

No I/O: requests are sent by :mod:`trafficinator_locust.ops.tracker_http` (backfill),
:mod:`trafficinator_locust.runtime.bulk_sender` (live) and ``bench/bulk.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar
from urllib.parse import quote_plus

from trafficinator_locust.core.errors import BulkError
from trafficinator_locust.core.masking import mask_secrets

T = TypeVar("T")

DEFAULT_BULK_SIZE = 50
MAX_BULK_SIZE = 1000
JSON_CONTENT_TYPE = "application/json"
TOKEN_KEY = "token_auth"

__all__ = [
    "DEFAULT_BULK_SIZE",
    "MAX_BULK_SIZE",
    "JSON_CONTENT_TYPE",
    "BulkAnswer",
    "batches",
    "build_payload",
    "encode_item",
    "form_encode",
    "in_time_order",
    "parse_answer",
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
    """Check Matomo's answer to a bulk request of ``sent`` items.

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
