"""The tracker endpoint (``matomo.php``, ``piwik.php``): hits in, Matomo's answers out.

One hit (GET or form POST) is answered like Matomo answers it: the 43-byte GIF (200), 204 with
``send_image=0``, 400 with the reason when a rule of :mod:`trafficinator_locust.core.protocol`
rejects it, 200 for what Matomo drops silently (bots, no ``rec``, a ping without a visit). What
the protocol cannot check alone is checked here against the stored state: a duplicate ``ec_id``
(refused after its visit was stored, as in Matomo) and pings that need an ongoing visit.

A bulk JSON POST is one transaction (plugins/BulkTracking/Tracker/Handler.php): items with an
unknown site or an invalid parameter are skipped and counted (``invalid``, and for an admin token
``invalid_indices``), the rest stored, ``200 {"status": "success", ...}``; an item refused for
any other reason (:data:`~trafficinator_locust.core.protocol.BULK_FATAL_REASONS`, e.g. a goal
with ``ca=1``) rolls the whole batch back: ``500 {"status": "error", "tracked": <items before
it>, "invalid": 0, ...}`` and nothing of it is stored. A malformed body is a 400.

Test options: ``loss`` drops a seeded share of valid hits while answering them as stored, so
``trafficinator verify`` has a silent loss to find; ``lose`` does the same per hit kind (every
goal, a tenth of the events...), so a test proves ``verify`` names the report that came out short;
``fail_batches`` answers a seeded share of bulk requests like a database deadlock,
``500 {"status": "error", "tracked": 0}``, storing nothing, so the generator's retries have
something to retry. A lost hit changes nothing stored (no visit, report, hit log entry) but
``lost`` and ``lost_by_kind``; a repeated order id is never lost (it stays refused); a content
impression (``c_n`` with ``ca=1``) is kind ``content``, which ``lose`` cannot name.

An instance with a capacity (:mod:`.capacity`) queues each tracking request before any of this:
it costs 1 hit (a bulk request: its number of items), waits its turn and is then answered as above,
or is answered 503 at once (:data:`SATURATED`), storing nothing, when its queue is full.

Example::

    tracker = Tracker(time.time, loss=Loss(0.05, seed=3), fail_batches=FailBatches(0.1, seed=1))
    tracker = Tracker(time.time, lose=KindLoss(lose_shares(["goal=1", "event=0.1"]), seed=7))
    answer = tracker.answer(state, environ, start_response)  # a WSGI handler for one instance
"""

from __future__ import annotations

import gevent

import base64
import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from trafficinator_locust.core.protocol import (
    ACTION_KINDS,
    BOT,
    BULK_FATAL_REASONS,
    DUPLICATE_EC_ID,
    HIT_KINDS,
    PING_WITHOUT_VISIT,
    Rejection,
    bot_user_agent,
    check_hit,
    classify,
    custom_action_claimed,
    parse_cdt,
)
from trafficinator_locust.receiver.devices import config_id, parse_user_agent
from trafficinator_locust.receiver.profile import visit_traits
from trafficinator_locust.receiver.store import InstanceState, SiteState
from trafficinator_locust.receiver.visits import Visit
from trafficinator_locust.receiver.wsgi import (
    HTML,
    TEXT,
    Client,
    Environ,
    StartResponse,
    bulk_request,
    client_of,
    get_or_post_body,
    is_bulk,
    request_params,
    respond,
    respond_json,
)

