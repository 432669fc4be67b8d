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
        assert "verify OK: 2 target(s), 8 day(s)" in out
        assert out.count(" ok") == 8 and "SHORT" not in out
        return
    assert code == 1, out + err
    report = json.loads(sent["report"].read_text())
    stats = receiver_stats(sent["port"])
    config = load_config(sent["config"])
    named_any = False
    for target in config.targets:
        site = stats[instance_path(target.url)]["sites"][str(target.site_id)]
        assert site["lost"] > 0 and site["invalid"] == {}
        days = next(entry["days"] for entry in report["targets"] if entry["target"] == target.name)
        short = [
            day for day, counts in sorted(days.items()) if _stored_actions(sent, target, day) < 0.99 * counts["actions"]
        ]
        line = next((line for line in err.splitlines() if f"target {target.name} stored less" in line), None)
        if short:
            named_any = True
            assert line is not None and line.endswith(", ".join(short)), err
        else:
            assert line is None
    assert named_any and "core:archive" in err


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
    assert " - " in out  # actions sent unknown


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
def test_check_day_compares_visits_and_actions_when_known():
    day = vf.SentDay("2025-01-01", visits=100, hits=500, actions=400)
    assert vf.check_day("T", day, 99, 396, 0.99).ok
    assert not vf.check_day("T", day, 98, 400, 0.99).ok
    assert not vf.check_day("T", day, 100, 395, 0.99).ok
    assert vf.check_day("T", vf.SentDay("2025-01-01", 100, 500), 100, 0, 0.99).ok
    assert vf.check_day("T", vf.SentDay("2025-01-01", 0, 0, 0), 0, 0, 0.99).ok


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
