"""``POST /api/targets/<name>/learn``: a traffic model for one target learned from another's reports.

What an operator relies on: the preview changes nothing; applying it is the existing PATCH of the
target, saving it the existing preset route (its ``preset_config`` holds tokens as ``${VAR}`` only);
a foreign Origin is refused before anything is asked of the source; bad dates, an unknown target or
a source without a token are 4xx naming the field; a source that cannot be read or refuses is a 502
with Matomo's message, a slow one a 504; no token ever comes back (``Harness.call`` checks every
answer), even when the source's reports quote one. No network but the refused port: the source's
``ReportingApi`` is replaced by :class:`FakeApi`, which answers ``profile``'s two calls from a small
site's reports; the real learning (``ops.profile``, ``core.learn``) runs on them.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import time
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import pytest
import yaml
from harness import small_site_day
from test_webui import ALPHA_TOKEN, Harness

from trafficinator_locust.core.errors import ReportingApiError
from trafficinator_locust.ops.reporting_api import api_url
from trafficinator_locust.web import learn_api

TODAY = date.today()
FIRST, LAST = (TODAY - timedelta(days=3)).isoformat(), (TODAY - timedelta(days=2)).isoformat()
EVIL = "http://evil.example"
CAMPAIGN = f"spring-{ALPHA_TOKEN}"  # a report quoting the token: the answer must mask it


def _day(method: str, params: Mapping[str, str]) -> Any:
    """One day of a small site (harness), with a campaign whose name quotes the token."""
    return small_site_day(method, params, {"Referrers.getCampaigns": [{"label": CAMPAIGN, "nb_visits": 5}]})


class FakeApi:
    """Stands in for :class:`ReportingApi` of the source target: ``Goals.getGoals`` and one bulk request
    answered per day from :func:`_day`; ``error`` raised, ``delay`` slept (in the worker thread) first."""

    created: list[Any] = []
    error: Exception | None = None
    delay = 0.0

    def __init__(self, target: Any, timeout: float = 30.0, **_: Any):
        self.target, self.timeout = target, timeout
        self.url = api_url(target.url)
        FakeApi.created.append(target)

    def mask(self, text: str) -> str:
        return text.replace(self.target.report_token, "***")

    def goal_definitions(self, site_id: int) -> list[Mapping[str, Any]]:
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [{"idgoal": "1", "name": "Signup", "revenue": 0, "allow_multiple": 0}]

    def bulk(self, calls: Sequence[tuple[str, Mapping[str, str]]]) -> list[Any]:
        answers = []
        for method, params in calls:
            first, last = (date.fromisoformat(day) for day in params["date"].split(","))
            days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
            answers.append({day: _day(method, params) for day in days})
        return answers


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeApi]:
    monkeypatch.setattr(learn_api, "ReportingApi", FakeApi)
    FakeApi.created, FakeApi.error, FakeApi.delay = [], None, 0.0
    return FakeApi


def _learn(ui: Harness, target: str = "Gamma", headers: dict[str, str] | None = None, **body: Any) -> tuple[int, Any]:
    body = {"from_target": "Alpha", "from": FIRST, "to": LAST, **body}
    return ui.call("POST", f"/api/targets/{target}/learn", body, headers=headers or {})


def test_the_preview_learns_the_model_from_the_source_and_changes_nothing(ui: Harness, fake: type[FakeApi]):
    status, answer = _learn(ui, top=1)
    assert status == 200, answer
    assert [t.name for t in fake.created] == ["Alpha"] and fake.created[0].report_token == ALPHA_TOKEN
    model = answer["model"]
    assert [entry["url"] for entry in model["urls"]] == ["/"]  # --top 1
    assert {k: v for k, v in model["channels"].items() if v} == {"direct": 50.0, "search": 40.0, "campaign": 10.0}
    assert model["visitors"]["returning"] == pytest.approx(0.2)
    assert yaml.safe_load(answer["yaml"]) == model  # the comments hold the rest
    assert "target Alpha" in answer["yaml"] and f"{FIRST} to {LAST}" in answer["yaml"]
    assert answer["target_keys"]["visits_per_day"] == 50
    assert "spring-***" in model["referrers"]["campaigns"]  # the quoted token is masked, keys included
    assert ALPHA_TOKEN not in repr(answer)
    assert (answer["from"], answer["to"], answer["top"], answer["anonymize_urls"]) == (FIRST, LAST, 1, False)
    gamma = ui.call("GET", "/api/targets/Gamma")[1]["target"]
    assert "traffic" not in gamma and ui.call("GET", "/api/targets")[1]["version"] == 1 and not ui.staged


def test_dates_default_to_the_30_days_up_to_yesterday(ui: Harness, fake: type[FakeApi]):
    status, answer = ui.call("POST", "/api/targets/Gamma/learn", {"from_target": "alpha"})  # names: any case
    assert status == 200, answer
    assert (answer["from"], answer["to"]) == (
        (TODAY - timedelta(days=30)).isoformat(),
        (TODAY - timedelta(1)).isoformat(),
    )
    assert answer["target_keys"]["profile"]["weekdays"]  # 30 days: every weekday


def test_anonymized_urls_name_no_path(ui: Harness, fake: type[FakeApi]):
    status, answer = _learn(ui, anonymize_urls=True)
    assert status == 200, answer
    assert "pricing" not in answer["yaml"] and "prod.example" not in answer["yaml"]
    assert [entry["url"] for entry in answer["model"]["urls"]] == ["/", "/section-1"]


def test_applying_is_the_existing_patch_of_the_target(ui: Harness, fake: type[FakeApi]):
    model = _learn(ui)[1]["model"]
    status, body = ui.call("PATCH", "/api/targets/Gamma", {"traffic": model})
    assert status == 200, body
    assert body["target"]["traffic"] == model
    assert any(change.startswith("Gamma") for change in body["applied"]["next_start"]), body["applied"]
    staged = {t.name: t for t in ui.staged[-1].targets}  # validated by the loader and staged
    pages = staged["Gamma"].traffic.pages
    assert [page.url.split("example.com")[1] for page in pages] == ["/", "/pricing"]
    assert [page.weight for page in pages] == pytest.approx([66.667, 33.333], abs=0.01)  # 100 and 50 pageviews
    assert staged["Alpha"].traffic.pages != pages


def test_saving_as_a_preset_is_the_existing_preset_route(ui: Harness, fake: type[FakeApi]):
    preview = _learn(ui)[1]
    config = preview["preset_config"]
    assert config["targets"][0]["token_auth"] == "${ALPHA_TOKEN}"  # references only
    assert "token_auth" not in config["targets"][1] and preview["preset_warnings"]  # Beta's literal token omitted
    status, body = ui.call("POST", "/api/presets", {"name": "Gamma like Alpha", "config": config})
    assert status == 201, body
    stored = ui.call("GET", "/api/presets/Gamma like Alpha")[1]["preset"]["config"]
    assert stored["targets"][2]["traffic"] == preview["model"]
    assert "traffic" not in ui.call("GET", "/api/targets/Gamma")[1]["target"]  # saving a preset applies nothing
    status, body = ui.call("POST", "/api/presets/Gamma like Alpha/apply")
    assert status == 200, body
    assert {t["name"]: t.get("traffic") for t in body["targets"]}["Gamma"] == preview["model"]


def test_a_foreign_origin_is_refused_before_the_source_is_asked(ui: Harness, fake: type[FakeApi]):
    status, body = ui.call("POST", "/api/targets/Gamma/learn", {"from_target": "Alpha"}, headers={"Origin": EVIL})
    assert status == 403 and "cross-origin" in body["error"]
    assert fake.created == []
    status, body = _learn(ui, headers={"Origin": "http://localhost"})  # the control page's own requests
    assert status == 200 and [t.name for t in fake.created] == ["Alpha"], body


@pytest.mark.parametrize(
    "body, status, field, message",
    [
        ({"from": LAST, "to": FIRST}, 422, "to", f"to {FIRST} is before from {LAST}"),
        ({"to": (TODAY + timedelta(days=3)).isoformat()}, 422, "to", "is in the future"),
        ({"from": "2024-01-01", "to": LAST}, 422, "from", "at most 400 days"),
        ({"from": "30/11/2026"}, 422, "from", "not a date like"),
        ({"to": 20261130}, 422, "to", "must be a date"),
        ({"top": 0}, 422, "top", "from 1 to 1000"),
        ({"top": True}, 422, "top", "whole number"),
        ({"anonymize_urls": "yes"}, 422, "anonymize_urls", "true or false"),
        ({"timeout": 0}, 422, "timeout", "seconds"),
        ({"token_auth": "x"}, 422, "token_auth", "unknown field"),
        ({"from_target": ""}, 422, "from_target", "required"),
        ({"from_target": "Gamma"}, 422, "from_target", "no report_token_auth or token_auth"),
        ({"from_target": "Nope"}, 404, None, "no target named 'Nope'"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(ui: Harness, fake: type[FakeApi], body, status, field, message):
    got, answer = _learn(ui, **body)
    assert got == status and message in answer["error"], answer
    if field:
        assert answer["problems"][0]["path"] == field
    assert fake.created == []


def test_an_unknown_target_and_a_body_that_is_no_object_are_4xx(ui: Harness, fake: type[FakeApi]):
    status, body = _learn(ui, target="Nope")
    assert status == 404 and "no target named 'Nope'" in body["error"]
    status, body = ui.call("POST", "/api/targets/Gamma/learn", [1], content_type="application/json")
    assert status == 400 and "JSON object" in body["error"]


def test_an_unreachable_source_is_a_502_without_the_token(ui: Harness):
    status, body = _learn(ui, timeout=5)  # the real client: Alpha's Matomo is 127.0.0.1:9, nothing listens
    assert status == 502, body
    assert "cannot learn from target 'Alpha'" in body["error"] and "cannot reach http://127.0.0.1:9" in body["error"]


def test_a_refusing_source_is_a_502_with_matomos_message_masked(ui: Harness, fake: type[FakeApi]):
    fake.error = ReportingApiError(f"Goals.getGoals: Matomo says: token_auth {ALPHA_TOKEN} requires 'view' access")
    status, body = _learn(ui)
    assert status == 502 and "requires 'view' access" in body["error"] and "***" in body["error"], body


def test_a_source_with_nothing_to_learn_says_so(ui: Harness, fake: type[FakeApi], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(FakeApi, "bulk", lambda self, calls: [{} for _ in calls])
    status, body = _learn(ui)
    assert status == 502 and "nothing to learn" in body["error"], body


def test_a_source_slower_than_the_timeout_is_a_504(ui: Harness, fake: type[FakeApi]):
    fake.delay = 3.0
    status, body = _learn(ui, timeout=0.3)
    assert status == 504 and "timed out after 0.3 s" in body["error"] and "Alpha" in body["error"], body


def test_a_third_profile_at_once_is_a_429(ui: Harness, fake: type[FakeApi], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(learn_api, "_running", [learn_api.MAX_RUNNING])  # two are waiting for their Matomo
    status, body = _learn(ui)
    assert status == 429 and "running already" in body["error"] and fake.created == [], body
    monkeypatch.setattr(learn_api, "_running", [0])
    assert _learn(ui)[0] == 200 and learn_api._running == [0]  # released after the answer
    fake.error = ReportingApiError("Goals.getGoals: HTTP 500")
    assert _learn(ui)[0] == 502 and learn_api._running == [0]  # and after a failure
