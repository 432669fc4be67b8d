"""Embedded Matomo-compatible receiver ("sink") for demos, tests and benchmarks.

Why: proving the generator right needs a Matomo that answers like Matomo (statuses, silent drops,
bulk answers, visit grouping, a Reporting API subset) without a PHP stack, and that keeps up with
Locust on one core. The sink serves several Matomo "instances" from one loopback port, told apart
by URL path prefix (``/dev/matomo.php``, ``/prod/matomo.php``), and counts what it stored.

What a hit is and when it is rejected comes from :mod:`trafficinator_locust.core.protocol` (the one
definition shared with the generator); this module adds the stateful parts: duplicate ``ec_id``,
visit grouping (visitor id lookup, fingerprint, 30-minute, site-local midnight and campaign rules),
pings that need an active visit, and per-site counters.

Endpoints per instance prefix ``P``: ``P/matomo.php`` and ``P/piwik.php`` (GET, form POST, bulk
JSON POST; a request without any parameter gets Matomo's "This resource is part of Matomo" page),
``P/index.php`` (Reporting API subset), ``GET P/sink/stats``, ``POST P/sink/reset``;
``GET /sink/stats`` and ``POST /sink/reset`` cover every instance. Loopback only.

Tokens have Matomo's roles (view, write, admin), the same on every site of their instance: the
tokens a config brings are admin tokens (they track with ``cip``/old ``cdt``); ``SinkInstance.roles``
adds others, e.g. a view-only token that the Reporting API accepts and the tracker does not.
"""

from __future__ import annotations

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

import base64
import hashlib
import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus, urlsplit
from zoneinfo import ZoneInfo

from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.protocol import (
    ACTION_KINDS,
    BOT,
    DUPLICATE_EC_ID,
    HIT_KINDS,
    PING_WITHOUT_VISIT,
    VISITOR_ID_RE,
    Rejection,
    bot_user_agent,
    campaign_of,
    check_hit,
    classify,
    instance_path,
    parse_cdt,
)

