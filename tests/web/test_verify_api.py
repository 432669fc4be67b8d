"""``POST /api/verify`` against a stand-in Reporting API: every report of a day, per target.

What an operator relies on: a target without a token is listed as "not verifiable" and does not fail
the check of the others; every report row that is off is named in ``problems`` (with money in
currency units); a target the report says failed to send fails even when Matomo holds all it got;
no token ever comes back, even when Matomo quotes one. No network: ``ReportingApi`` is replaced by
:class:`FakeApi`, which answers from a table and goes through the real rate limiter and deadline.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

import sys
import time
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_webui import ALPHA_TOKEN, BETA_TOKEN, CONFIG, Harness

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import ReportingApiError, WebApiError
from trafficinator_locust.ops.reporting_api import api_url
from trafficinator_locust.ops.verify import NOT_VERIFIABLE
from trafficinator_locust.web import verify_api
from trafficinator_locust.web.verify_api import read_request, run_request

DAY1, DAY2 = "2026-12-01", "2026-12-02"
REPORTS = {
    "pageviews": 30,
    "searches": 4,
    "outlinks": 2,
    "downloads": 1,
    "events": 6,
    "orders": 2,
    "revenue": 99.5,
    "abandoned_carts": 1,
    "returning_visits": 3,
    "goals": {"2": {"conversions": 14, "revenue": 140.0}, "10": {"conversions": 1, "revenue": 0}},
}
FIGURES = {  # REPORTS as Matomo's answers give them to verify (ReportingApi.day_reports: money in cents)
    "pageviews": 30,
    "searches": 4,
    "outlinks": 2,
    "downloads": 1,
    "events": 6,
    "orders": 2,
    "revenue": 9950,
    "abandoned_carts": 1,
    "returning_visits": 3,
    "goal:2:conversions": 14,
    "goal:2:revenue": 14000,
    "goal:10:conversions": 1,
    "goal:10:revenue": 0,
}


class FakeApi:
    """Stands in for :class:`ReportingApi`: answers from ``stored[(target, day)]`` (a ``day_reports``
    dict), raises ``errors[target]``, and records every call; paced by the real limiter."""

    stored: dict[tuple[str, str], dict[str, int]] = {}
    errors: dict[str, Exception] = {}
    failures: dict[str, list[dict[str, Any]]] = {}
    calls: list[tuple[str, str, str | None]] = []

    def __init__(self, target: Any, limiter: Any = None, timeout: float = 30.0, sleep: Any = time.sleep, **_: Any):
        self.target, self.limiter, self.sleep = target, limiter, sleep
        self.url = api_url(target.url)

    def _call(self, method: str, day: str | None = None) -> None:
        if self.limiter is not None:
            self.limiter.acquire(1, sleep=self.sleep)
        self.calls.append((self.target.name, method, day))
        if self.target.name in self.errors:
            raise self.errors[self.target.name]

    def tracking_failures(self, site_id: int) -> list[Mapping[str, Any]]:
        self._call("CoreAdminHome.getTrackingFailures")
        return self.failures.get(self.target.name, [])

    def visits_summary(self, site_id: int, day: str) -> tuple[int, int]:
        self._call("VisitsSummary.get", day)
        stored = self.stored.get((self.target.name, day), {})
        return stored.get("visits", 0), stored.get("actions", 0)

    def day_reports(self, site_id: int, day: str, goals: list[str]) -> dict[str, int]:
        self._call("API.getBulkRequest", day)
        stored = self.stored.get((self.target.name, day), {})
        keys = ["visits", "actions", *(k for k in FIGURES if not k.startswith("goal:"))]
        keys += [f"goal:{goal}:{figure}" for goal in goals for figure in ("conversions", "revenue")]
        return {key: stored.get(key, 0) for key in keys}


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeApi]:
    monkeypatch.setattr(FakeApi, "stored", {})
    monkeypatch.setattr(FakeApi, "errors", {})
    monkeypatch.setattr(FakeApi, "failures", {})
    monkeypatch.setattr(FakeApi, "calls", [])
    monkeypatch.setattr(verify_api, "ReportingApi", FakeApi)
    return FakeApi


@pytest.fixture()
def ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The control plane on test_webui's config: Alpha (${ALPHA_TOKEN}), Beta Shop (a literal token), Gamma (none)."""
    monkeypatch.setattr(sys, "argv", ["locust"])
    monkeypatch.setenv("ALPHA_TOKEN", ALPHA_TOKEN)
    for name in ("TRAFFICINATOR_WEB_USER", "TRAFFICINATOR_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "traffic.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    harness = Harness(path, tmp_path / "presets.sqlite3")
    yield harness
    harness.close()


def _day(visits: int = 10, actions: int = 40, **reports: Any) -> dict[str, Any]:
    return {"visits": visits, "hits": actions, "actions": actions, "reports": {**REPORTS, **reports}}


def _stored(visits: int = 10, actions: int = 40, **figures: int) -> dict[str, int]:
    return {"visits": visits, "actions": actions, **FIGURES, **figures}


def test_a_target_without_a_token_is_not_verifiable_while_another_passes(ui: Harness, fake: type[FakeApi]):
    fake.stored = {("Alpha", DAY1): _stored(), ("Alpha", DAY2): _stored(), ("Beta Shop", DAY1): _stored(7, 20)}
    report = {
        "targets": [
            {"target": "Gamma", "days": {DAY1: _day()}},
            {"target": "Alpha", "days": {DAY1: _day(), DAY2: _day()}},
            {"target": "Beta Shop", "days": {DAY1: {"visits": 7, "hits": 20, "actions": 20}}},  # an older report
        ]
    }
    status, answer = ui.call("POST", "/api/verify", {"report": report})
    assert status == 200, answer
    assert answer["ok"] is True and answer["problems"] == []
    gamma, alpha, beta = answer["targets"]
    assert gamma == {
        "target": "Gamma",
        "status": "not verifiable",
        "ok": True,
        "error": None,
        "failed": None,
        "note": NOT_VERIFIABLE,
        "short_days": [],
        "days": [],
        "tracking_failures": [],
    }
    assert (alpha["target"], alpha["status"], alpha["ok"], alpha["short_days"]) == ("Alpha", "ok", True, [])
    assert [day["day"] for day in alpha["days"]] == [DAY1, DAY2]
    first = alpha["days"][0]
    assert (first["ok"], first["note"]) == (True, None)
    assert [(row["report"], row["label"]) for row in first["rows"]] == [
        ("visits", "visits"),
        ("actions", "actions"),
        ("pageviews", "pageviews"),
        ("searches", "site searches"),
        ("outlinks", "outlinks"),
        ("downloads", "downloads"),
        ("events", "events"),
        ("orders", "orders"),
        ("revenue", "order revenue"),
        ("abandoned_carts", "abandoned carts"),
        ("returning_visits", "returning visits"),
        ("goal:2:conversions", "goal 2 conversions"),
        ("goal:2:revenue", "goal 2 revenue"),
        ("goal:10:conversions", "goal 10 conversions"),
        ("goal:10:revenue", "goal 10 revenue"),
    ]
    rows = {row["report"]: row for row in first["rows"]}
    assert rows["revenue"] == {
        "report": "revenue",
        "label": "order revenue",
        "sent": 99.5,
        "stored": 99.5,
        "money": True,
        "ok": True,
    }
    assert rows["goal:2:revenue"]["sent"] == 140.0 and rows["goal:2:conversions"]["stored"] == 14
    assert beta["status"] == "ok" and [row["report"] for row in beta["days"][0]["rows"]] == ["visits", "actions"]
    assert "Gamma" not in {name for name, _, _ in fake.calls}, "a target without a token was asked"
    assert [(name, method) for name, method, _ in fake.calls if name == "Alpha"] == [
        ("Alpha", "CoreAdminHome.getTrackingFailures"),
        ("Alpha", "API.getBulkRequest"),  # one call per day
        ("Alpha", "API.getBulkRequest"),
    ]
    assert [method for name, method, _ in fake.calls if name == "Beta Shop"][-1] == "VisitsSummary.get"


def test_each_failing_row_is_named_in_problems(ui: Harness, fake: type[FakeApi]):
    fake.stored = {
        ("Alpha", DAY1): _stored(),
        ("Alpha", DAY2): _stored(**{"pageviews": 31, "goal:2:conversions": 13, "goal:2:revenue": 13000}),
    }
    report = {"targets": [{"target": "Alpha", "days": {DAY1: _day(), DAY2: _day()}}]}
    status, answer = ui.call("POST", "/api/verify", {"report": report})
    assert status == 200, answer
    assert answer["ok"] is False
    (alpha,) = answer["targets"]
    assert (alpha["status"], alpha["ok"], alpha["short_days"]) == ("short", False, [DAY2])
    assert answer["problems"] == [
        f"target Alpha, {DAY2}: pageviews 31 of 30, goal 2 conversions 13 of 14, goal 2 revenue 130.00 of 140.00"
    ]
    off = [(r["report"], r["sent"], r["stored"]) for r in alpha["days"][1]["rows"] if not r["ok"]]
    assert off == [("pageviews", 30, 31), ("goal:2:conversions", 14, 13), ("goal:2:revenue", 140.0, 130.0)]
    assert alpha["days"][0]["ok"] is True and alpha["days"][1]["ok"] is False


def test_the_threshold_applies_both_ways_per_row(ui: Harness, fake: type[FakeApi]):
    fake.stored = {("Alpha", DAY1): _stored(**{"pageviews": 27})}
    report = {"targets": [{"target": "Alpha", "days": {DAY1: _day()}}]}
    status, answer = ui.call("POST", "/api/verify", {"report": report, "threshold": 0.85})
    assert status == 200 and answer["ok"] is True, answer  # 27 of 30 is within 15 %
    status, answer = ui.call("POST", "/api/verify", {"report": report, "threshold": 0.95})
    assert answer["ok"] is False and answer["problems"] == [f"target Alpha, {DAY1}: pageviews 27 of 30"]


def test_a_target_the_report_says_failed_fails_even_when_its_rows_agree(ui: Harness, fake: type[FakeApi]):
    fake.stored = {("Alpha", DAY1): _stored(), ("Beta Shop", DAY1): _stored(0, 0)}
    report = {
        "targets": [
            {"target": "Alpha", "status": "failed", "error": "HTTP 503 from the tracker", "days": {DAY1: _day()}},
            {"target": "Beta Shop", "days": {DAY1: {"visits": 0, "hits": 0, "visits_failed": 5}}},
        ]
    }
    status, answer = ui.call("POST", "/api/verify", {"report": report})
    assert status == 200, answer
    alpha, beta = answer["targets"]
    assert (alpha["status"], alpha["ok"], alpha["failed"]) == (
        "failed",
        False,
        "the backfill failed: HTTP 503 from the tracker",
    )
    assert all(row["ok"] for row in alpha["days"][0]["rows"]) and alpha["days"][0]["ok"] is True
    assert (beta["status"], beta["days"][0]["note"]) == ("short", "sent nothing: 5 visit(s) failed to start")
    assert answer["ok"] is False
    assert answer["problems"] == [
        "target Alpha FAILED: the backfill failed: HTTP 503 from the tracker",
        f"target Beta Shop, {DAY1}: sent nothing: 5 visit(s) failed to start",
    ]


def test_a_target_matomo_refuses_is_an_error_beside_the_others(ui: Harness, fake: type[FakeApi]):
    fake.stored = {("Beta Shop", DAY1): _stored()}
    fake.errors = {"Alpha": ReportingApiError("API.getBulkRequest: Matomo says: You can't access this resource")}
    report = {"targets": [{"target": n, "days": {DAY1: _day()}} for n in ("Alpha", "Beta Shop", "Gamma")]}
    status, answer = ui.call("POST", "/api/verify", {"report": report})
    assert status == 200, answer
    assert [(t["target"], t["status"], t["ok"]) for t in answer["targets"]] == [
        ("Alpha", "error", False),
        ("Beta Shop", "ok", True),
        ("Gamma", "not verifiable", True),
    ]
    assert answer["ok"] is False
    assert answer["problems"] == ["target Alpha: API.getBulkRequest: Matomo says: You can't access this resource"]


def test_tokens_never_come_back_even_when_matomo_quotes_them(tmp_path: Path, fake: type[FakeApi]):
    report_token = "view-only-report-token-Zq81"
    alpha_reads_with_its_own_token = CONFIG.replace(
        "    site_id: 1\n", f"    site_id: 1\n    report_token_auth: {report_token}\n"
    )
    (tmp_path / "traffic.yaml").write_text(alpha_reads_with_its_own_token, encoding="utf-8")
    config = load_config(tmp_path / "traffic.yaml", env={"ALPHA_TOKEN": ALPHA_TOKEN})
    assert config.targets[0].report_token == report_token
    fake.stored = {("Alpha", DAY1): _stored()}
    fake.failures = {"Alpha": [{"idsite": 1, "problem": f"token {report_token} / {ALPHA_TOKEN}", "count": 2}]}
    fake.errors = {"Beta Shop": ReportingApiError(f"Matomo says: token {BETA_TOKEN} has no view access")}
    report = {"targets": [{"target": n, "days": {DAY1: _day()}} for n in ("Alpha", "Beta Shop")]}
    answer = run_request(read_request({"report": report}, config, tmp_path))  # no web app masking around it
    text = repr(answer)
    for token in (report_token, ALPHA_TOKEN, BETA_TOKEN):
        assert token not in text
    assert answer["targets"][0]["tracking_failures"] == [{"idsite": 1, "problem": "token *** / ***", "count": 2}]
    assert answer["problems"] == ["target Beta Shop: Matomo says: token *** has no view access"]


def test_targets_without_a_token_cost_no_calls_in_the_pacing_check(ui: Harness):
    first = date(2025, 1, 1)
    many = {(first + timedelta(days=n)).isoformat(): {"visits": 1} for n in range(400)}
    report = {"targets": [{"target": "Gamma", "days": many}, {"target": "Alpha", "days": {DAY1: {"visits": 0}}}]}
    config = load_config(ui.config_path, env={"ALPHA_TOKEN": ALPHA_TOKEN})
    request = read_request({"report": report, "calls_per_minute": 60}, config, ui.config_path.parent)
    assert request.calls == 2 and request.unverifiable == ("Gamma",) and request.order == ("Gamma", "Alpha")
    with pytest.raises(WebApiError) as refused:
        read_request(
            {"report": {"targets": [{"target": "Alpha", "days": many}]}, "calls_per_minute": 60},
            config,
            ui.config_path.parent,
        )
    assert refused.value.status == 422 and "401 Reporting API calls" in str(refused.value)
