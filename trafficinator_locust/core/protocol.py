"""The one definition of a valid Matomo tracking hit.

Why this module exists: the traffic generator and the embedded receiver (``sink``) must agree on
what Matomo accepts, rejects or silently drops. If each kept its own copy of the rules, a generator
bug could be hidden by a matching receiver bug. Both therefore import the constants and pure
functions below: the receiver enforces them, the generator's tests assert its hits pass them.

Pure by design: no I/O, no gevent, no locust. Inputs are plain mappings of string parameters
(query string and form body already merged), a few booleans the caller knows (site exists, token
valid) and ``now_utc``; outputs are plain values.

Facts follow Matomo 5.x (``core/Tracker/Request.php``, ``core/Tracker/Action.php``,
``plugins/Goals``, ``plugins/BulkTracking``); see ``/work/shared/matomo-tracking.md`` and, for each
rule with its Matomo source file and its test, ``docs/receiver.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "CID_RE",
    "VISITOR_ID_RE",
    "PV_ID_RE",
    "MONEY_RE",
    "HIT_KINDS",
    "ACTION_KINDS",
    "OVERRIDE_PARAMS",
    "EVENT_PARAMS",
    "MONEY_PARAMS",
    "CAMPAIGN_PARAMS",
    "BOT_MARKERS",
    "CDT_MAX_AGE",
    "Rejection",
    "classify",
    "check_hit",
    "tracker_answer_problem",
    "custom_action_claimed",
    "parse_cdt",
    "bot_user_agent",
    "campaign_of",
    "REASONS",
    "IGNORED_REASONS",
    "INVALID_REASONS",
    "BULK_FATAL_REASONS",
    "NO_REC",
    "BOT",
    "PING_WITHOUT_VISIT",
    "MISSING_IDSITE",
    "UNKNOWN_SITE",
    "BAD_CID",
    "EVENT_INCOMPLETE",
    "CA_UNCLAIMED",
    "OVERRIDE_NEEDS_TOKEN",
    "BAD_CDT",
    "CDT_NEEDS_TOKEN",
    "UNKNOWN_GOAL",
    "BAD_MONEY",
    "REVENUE_MISMATCH",
    "BAD_EC_ITEMS",
    "DUPLICATE_EC_ID",
]

# --- identifiers ---------------------------------------------------------------------------------
CID_RE = re.compile(r"\A[0-9a-fA-F]{16}\Z")
"""``cid`` (forced visitor id): exactly 16 hex characters, anything else is a 400."""
VISITOR_ID_RE = re.compile(r"\A[0-9a-fA-F]{16}\Z")
"""``_id`` (cookie visitor id): 16 hex characters (Matomo ignores a malformed ``_id``)."""
PV_ID_RE = re.compile(r"\A[0-9A-Za-z]{6}\Z")
"""``pv_id`` (page view id): 6 alphanumerics, shared by a page and its events/outlinks/downloads."""
MONEY_RE = re.compile(r"\A-?\d+(?:\.\d{1,2})?\Z")
"""Ecommerce money: a decimal number with at most two decimals."""

# --- hit kinds -----------------------------------------------------------------------------------
HIT_KINDS: tuple[str, ...] = (
    "pageview",
    "search",
    "event",
    "outlink",
    "download",
    "goal",
    "order",
    "cart",
    "ping",
    "product_view",
)
"""Every kind :func:`classify` can return."""
ACTION_KINDS: frozenset[str] = frozenset({"pageview", "search", "event", "outlink", "download", "product_view"})
"""Kinds Matomo counts in ``nb_actions`` (goals, ecommerce and pings are not actions)."""

# --- parameter groups ----------------------------------------------------------------------------
OVERRIDE_PARAMS: tuple[str, ...] = ("cip", "country", "region", "city", "lat", "long")
"""Visitor overrides that need a valid ``token_auth``."""
EVENT_PARAMS: tuple[str, ...] = ("e_c", "e_a", "e_n", "e_v")
MONEY_PARAMS: tuple[str, ...] = ("revenue", "ec_st", "ec_tx", "ec_sh", "ec_dt")
CAMPAIGN_PARAMS: tuple[str, ...] = ("_rcn", "mtm_campaign", "pk_campaign")
"""Campaign name parameters, read from the hit and from the query string of its ``url``."""
CDT_MAX_AGE = timedelta(hours=24)
"""A ``cdt`` older than this needs a valid token (Matomo's default setting)."""

BOT_MARKERS: tuple[str, ...] = (
    "bot",
    "crawler",
    "spider",
    "slurp",
    "googlebot",
    "bingbot",
    "yandex",
    "baiduspider",
    "duckduckbot",
    "facebookexternalhit",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "curl/",
    "wget/",
    "lighthouse",
    "pingdom",
    "uptimerobot",
)
"""Lower-case substrings marking a bot user agent (a small subset of Matomo's DeviceDetector)."""

# --- reason codes --------------------------------------------------------------------------------
# Ignored: answered 200/204 like a stored hit, but not recorded (Matomo drops them silently).
NO_REC = "no_rec"
BOT = "bot"
PING_WITHOUT_VISIT = "ping_without_visit"
# Invalid: answered with an error status.
MISSING_IDSITE = "missing_idsite"
UNKNOWN_SITE = "unknown_site"
BAD_CID = "bad_cid"
EVENT_INCOMPLETE = "event_incomplete"
CA_UNCLAIMED = "ca_unclaimed"
"""``ca=1`` (a plugin's custom action) that no action type claims: Matomo's ``Action::factory``
throws "Request was meant for a plugin which is no longer activated" (core/Tracker/Action.php)."""
OVERRIDE_NEEDS_TOKEN = "override_needs_token"
BAD_CDT = "bad_cdt"
CDT_NEEDS_TOKEN = "cdt_needs_token"
UNKNOWN_GOAL = "unknown_goal"
BAD_MONEY = "bad_money"
REVENUE_MISMATCH = "revenue_mismatch"
BAD_EC_ITEMS = "bad_ec_items"
DUPLICATE_EC_ID = "duplicate_ec_id"
"""Stateful (needs every previous order of the site): enforced by the receiver, not check_hit."""

IGNORED_REASONS: frozenset[str] = frozenset({NO_REC, BOT, PING_WITHOUT_VISIT})
INVALID_REASONS: frozenset[str] = frozenset(
    {
        MISSING_IDSITE,
        UNKNOWN_SITE,
        BAD_CID,
        EVENT_INCOMPLETE,
        CA_UNCLAIMED,
        OVERRIDE_NEEDS_TOKEN,
        BAD_CDT,
        CDT_NEEDS_TOKEN,
        UNKNOWN_GOAL,
        BAD_MONEY,
        REVENUE_MISMATCH,
        BAD_EC_ITEMS,
        DUPLICATE_EC_ID,
    }
)
REASONS: frozenset[str] = IGNORED_REASONS | INVALID_REASONS
BULK_FATAL_REASONS: frozenset[str] = frozenset({CA_UNCLAIMED})
"""Refusals that roll back a whole bulk request. Matomo's bulk handler skips an item (counted in
``invalid``, listed in ``invalid_indices``) only for ``UnexpectedWebsiteFoundException`` and
``InvalidRequestParameterException`` (unknown site, bad ``cid``, ``cip``/old ``cdt`` without a
token, unknown goal...); any other exception, such as the plain ``Exception`` of an unclaimed
``ca=1``, aborts the batch's transaction (plugins/BulkTracking/Tracker/Handler.php). Every other
invalid reason here is skipped like an invalid parameter."""

_CDT_FORMAT = "%Y-%m-%d %H:%M:%S"
_UNIX_RE = re.compile(r"\A\d+(?:\.\d+)?\Z")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Rejection:
    """Why a hit is not recorded: a reason code, a short message and the HTTP status to answer.

    ``ignored`` rejections (status 200) are Matomo's silent drops: the client sees success, the
    hit is neither a visit/action nor an invalid hit. Messages never contain parameter values.
    """

    reason: str
    message: str
    status: int = 400

    @property
    def ignored(self) -> bool:
        """True for silent drops (answered like a stored hit), False for errors."""
        return self.status < 400


def _reject(reason: str, message: str) -> Rejection:
    return Rejection(reason, message, 400)


# --- classification ------------------------------------------------------------------------------
def classify(params: Mapping[str, str]) -> str:
    """Return the kind of a hit, one of :data:`HIT_KINDS`.

    Precedence, first match wins (it mirrors how Matomo processes a request):

    1. ``ping=1`` → ``ping`` (a heartbeat, handled before any action).
    2. ``idgoal`` present → a conversion, not an action: ``idgoal=0`` with ``ec_id`` →
       ``order``, ``idgoal=0`` without ``ec_id`` → ``cart``, ``idgoal>0`` (or unparsable) →
       ``goal``.
    3. any ``e_`` param (``e_c``, ``e_a``, ``e_n``, ``e_v``) → ``event``.
    4. ``search`` → ``search`` (site search).
    5. ``link`` → ``outlink``; then ``download`` → ``download``.
    6. ``_pks``/``_pkp``/``_pkn``/``_pkc`` → ``product_view`` (a page view carrying product info).
    7. otherwise → ``pageview``.
    """
    if params.get("ping") == "1":
        return "ping"
    idgoal = params.get("idgoal")
    if idgoal is not None and idgoal != "":
        if idgoal.strip() == "0":
            return "order" if params.get("ec_id") else "cart"
        return "goal"
    if "e_c" in params or "e_a" in params or "e_n" in params or "e_v" in params:
        return "event"
    if params.get("search"):
        return "search"
    if params.get("link"):
        return "outlink"
    if params.get("download"):
        return "download"
    if "_pks" in params or "_pkp" in params or "_pkn" in params or "_pkc" in params:
        return "product_view"
    return "pageview"


def bot_user_agent(ua: str) -> bool:
    """True when ``ua`` looks like a bot (Matomo drops such hits silently unless ``bots=1``)."""
    if not ua:
        return False
    low = ua.lower()
    return any(marker in low for marker in BOT_MARKERS)


def instance_path(tracker_url: str) -> str:
    """The path of a Matomo instance from its tracker URL: ``http://h/dev/matomo.php`` -> ``/dev``.

    Its Reporting API is ``<instance>/index.php``; the receiver serves instances by this path.
    """
    path = urlsplit(tracker_url).path
    base = path.rsplit("/", 1)[0] if path.endswith(".php") else path
    return base.rstrip("/")


def campaign_of(params: Mapping[str, str]) -> str:
    """The campaign name of a hit: a campaign param of the hit, else one in its ``url``'s query."""
    for key in CAMPAIGN_PARAMS:
        value = params.get(key)
        if value:
            return value.strip().lower()
    url = params.get("url", "")
    if "campaign=" not in url and "_rcn=" not in url:
        return ""
    query = dict(parse_qsl(urlsplit(url).query))
    for key in CAMPAIGN_PARAMS:
        if query.get(key):
            return query[key].strip().lower()
    return ""


# --- time ----------------------------------------------------------------------------------------
def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_cdt(value: str, now_utc: datetime) -> datetime:
    """Parse a ``cdt`` value into an aware UTC datetime.

    Accepts ``YYYY-MM-DD HH:MM:SS`` (UTC) and unix seconds (optionally with a fraction). A time
    in the future is replaced by ``now_utc`` as Matomo does. Raises ``ValueError`` otherwise.
    """
    now = _as_utc(now_utc)
    text = value.strip()
    if _UNIX_RE.match(text):
        moment = datetime.fromtimestamp(float(text), tz=timezone.utc)
    else:
        moment = datetime.strptime(text, _CDT_FORMAT).replace(tzinfo=timezone.utc)
    return now if moment > now else moment


# --- rules ---------------------------------------------------------------------------------------
def _check_site(params: Mapping[str, str], site_exists: bool) -> Rejection | None:
    idsite = params.get("idsite", "").strip()
    if not idsite.isdigit() or int(idsite) <= 0:
        return _reject(MISSING_IDSITE, "idsite is missing or not a positive integer")
    if not site_exists:
        return _reject(UNKNOWN_SITE, "an unexpected website was found in the request")
    return None


def _check_cid(params: Mapping[str, str]) -> Rejection | None:
    cid = params.get("cid")
    if cid and not CID_RE.match(cid):
        return _reject(BAD_CID, "cid must be exactly 16 hexadecimal characters")
    return None


def _check_event(params: Mapping[str, str]) -> Rejection | None:
    if not any(key in params for key in EVENT_PARAMS):
        return None
    if params.get("e_c", "").strip() and params.get("e_a", "").strip():
        return None
    return _reject(EVENT_INCOMPLETE, "events need both e_c (category) and e_a (action)")


def custom_action_claimed(params: Mapping[str, str]) -> bool:
    """Whether an action type claims a ``ca=1`` request, as each one's ``shouldHandle`` decides.

    Claimants in a core Matomo 5: events (non-empty ``e_c`` and ``e_a``, plugins/Events/Actions/
    ActionEvent.php), outlinks (``link``) and downloads (``download``, plugins/Actions/Actions/
    ActionClickUrl.php, ActionDownloadUrl.php), content (``c_n``, plugins/Contents/Actions/
    ActionContent.php) and site search (``search``, plugins/Actions/Actions/ActionSiteSearch.php,
    site search assumed on). Pageviews never do (``ActionPageview::shouldHandle``), and goal
    conversions, ecommerce and pings have no action class, so with ``ca=1`` they are refused.
    """
    if params.get("e_c", "").strip() and params.get("e_a", "").strip():
        return True
    return bool(params.get("link") or params.get("download") or params.get("c_n") or params.get("search"))


def _check_custom_action(params: Mapping[str, str]) -> Rejection | None:
    if params.get("ca", "").strip() in ("", "0") or custom_action_claimed(params):  # PHP's empty()
        return None
    return _reject(
        CA_UNCLAIMED,
        "ca=1 but no action type claims the request (only events, outlinks, downloads, content, site search)",
    )


def _token_problem(token_given: bool) -> str:
    return "token_auth is not valid for this site" if token_given else "token_auth is required"


def _check_overrides(params: Mapping[str, str], token_valid: bool, token_given: bool) -> Rejection | None:
    if token_valid:
        return None
    for key in OVERRIDE_PARAMS:
        if params.get(key):
            return _reject(OVERRIDE_NEEDS_TOKEN, f"{key} needs a valid token: {_token_problem(token_given)}")
    return None


def _check_cdt(params: Mapping[str, str], token_valid: bool, token_given: bool, now_utc: datetime) -> Rejection | None:
    value = params.get("cdt")
    if not value:
        return None
    try:
        moment = parse_cdt(value, now_utc)
    except (ValueError, OverflowError, OSError):
        return _reject(BAD_CDT, "cdt must be 'YYYY-MM-DD HH:MM:SS' (UTC) or unix seconds")
    if not token_valid and _as_utc(now_utc) - moment > CDT_MAX_AGE:
        return _reject(CDT_NEEDS_TOKEN, f"cdt older than 24 hours: {_token_problem(token_given)}")
    return None


def _check_goal(params: Mapping[str, str], goal_ids: Collection[int] | None) -> Rejection | None:
    idgoal = params.get("idgoal")
    if idgoal is None or idgoal == "":
        return None
    text = idgoal.strip()
    if not text.isdigit():
        return _reject(UNKNOWN_GOAL, "idgoal must be a non-negative integer")
    goal = int(text)
    if goal > 0 and goal_ids is not None and goal not in goal_ids:
        return _reject(UNKNOWN_GOAL, "idgoal is not a goal of this site")
    return None


def _money(params: Mapping[str, str]) -> dict[str, Decimal] | Rejection:
    amounts: dict[str, Decimal] = {}
    for key in MONEY_PARAMS:
        value = params.get(key)
        if value is None or value == "":
            continue
        if not MONEY_RE.match(value.strip()):
            return _reject(BAD_MONEY, f"{key} must be a number with at most 2 decimals")
        amounts[key] = Decimal(value.strip())
    return amounts


def _check_money(params: Mapping[str, str]) -> Rejection | None:
    amounts = _money(params)
    if isinstance(amounts, Rejection):
        return amounts
    if len(amounts) < len(MONEY_PARAMS):
        return None
    expected = amounts["ec_st"] + amounts["ec_tx"] + amounts["ec_sh"] - amounts["ec_dt"]
    if abs(amounts["revenue"] - expected) > _CENT:
        return _reject(REVENUE_MISMATCH, "revenue must equal ec_st + ec_tx + ec_sh - ec_dt")
    return None


def _number(value: object) -> Decimal | None:
    """A finite number from a JSON value (number or numeric string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _valid_item(item: object) -> bool:
    if not isinstance(item, list) or len(item) != 5:
        return False
    sku, name, category, price, qty = item
    if not isinstance(sku, str) or not sku or not isinstance(name, str):
        return False
    categories = category if isinstance(category, list) else [category]
    if not all(isinstance(c, str) for c in categories):
        return False
    price_value, qty_value = _number(price), _number(qty)
    if price_value is None or qty_value is None or price_value < 0:
        return False
    return qty_value >= 0 and qty_value == qty_value.to_integral_value()


def _check_items(params: Mapping[str, str]) -> Rejection | None:
    raw = params.get("ec_items")
    if raw is None or raw == "":
        return None
    try:
        items = json.loads(raw)
    except ValueError:
        return _reject(BAD_EC_ITEMS, "ec_items must be JSON")
    if not isinstance(items, list) or not all(_valid_item(item) for item in items):
        return _reject(BAD_EC_ITEMS, "ec_items must be a JSON list of [sku, name, category, price, quantity]")
    return None


def tracker_answer_problem(status: int, content_type: str, length: int) -> str | None:
    """Why a 2xx answer to a single hit is not Matomo's tracker answering, or None when it is.

    Matomo answers ``send_image=0`` with 204 and no body, and otherwise a 43-byte GIF
    (core/Tracker/Response.php ``outputResponse``; every 2xx of the recorded conformance cases is
    one of those). A 200 HTML page is a wrong tracker URL or a login portal in front of Matomo:
    nothing was tracked, so it must count as a failure, never as a stored hit.
    """
    if status == 204 or not 200 <= status < 300:
        return None
    kind = (content_type or "").split(";")[0].strip().lower()
    if length == 0 or kind.startswith("image/"):
        return None
    shown = kind or "no content type"
    return (
        f"HTTP {status} {shown} ({length} bytes) is not a Matomo tracker answer (204, or a GIF): "
        "a wrong tracker URL, or a login page in front of Matomo?"
    )


def check_hit(
    params: Mapping[str, str],
    *,
    site_exists: bool,
    token_valid: bool,
    token_given: bool,
    goal_ids: Collection[int] | None,
    now_utc: datetime,
) -> Rejection | None:
    """Check one hit against every stateless receiver rule; ``None`` means it can be recorded.

    ``params`` is the merged query string and form body. ``site_exists`` and ``token_valid`` are
    the caller's knowledge of the target (a token is valid when it has write access to the site);
    ``token_given`` only refines the message. ``goal_ids=None`` skips the goal id check.

    Order: no ``rec`` (ignored, status 200; any value but "" or "0" counts as set, like PHP's
    ``empty()``) → idsite → cid → overrides → cdt → ``ca=1`` unclaimed (:data:`CA_UNCLAIMED`) →
    events → goal → money → items. The unclaimed ``ca=1`` comes after the checks Matomo makes
    before its actions run (so a bulk item with a bad ``cid`` and an unclaimed ``ca`` is skipped,
    as in Matomo, not fatal). Every error is a 400; :data:`BULK_FATAL_REASONS` says which roll a
    bulk request back. An incomplete event *without* ``ca=1`` is refused too
    (:data:`EVENT_INCOMPLETE`), stricter than Matomo, which would store it as a pageview. Left to
    the receiver (stateful or header-based): duplicate ``ec_id`` (:data:`DUPLICATE_EC_ID`), bots
    (:func:`bot_user_agent`), pings without an active visit.
    """
    if params.get("rec", "").strip() in ("", "0"):
        return Rejection(NO_REC, "rec=1 is missing: request ignored", 200)
    return (
        _check_site(params, site_exists)
        or _check_cid(params)
        or _check_overrides(params, token_valid, token_given)
        or _check_cdt(params, token_valid, token_given, now_utc)
        or _check_custom_action(params)
        or _check_event(params)
        or _check_goal(params, goal_ids)
        or _check_money(params)
        or _check_items(params)
    )
