"""The tracker endpoint (``matomo.php``, ``piwik.php``): hits in, Matomo's answers out.

One hit (GET or form POST) is answered like Matomo answers it: the 43-byte GIF (200), 204 with
``send_image=0``, 400 with the reason when a rule of :mod:`trafficinator_locust.core.protocol`
rejects it, 200 for what Matomo drops silently (bots, no ``rec``, a ping without a visit). A bulk
JSON POST is answered ``{"status": "success", "tracked": n, "invalid": m}``, or 400 when its body
is malformed. What the protocol cannot check alone is checked here against the stored state:
a duplicate ``ec_id`` and pings that need an active visit. The ``loss`` option drops a seeded
share of valid hits while answering them as stored, so ``trafficinator verify`` has a silent
loss to find.

Example::

    tracker = Tracker(time.time, loss=Loss(0.05, seed=3))
    answer = tracker.answer(state, environ, start_response)  # a WSGI handler for one instance
"""

from __future__ import annotations

import gevent

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from datetime import timezone as dt_timezone
from functools import lru_cache
from urllib.parse import urlsplit

from trafficinator_locust.core.protocol import (
    ACTION_KINDS,
    BOT,
    DUPLICATE_EC_ID,
    PING_WITHOUT_VISIT,
    Rejection,
    bot_user_agent,
    check_hit,
    classify,
    parse_cdt,
)
from trafficinator_locust.receiver.store import InstanceState, SiteState
from trafficinator_locust.receiver.wsgi import (
    HTML,
    TEXT,
    Client,
    Environ,
    StartResponse,
    bulk_items,
    client_of,
    get_or_post_body,
    is_bulk,
    request_params,
    respond,
    respond_json,
)

__all__ = ["GIF", "TRACKER_PAGE", "Loss", "Tracker"]

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
        text = "\x00".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "token_auth")
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "big") < self._threshold


class Tracker:
    """The tracker endpoint of every instance; ``clock`` returns unix seconds.

    ``delay_seconds`` waits (cooperatively) before answering each tracking request.
    ``record_hits`` keeps, per site, each visitor's stored hits as (kind, page path) in order,
    shown as ``hit_log`` in the stats (for tests comparing sequences; memory grows with hits).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        delay_seconds: float = 0.0,
        loss: Loss | None = None,
        record_hits: bool = False,
    ) -> None:
        self.clock = clock
        self.delay_seconds = delay_seconds
        self.loss = loss or Loss()
        self._lossy = self.loss.share > 0  # the hot path skips the hash when nothing is dropped
        self.record_hits = record_hits

    def answer(self, state: InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        """The WSGI handler of ``<prefix>/matomo.php`` for the instance ``state``."""
        assert state is not None
        body = get_or_post_body(environ)
        if body is None:
            return respond(start_response, 405, b"use GET or POST", TEXT)
        if self.delay_seconds > 0:
            gevent.sleep(self.delay_seconds)
        if is_bulk(environ, body):
            return self._bulk(state, environ, body, start_response)
        params = request_params(environ, body)
        if not params:  # Matomo tracks nothing and shows its page: 200 for a GET, else 400
            status = 200 if environ.get("REQUEST_METHOD") == "GET" else 400
            return respond(start_response, status, TRACKER_PAGE, HTML)
        outcome = self.track(state, params, client_of(environ))
        if outcome is not None and not outcome.ignored:
            return respond(start_response, outcome.status, outcome.message.encode("utf-8"), TEXT)
        if params.get("send_image") == "0":
            return respond(start_response, 204)
        return respond(start_response, 200, GIF, "image/gif")

    def _bulk(self, state: InstanceState, environ: Environ, body: bytes, start_response: StartResponse) -> list[bytes]:
        try:
            items = bulk_items(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bulk_error(start_response, "bulk body is not valid JSON")
        except ValueError as exc:  # our own messages, which never quote the body
            return _bulk_error(start_response, str(exc))
        client = client_of(environ)
        tracked = invalid = 0
        for params in items:
            outcome = self.track(state, params, client)
            if outcome is None or outcome.ignored:
                tracked += 1
            else:
                invalid += 1
        return respond_json(start_response, {"status": "success", "tracked": tracked, "invalid": invalid})

    def track(self, state: InstanceState, params: Mapping[str, str], client: Client) -> Rejection | None:
        """Check, classify and record one hit; returns why it was not stored (or ``None``)."""
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
            goal_ids=site.site.goals if site else None,
            now_utc=now_utc,
        )
        if outcome is None:
            assert site is not None
            outcome = self._record(site, params, client, token_valid, now, now_utc)
        if outcome is not None:
            state.count(site, outcome)
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
        ec_id = params.get("ec_id", "") if kind == "order" else ""
        if ec_id and ec_id in site.ec_ids:
            return Rejection(DUPLICATE_EC_ID, "this ec_id was already recorded for the site")
        if self._lossy and self.loss.drops(params):
            site.lost += 1
            return None
        cdt = params.get("cdt")
        ts = parse_cdt(cdt, now_utc).timestamp() if cdt else now
        address = (params.get("cip") if token_valid else "") or client.address
        config = (user_agent, params.get("lang") or client.language, address)
        visits = site.visits
        visit = visits.visit_for(params, config, ts, kind == "ping")
        if visit is None:
            return Rejection(PING_WITHOUT_VISIT, "ping without an active visit: ignored", 200)
        visits.seen(ts)
        site.hits += 1
        site.actions[kind] += 1
        if token_valid and params.get("cip"):
            site.ip_overrides += 1
        if self.record_hits:
            visitor = params.get("cid") or params.get("_id") or ""
            site.hit_log.setdefault(visitor, []).append((kind, urlsplit(params.get("url", "")).path))
        if kind in ACTION_KINDS:
            visits.day(visit.day).actions += 1
        if ec_id:
            site.ec_ids.add(ec_id)
        return None


@lru_cache(maxsize=8192)
def _is_bot(user_agent: str) -> bool:
    return bot_user_agent(user_agent)


def _bulk_error(start_response: StartResponse, message: str) -> list[bytes]:
    return respond_json(start_response, {"status": "error", "message": message}, 400)