__all__ = [
    "SinkSite",
    "SinkInstance",
    "SinkApp",
    "instances_from_targets",
    "default_instances",
    "serve",
    "run",
    "GIF",
    "MATOMO_VERSION",
    "TRACKER_PAGE",
    "ROLES",
    "VISIT_TIMEOUT_SECONDS",
]

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""Matomo's 43-byte transparent GIF, the body of a stored hit."""
MATOMO_VERSION = "5.2.0"
TRACKER_PAGE = (
    b"This resource is part of Matomo. Keep full control of your data with the leading free and open "
    b"source <a href='https://matomo.org' target='_blank' rel='noopener noreferrer nofollow'>web analytics "
    b"& conversion optimisation platform</a>.<br>\nThis file is the endpoint for the Matomo tracking API. "
    b"If you want to access the Matomo UI or use the Reporting API, please use <a href='index.php'>index.php</a> "
    b"instead.\n"
)
"""What Matomo's matomo.php prints for a request that tracks nothing (core/Tracker/Response.php):
status 200 for a GET without parameters (monitoring tools probe it), 400 otherwise."""
ROLES = ("view", "write", "admin")
"""Matomo's roles, weakest first; tracking with a token needs write or admin."""
VISIT_TIMEOUT_SECONDS = 1800.0
"""Matomo's ``visit_standard_length``: a visit ends 30 minutes after its last action."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_STATUS = {
    200: "200 OK",
    204: "204 No Content",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    500: "500 Internal Server Error",
}
_VIEW_ACCESS = "You can't access this resource as it requires 'view' access"

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


# --- public data model ---------------------------------------------------------------------------
@dataclass
class SinkSite:
    """One Matomo website (``idsite``) of a sink instance."""

    site_id: int
    timezone: str = "UTC"
    currency: str = "USD"
    goals: frozenset[int] = frozenset({1, 2, 3})
    ecommerce: bool = True
    name: str = ""


@dataclass
class SinkInstance:
    """One simulated Matomo instance, reached under ``<prefix>/matomo.php`` (prefix may be "")."""

    prefix: str
    sites: dict[int, SinkSite]
    tokens: set[str] = field(default_factory=set)
    """Tokens with admin access to every site of the instance (what a config's targets bring)."""
    roles: dict[str, str] = field(default_factory=dict)
    """More tokens and their role on every site: ``"view"``, ``"write"`` or ``"admin"``; a token
    named here and in ``tokens`` gets the role named here."""


def _plain_token(token: object) -> str | None:
    if token is None:
        return None
    getter = getattr(token, "get_secret_value", None)
    value = getter() if callable(getter) else token
    return str(value) or None


def instances_from_targets(
    targets: Iterable[Any], host: str = "127.0.0.1", port: int | None = None
) -> list[SinkInstance]:
    """Group loopback targets into sink instances by the path prefix of their tracker URL.

    A target is any object with ``name``, ``url``, ``site_id``, ``timezone`` and ``token_auth``
    (a plain string or a pydantic ``SecretStr``). Targets on other hosts, or on another port when
    ``port`` is given and not 0 (0 means "a free port", so any target port matches), are skipped.
    Several targets may share an instance (one site each); the first target of a site id wins.
    """
    hosts = {host} | (set(LOOPBACK_HOSTS) if host in LOOPBACK_HOSTS else set())
    instances: dict[str, SinkInstance] = {}
    for target in targets:
        parts = urlsplit(target.url)
        if parts.hostname not in hosts:
            continue
        target_port = parts.port or (443 if parts.scheme == "https" else 80)
        if port and target_port != port:
            continue
        prefix = instance_path(target.url)
        instance = instances.setdefault(prefix, SinkInstance(prefix, {}, set()))
        site_id = int(target.site_id)
        instance.sites.setdefault(site_id, _site_of(target, site_id))
        token = _plain_token(target.token_auth)
        if token:
            instance.tokens.add(token)
    return list(instances.values())


def _site_of(target: Any, site_id: int) -> SinkSite:
    """The site a target describes: its time zone, and the goals and currency of its traffic model."""
    traffic = getattr(target, "traffic", None)
    goals = {goal.id for goal in getattr(traffic, "goals", ())}
    goals |= {
        step.id
        for journey in getattr(traffic, "journeys", ())
        for step in journey.steps
        if step.type == "goal" and step.id
    }
    currency = getattr(getattr(traffic, "ecommerce", None), "currency", None) or "USD"
    return SinkSite(
        site_id,
        timezone=target.timezone or "UTC",
        currency=currency,
        goals=frozenset(goals) or frozenset({1, 2, 3}),
        name=target.name,
    )


def default_instances() -> list[SinkInstance]:
    """The instances of the packaged demo config: ``/dev``, ``/staging`` and ``/prod``.

    Tokens come from ``DEMO_DEV_TOKEN``, ``DEMO_STAGING_TOKEN`` and ``DEMO_PROD_TOKEN`` with the
    same demo defaults as ``config/demo.yaml``.
    """
    env = os.environ
    return [
        SinkInstance(
            "/dev", {1: SinkSite(1, "UTC", name="Development")}, {env.get("DEMO_DEV_TOKEN", "demo-dev-token-5f1c")}
        ),
        SinkInstance(
            "/staging",
            {2: SinkSite(2, "America/New_York", name="Staging")},
            {env.get("DEMO_STAGING_TOKEN", "demo-staging-token-8a2e")},
        ),
        SinkInstance(
            "/prod",
            {1: SinkSite(1, "Asia/Tokyo", name="Production")},
            {env.get("DEMO_PROD_TOKEN", "demo-prod-token-c93d")},
        ),
    ]


# --- state ---------------------------------------------------------------------------------------
@dataclass
class _Visit:
    visitor_id: str
    last_ts: float
    day: date
    campaign: str


@dataclass
class _Day:
    visits: int = 0
    actions: int = 0
    visitors: set[str] = field(default_factory=set)


@dataclass
class _Client:
    """What the HTTP request itself tells about the visitor (headers and peer address)."""

    user_agent: str
    language: str
    address: str


def _counter_dict(counter: Counter[str]) -> dict[str, int]:
    return {reason: count for reason, count in sorted(counter.items())}


class _SiteState:
    """Counters, visits and lookups of one site of one instance."""

    def __init__(self, site: SinkSite) -> None:
        self.site = site
        self.zone = ZoneInfo(site.timezone)
        self.reset()

    def reset(self) -> None:
        """Forget every hit, visit and lookup."""
        self.visits = 0
        self.hits = 0
        self.ip_overrides = 0  # stored hits whose visitor IP came from cip (token required)
        self.hit_log: dict[str, list[tuple[str, str]]] = {}
        self.lost = 0  # valid hits answered as stored but dropped on purpose (SinkApp loss)
        self.actions = dict.fromkeys(HIT_KINDS, 0)
        self.invalid: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.days: dict[date, _Day] = {}
        self.by_visitor: dict[str, _Visit] = {}
        self.by_config: dict[tuple[str, str, str], _Visit] = {}
        self.ec_ids: set[str] = set()
        self.newest_ts = 0.0
        self._since_sweep = 0
        self._sweep_every = 1024
        self._day_span: tuple[float, float, date | None] = (0.0, 0.0, None)

    def local_day(self, ts: float) -> date:
        """The site-local calendar day of a unix time (cached for the current day)."""
        start, end, day = self._day_span
        if day is not None and start <= ts < end:
            return day
        day = datetime.fromtimestamp(ts, self.zone).date()
        start = datetime.combine(day, dtime.min, self.zone).timestamp()
        end = datetime.combine(day + timedelta(days=1), dtime.min, self.zone).timestamp()
        self._day_span = (start, end, day)
        return day

    def day(self, day: date) -> _Day:
        """The counters of one site-local day, created on first use."""
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = _Day()
        return stats

    def seen(self, ts: float) -> None:
        """Note a hit time and, now and then, expire lookups that can no longer match."""
        if ts > self.newest_ts:
            self.newest_ts = ts
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every:
            self._sweep()

    def _sweep(self) -> None:
        """Drop lookups older than 30 min before the newest hit (amortised O(1) per hit)."""
        horizon = self.newest_ts - VISIT_TIMEOUT_SECONDS
        self.by_visitor = {k: v for k, v in self.by_visitor.items() if v.last_ts >= horizon}
        self.by_config = {k: v for k, v in self.by_config.items() if v.last_ts >= horizon}
        self._since_sweep = 0
        self._sweep_every = max(1024, len(self.by_visitor) + len(self.by_config))

    def stats(self) -> dict[str, Any]:
        """This site's counters as plain JSON-ready values."""
        visitors: set[str] = set()
        for stats in self.days.values():
            visitors |= stats.visitors
        return {
            "visits": self.visits,
            "unique_visitors": len(visitors),
            "actions": dict(self.actions),
            "hits": self.hits,
            "ip_overrides": self.ip_overrides,
            **(
                {"hit_log": {cid: [list(hit) for hit in hits] for cid, hits in self.hit_log.items()}}
                if self.hit_log
                else {}
            ),
            "invalid": _counter_dict(self.invalid),
            "ignored": _counter_dict(self.ignored),
            "visits_by_day": {d.isoformat(): s.visits for d, s in sorted(self.days.items()) if s.visits},
            **({"lost": self.lost} if self.lost else {}),
        }


class _InstanceState:
    """One instance: its configuration, per-site state and counters for unattributable hits."""

    def __init__(self, instance: SinkInstance, prefix: str) -> None:
        self.instance = instance
        self.prefix = prefix
        self.roles = _token_roles(instance)
        self.tokens = frozenset(t for t, role in self.roles.items() if role != "view")
        """Tokens the tracker accepts (write or admin)."""
        self.sites = {site_id: _SiteState(site) for site_id, site in instance.sites.items()}
        self.invalid: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget everything recorded for this instance."""
        for site in self.sites.values():
            site.reset()
        self.invalid.clear()
        self.ignored.clear()

    def site_for(self, params: Mapping[str, str]) -> _SiteState | None:
        """The site a hit names, if it is one of this instance's sites."""
        idsite = params.get("idsite", "").strip()
        return self.sites.get(int(idsite)) if idsite.isdigit() else None

    def stats(self) -> dict[str, Any]:
        """Counters of every site, plus invalid/ignored hits that name no known site."""
        return {
            "instance": self.prefix,
            "sites": {str(site_id): site.stats() for site_id, site in self.sites.items()},
            "invalid": _counter_dict(self.invalid),
            "ignored": _counter_dict(self.ignored),
        }


def _token_roles(instance: SinkInstance) -> dict[str, str]:
    """Every token of an instance with its role; ValueError names an unknown role."""
    roles = dict.fromkeys((t for t in instance.tokens if t), "admin")
    for token, role in instance.roles.items():
        if role not in ROLES:
            raise ValueError(f"instance {instance.prefix or '/'}: role {role!r} is not one of {', '.join(ROLES)}")
        if token:
            roles[token] = role
    return roles


# --- visit grouping ------------------------------------------------------------------------------
@lru_cache(maxsize=8192)
def _is_bot(user_agent: str) -> bool:
    return bot_user_agent(user_agent)


@lru_cache(maxsize=65536)
def _uid_visitor_id(uid: str) -> str:
    """Matomo's visitor id for a user id: the first 16 hex digits of its SHA-1."""
    return hashlib.sha1(uid.encode("utf-8")).hexdigest()[:16]


def _config_visitor_id(config: tuple[str, str, str]) -> str:
    return hashlib.blake2b("\x00".join(config).encode("utf-8"), digest_size=8).hexdigest()


def _starts_new_visit(visit: _Visit, params: Mapping[str, str], ts: float, day: date, campaign: str) -> bool:
    return (
        params.get("new_visit") == "1"
        or abs(ts - visit.last_ts) > VISIT_TIMEOUT_SECONDS
        or day != visit.day
        or (bool(campaign) and campaign != visit.campaign)
    )


def _visit_for(
    site: _SiteState,
    params: Mapping[str, str],
    config: tuple[str, str, str],
    ts: float,
    is_ping: bool,
) -> _Visit | None:
    """Find or start the visit of a hit; ``None`` for a ping that has no active visit.

    Lookup by ``cid`` or hashed ``uid`` (visitor id only), else by fingerprint ``config``.
    """
    cid, uid = params.get("cid"), params.get("uid")
    visitor_id = cid.lower() if cid else (_uid_visitor_id(uid) if uid else "")
    found = site.by_visitor.get(visitor_id) if visitor_id else site.by_config.get(config)
    day = site.local_day(ts)
    campaign = campaign_of(params)
    if found is not None and not _starts_new_visit(found, params, ts, day, campaign):
        if ts > found.last_ts:
            found.last_ts = ts
        return found
    if is_ping:
        return None
    return _start_visit(site, params, config, visitor_id, ts, day, campaign)


def _start_visit(
    site: _SiteState,
    params: Mapping[str, str],
    config: tuple[str, str, str],
    visitor_id: str,
    ts: float,
    day: date,
    campaign: str,
) -> _Visit:
    lookup_id = visitor_id
    if not visitor_id:
        cookie_id = params.get("_id", "")
        valid_cookie = VISITOR_ID_RE.match(cookie_id)
        visitor_id = cookie_id.lower() if valid_cookie else _config_visitor_id(config)
    visit = _Visit(visitor_id, ts, day, campaign)
    site.visits += 1
    stats = site.day(day)
    stats.visits += 1
    stats.visitors.add(visitor_id)
    if lookup_id:
        site.by_visitor[lookup_id] = visit
    site.by_config[config] = visit
    return visit


# --- WSGI helpers --------------------------------------------------------------------------------
def _respond(start_response: StartResponse, status: int, body: bytes = b"", ctype: str | None = None) -> list[bytes]:
    headers: list[tuple[str, str]] = []
    if status != 204:
        headers.append(("Content-Length", str(len(body))))
    if ctype:
        headers.append(("Content-Type", ctype))
    start_response(_STATUS.get(status, f"{status} Error"), headers)
    return [body] if body else []


def _respond_json(start_response: StartResponse, payload: Any, status: int = 200) -> list[bytes]:
    return _respond(start_response, status, json.dumps(payload).encode("utf-8"), _JSON)


def _get_or_post_body(environ: Environ) -> bytes | None:
    """The body of a POST, ``b""`` for a GET, ``None`` for any other method (answered 405)."""
    method = environ.get("REQUEST_METHOD")
    if method == "GET":
        return b""
    return _read_body(environ) if method == "POST" else None


def _read_body(environ: Environ) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length.isdigit():
        return stream.read(int(length)) if int(length) else b""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return stream.read()
    return b""


def _parse_qs(text: str) -> dict[str, str]:
    """``dict(parse_qsl(text, keep_blank_values=True))``, about twice as fast (hot path)."""
    params: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        params[key] = value
    return params


def _request_params(environ: Environ, body: bytes) -> dict[str, str]:
    """Query string and form body merged; the query string wins, like PHP's ``$_GET + $_POST``."""
    params = _parse_qs(body.decode("utf-8", "replace")) if body else {}
    query = environ.get("QUERY_STRING", "")
    if query:
        params.update(_parse_qs(query))
    return params


def _is_bulk(environ: Environ, body: bytes) -> bool:
    """A JSON body (by content type, or a body that opens an object as Matomo sniffs it)."""
    if not body:
        return False
    return "json" in environ.get("CONTENT_TYPE", "") or body.lstrip()[:1] == b"{"


def _client(environ: Environ) -> _Client:
    return _Client(
        environ.get("HTTP_USER_AGENT", ""),
        environ.get("HTTP_ACCEPT_LANGUAGE", ""),
        environ.get("REMOTE_ADDR", ""),
    )


def _bulk_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _bulk_item(item: Any) -> dict[str, str]:
    """One bulk request item (query string or object) as params; ValueError when malformed."""
    if isinstance(item, str):
        return _parse_qs(item.split("?", 1)[1] if "?" in item else item)
    if isinstance(item, dict):
        return {str(key): _bulk_value(value) for key, value in item.items()}
    raise ValueError("each bulk request must be a query string or an object")


def _bulk_items(body: bytes) -> list[dict[str, str]]:
    """Every item of a bulk body with the top-level token applied; ValueError when malformed."""
    payload = json.loads(body)
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list):
        raise ValueError("bulk body needs a 'requests' list")
    token = payload.get("token_auth")
    if token is not None and not isinstance(token, str):
        raise ValueError("token_auth must be a string")
    items = [_bulk_item(item) for item in requests]
    if token:
        for params in items:
            params.setdefault("token_auth", token)
    return items


