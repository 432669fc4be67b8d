"""The Reporting API subset (``<prefix>/index.php?module=API``) that preflight and verify call.

``API.getMatomoVersion``, ``SitesManager.getSiteFromId``, the ``SitesManager.getSites[Id]With...Access``
lists by the token's role, the day reports (``period=day``, site-local days): the metric reports
``VisitsSummary.get``, ``Actions.get``, ``Goals.get``, ``VisitFrequency.get`` (:mod:`.reports`) and
the table reports the profiler reads (``Actions.getPageUrls``... :mod:`.page_reports`,
``Referrers.*``, ``DevicesDetection.*``, ``VisitTime.*``, ``UserLanguage.getLanguageCode``,
``UserCountry.getCountry``: :mod:`.dimensions`; ``Events.getCategory|getAction|getName``,
``Goals.getItems*``), ``Goals.getGoals``; ``Live.getLastVisitsDetails`` (the site's latest visits,
newest first, with a few of Matomo's fields), ``CoreAdminHome.getTrackingFailures`` and
``API.getBulkRequest``, answered from what the tracker stored. ``date=D1,D2`` answers
``{"D1": ..., "D2": ...}``, one entry per site-local day; ``filter_limit`` (default 100, ``-1``
all) cuts each day's table. Like Matomo, every method needs a known token of some role, and errors
are JSON ``{"result": "error", ...}`` with status 200. No answer ever echoes a request parameter
(it may hold a token).

``API.getBulkRequest`` as Matomo 5 does it (plugins/API/API.php ``getBulkRequest``): ``urls[0]``,
``urls[1]``... (or ``urls[]`` repeated) are query strings, URL-decoded once more and split on ``&``;
each is merged with the outer request's other parameters, its own values winning
(core/API/Request.php ``getRequestArrayFromString``: ``$requestParsed + $defaultRequest``), so the
outer ``token_auth`` applies; one naming ``API.getBulkRequest``, or no method (it then inherits the
outer one), is skipped. The answer lists each sub-answer in order, an error object in place of a
failing one; the bulk call itself checks no access, each sub-request does as a direct call.

Example::

    params = {"module": "API", "method": "VisitsSummary.get", "idSite": "1", "token_auth": "dev-token"}
    answer(state, params, time.time())
    # {"nb_uniq_visitors": 2, "nb_visits": 2, "nb_actions": 3, ..., "bounce_rate": "50%", ...}
    answer(state, {**params, "method": "Referrers.getReferrerType", "date": "2026-12-01,2026-12-02"}, time.time())
    # {"2026-12-01": [], "2026-12-02": [{"label": "Direct Entry", ..., "segment": "referrerType==direct"}]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from trafficinator_locust.receiver import page_reports, reports
from trafficinator_locust.receiver.dimensions import DIMENSION_METHODS, dimension_rows
from trafficinator_locust.receiver.instances import ROLES, ReceiverSite
from trafficinator_locust.receiver.store import InstanceState, SiteState
from trafficinator_locust.receiver.wsgi import (
    TEXT,
    Environ,
    StartResponse,
    get_or_post_body,
    php_array,
    request_params,
    respond,
    respond_json,
)

__all__ = ["MATOMO_VERSION", "answer", "handle"]

MATOMO_VERSION = "5.2.0"
_VIEW_ACCESS = "You can't access this resource as it requires 'view' access"
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
_BULK = "API.getBulkRequest"
DayReport = Callable[[SiteState, date, Mapping[str, str]], Any]


def _flat(params: Mapping[str, str]) -> bool:
    return (params.get("flat") or "").strip() in ("1", "true")


def _events(kind: str) -> DayReport:
    return lambda site, day, params: [
        reports.event_row(label, row) for label, row in page_reports.event_rows(site, day, kind)
    ]


def _category(site: SiteState, day: date, params: Mapping[str, str]) -> Any:
    """``Events.getCategory``; with ``flat=1`` its rows by (category, action): "Category - Action"."""
    if _flat(params) and (params.get("secondaryDimension") or "eventAction") == "eventAction":
        return _events("category_action")(site, day, params)
    return reports.events_by_category(site, day, -1)


_METRIC_REPORTS: dict[str, DayReport] = {
    "VisitsSummary.get": lambda site, day, params: reports.visits_summary(site, day),
    "Actions.get": lambda site, day, params: reports.actions(site, day),
    "Goals.get": lambda site, day, params: reports.goals(site, day, params.get("idGoal", "").strip()),
    "VisitFrequency.get": lambda site, day, params: reports.visit_frequency(site, day),
}
"""The metric reports of one site and site-local day, by method (an object of metrics)."""
_TABLE_REPORTS: dict[str, DayReport] = {
    "Events.getCategory": _category,
    "Events.getAction": _events("action"),
    "Events.getName": _events("name"),
    "Actions.getPageUrls": lambda site, day, params: page_reports.page_url_rows(site, day, _flat(params)),
    "Actions.getPageTitles": lambda site, day, params: page_reports.page_title_rows(site, day),
    "Actions.getOutlinks": lambda site, day, params: page_reports.link_rows(site, day, "outlink", _flat(params)),
    "Actions.getDownloads": lambda site, day, params: page_reports.link_rows(site, day, "download", _flat(params)),
    "Actions.getSiteSearchKeywords": lambda site, day, params: page_reports.keyword_rows(site, day, False),
    "Actions.getSiteSearchNoResultKeywords": lambda site, day, params: page_reports.keyword_rows(site, day, True),
    "Goals.getItemsSku": lambda site, day, params: page_reports.item_rows(site, day, "sku"),
    "Goals.getItemsName": lambda site, day, params: page_reports.item_rows(site, day, "name"),
    "Goals.getItemsCategory": lambda site, day, params: page_reports.item_rows(site, day, "category"),
    **{
        method: (lambda name: lambda site, day, params: dimension_rows(site, day, name))(method)
        for method in DIMENSION_METHODS
    },
}
"""The table reports of one site and site-local day, by method (a list of rows, cut at ``filter_limit``)."""
MAX_RANGE_DAYS = 1000
"""The longest ``date=D1,D2`` range the receiver answers (its answer is one entry per day)."""


def handle(
    state: InstanceState | None, environ: Environ, start_response: StartResponse, clock: Callable[[], float]
) -> list[bytes]:
    """The WSGI handler of ``<prefix>/index.php`` for the instance ``state`` (GET or form POST)."""
    assert state is not None
    body = get_or_post_body(environ)
    if body is None:
        return respond(start_response, 405, b"use GET or POST", TEXT)
    params = request_params(environ, body)
    urls = php_array(environ, body, "urls") if params.get("method") == _BULK else None
    return respond_json(start_response, answer(state, params, clock(), urls))


def answer(state: InstanceState, params: Mapping[str, str], now: float, urls: Sequence[str] | None = None) -> Any:
    """The JSON answer of one Reporting API call (errors are answered with status 200).

    Every method needs a known token (Matomo's ``API.getMatomoVersion`` too: some view access), but
    ``API.getBulkRequest``, whose sub-requests each need one. Its ``urls`` are read from ``params``
    (``urls[0]``... in order) unless given (the WSGI handler reads ``urls[]`` repeated too).
    """
    if params.get("module") != "API":
        return _api_error("The sink only serves module=API.")
    if params.get("method") == _BULK:
        return _bulk(state, params, now, _urls_in(params) if urls is None else urls)
    return _call(state, params, now)


def _call(state: InstanceState, params: Mapping[str, str], now: float) -> Any:
    """One API method's answer, its token checked (a direct call or a bulk request's sub-request)."""
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
    if method in _METRIC_REPORTS:
        return _day_report(state, params, now, _METRIC_REPORTS[method], table=False)
    if method in _TABLE_REPORTS:
        return _day_report(state, params, now, _TABLE_REPORTS[method], table=True)
    if method == "Goals.getGoals":
        site = _api_site(state, params)
        return site if isinstance(site, dict) else page_reports.goal_definitions(site)
    if method == "Live.getLastVisitsDetails":
        return _last_visits(state, params)
    if method == "CoreAdminHome.getTrackingFailures":
        return _tracking_failures(state)
    module = method.split(".", 1)[0]
    return _api_error(
        f"The method '{method.split('.', 1)[-1]}' does not exist or is not available in the module '{module}'."
    )


def _bulk(state: InstanceState, params: Mapping[str, str], now: float, urls: Sequence[str]) -> list[Any]:
    """``API.getBulkRequest``: each sub-request's answer in order (see the module docstring)."""
    outer = {key: value for key, value in params.items() if not key.startswith("urls[")}
    answers: list[Any] = []
    for url in urls:
        merged = {**outer, **_sub_request(url), "format": "json"}  # Matomo appends &format=json
        if merged.get("method") == _BULK:  # nested, or no method of its own: skipped
            continue
        answers.append(_call(state, merged, now))
    return answers


