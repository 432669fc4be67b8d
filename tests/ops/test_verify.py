"""Ingestion check: sent vs stored per target and day through the Reporting API, the loss it must
catch, the report format it reads, and the calls-per-minute limiter (fake clock)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from trafficinator_locust.cli import main
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import UsageError
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.ops import verify as vf
from trafficinator_locust.ops.backfill import BackfillOptions, run_backfill
from trafficinator_locust.ops.reporting_api import api_url
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

CONFIG = """
seed: 77
defaults:
  traffic:
    pageviews: {{min: 3, max: 6}}
    actions: {{search: 0.3, event: 0.4}}
    ecommerce: {{cart: 0.3, order: 0.2}}
targets:
  - name: Alpha
    url: http://127.0.0.1:{port}/alpha/matomo.php
    site_id: 1
    token_auth: verify-alpha-token-1
    timezone: Europe/Paris
    visits_per_day: 40
  - name: Beta
    url: http://127.0.0.1:{port}/beta/matomo.php
    site_id: 2
    token_auth: verify-beta-token-2
    timezone: America/New_York
    visits_per_day: 30
"""


def _main(capsys, *args):
    try:
        code = main(list(map(str, args)))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module", params=[0.0, 0.05], ids=["exact", "loss"])
def sent(request, tmp_path_factory):
    """A receiver (without or with --loss 0.05) that got a 4-day backfill of two targets."""
    folder = tmp_path_factory.mktemp("verify")
    port = free_port()
    config_path = folder / "traffic.yaml"
    config_path.write_text(CONFIG.format(port=port), encoding="utf-8")
    sink = start_receiver(config_path, port, dict(os.environ), "--loss", str(request.param), "--loss-seed", "3")
    try:
        last = datetime.now(timezone.utc).date() - timedelta(days=2)
        report = folder / "report.json"
        options = BackfillOptions(
            first=last - timedelta(days=3), last=last, checkpoint=folder / "cp.json", report=report, progress_every=0.2
        )
        with open(os.devnull, "w") as quiet:
            assert run_backfill(load_config(config_path), options, out=quiet, err=quiet) == 0
        yield {"loss": request.param, "config": config_path, "report": report, "port": port, "folder": folder}
    finally:
        stop_process(sink)


def test_verify_against_the_receiver(sent, capsys):
    code, out, err = _main(capsys, "verify", sent["config"], "--report", sent["report"], "--calls-per-minute", 6000)
    assert "Traceback" not in err
    for token in ("verify-alpha-token-1", "verify-beta-token-2"):
        assert token not in out + err
    if sent["loss"] == 0:
        assert code == 0, out + err
        # 11 rows a day: visits, actions, pageviews, searches, outlinks, downloads, events, orders,
        # order revenue, abandoned carts, returning visits (this model converts no goal)
        assert "verify OK: 2 target(s), 8 day(s), 88 report row(s)" in out
        assert out.count(" ok") == 88 and "SHORT" not in out and "TOO MANY" not in out
        return
    assert code == 1, out + err
    stats = receiver_stats(sent["port"])
    config = load_config(sent["config"])
    for target in config.targets:
        site = stats[instance_path(target.url)]["sites"][str(target.site_id)]
        assert site["lost"] > 0 and site["invalid"] == {}
    code, out, _ = _main(
        capsys, "verify", sent["config"], "--report", sent["report"], "--calls-per-minute", 6000, "--json"
    )
    verdict = json.loads(out)
    assert code == 1 and verdict["ok"] is False
    short = []
    for entry in verdict["targets"]:
        for day in entry["days"]:
            for row in day["rows"]:
                assert row["ok"] == (
                    row["sent"] == row["stored"] or abs(row["stored"] - row["sent"]) < 0.01 * row["sent"]
                )
                if not row["ok"]:
                    short.append((entry["target"], day["day"], row["label"]))
                    assert f"target {entry['target']}, {day['day']}: " in err
    assert short and "core:archive" in err
    # the stored figures are Matomo's own (the receiver's Reporting API), read independently here
    target, day, _ = short[0]
    row = next(
        r
        for e in verdict["targets"]
        if e["target"] == target
        for d in e["days"]
        if d["day"] == day
        for r in d["rows"]
        if r["report"] == "actions"
    )
    assert row["stored"] == _stored_actions(sent, config.targets[0] if target == "Alpha" else config.targets[1], day)


def _stored_actions(sent, target, day) -> int:
    import urllib.parse
    import urllib.request

    form = urllib.parse.urlencode(
        {
            "module": "API",
            "format": "JSON",
            "method": "VisitsSummary.get",
            "idSite": target.site_id,
            "period": "day",
            "date": day,
            "token_auth": target.token_auth.get_secret_value(),
        }
    ).encode()
    with urllib.request.urlopen(api_url(target.url), data=form, timeout=10) as response:
        return json.load(response)["nb_actions"]


def test_a_run_report_without_actions_is_checked_on_visits(sent, capsys):
    report = json.loads(sent["report"].read_text())
    slim = {
        "targets": [
            {
                "target": t["target"],
                "days": {d: {"visits": v["visits"], "hits": v["hits"]} for d, v in t["days"].items()},
            }
            for t in report["targets"]
        ]
    }
    path = sent["folder"] / "slim.json"
    path.write_text(json.dumps(slim))
    code, out, err = _main(capsys, "verify", sent["config"], "--report", path, "--calls-per-minute", 6000)
    assert code == 0, out + err  # visits survive a 5% hit loss: later hits of a visit still open it
    assert "verify OK: 2 target(s), 8 day(s), 8 report row(s)" in out  # visits only: actions sent unknown
    assert " actions " not in out


def test_a_wrong_token_fails_the_target_with_matomos_message(sent, capsys, tmp_path):
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(sent["config"].read_text().replace("verify-beta-token-2", "not-the-token-99"))
    code, out, err = _main(capsys, "verify", wrong, "--report", sent["report"], "--calls-per-minute", 6000)
    assert code == 1 and "target Beta:" in err and "requires 'view' access" in err
    assert "not-the-token-99" not in out + err


def test_bad_reports_and_options_exit_2_with_the_file_named(sent, capsys, tmp_path):
    missing = tmp_path / "nope.json"
    code, _, err = _main(capsys, "verify", sent["config"], "--report", missing)
    assert code == 2 and f"--report {missing}: no such file" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"targets": [{"target": "Gamma", "days": {}}]}))
    code, _, err = _main(capsys, "verify", sent["config"], "--report", other)
    assert code == 2 and "'Gamma'" in err and "Alpha, Beta" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"targets": [{"target": "Alpha", "days": {"2025-01-01": {"visits": -1}}}]}))
    code, _, err = _main(capsys, "verify", sent["config"], "--report", bad)
    assert code == 2 and "targets[0].days[2025-01-01].visits" in err
    code, _, err = _main(capsys, "verify", sent["config"], "--report", sent["report"], "--threshold", 1.5)
    assert code == 2 and "--threshold" in err


# --- pure -------------------------------------------------------------------------------------------
def test_check_day_compares_every_report_it_knows_both_ways():
    day = vf.SentDay("2025-01-01", visits=100, hits=500, actions=400)
    assert vf.check_day("T", day, {"visits": 100, "actions": 397}, 0.99).ok
    assert not vf.check_day("T", day, {"visits": 99, "actions": 400}, 0.99).ok  # one in a hundred lost
    assert not vf.check_day("T", day, {"visits": 101, "actions": 400}, 0.99).ok  # one too many
    assert not vf.check_day("T", day, {"visits": 100, "actions": 396}, 0.99).ok
    assert vf.check_day("T", vf.SentDay("2025-01-01", 100, 500), {"visits": 100}, 0.99).ok  # actions unknown
    assert vf.check_day("T", vf.SentDay("2025-01-01", 0, 0, 0), {}, 0.99).ok
    reports = {"goal:2:conversions": 14, "goal:2:revenue": 32150, "events": 28}
    day = vf.SentDay("2025-01-01", 10, 50, 40, reports)
    check = vf.check_day(
        "T", day, {"visits": 10, "actions": 40, "goal:2:conversions": 13, "goal:2:revenue": 32150, "events": 28}, 0.99
    )
    assert not check.ok and [row.label for row in check.short] == ["goal 2 conversions"]
    assert check.row("goal:2:revenue").shown(32150) == "321.50"
    failed = vf.check_day("T", vf.SentDay("2025-01-01", 0, 0, 0, None, failed_visits=5), {}, 0.99)
    assert not failed.ok and "5 visit(s) failed" in failed.note


def test_agreement_is_strict_and_exact_in_millionths():
    assert not vf.agrees(100, 99, 0.99) and vf.agrees(200, 199, 0.99) and vf.agrees(0, 0, 0.99)
    assert not vf.agrees(0, 1, 0.99) and vf.agrees(7, 7, 1.0) and not vf.agrees(10**6, 10**6 - 1, 1.0)


def test_a_report_of_a_failed_target_or_with_bad_reports_is_named():
    data = {
        "targets": [
            {"target": "A", "status": "failed", "error": "deadlock", "days": {}},
            {"target": "B", "days": {"2025-01-01": {"visits": 1, "reports": {"goals": {"x": {}}}}}},
        ]
    }
    with pytest.raises(UsageError, match=r"targets\[1\]\.days\[2025-01-01\]\.reports\.goals\[x\]"):
        vf.parse_report(data, "r.json")
    data["targets"].pop()
    assert vf.parse_report(data, "r.json")[0].failed == "the backfill failed: deadlock"
    data["targets"][0] = {"target": "A", "days": {"2025-01-01": {"visits": 1, "reports": {"revenue": float("inf")}}}}
    with pytest.raises(UsageError, match="revenue: must be an amount"):
        vf.parse_report(data, "r.json")


def test_report_format_is_targets_with_days():
    parsed = vf.parse_report(
        {
            "targets": [
                {
                    "target": "A",
                    "extra": 1,
                    "days": {"2025-01-02": {"visits": 3, "hits": 9, "x": 0}, "2025-01-01": {"visits": 1}},
                }
            ]
        },
        "r.json",
    )
    assert parsed == [vf.SentTarget("A", (vf.SentDay("2025-01-01", 1, 0), vf.SentDay("2025-01-02", 3, 9)))]
    for bad, where in [
        ({}, "targets"),
        ({"targets": [{"target": "A"}]}, r"targets\[0\]"),
        ({"targets": [{"target": "A", "days": {"Jan 1": {"visits": 1}}}]}, "date"),
    ]:
        with pytest.raises(UsageError, match=where):
            vf.parse_report(bad, "r.json")


def test_api_url_is_next_to_the_tracker():
    assert api_url("https://a.example/matomo/matomo.php") == "https://a.example/matomo/index.php"
    assert api_url("http://127.0.0.1:8765/matomo.php") == "http://127.0.0.1:8765/index.php"


def test_calls_per_minute_limiter_spaces_calls_without_busy_waiting():
    class Clock:
        now = 0.0
        slept: list[float] = []

        def __call__(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)
            self.now += seconds

    clock = Clock()
    limiter = vf.calls_limiter(60, clock=clock)
    starts = []
    for _ in range(5):
        limiter.acquire(1, sleep=clock.sleep)
        starts.append(clock.now)
    assert starts == [0, 1, 2, 3, 4] and clock.slept == [1, 1, 1, 1]  # one sleep per wait, no polling
    clock.now += 30  # idle time is not saved up into a burst
    limiter.acquire(1, sleep=clock.sleep)
    limiter.acquire(1, sleep=clock.sleep)
    assert clock.slept[-1] == 1
    fast = vf.calls_limiter(600, clock=clock)
    before = clock.now
    for _ in range(61):
        fast.acquire(1, sleep=clock.sleep)
    assert clock.now - before == pytest.approx(6.0)  # 600 per minute = one every 0.1 s