def _require_loopback(host: str) -> None:
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the sink only binds to loopback, not {host!r}")


# --- the application -----------------------------------------------------------------------------
Handler = Callable[[_InstanceState | None, Environ, StartResponse], list[bytes]]


class SinkApp:
    """WSGI application serving every instance; ``clock`` returns unix seconds (injectable)."""

    def __init__(
        self,
        instances: Iterable[SinkInstance],
        clock: Callable[[], float] = time.time,
        *,
        delay_seconds: float = 0.0,
        loss: float = 0.0,
        loss_seed: int = 0,
        record_hits: bool = False,
    ) -> None:
        """``record_hits`` keeps, per site, each visitor's stored hits as (kind, page path) in order,
        shown as ``hit_log`` in the stats (for tests comparing sequences; memory grows with hits).

        ``loss``: the share of otherwise-valid hits answered as stored but dropped (0..1), chosen
        per hit by a keyed hash of its parameters (seeded by ``loss_seed``), so runs are repeatable
        and ``trafficinator verify`` has a silent loss to find, like Matomo's silent drops."""
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be >= 0 and < 1")
        self.clock = clock
        self.delay_seconds = delay_seconds
        self.loss = loss
        self.record_hits = record_hits
        self._loss_threshold = int(loss * 2**64)
        self._loss_key = hashlib.blake2b(str(loss_seed).encode(), digest_size=16).digest()
        self._states: dict[str, _InstanceState] = {}
        for instance in instances:
            prefix = _normalise_prefix(instance.prefix)
            if prefix in self._states:
                raise ValueError(f"two sink instances share the prefix {prefix!r}")
            self._states[prefix] = _InstanceState(instance, prefix)
        self._routes = self._build_routes()

    @property
    def prefixes(self) -> list[str]:
        """The instance prefixes served, in configuration order."""
        return list(self._states)

    def _build_routes(self) -> dict[str, tuple[Handler, _InstanceState | None]]:
        routes: dict[str, tuple[Handler, _InstanceState | None]] = {}
        for prefix, state in self._states.items():
            for name in ("/matomo.php", "/piwik.php"):
                routes[prefix + name] = (self._tracker, state)
            for name in ("/index.php", "/"):
                routes[prefix + name] = (self._api, state)
            routes[prefix + "/sink/stats"] = (self._stats, state)
            routes[prefix + "/sink/reset"] = (self._reset, state)
        routes["/sink/stats"] = (self._stats, None)
        routes["/sink/reset"] = (self._reset, None)
        return routes

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            return _respond(start_response, 404, b"not found", _TEXT)
        handler, state = route
        return handler(state, environ, start_response)

    # -- inspection ---------------------------------------------------------------------------
    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """One instance's stats, or (``prefix=None``) every instance's keyed by prefix."""
        if prefix is not None:
            return self._states[_normalise_prefix(prefix)].stats()
        return {key: state.stats() for key, state in self._states.items()}

    def reset(self, prefix: str | None = None) -> None:
        """Clear one instance's data, or every instance's with ``prefix=None``."""
        if prefix is None:
            states = list(self._states.values())
        else:
            states = [self._states[_normalise_prefix(prefix)]]
        for state in states:
            state.reset()

    def _stats(self, state: _InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "GET":
            return _respond(start_response, 405, b"use GET", _TEXT)
        payload = state.stats() if state is not None else self.stats()
        return _respond_json(start_response, payload)

    def _reset(self, state: _InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(start_response, 405, b"use POST", _TEXT)
        _read_body(environ)
        self.reset(state.prefix if state is not None else None)
        return _respond_json(start_response, {"status": "ok"})

    # -- tracking -----------------------------------------------------------------------------
    def _tracker(self, state: _InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        assert state is not None
        body = _get_or_post_body(environ)
        if body is None:
            return _respond(start_response, 405, b"use GET or POST", _TEXT)
        if self.delay_seconds > 0:
            gevent.sleep(self.delay_seconds)
        if _is_bulk(environ, body):
            return self._bulk(state, environ, body, start_response)
        params = _request_params(environ, body)
        if not params:  # Matomo tracks nothing and shows its page: 200 for a GET, else 400
            status = 200 if environ.get("REQUEST_METHOD") == "GET" else 400
            return _respond(start_response, status, TRACKER_PAGE, _HTML)
        outcome = self._track(state, params, _client(environ))
        if outcome is not None and not outcome.ignored:
            return _respond(start_response, outcome.status, outcome.message.encode("utf-8"), _TEXT)
        if params.get("send_image") == "0":
            return _respond(start_response, 204)
        return _respond(start_response, 200, GIF, "image/gif")

    def _bulk(self, state: _InstanceState, environ: Environ, body: bytes, start_response: StartResponse) -> list[bytes]:
        try:
            items = _bulk_items(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bulk_error(start_response, "bulk body is not valid JSON")
        except ValueError as exc:  # our own messages, which never quote the body
            return _bulk_error(start_response, str(exc))
        client = _client(environ)
        tracked = invalid = 0
        for params in items:
            outcome = self._track(state, params, client)
            if outcome is None or outcome.ignored:
                tracked += 1
            else:
                invalid += 1
        return _respond_json(start_response, {"status": "success", "tracked": tracked, "invalid": invalid})

    def _track(self, state: _InstanceState, params: Mapping[str, str], client: _Client) -> Rejection | None:
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
            _count(state, site, outcome)
        return outcome

    def _record(
        self,
        site: _SiteState,
        params: Mapping[str, str],
        client: _Client,
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
        if self._loss_threshold and self._lost(params):
            site.lost += 1
            return None
        cdt = params.get("cdt")
        ts = parse_cdt(cdt, now_utc).timestamp() if cdt else now
        address = (params.get("cip") if token_valid else "") or client.address
        config = (user_agent, params.get("lang") or client.language, address)
        visit = _visit_for(site, params, config, ts, kind == "ping")
        if visit is None:
            return Rejection(PING_WITHOUT_VISIT, "ping without an active visit: ignored", 200)
        site.seen(ts)
        site.hits += 1
        site.actions[kind] += 1
        if token_valid and params.get("cip"):
            site.ip_overrides += 1
        if self.record_hits:
            visitor = params.get("cid") or params.get("_id") or ""
            site.hit_log.setdefault(visitor, []).append((kind, urlsplit(params.get("url", "")).path))
        if kind in ACTION_KINDS:
            site.day(visit.day).actions += 1
        if ec_id:
            site.ec_ids.add(ec_id)
        return None

    def _lost(self, params: Mapping[str, str]) -> bool:
        """Whether this hit is one of the ``loss`` share: same parameters, same answer."""
        text = "\x00".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "token_auth")
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=self._loss_key).digest()
        return int.from_bytes(digest, "big") < self._loss_threshold

    # -- reporting API ------------------------------------------------------------------------
    def _api(self, state: _InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        assert state is not None
        body = _get_or_post_body(environ)
        if body is None:
            return _respond(start_response, 405, b"use GET or POST", _TEXT)
        params = _request_params(environ, body)
        return _respond_json(start_response, _api_answer(state, params, self.clock()))


def _bulk_error(start_response: StartResponse, message: str) -> list[bytes]:
    return _respond_json(start_response, {"status": "error", "message": message}, 400)


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    return prefix if not prefix or prefix.startswith("/") else "/" + prefix


def _count(state: _InstanceState, site: _SiteState | None, outcome: Rejection) -> None:
    if site is None:
        counters = state.ignored if outcome.ignored else state.invalid
    else:
        counters = site.ignored if outcome.ignored else site.invalid
    counters[outcome.reason] += 1


# --- reporting API -------------------------------------------------------------------------------
def _api_error(message: str) -> dict[str, str]:
    return {"result": "error", "message": message}


def _access_error(params: Mapping[str, str]) -> dict[str, str]:
    site = params.get("idSite") or params.get("idsite")
    numbered = bool(site) and site.isdigit()
    where = f"for the website id = {site}." if numbered else "for at least one website."
    return _api_error(f"{_VIEW_ACCESS} {where}")


def _site_info(site: SinkSite) -> dict[str, Any]:
    return {
        "idsite": str(site.site_id),
        "name": site.name or f"Site {site.site_id}",
        "timezone": site.timezone,
        "currency": site.currency,
        "ecommerce": 1 if site.ecommerce else 0,
    }


def _api_site(state: _InstanceState, params: Mapping[str, str]) -> _SiteState | dict[str, str]:
    raw = (params.get("idSite") or params.get("idsite") or "").strip()
    site = state.sites.get(int(raw)) if raw.isdigit() else None
    if site is None:
        return _api_error(f"An unexpected website was found in the request: website id was set to '{raw}' .")
    return site


def _api_date(site: _SiteState, value: str, now: float) -> date | None:
    today = datetime.fromtimestamp(now, site.zone).date()
    if value in ("", "today"):
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _visits_summary(state: _InstanceState, params: Mapping[str, str], now: float) -> Any:
    site = _api_site(state, params)
    if isinstance(site, dict):
        return site
    if params.get("period", "day") != "day":
        return _api_error("The sink supports period=day only.")
    day = _api_date(site, params.get("date", ""), now)
    if day is None:
        return _api_error("date must be YYYY-MM-DD, today or yesterday.")
    stats = site.days.get(day) or _Day()
    return {
        "nb_visits": stats.visits,
        "nb_actions": stats.actions,
        "nb_uniq_visitors": len(stats.visitors),
    }


def _tracking_failures(state: _InstanceState) -> list[dict[str, Any]]:
    """Rejected (invalid) hits per site and reason, shaped like Matomo's tracking failures.

    Matomo keeps one row per site and problem; the sink adds ``count``. Request URLs are left
    empty: the sink never echoes parameters (they may hold a token). Silent drops are not failures.
    """
    failures: list[dict[str, Any]] = []
    rows = [(str(site_id), site.site.name, site.invalid) for site_id, site in state.sites.items()]
    rows.append(("", "", state.invalid))
    for site_id, name, counter in rows:
        for reason, count in sorted(counter.items()):
            failures.append(
                {
                    "idsite": site_id,
                    "idfailure": len(failures) + 1,
                    "site_name": name or f"Site {site_id}",
                    "problem": reason,
                    "solution": "see the receiver's stats (invalid) for the rule",
                    "request_url": "",
                    "count": count,
                }
            )
    return failures


_SITE_IDS_BY_ROLE = {
    "SitesManager.getSitesIdWithAtLeastViewAccess": ROLES,
    "SitesManager.getSitesIdWithViewAccess": ("view",),
    "SitesManager.getSitesIdWithWriteAccess": ("write",),
    "SitesManager.getSitesIdWithAdminAccess": ("admin",),
}
"""Matomo's per-role site lists: ``...WithWriteAccess`` lists write-only sites (not admin ones)."""
_SITES_BY_ROLE = {
    "SitesManager.getSitesWithAtLeastViewAccess": ROLES,
    "SitesManager.getSitesWithViewAccess": ("view",),
    "SitesManager.getSitesWithAdminAccess": ("admin",),
}


def _api_answer(state: _InstanceState, params: Mapping[str, str], now: float) -> Any:
    """The JSON answer of one Reporting API call (errors are answered with status 200).

    Every method needs a known token (Matomo's ``API.getMatomoVersion`` too: some view access).
    """
    if params.get("module") != "API":
        return _api_error("The sink only serves module=API.")
    method = params.get("method", "")
    token = params.get("token_auth", "")
    role = state.roles.get(token) if token else None
    if role is None:
        return _access_error(params)
    if method == "API.getMatomoVersion":
        return {"value": MATOMO_VERSION}
    if method == "SitesManager.getSiteFromId":
        site = _api_site(state, params)
        return site if isinstance(site, dict) else _site_info(site.site)
    if method in _SITE_IDS_BY_ROLE:
        return list(state.sites) if role in _SITE_IDS_BY_ROLE[method] else []
    if method in _SITES_BY_ROLE:
        return [_site_info(site.site) for site in state.sites.values()] if role in _SITES_BY_ROLE[method] else []
    if method == "VisitsSummary.get":
        return _visits_summary(state, params, now)
    if method == "CoreAdminHome.getTrackingFailures":
        return _tracking_failures(state)
    module = method.split(".", 1)[0]
    return _api_error(
        f"The method '{method.split('.', 1)[-1]}' does not exist or is not available in the module '{module}'."
    )


# --- serving -------------------------------------------------------------------------------------
class _NoDelayServer(WSGIServer):
    """pywsgi sends a response's headers and body in two writes; with Nagle on, the body waits for
    the client's delayed ACK (~40 ms), so every answer with a body (bulk JSON, the Reporting API,
    stats, the GIF) took 40 ms on a keep-alive connection. TCP_NODELAY sends both at once."""

    def handle(self, sock: Any, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().handle(sock, address)


def serve(app: SinkApp, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
    """Start ``app`` on a gevent WSGI server in the background; returns ``(server, bound_port)``.

    Only loopback hosts are accepted. Keep-alive is on (HTTP/1.1). Stop with ``server.stop()``.
    """
    _require_loopback(host)
    server = _NoDelayServer((host, port), app, log=None)
    server.start()
    return server, server.server_port


def _describe(prefixes: Iterable[str]) -> str:
    return ", ".join(prefix or "/" for prefix in prefixes)


def run(
    instances: Iterable[SinkInstance],
    host: str = "127.0.0.1",
    port: int = 8765,
    ready_file: str | None = None,
    *,
    delay_seconds: float = 0.0,
    loss: float = 0.0,
    loss_seed: int = 0,
    record_hits: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT, then stop cleanly and return exit code 0.

    Prints one ``sink listening on ...`` line; writes the bound port to ``ready_file`` (atomic
    rename) once listening so callers can wait for it instead of sleeping.
    """
    app = SinkApp(instances, delay_seconds=delay_seconds, loss=loss, loss_seed=loss_seed, record_hits=record_hits)
    server, bound = serve(app, host, port)
    stop = gevent.event.Event()
    watchers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        if ready_file:  # before the line, so a reader of the line finds the file
            write_atomic(ready_file, str(bound))
        print(f"sink listening on http://{host}:{bound} (instances: {_describe(app.prefixes)})", flush=True)
        stop.wait()
    finally:
        for watcher in watchers:
            watcher.cancel()
        server.stop(timeout=2)
    return 0