__all__ = ["GIF", "TRACKER_PAGE", "SATURATED", "Loss", "KindLoss", "FailBatches", "Tracker", "lose_shares"]

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""Matomo's 43-byte transparent GIF, the body of a stored hit."""
TRACKER_PAGE = (
    b"This resource is part of Matomo. Keep full control of your data with the leading free and open "
    b"source <a href='https://matomo.org' target='_blank' rel='noopener noreferrer nofollow'>web analytics "
    b"& conversion optimisation platform</a>.<br>\nThis file is the endpoint for the Matomo tracking API. "
    b"If you want to access the Matomo UI or use the Reporting API, please use <a href='index.php'>index.php</a> "
    b"instead.\n"
)
"""What Matomo's matomo.php prints for a request that tracks nothing (core/Tracker/Response.php):
status 200 for a GET without parameters (monitoring tools probe it), 400 otherwise."""
SATURATED = b"503 Service Unavailable: the instance is at its capacity (trafficinator sink --capacity)\n"
"""The body of a 503 for a request the capacity refused (nginx before a saturated php-fpm answers 502/503)."""


class Loss:
    """Which valid hits the ``loss`` option drops: ``share`` of them (0..1), chosen per hit by a
    hash of its parameters keyed by ``seed``, so the same hits and seed give the same choice and
    the token (top-level in bulk, or per hit) does not change it."""

    def __init__(self, share: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= share < 1.0:
            raise ValueError("loss must be >= 0 and < 1")
        self.share = share
        self._threshold = int(share * 2**64)
        self._key = hashlib.blake2b(str(seed).encode(), digest_size=16).digest()

    def drops(self, params: Mapping[str, str]) -> bool:
        """Whether this hit is one of the dropped share: same parameters, same answer."""
        return _hit_hash(self._key, params) < self._threshold


class KindLoss:
    """Which valid hits the ``lose`` option drops: per hit kind (one of ``core.protocol.HIT_KINDS``)
    a share (0..1, 1 drops them all) of that kind, chosen per hit by a hash of its parameters keyed
    by ``seed`` (another key than ``loss``'s), so the same hits and seed lose the same ones whatever
    order they come in. ValueError names an unknown kind or a share outside 0..1."""

    def __init__(self, shares: Mapping[str, float] | None = None, seed: int = 0) -> None:
        self.shares = dict(shares or {})
        for kind, share in self.shares.items():
            if kind not in HIT_KINDS:
                raise ValueError(f"lose: {kind!r} is not a hit kind (one of {', '.join(HIT_KINDS)})")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"lose: the share of {kind} must be between 0 and 1")
        self._thresholds = {kind: int(share * 2**64) for kind, share in self.shares.items() if share > 0}
        self._key = hashlib.blake2b(f"lose:{seed}".encode(), digest_size=16).digest()

    @property
    def active(self) -> bool:
        """Whether any hit may be dropped (the hot path skips the hash otherwise)."""
        return bool(self._thresholds)

    def drops(self, kind: str, params: Mapping[str, str]) -> bool:
        """Whether this hit of ``kind`` is one of its kind's dropped share."""
        threshold = self._thresholds.get(kind)
        return threshold is not None and _hit_hash(self._key, params) < threshold


def lose_shares(options: Iterable[str]) -> dict[str, float]:
    """``["goal=1", "event=0.25"]`` (``trafficinator sink --lose KIND=SHARE``, repeatable) as
    ``{"goal": 1.0, "event": 0.25}``; a kind named twice keeps the last share. ValueError, quoting
    the option, for a malformed one, an unknown kind or a share outside 0..1."""
    shares: dict[str, float] = {}
    for option in options:
        kind, sep, raw = option.partition("=")
        kind = kind.strip()
        if not sep or not kind:
            raise ValueError(f"{option!r}: use KIND=SHARE, e.g. goal=0.5")
        if kind not in HIT_KINDS:
            raise ValueError(f"{option!r}: {kind!r} is not a hit kind (one of {', '.join(HIT_KINDS)})")
        try:
            share = float(raw)
        except ValueError:
            share = -1.0
        if not 0.0 <= share <= 1.0:  # NaN fails too
            raise ValueError(f"{option!r}: SHARE must be a number between 0 and 1, e.g. {kind}=0.5")
        shares[kind] = share
    return shares


