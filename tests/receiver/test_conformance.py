"""The receiver replays the 41 cases recorded from a real Matomo 5.1.2 and answers and counts the same.

``../shared/matomo-conformance/cases.json`` (beside the repository) holds, per case, the hits (form
POSTs) or one bulk request, Matomo's answers, and what its Reporting API showed afterwards. Each
case runs on a fresh in-process receiver set up like the recorded site: UTC, ecommerce on, USD,
goal 1 "URL contains /thank-you" (converted automatically), goal 2 manual, one conversion per
visit. ``<token>`` is a valid admin token, ``{cdt_2d}``/``{cdt_2h}`` the time two days / two hours
before the (fake) clock. Compared: the status of every answer (the body size of the 200/204
answers, and the JSON of bulk answers); visits, unique visitors, actions, pageviews, searches,
outlinks, downloads, events, both goals, orders and abandoned carts (conversions and revenue),
returning visits, referrer types, and per visit its visitor id (the SHA-1 of a ``uid`` as Matomo
computes it), actions, visit count, visitor type, referrer and device type.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from receiver_client import FakeClock
from werkzeug.test import Client

from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverGoal, ReceiverInstance, ReceiverSite

CASES_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "matomo-conformance" / "cases.json"
TOKEN = "conformance-token-7d1e"
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
CDT_FORMAT = "%Y-%m-%d %H:%M:%S"
SUBSTITUTIONS = {
    "<token>": TOKEN,
    "{cdt_2d}": (NOW - timedelta(days=2)).strftime(CDT_FORMAT),
    "{cdt_2h}": (NOW - timedelta(hours=2)).strftime(CDT_FORMAT),
}
if not CASES_FILE.is_file():
    pytest.skip(f"the recorded Matomo cases are not there: {CASES_FILE}", allow_module_level=True)

CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
GOALS = ("goal_1", "goal_2", "goal_ecommerceOrder", "goal_ecommerceAbandonedCart")
COUNTED_KINDS = {"searches": "search", "outlinks": "outlink", "downloads": "download", "events": "event"}
DETAIL_KEYS = ("visitor_id", "actions", "visit_count", "visitor_type", "referrer_type", "referrer_name", "device_type")


def _params(case: dict[str, Any]) -> list[dict[str, str]]:
    items = case.get("hits") or case.get("bulk") or []
    return [{"idsite": "1", **{key: SUBSTITUTIONS.get(value, value) for key, value in hit.items()}} for hit in items]


def _receiver() -> tuple[ReceiverApp, Client, FakeClock]:
    site = ReceiverSite(
        1,
        timezone="UTC",
        currency="USD",
        goals=frozenset(),
        ecommerce=True,
        name="Conformance",
        goal_definitions=(ReceiverGoal(1, url_contains="/thank-you"), ReceiverGoal(2)),
    )
    clock = FakeClock(NOW.timestamp())
    app = ReceiverApp([ReceiverInstance("", {1: site}, {TOKEN})], clock=clock)
    return app, Client(app), clock


def _replay(client: Client, clock: FakeClock, case: dict[str, Any]) -> list[Any]:
    """Send the case's requests in order, a second apart; the answers."""
    params = _params(case)
    if "bulk" in case:
        body = json.dumps({"requests": ["?" + urllib.parse.urlencode(p) for p in params], "token_auth": TOKEN})
        return [client.post("/matomo.php", data=body, content_type="application/json")]
    answers = []
    for hit in params:
        answers.append(client.post("/matomo.php", data=hit))
        clock.now += 1
    return answers


def _api(client: Client, method: str, **params: str) -> Any:
    data = {"module": "API", "format": "JSON", "method": method, "idSite": "1", "token_auth": TOKEN, **params}
    return client.post("/index.php", data=data).json


def _reports(app: ReceiverApp, client: Client) -> dict[str, Any]:
    """The receiver's answers to what was read from Matomo, in the shape of the recorded reports."""
    site = app.stats("")["sites"]["1"]
    summary = _api(client, "VisitsSummary.get", period="day", date="today")
    empty = {"conversions": 0, "revenue": 0.0}
    conversions = site["conversions"]
    return {
        "visits": site["visits"],
        "unique_visitors": site["unique_visitors"],
        "actions": summary["nb_actions"],
        "pageviews": site["actions"]["pageview"] + site["actions"]["product_view"],
        **{name: site["actions"][kind] for name, kind in COUNTED_KINDS.items()},
        "goal_1": conversions.get("1", empty),
        "goal_2": conversions.get("2", empty),
        "goal_ecommerceOrder": conversions.get("ecommerceOrder", empty),
        "goal_ecommerceAbandonedCart": conversions.get("ecommerceAbandonedCart", empty),
        "returning_visits": site["returning_visits"],
        "referrer_types": site["referrer_types"],
        "visits_detail": [
            {
                "visitor_id": visit["visitorId"],
                "actions": visit["actions"],
                "visit_count": visit["visitCount"],
                "visitor_type": visit["visitorType"],
                "referrer_type": visit["referrerType"],
                "referrer_name": visit["referrerName"],
                "device_type": visit["deviceType"],
            }
            for visit in reversed(_api(client, "Live.getLastVisitsDetails", filter_limit="-1"))
        ],
    }


@pytest.mark.parametrize("case", [pytest.param(case, id=case["case"]) for case in CASES])
def test_the_receiver_answers_and_counts_like_matomo_5(case: dict[str, Any]):
    app, client, clock = _receiver()
    answers = _replay(client, clock, case)
    recorded = case["answers"]
    assert [a.status_code for a in answers] == [r["status"] for r in recorded], case["what"]
    for answer, expected in zip(answers, recorded):
        if "body" in expected:
            assert answer.json == json.loads(expected["body"])
        elif expected["status"] in (200, 204):
            assert len(answer.get_data()) == expected["body_bytes"]
    expected_reports = dict(case["reports"])
    reports = _reports(app, client)
    expected_details = sorted(tuple(v[k] for k in DETAIL_KEYS) for v in expected_reports.pop("visits_detail"))
    details = sorted(tuple(v[k] for k in DETAIL_KEYS) for v in reports.pop("visits_detail"))
    for name in GOALS:
        expected_reports[name] = {**expected_reports[name], "revenue": float(expected_reports[name]["revenue"])}
    assert reports == expected_reports, case["what"]
    assert details == expected_details, case["what"]


def test_every_recorded_case_is_replayed():
    assert len(CASES) == 41 and len({case["case"] for case in CASES}) == 41