def _urls_in(params: Mapping[str, str]) -> list[str]:
    """The ``urls[...]`` parameters of a request, in their order."""
    return [value for key, value in params.items() if key.startswith("urls[") and key.endswith("]")]


def _sub_request(url: str) -> dict[str, str]:
    """A bulk sub-request's parameters: URL-decoded once (``urldecode``), then split on ``&`` and
    the first ``=`` without decoding again (core/UrlHelper.php ``getArrayFromQueryString``); values
    trimmed as ``getRequestArrayFromString`` does."""
    params: dict[str, str] = {}
    text = unquote_plus(url).strip().replace("\n", "").replace("\t", "")
    for pair in text.removeprefix("?").split("&"):
        name, _, value = pair.partition("=")
        if name:
            params[name] = value.strip()
    return params


def _api_error(message: str) -> dict[str, str]:
    return {"result": "error", "message": message}


def _access_error(params: Mapping[str, str]) -> dict[str, str]:
    site = params.get("idSite") or params.get("idsite")
    numbered = bool(site) and site.isdigit()
    where = f"for the website id = {site}." if numbered else "for at least one website."
    return _api_error(f"{_VIEW_ACCESS} {where}")


def _site_info(site: ReceiverSite) -> dict[str, Any]:
    return {
        "idsite": str(site.site_id),
        "name": site.name or f"Site {site.site_id}",
        "timezone": site.timezone,
        "currency": site.currency,
        "ecommerce": 1 if site.ecommerce else 0,
    }


