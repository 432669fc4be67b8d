"""The Matomo Reporting API client of ``verify``, ``/api/verify`` and ``validate --online``.

Why one client: all three ask a target's ``<instance>/index.php`` the same way (a form POST with
``token_auth`` in the body, never in a URL a proxy or a log could keep), read Matomo's error answer
``{"result": "error", "message": ...}`` the same way, and must never show the token, even when a
server quotes it back. Standard library only (:mod:`.tracker_http`)::

    api = ReportingApi(target, calls_limiter(60))
    visits, actions = api.visits_summary(target.site_id, "2025-03-14")
    figures = api.day_reports(target.site_id, "2025-03-14", goals=["2"])  # {"visits": .., "goal:2:revenue": ..}
    version = api.call("API.getMatomoVersion")  # raises ReportingApiError when it fails

:meth:`ReportingApi.call` raises :class:`~trafficinator_locust.core.errors.ReportingApiError` for
every failure it can word (network, HTTP status, no JSON, Matomo's error); a caller that words its
own failures (preflight) reads the plain :meth:`ReportingApi.answer` instead.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from trafficinator_locust.core.config import Target
from trafficinator_locust.core.errors import ReportingApiError
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.core.reports import cents
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.ops.tracker_http import FORM_CONTENT_TYPE, Endpoint, display_url

__all__ = ["ApiAnswer", "ApiSite", "ReportingApi", "api_url", "matomo_error"]

USER_AGENT = "trafficinator"
MESSAGE_LIMIT = 300


def api_url(tracker_url: str) -> str:
    """``https://x/matomo/matomo.php`` -> ``https://x/matomo/index.php`` (the Reporting API)."""
    parts = urlsplit(tracker_url)
    return urlunsplit((parts.scheme, parts.netloc, instance_path(tracker_url) + "/index.php", "", ""))


def matomo_error(data: Any) -> str | None:
    """The message of Matomo's error answer ``{"result": "error", "message": ...}``, else None."""
    if isinstance(data, dict) and data.get("result") == "error":
        return str(data.get("message", "")) or "error"
    return None


@dataclass(frozen=True)
class ApiSite:
    """A Matomo given on the command line rather than by a config target (``trafficinator profile --url``):
    ``url`` is its tracker URL, its base URL or its ``index.php``; the token is never printed."""

    url: str
    report_token: str | None


@dataclass(frozen=True)
class ApiAnswer:
    """One Reporting API answer: HTTP status, the decoded JSON (``None`` when the body is not JSON:
    ``is_json`` tells a JSON ``null`` apart) and Matomo's error message, token masked."""

    status: int
    data: Any
    is_json: bool
    error: str | None


