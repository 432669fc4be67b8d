"""The visit reports of the Reporting API: VisitsSummary's metrics, and the visits of a site-local
day split by one dimension (hour, referrer, device, browser, language, country).

Why archived, plus the visits going on: these metrics change while a visit goes on (its actions,
length, bounce, conversion), so a visit is added to its day's tables once it can no longer continue
(:class:`~.archive.DayArchive`, capped per table with an "Others" row), and a report adds the
visits still going on to a copy of them, as Matomo's archivers aggregate ``log_visit``
(core/DataAccess/LogAggregator.php ``getSelectsMetrics``: ``count(distinct idvisitor)``,
``count(*)``, ``sum(visit_total_actions)``, ``max(visit_total_actions)``, ``sum(visit_total_time)``,
bounces = visits of 0 or 1 action, ``sum(visit_goal_converted)``; ``nb_users`` the distinct user ids).

Each row is ``{"label", "nb_uniq_visitors", "nb_visits", "nb_actions", "nb_users", "max_actions",
"sum_visit_length", "bounce_count", "nb_visits_converted", ...metadata}``, most visits first
(the archive's order, ``columnToSortByBeforeTruncation``; "Others" last), the hours in hour order. Labels and
segments (:mod:`.labels` for the names):

- ``VisitTime.getVisitInformationPerLocalTime`` (plugins/VisitTime/API.php, RecordBuilders/
  LocalTime.php): label ``"7h"``, segment ``visitLocalHour==7``, all 24 hours once the day has a visit;
  ``...PerServerTime`` (RecordBuilders/ServerTime.php): the hour of the visit's first action in the
  *site's* time zone, segment ``visitServerHour==<that hour in UTC>`` (DataTable/Filter/AddSegmentByLabelInUTC.php).
- ``Referrers.getReferrerType`` (plugins/Referrers/API.php): "Direct Entry", "Search Engines",
  "Websites", "Campaigns", "Social Networks", ``referrer_type`` (1, 2, 3, 6, 7), segment
  ``referrerType==direct|search|website|campaign|social``; ``getSearchEngines``: the engine,
  segment ``referrerType==search;referrerName==<name>``; ``getWebsites``: the host, segment
  ``referrerName==<host>``; ``getCampaigns``: the (lower-cased) name, segment
  ``referrerType==campaign;referrerName==<name>``; ``getSocials``: the network, no segment.
- ``DevicesDetection.getType`` (plugins/DevicesDetection/API.php ``getType``,
  ``ensureDefaultRowsInTable``): "Desktop", "Smartphone", "Tablet"... (``getDeviceTypeLabel``),
  segment ``deviceType==desktop`` (DeviceDetector's type name, ``AddSegmentByLabelMapping``);
  once the day has a visit every device type is listed, those without visits as
  ``{"label", "nb_visits": 0, "segment"}`` after the others; "Unknown" has no segment.
  ``getBrowsers``: DeviceDetector's name, segment ``browserCode==<code>`` (``AddSegmentValue``, :mod:`.profile`).
- ``UserLanguage.getLanguageCode``: "English - United States (en-us)", segment ``languageCode==en-us``.
- ``UserCountry.getCountry``: the country's name, ``code`` (``fr``), segment ``countryCode==fr``.

Segment values are URL-encoded as PHP's ``urlencode`` does (core/DataTable/Filter/AddSegmentByLabel.php).

Example::

    rows = dimension_rows(site, day, "Referrers.getReferrerType")
    rows[0]["label"], rows[0]["segment"]  # "Direct Entry", "referrerType==direct"
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote_plus

from trafficinator_locust.receiver.archive import DIMENSIONS, OTHERS, OTHERS_KEY, VisitAgg, capped_row
from trafficinator_locust.receiver.labels import (
    REFERRER_TYPE_IDS,
    REFERRER_TYPE_LABELS,
    country_label,
    hour_label,
    language_label,
)
from trafficinator_locust.receiver.store import SiteState

__all__ = ["DIMENSION_METHODS", "summary_metrics", "day_totals", "dimension_rows", "php_urlencode", "percent"]


def php_urlencode(value: str) -> str:
    """PHP's ``urlencode``: like ``quote_plus`` with nothing safe, ``~`` encoded too."""
    return quote_plus(value, safe="").replace("~", "%7E")