def _hit_hash(key: bytes, params: Mapping[str, str]) -> int:
    """A keyed 64-bit hash of a hit's parameters, its token left out (top-level in bulk, or per hit)."""
    text = "\x00".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "token_auth")
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=key).digest(), "big")


class FailBatches:
    """Which bulk requests the ``fail_batches`` option fails like a deadlock: ``share`` of them
    (0..1), each request drawing from a random generator seeded by ``seed``, so the same sequence
    of requests and seed fail the same ones."""

    def __init__(self, share: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError("fail_batches must be between 0 and 1")
        self.share = share
        self._rng = random.Random(seed)

    def fails(self) -> bool:
        """Whether the next bulk request is one of the failed share."""
        return self.share > 0 and self._rng.random() < self.share


@dataclass
class _Checked:
    """A hit after the stateless rules: its site, token, the protocol's verdict and the time."""

    params: Mapping[str, str]
    site: SiteState | None
    token_valid: bool
    outcome: Rejection | None
    now: float
    now_utc: datetime


class Tracker:
    """The tracker endpoint of every instance; ``clock`` returns unix seconds.

    ``delay_seconds`` waits (cooperatively) before answering each tracking request.
    ``record_hits`` keeps, per site, each visitor's stored hits as (kind, page path) in order,
    shown as ``hit_log`` in the stats (for tests comparing sequences; memory grows with hits); a hit
    with ``new_visit=1`` gets a third element, ``"new_visit"``.
    ``loss``, ``lose`` and ``fail_batches``: see the module docstring.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        delay_seconds: float = 0.0,
        loss: Loss | None = None,
        record_hits: bool = False,
        fail_batches: FailBatches | None = None,
        lose: KindLoss | None = None,
    ) -> None:
        self.clock = clock
        self.delay_seconds = delay_seconds
        self.loss = loss or Loss()
        self.lose = lose or KindLoss()
        self._lossy = self.loss.share > 0 or self.lose.active  # the hot path skips the hash when nothing is lost
        self.record_hits = record_hits
        self.fail_batches = fail_batches or FailBatches()

    def answer(self, state: InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        """The WSGI handler of ``<prefix>/matomo.php`` for the instance ``state``."""
        assert state is not None
        body = get_or_post_body(environ)
        if body is None:
            return respond(start_response, 405, b"use GET or POST", TEXT)
        if self.delay_seconds > 0:
            gevent.sleep(self.delay_seconds)
        if is_bulk(environ, body):
            try:
                items, token = bulk_request(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._in_turn(state, (), start_response, _bulk_error, start_response, _NOT_JSON)
            except ValueError as exc:  # our own messages, which never quote the body
                return self._in_turn(state, (), start_response, _bulk_error, start_response, str(exc))
            return self._in_turn(state, items, start_response, self._bulk, state, environ, items, token, start_response)
        params = request_params(environ, body)
        return self._in_turn(state, (params,), start_response, self._single, state, environ, params, start_response)

    @staticmethod
    def _in_turn(
        state: InstanceState,
        items: Sequence[Mapping[str, str]],
        start_response: StartResponse,
        serve: Callable[..., list[bytes]],
        *args: Any,
    ) -> list[bytes]:
        """``serve(*args)`` now when the instance has no capacity; otherwise once the request of these
        ``items`` (its hits, at least 1) has had its turn, or 503 at once when its queue is full."""
        queue = state.queue
        if queue is None:
            return serve(*args)
        turn = queue.admit(len(items))
        if turn is None:
            state.count_saturated(items)
            return respond(start_response, 503, SATURATED, TEXT)
        with turn:
            return serve(*args)

    def _single(
        self, state: InstanceState, environ: Environ, params: Mapping[str, str], start_response: StartResponse
    ) -> list[bytes]:
        if not params:  # Matomo tracks nothing and shows its page: 200 for a GET, else 400
            status = 200 if environ.get("REQUEST_METHOD") == "GET" else 400
            return respond(start_response, status, TRACKER_PAGE, HTML)
        outcome = self.track(state, params, client_of(environ))
        if outcome is not None and not outcome.ignored:
            return respond(start_response, outcome.status, outcome.message.encode("utf-8"), TEXT)
        if params.get("send_image") == "0":
            return respond(start_response, 204)
        return respond(start_response, 200, GIF, "image/gif")

    def _bulk(
        self,
        state: InstanceState,
        environ: Environ,
        items: Sequence[Mapping[str, str]],
        token: str,
        start_response: StartResponse,
    ) -> list[bytes]:
        if self.fail_batches.fails():  # like a deadlock (MariaDB 1213): nothing stored, retry later
            state.failed_batches += 1
            return respond_json(start_response, {"status": "error", "tracked": 0}, 500)
        with_indices = state.roles.get(token) == "admin" if token else False
        checked = [self._check(state, params) for params in items]
        fatal = next((n for n, c in enumerate(checked) if c.outcome and c.outcome.reason in BULK_FATAL_REASONS), None)
        if fatal is not None:
            refused = checked[fatal]
            assert refused.outcome is not None
            state.count(refused.site, refused.outcome)
            state.rolled_back_batches += 1
            answer: dict[str, Any] = {"status": "error", "tracked": _tracked_before(checked[:fatal]), "invalid": 0}
            if with_indices:
                answer["invalid_indices"] = []
            return respond_json(start_response, answer, 500)
        client = client_of(environ)
        tracked = 0
        invalid: list[int] = []
        for index, check in enumerate(checked):
            outcome = self._apply(state, check, client)
            if outcome is None or outcome.ignored:
                tracked += 1
            else:
                invalid.append(index)
        answer = {"status": "success", "tracked": tracked, "invalid": len(invalid)}
        if with_indices:
            answer["invalid_indices"] = invalid
        return respond_json(start_response, answer)

    def track(self, state: InstanceState, params: Mapping[str, str], client: Client) -> Rejection | None:
        """Check, classify and record one hit; returns why it was not stored (or ``None``)."""
        return self._apply(state, self._check(state, params), client)

    def _check(self, state: InstanceState, params: Mapping[str, str]) -> _Checked:
        """The stateless rules of :func:`~trafficinator_locust.core.protocol.check_hit` (nothing stored)."""
        site = state.site_for(params)
        token = params.get("token_auth", "")
        token_valid = bool(token) and token in state.tokens
        now = self.clock()
        now_utc = datetime.fromtimestamp(now, dt_timezone.utc)
        outcome = check_hit(
            params,
            site_exists=site is not None,
            token_valid=token_valid,
            token_given=bool(token),
            goal_ids=site.goal_ids if site else None,
            now_utc=now_utc,
        )
        return _Checked(params, site, token_valid, outcome, now, now_utc)

    def _apply(self, state: InstanceState, check: _Checked, client: Client) -> Rejection | None:
        """Record a checked hit (or count why not); returns why it was not stored (or ``None``)."""
        outcome = check.outcome
        if outcome is None:
            assert check.site is not None
            outcome = self._record(check.site, check.params, client, check.token_valid, check.now, check.now_utc)
        if outcome is not None:
            state.count(check.site, outcome)
        return outcome

    def _record(
        self,
        site: SiteState,
        params: Mapping[str, str],
        client: Client,
        token_valid: bool,
        now: float,
        now_utc: datetime,
    ) -> Rejection | None:
        user_agent = params.get("ua") or client.user_agent
        if params.get("bots") != "1" and _is_bot(user_agent):
            return Rejection(BOT, "bot user agent: request ignored", 200)
        kind = classify(params)
        content = kind == "pageview" and custom_action_claimed(params)
        if content:
            kind = "content"  # a content impression/interaction (c_n with ca=1): stored, not an action
        if self._lossy and self._loses(site, kind, params):
            return None
        cdt = params.get("cdt")
        ts = parse_cdt(cdt, now_utc).timestamp() if cdt else now
        address = (params.get("cip") if token_valid else "") or client.address
        device = parse_user_agent(user_agent)
        visits = site.visits
        language = params.get("lang") or client.language
        fingerprint = lambda: config_id(params, device, address, language, site.site.site_id, visits.local_day(ts))
        visit, _started = visits.visit_for(
            params,
            fingerprint,
            ts,
            kind == "ping",
            lambda: visit_traits(params, device, address, language, token_valid=token_valid, ts=ts),
        )
        if visit is None:
            return Rejection(PING_WITHOUT_VISIT, "ping without an active visit: ignored", 200)
        visits.seen(ts)
        ec_id = params.get("ec_id", "") if kind == "order" else ""
        if ec_id and ec_id in site.ec_ids:  # Matomo refuses the conversion after storing the visit
            return Rejection(DUPLICATE_EC_ID, "this ec_id was already recorded for the site")
        site.hits += 1
        if not content:
            site.actions[kind] += 1
        if token_valid and params.get("cip"):
            site.ip_overrides += 1
        if self.record_hits:
            visitor = params.get("cid") or params.get("_id") or ""
            entry = (kind, urlsplit(params.get("url", "")).path)
            # a hit that opens a visit on purpose is marked, so a test can see one visitor's visits overlap
            site.hit_log.setdefault(visitor, []).append(
                entry + ("new_visit",) if params.get("new_visit") == "1" else entry
            )
        if kind in ACTION_KINDS:
            visits.count_action(visit)
            site.action_reports.action(visit, kind, params)
        elif content:
            site.action_reports.content(visit)
        self._convert(site, kind, params, visit, ts)
        if ec_id:
            site.ec_ids.add(ec_id)
        return None

    def _loses(self, site: SiteState, kind: str, params: Mapping[str, str]) -> bool:
        """Whether ``loss`` or ``lose`` drops this valid hit (then counted as lost); a repeated order
        id is never dropped, so it stays the refusal Matomo answers."""
        if kind == "order" and params.get("ec_id", "") in site.ec_ids:
            return False
        if not ((self.loss.share > 0 and self.loss.drops(params)) or self.lose.drops(kind, params)):
            return False
        site.lost += 1
        site.lost_kinds[kind] += 1
        return True

    @staticmethod
    def _convert(site: SiteState, kind: str, params: Mapping[str, str], visit: Visit, ts: float) -> None:
        """Goal conversions and ecommerce of a stored hit (see :mod:`.goals`)."""
        conversions = site.conversions
        if kind == "goal":
            goal = site.goal_rules.get(int(params["idgoal"].strip()))
            if goal is not None:
                conversions.goal(visit, goal, params, ts)
        elif kind == "order":
            conversions.order(visit, params)
        elif kind == "cart":
            conversions.cart(visit, params)
        elif site.url_goals and kind in ("pageview", "search", "product_view"):
            conversions.url_goals(visit, site.url_goals, params.get("url", ""), ts)


def _tracked_before(checked: list[_Checked]) -> int:
    """How many of these items Matomo had processed (and counts as ``tracked``) before a fatal one:
    those the stateless rules let through or ignore, except repeated order ids."""
    tracked = 0
    orders: set[tuple[int, str]] = set()
    for check in checked:
        if check.outcome is not None and not check.outcome.ignored:
            continue
        ec_id = check.params.get("ec_id", "") if check.params.get("idgoal", "").strip() == "0" else ""
        if ec_id and check.site is not None:
            key = (check.site.site.site_id, ec_id)
            if ec_id in check.site.ec_ids or key in orders:
                continue
            orders.add(key)
        tracked += 1
    return tracked


@lru_cache(maxsize=8192)
def _is_bot(user_agent: str) -> bool:
    return bot_user_agent(user_agent)


_NOT_JSON = "bulk body is not valid JSON"


def _bulk_error(start_response: StartResponse, message: str) -> list[bytes]:
    return respond_json(start_response, {"status": "error", "message": message}, 400)