def _api_site(state: InstanceState, params: Mapping[str, str]) -> SiteState | dict[str, str]:
    raw = (params.get("idSite") or params.get("idsite") or "").strip()
    site = state.sites.get(int(raw)) if raw.isdigit() else None
    if site is None:
        return _api_error(f"An unexpected website was found in the request: website id was set to '{raw}' .")
    return site


def _api_date(site: SiteState, value: str, now: float) -> date | None:
    today = datetime.fromtimestamp(now, site.zone).date()
    if value in ("", "today"):
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _day_report(state: InstanceState, params: Mapping[str, str], now: float, report: DayReport, *, table: bool) -> Any:
    """A day report of one site (``period=day``; ``date`` YYYY-MM-DD, today or yesterday in the
    site's zone, or ``D1,D2``: then ``{"D1": answer, ...}`` for every day of the range, as Matomo
    answers a multi-period request, core/DataTable/Renderer/Json.php of a DataTable\\Map, where a
    metric report of a day without visits is ``[]``). Table reports are cut at ``filter_limit``."""
    site = _api_site(state, params)
    if isinstance(site, dict):
        return site
    if params.get("period", "day") != "day":
        return _api_error("The sink supports period=day only.")
    raw = params.get("date", "").strip()
    if "," in raw:
        first, _, last = raw.partition(",")
        start, end = _api_date(site, first.strip(), now), _api_date(site, last.strip(), now)
        if start is None or end is None or end < start or (end - start).days >= MAX_RANGE_DAYS:
            return _api_error(
                f"date=D1,D2 must be two days (YYYY-MM-DD, today, yesterday), D1 <= D2, at most {MAX_RANGE_DAYS} days."
            )
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        return {day.isoformat(): _one_day(site, day, params, report, table, in_range=True) for day in days}
    day = _api_date(site, raw, now)
    if day is None:
        return _api_error("date must be YYYY-MM-DD, today or yesterday (or D1,D2).")
    return _one_day(site, day, params, report, table, in_range=False)


def _one_day(
    site: SiteState, day: date, params: Mapping[str, str], report: DayReport, table: bool, *, in_range: bool
) -> Any:
    if not table:
        if in_range and not site.visits.on(day).visits:
            return []
        return report(site, day, params)
    rows = report(site, day, params)
    limit = _limit(params)
    return rows[:limit] if limit >= 0 else rows


def _limit(params: Mapping[str, str], default: int = 100) -> int:
    """``filter_limit``: Matomo's ``API_datatable_default_limit`` (100) unless given; -1 for all."""
    raw = (params.get("filter_limit") or "").strip()
    return int(raw) if raw.lstrip("-").isdigit() else default


def _last_visits(state: InstanceState, params: Mapping[str, str]) -> Any:
    """The site's latest visits (at most ``filter_limit``, default 100, and what the receiver
    keeps: ``visits.RECENT_VISITS``), newest first, with a subset of Matomo's Live fields."""
    site = _api_site(state, params)
    if isinstance(site, dict):
        return site
    limit = _limit(params)
    visits = list(reversed(site.visits.recent))
    if limit >= 0:
        visits = visits[:limit]
    return [
        {
            "idVisit": visit.idvisit,
            "visitorId": visit.visitor_id,
            "userId": visit.user_id or None,
            "visitCount": visit.visit_count,
            "visitorType": visit.visitor_type,
            "actions": visit.actions,
            "referrerType": visit.referrer_type,
            "referrerName": visit.referrer_name,
            "deviceType": visit.device_type,
            "firstActionTimestamp": int(visit.first_ts),
            "lastActionTimestamp": int(visit.last_ts),
            "serverDate": visit.day.isoformat(),
        }
        for visit in visits
    ]


def _tracking_failures(state: InstanceState) -> list[dict[str, Any]]:
    """Rejected (invalid) hits per site and reason, shaped like Matomo's tracking failures.

    Matomo keeps one row per site and problem; the receiver adds ``count``. Request URLs are left
    empty: the receiver never echoes parameters (they may hold a token). Silent drops are not failures.
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