class ReportingApi:
    """POSTs Reporting API calls for one target, the token in the body, paced by ``limiter``.

    The token is the target's ``report_token`` (``report_token_auth``, else ``token_auth``).
    ``sleep`` is how the limiter waits (``/api/verify`` refuses waits past its deadline);
    ``context`` is the TLS context, ``max_body`` caps what is read of an answer.

    Example::

        api = ReportingApi(target, TokenBucket(1.0), timeout=30)
        failures = api.tracking_failures(target.site_id)
    """

    def __init__(
        self,
        target: Target | ApiSite,
        limiter: TokenBucket | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], Any] = time.sleep,
        *,
        user_agent: str = USER_AGENT,
        context: ssl.SSLContext | None = None,
        max_body: int | None = None,
        token: str | None = None,
    ):
        self.url = api_url(target.url)
        self._endpoint = Endpoint(self.url, context=context)
        self._token = token or target.report_token or ""  # token: another of the target's (preflight's write check)
        self._limiter = limiter
        self._timeout = timeout
        self._sleep = sleep
        self._headers = {"User-Agent": user_agent, "Accept": "*/*", "Content-Type": FORM_CONTENT_TYPE}
        self._max_body = max_body

    def mask(self, text: str) -> str:
        """``text`` with this client's token (and any ``token_auth=...``) masked."""
        return mask_secrets(text, [self._token] if self._token else [])

    def answer(
        self, method: str, params: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> ApiAnswer:
        """One call as Matomo answered it, whatever the status; network failures propagate as
        ``OSError`` / ``http.client.HTTPException`` (see :meth:`Endpoint.exchange`)."""
        if self._limiter is not None:
            self._limiter.acquire(1, sleep=self._sleep)
        form = {"module": "API", "format": "JSON", "method": method, **(params or {})}
        if self._token:
            form["token_auth"] = self._token
        answer = self._endpoint.exchange(
            "POST",
            urlencode(form).encode(),
            headers=self._headers,
            timeout=self._timeout if timeout is None else timeout,
            max_body=self._max_body,
        )
        try:
            data, is_json = json.loads(answer.body), True
        except ValueError:
            data, is_json = None, False
        error = matomo_error(data)
        return ApiAnswer(answer.status, data, is_json, None if error is None else self.mask(error))

    def call(self, method: str, **params: str) -> Any:
        """The decoded answer of a successful call; :class:`ReportingApiError` otherwise.

        A server that speaks no HTTP raises ``http.client.HTTPException`` (not an API failure:
        the caller decides what to say).
        """
        where = display_url(self.url)
        try:
            answer = self.answer(method, params)
        except OSError as exc:
            raise ReportingApiError(f"{method}: cannot reach {where} ({exc})") from None
        if not 200 <= answer.status < 300:
            raise ReportingApiError(f"{method}: HTTP {answer.status} from {where}")
        if not answer.is_json:
            raise ReportingApiError(f"{method}: the answer of {where} is not JSON (is it a Matomo?)")
        if answer.error is not None:
            raise ReportingApiError(f"{method}: Matomo says: {answer.error[:MESSAGE_LIMIT]}")
        return answer.data

    def visits_summary(self, site_id: int, day: str) -> tuple[int, int]:
        """Stored visits and actions of one day (Matomo answers ``[]`` for a day without data)."""
        data = self.call("VisitsSummary.get", idSite=str(site_id), period="day", date=day)
        figures = _figures("VisitsSummary.get", data, day, {"nb_visits": "visits", "nb_actions": "actions"})
        return figures["visits"], figures["actions"]

    def day_reports(self, site_id: int, day: str, goals: Sequence[str]) -> dict[str, int]:
        """Every report ``verify`` compares for one site and day, in one ``API.getBulkRequest`` call.

        Keys and units are :mod:`~trafficinator_locust.core.reports`' (money in cents): visits,
        actions, pageviews, searches, outlinks, downloads, events, returning_visits, orders, revenue,
        abandoned_carts and ``goal:<id>:conversions`` / ``goal:<id>:revenue`` for each of ``goals``.
        One call, not eight: Matomo Cloud limits API calls per minute (plugins/API/API.php getBulkRequest).
        """
        base = {"idSite": str(site_id), "period": "day", "date": day}
        wanted: list[tuple[str, dict[str, str], dict[str, str]]] = [
            ("VisitsSummary.get", {}, {"nb_visits": "visits", "nb_actions": "actions"}),
            (
                "Actions.get",
                {},
                {"nb_pageviews": "pageviews", "nb_searches": "searches", "nb_outlinks": "outlinks"}
                | {"nb_downloads": "downloads"},
            ),
            ("VisitFrequency.get", {}, {"nb_visits_returning": "returning_visits"}),
            ("Goals.get", {"idGoal": "ecommerceOrder"}, {"nb_conversions": "orders", "revenue": "revenue"}),
            ("Goals.get", {"idGoal": "ecommerceAbandonedCart"}, {"nb_conversions": "abandoned_carts"}),
        ]
        for goal in goals:
            wanted.append(
                (
                    "Goals.get",
                    {"idGoal": goal},
                    {"nb_conversions": f"goal:{goal}:conversions", "revenue": f"goal:{goal}:revenue"},
                )
            )
        urls = [urlencode({"method": method, **base, **extra}) for method, extra, _ in wanted]
        urls.append(urlencode({"method": "Events.getCategory", **base, "filter_limit": "-1"}))
        answers = self.call("API.getBulkRequest", **{f"urls[{i}]": url for i, url in enumerate(urls)})
        if not isinstance(answers, list) or len(answers) != len(urls):
            raise ReportingApiError(f"API.getBulkRequest: expected {len(urls)} answers for {day}")
        figures: dict[str, int] = {}
        for (method, extra, keys), data in zip(wanted, answers):
            label = method + "".join(f" {value}" for value in extra.values())
            figures.update(_figures(label, data, day, keys))
        figures["events"] = _events(answers[-1], day)
        return figures

    def bulk(self, calls: Sequence[tuple[str, Mapping[str, str]]]) -> list[Any]:
        """The answers of ``calls`` (method, parameters), asked in one ``API.getBulkRequest``, in order.

        A sub-answer may be Matomo's error object: the caller reads it (:func:`matomo_error`).
        ``trafficinator profile`` reads some 30 reports of a date range this way, in one call.
        """
        urls = [urlencode({"method": method, **params}) for method, params in calls]
        answers = self.call("API.getBulkRequest", **{f"urls[{i}]": url for i, url in enumerate(urls)})
        if not isinstance(answers, list) or len(answers) != len(urls):
            raise ReportingApiError(f"API.getBulkRequest: expected a list of {len(urls)} answers")
        return answers

    def goal_definitions(self, site_id: int) -> list[Mapping[str, Any]]:
        """The site's goals (``Goals.getGoals``: idgoal, name, revenue, allow_multiple, ...).

        Matomo answers an object keyed by goal id (a PHP array with keys); a list is read the same way.
        """
        data = self.call("Goals.getGoals", idSite=str(site_id))
        rows = data.values() if isinstance(data, dict) else data
        if not isinstance(rows, (list, type({}.values()))):
            raise ReportingApiError("Goals.getGoals: unexpected answer")
        return [row for row in rows if isinstance(row, dict)]

    def tracking_failures(self, site_id: int) -> list[Mapping[str, Any]]:
        """Matomo's tracking failures (``CoreAdminHome.getTrackingFailures``) of ``site_id``."""
        data = self.call("CoreAdminHome.getTrackingFailures")
        if not isinstance(data, list):
            raise ReportingApiError("CoreAdminHome.getTrackingFailures: unexpected answer")
        return [row for row in data if isinstance(row, dict) and str(row.get("idsite", "")) == str(site_id)]


def _figures(method: str, data: Any, day: str, keys: Mapping[str, str]) -> dict[str, int]:
    """Matomo's metrics ``keys`` of one answer, as ``core.reports`` figures (``revenue`` in cents).

    ``[]`` is Matomo's answer for a day without data; an error answer inside a bulk request raises.
    """
    error = matomo_error(data)
    if error is not None:
        raise ReportingApiError(f"{method}: Matomo says: {error[:MESSAGE_LIMIT]}")
    if isinstance(data, list) and not data:
        data = {}
    if not isinstance(data, dict):
        raise ReportingApiError(f"{method}: unexpected answer for {day}")
    figures = {}
    for metric, key in keys.items():
        value = data.get(metric, 0) or 0
        try:
            figures[key] = cents(str(value)) if metric == "revenue" else int(float(value))
        except (TypeError, ValueError, OverflowError):
            raise ReportingApiError(f"{method}: {metric} is not a number for {day}") from None
    return figures


def _events(data: Any, day: str) -> int:
    """The day's events: the sum of ``nb_events`` over ``Events.getCategory``'s rows."""
    error = matomo_error(data)
    if error is not None:
        raise ReportingApiError(f"Events.getCategory: Matomo says: {error[:MESSAGE_LIMIT]}")
    if not isinstance(data, list):
        raise ReportingApiError(f"Events.getCategory: unexpected answer for {day}")
    try:
        return sum(int(float(row.get("nb_events", 0) or 0)) for row in data if isinstance(row, dict))
    except (TypeError, ValueError, OverflowError):
        raise ReportingApiError(f"Events.getCategory: nb_events is not a number for {day}") from None
