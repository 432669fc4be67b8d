"""``trafficinator profile``: read a Matomo's aggregate reports and print the traffic model they describe.

Why here: the fetching half (blocking HTTP through the one Reporting API client,
:mod:`.reporting_api`), kept apart from the pure mapping of :mod:`~trafficinator_locust.core.learn`.
Two calls in all: ``Goals.getGoals``, then every per-day report of the range in one
``API.getBulkRequest`` (Matomo Cloud limits API calls per minute). A view token is enough; it goes
in the POST body only, and every message is masked before it is shown::

    api = ReportingApi(target, timeout=60)
    check_range(date(2026, 11, 2), date(2026, 11, 29))  # ValueError: reversed, too long or in the future
    learned = profile_learned(api, target.site_id, date(2026, 11, 2), date(2026, 11, 29))
    print(render_yaml(learned), end="")    # core.learn: the YAML the CLI prints

The CLI prints it as YAML; the web UI's ``POST /api/targets/<name>/learn`` answers it as data.
"""

from __future__ import annotations

import http.client
from datetime import date, timedelta

from trafficinator_locust.core.errors import ReportingApiError
from trafficinator_locust.core.learn import DEFAULT_TOP, Learned, days_between, learn, report_calls
from trafficinator_locust.ops.reporting_api import ReportingApi
from trafficinator_locust.ops.tracker_http import display_url

__all__ = ["MAX_PROFILE_DAYS", "check_range", "profile_learned"]

MAX_PROFILE_DAYS = 400
"""Longest range one profile reads (one bulk request holds every day of every report)."""


def check_range(
    first: date, last: date, today: date | None = None, names: tuple[str, str] = ("--from", "--to")
) -> None:
    """``ValueError`` saying what is wrong with the days ``first``..``last``: reversed, more than
    :data:`MAX_PROFILE_DAYS`, or ending after tomorrow (``today``: the local date). ``names`` are how
    the caller calls the two bounds (the CLI's options, the web API's fields)."""
    today = today or date.today()
    if last < first:
        raise ValueError(f"{names[1]} {last} is before {names[0]} {first}")
    if (last - first).days + 1 > MAX_PROFILE_DAYS:
        raise ValueError(f"at most {MAX_PROFILE_DAYS} days at once")
    if last > today + timedelta(days=1):
        raise ValueError(f"{names[1]} {last} is in the future")


def profile_learned(
    api: ReportingApi,
    site_id: int,
    first: date,
    last: date,
    *,
    top: int = DEFAULT_TOP,
    anonymize: bool = False,
    source: str | None = None,
) -> Learned:
    """The traffic model of site ``site_id``'s days ``first``..``last`` as data (``traffic``, the
    target-level keys, the notes); :class:`ReportingApiError` (its message masked) when the API
    cannot be read or the range holds nothing to learn."""
    where = "a Matomo" if anonymize else source or f"{display_url(api.url)} site {site_id}"
    try:
        definitions = api.goal_definitions(site_id)
        goal_ids = [str(goal.get("idgoal")) for goal in definitions if str(goal.get("idgoal", "")).isdigit()]
        calls = report_calls(site_id, first, last, goal_ids)
        answers = api.bulk([(method, params) for _, method, params in calls])
        return learn(
            dict(zip([key for key, _, _ in calls], answers)),
            definitions,
            days_between(first, last),
            top=top,
            anonymize=anonymize,
            source=where,
        )
    except ReportingApiError as error:
        raise ReportingApiError(api.mask(str(error))) from None
    except http.client.HTTPException as error:
        raise ReportingApiError(
            f"{display_url(api.url)} does not answer as an HTTP server ({error.__class__.__name__})"
        ) from None