def percent(part: int, whole: int, places: int = 2) -> str:
    """Matomo's percentage of a quotient rounded to ``places`` (``getQuotientSafe``), ``"33%"``, ``"0%"``."""
    if not whole:
        return "0%"
    quotient = (Decimal(part) / Decimal(whole)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"{(quotient * 100).normalize():f}%"


def day_totals(site: SiteState, day: date, returning: bool | None = None) -> VisitAgg:
    """The visit metrics of a site-local day: of every visit (``returning`` None), new ones
    (False) or returning ones (True); archived visits and those going on."""
    stats = site.visits.days.get(day)
    if stats is None:  # no visit, or a day no longer kept
        return VisitAgg()
    archive = stats.archive
    total = (archive.total if returning is None else archive.returning if returning else archive.new).copy()
    for visit in site.visits.live_on(day):
        if returning is None or visit.returning == returning:
            total.add(visit)
    return total


def summary_metrics(totals: VisitAgg) -> dict[str, Any]:
    """``VisitsSummary.get``'s metrics: the archived ones and bounce rate, actions per visit and
    average visit length (plugins/VisitsSummary/API.php ``get``, plugins/CoreHome/Columns/Metrics/
    BounceRate.php, ActionsPerVisit.php, AverageTimeOnSite.php: precisions 2, 1 and 0)."""
    metrics: dict[str, Any] = totals.metrics()
    count = metrics["nb_visits"]
    metrics["bounce_rate"] = percent(metrics["bounce_count"], count)
    metrics["nb_actions_per_visit"] = _quotient(metrics["nb_actions"], count, 1)
    metrics["avg_time_on_site"] = int(_quotient(metrics["sum_visit_length"], count, 0))
    return metrics


def _quotient(part: int, whole: int, places: int) -> float | int:
    if not whole:
        return 0
    value = (Decimal(part) / Decimal(whole)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return int(value) if places == 0 or value == value.to_integral_value() else float(value)


DIMENSION_METHODS = frozenset(DIMENSIONS)
"""The dimension reports :func:`dimension_rows` answers."""


def _utc_hour(site: SiteState, day: date, hour: int) -> int:
    local = datetime(day.year, day.month, day.day, hour, tzinfo=site.zone)
    return local.astimezone(timezone.utc).hour


def _decorate(method: str, site: SiteState, day: date, key: Any, row: dict[str, Any]) -> dict[str, Any]:
    """The label and metadata of one row (see the module docstring)."""
    if key == OTHERS_KEY:
        return {"label": OTHERS, **row}
    if method == "VisitTime.getVisitInformationPerLocalTime":
        return {"label": hour_label(key), **row, "segment": f"visitLocalHour=={key}"}
    if method == "VisitTime.getVisitInformationPerServerTime":
        return {"label": hour_label(key), **row, "segment": f"visitServerHour=={_utc_hour(site, day, key)}"}
    if method == "Referrers.getReferrerType":
        return {
            "label": REFERRER_TYPE_LABELS.get(key, "Others"),
            **row,
            "referrer_type": REFERRER_TYPE_IDS.get(key, 0),
            "segment": f"referrerType=={key}",
        }
    if method == "Referrers.getSearchEngines":
        return {"label": key, **row, "segment": f"referrerType==search;referrerName=={php_urlencode(key)}"}
    if method == "Referrers.getCampaigns":
        return {"label": key, **row, "segment": f"referrerType==campaign;referrerName=={php_urlencode(key)}"}
    if method == "Referrers.getWebsites":
        return {"label": key, **row, "segment": f"referrerName=={php_urlencode(key)}"}
    if method == "DevicesDetection.getType":
        name = _DEVICE_SEGMENTS.get(key)
        return {"label": key, **row, **({"segment": f"deviceType=={php_urlencode(name)}"} if name else {})}
    if method == "DevicesDetection.getBrowsers":
        name, code = key
        return {"label": name, **row, "segment": f"browserCode=={code}"}
    if method == "UserLanguage.getLanguageCode":
        return {"label": language_label(key), **row, "segment": f"languageCode=={key}"}
    if method == "UserCountry.getCountry":
        return {"label": country_label(key), **row, "code": key, "segment": f"countryCode=={key}"}
    return {"label": key, **row}  # Referrers.getSocials


DEVICE_TYPES = (
    ("desktop", "Desktop"),
    ("smartphone", "Smartphone"),
    ("tablet", "Tablet"),
    ("feature phone", "Feature phone"),
    ("console", "Console"),
    ("tv", "TV"),
    ("car browser", "Car browser"),
    ("smart display", "Smart display"),
    ("camera", "Camera"),
    ("portable media player", "Portable media player"),
    ("phablet", "Phablet"),
    ("smart speaker", "Smart speaker"),
    ("wearable", "Wearable"),
    ("peripheral", "Peripheral"),
)
"""DeviceDetector's device types in id order (``AbstractDeviceParser::getAvailableDeviceTypes``)
with Matomo's English labels (plugins/DevicesDetection/functions.php ``getDeviceTypeLabel``)."""
_DEVICE_SEGMENTS = {label: name for name, label in DEVICE_TYPES}


def _device_type_defaults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ensureDefaultRowsInTable``: every device type, a missing one with ``nb_visits`` 0, when there are rows."""
    if not rows:
        return rows
    present = {row["label"] for row in rows}
    missing = [
        {"label": label, "nb_visits": 0, "segment": f"deviceType=={php_urlencode(name)}"}
        for name, label in DEVICE_TYPES
        if label not in present
    ]
    return rows + missing


def dimension_rows(site: SiteState, day: date, method: str) -> list[dict[str, Any]]:
    """The rows of one dimension report of a site-local day ([] without visits)."""
    stats = site.visits.days.get(day)
    key_of, cap = DIMENSIONS[method]
    if stats is None:  # no visit, or a day no longer kept
        return []
    groups = {key: row.copy() for key, row in stats.archive.tables[method].items()}
    zone = site.zone
    for visit in site.visits.live_on(day):
        key = key_of(zone, visit)
        if key is not None:
            capped_row(groups, key, cap, VisitAgg).add(visit)
    hourly = method.startswith("VisitTime.")
    if hourly and stats.visits:
        for hour in range(24):  # RecordBuilders/Base.php ensureAllHoursAreSet
            groups.setdefault(hour, VisitAgg())
    rows = [(key, agg.metrics()) for key, agg in groups.items()]
    if hourly:
        rows.sort(key=lambda item: item[0])  # type: ignore[arg-type, return-value]
    else:
        rows.sort(key=lambda item: (item[0] == OTHERS_KEY, -item[1]["nb_visits"], str(item[0])))
    answer = [_decorate(method, site, day, key, row) for key, row in rows]
    return _device_type_defaults(answer) if method == "DevicesDetection.getType" else answer
