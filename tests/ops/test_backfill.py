"""Backfill: resuming mid-visit, the rate limiter, the checkpoint, bad input, then real runs into the
embedded receiver: exact stored visits per target and local day, interrupt + resume, a closed port.
(Day counts, placement and cdt rules are pure: tests/core/test_backfill_days.py.)"""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from trafficinator_locust.cli import main
from trafficinator_locust.core.backfill_days import BackfillVisitors, day_visits, day_window, run_id_for
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.errors import SendError, UsageError
from trafficinator_locust.core.protocol import instance_path
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visits import VisitPlanner
from trafficinator_locust.ops import backfill as bf
from trafficinator_locust.ops.checkpoint import Checkpoint, new_day, target_fingerprint
from trafficinator_locust.ops.rate_limit import TokenBucket
from trafficinator_locust.receiver.process import free_port, receiver_stats, start_receiver, stop_process

REPO = Path(__file__).resolve().parents[2]
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()


def resumable_target(write_yaml):
    """One target whose visits hold orders (an ``ec_id`` that must not change on resume)."""
    path = write_yaml("""
        seed: 5
        targets:
          - {name: Site, url: "http://127.0.0.1:9/site/matomo.php", site_id: 1, token_auth: site-token-1234,
             timezone: America/New_York, visits_per_day: 40, traffic: {ecommerce: {cart: 0.5, order: 0.4}}}
        """)
    return load_config(path).targets[0]


# --- resume ----------------------------------------------------------------------------------------
def test_plans_are_deterministic_with_the_seed_and_resume_mid_visit_gives_the_same_hits(write_yaml):
    target = resumable_target(write_yaml)
    day = date(2025, 6, 2)

    def stream(seed, cursor=(0, 0)):
        job = bf.TargetJob(
            target,
            0,
            target.pace(),
            [day],
            seed,
            run_id_for(seed, target.name),
            VisitPlanner(target, seed),
            TrackingEncoder(target, run_id=run_id_for(seed, target.name)),
        )
        return [
            (item.visit, item.hit, item.query) for item in bf._items(job, day_window(job.pace, day, FAR_FUTURE), cursor)
        ]

    full = stream(5)
    assert full == stream(5) and full != stream(6)
    orders = [q for _, _, q in full if "ec_id=" in q]
    assert orders, "the scenario needs orders"
    at = next(i for i, (visit, hit, _) in enumerate(full) if visit == 17 and hit == 2)
    assert stream(5, (17, 2)) == full[at:]


# --- limiter and checkpoint ------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_hits_per_second_bucket_lets_a_batch_through_then_paces_without_busy_waiting():
    clock = FakeClock()
    bucket = TokenBucket(100, burst=50, clock=clock)
    waits = [bucket.acquire(50, sleep=clock.sleep) for _ in range(5)]
    assert waits == [0, 0.5, 0.5, 0.5, 0.5] and clock.slept == [0.5] * 4
    clock.now += 10  # idle: the bucket refills to its burst, never beyond
    assert bucket.acquire(50, sleep=clock.sleep) == 0 and bucket.acquire(50, sleep=clock.sleep) == 0.5


def test_checkpoint_is_written_whole_and_rejects_other_files(tmp_path):
    path = tmp_path / "cp.json"
    checkpoint = Checkpoint.load(path)
    checkpoint.adopt("Shop", "f1", 5, "bfx")["days"]["2025-01-01"] = {"planned": 3}
    checkpoint.save()
    assert Checkpoint.load(path).data == checkpoint.data
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temp file left behind
    path.write_text('{"version": 99}')
    with pytest.raises(UsageError, match="version"):
        Checkpoint.load(path)
    path.write_text("{not json")
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        Checkpoint.load(path)


# --- bad input: exit 2, a clear message, no traceback ----------------------------------------------
BAD_CONFIG = """
seed: 1
targets:
  - name: Good
    url: http://127.0.0.1:9/good/matomo.php
    site_id: 1
    token_auth: good-token-1234
    visits_per_day: 10
    timezone: Asia/Tokyo
  - name: NoToken
    url: http://127.0.0.1:9/nt/matomo.php
    site_id: 2
    visits_per_day: 10
  - name: NoPace
    url: http://127.0.0.1:9/np/matomo.php
    site_id: 3
    token_auth: np-token-1234
"""


def _main(capsys, *args):
    try:
        code = main(list(map(str, args)))
    except SystemExit as exit_:  # argparse and config errors exit directly
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_token_and_missing_pace_are_named_with_the_config_path(write_yaml, capsys, tmp_path):
    config = write_yaml(BAD_CONFIG)
    yesterday = date.today() - timedelta(days=2)
    code, out, err = _main(
        capsys,
        "backfill",
        config,
        "--from",
        yesterday,
        "--to",
        yesterday,
        "--checkpoint",
        tmp_path / "cp.json",
        "--target",
        "NoToken",
        "--target",
        "NoPace",
    )
    assert code == 2 and "Traceback" not in err
    assert f"{config}: targets[1] (NoToken): no token_auth" in err
    assert f"{config}: targets[2] (NoPace): no visits_per_day" in err
    assert not (tmp_path / "cp.json").exists()


def test_a_future_day_is_refused(write_yaml, capsys, tmp_path):
    config = write_yaml(BAD_CONFIG)
    tomorrow_everywhere = date.today() + timedelta(days=2)
    code, _, err = _main(
        capsys,
        "backfill",
        config,
        "--from",
        date.today() - timedelta(days=3),
        "--to",
        tomorrow_everywhere,
        "--target",
        "Good",
        "--checkpoint",
        tmp_path / "cp.json",
    )
    assert code == 2 and "Good" in err and "future" in err and "Asia/Tokyo" in err


def test_a_range_over_max_days_is_refused(write_yaml, capsys, tmp_path):
    config = write_yaml(BAD_CONFIG)
    last = date.today() - timedelta(days=2)
    code, _, err = _main(
        capsys,
        "backfill",
        config,
        "--from",
        last - timedelta(days=400),
        "--to",
        last,
        "--target",
        "Good",
        "--checkpoint",
        tmp_path / "cp.json",
    )
    assert code == 2 and "401 days" in err and "--max-days 400" in err
    code, _, err = _main(
        capsys,
        "backfill",
        config,
        "--from",
        last,
        "--to",
        last - timedelta(days=1),
        "--target",
        "Good",
        "--checkpoint",
        tmp_path / "cp.json",
    )
    assert code == 2 and "is after --to" in err
    code, _, err = _main(capsys, "backfill", config, "--from", "2025-13-01", "--to", last)
    assert code == 2 and "--from" in err and "Traceback" not in err


def test_unknown_target_and_changed_settings_are_refused(write_yaml, capsys, tmp_path):
    config = write_yaml(BAD_CONFIG)
    day = date.today() - timedelta(days=3)
    code, _, err = _main(
        capsys, "backfill", config, "--from", day, "--to", day, "--target", "Nope", "--checkpoint", tmp_path / "cp.json"
    )
    assert code == 2 and "--target Nope" in err and "Good, NoToken, NoPace" in err
    checkpoint = Checkpoint(tmp_path / "cp.json")
    checkpoint.adopt("Good", "another-fingerprint", 1, "bfold")
    checkpoint.save()
    code, _, err = _main(
        capsys, "backfill", config, "--from", day, "--to", day, "--target", "Good", "--checkpoint", tmp_path / "cp.json"
    )
    assert code == 2 and "Good was backfilled with other settings" in err


# --- the delivery policy in the backfill, against an in-process Matomo (ADR 014) --------------------------
class MatomoInMemory:
    """One Matomo for every target: each bulk request is one transaction, like Matomo's.

    ``fail(call)`` rolls a request back like a deadlock (500, tracked 0); an item matching ``poison``
    rolls its request back (500, tracked = items before it); an item matching ``invalid`` is skipped and
    listed; ``silent(call)`` sends the request but no answer comes back (it was stored).
    """

    def __init__(self, fail=lambda call: False, poison=None, invalid=None, silent=lambda call: False):
        self.fail, self.poison, self.invalid, self.silent = fail, poison, invalid, silent
        self.stored: Counter[str] = Counter()
        self.calls = 0

    def answer(self, items: list[str]) -> tuple[int, bytes]:
        self.calls += 1
        if self.fail(self.calls):
            return 500, b'{"status":"error","tracked":0,"invalid":0}'
        for position, item in enumerate(items):
            if self.poison is not None and self.poison(item):
                return 500, json.dumps({"status": "error", "tracked": position, "message": "plugin"}).encode()
        skipped = [n for n, item in enumerate(items) if self.invalid is not None and self.invalid(item)]
        self.stored.update(item for n, item in enumerate(items) if n not in skipped)
        answer = {"status": "success", "tracked": len(items) - len(skipped), "invalid": len(skipped)}
        return 200, json.dumps({**answer, "invalid_indices": skipped}).encode()

    def factory(self, target, timeout):
        matomo = self

        class Poster:
            def post(self, body, content_type, settle=None):
                status, answer = matomo.answer(json.loads(body)["requests"])
                if matomo.silent(matomo.calls):
                    raise SendError("no answer from it: timed out", retryable=False)
                if settle is not None:
                    settle(status, answer)
                return status, answer

            def close(self):
                return None

        return Poster()


POLICY_CONFIG = """
seed: 9
defaults:
  traffic: {pageviews: {min: 2, max: 4}, ecommerce: {cart: 0.4, order: 0.4}}
  bulk_retry_delay: 0
targets:
  - {name: One, url: "http://127.0.0.1:9/one/matomo.php", site_id: 1, token_auth: one-token-1234,
     visits_per_day: 30}
  - {name: Two, url: "http://127.0.0.1:9/two/matomo.php", site_id: 2, token_auth: two-token-5678,
     visits_per_day: 20, timezone: Asia/Tokyo}
"""
POLICY_DAYS = (date(2025, 3, 10), date(2025, 3, 12))


def _planned_queries(config):
    """Every hit the backfill plans for the days, per target (what Matomo must end up with)."""
    planned = {}
    for target in config.targets:
        job = bf.prepare(config, _options(), Checkpoint(None), FAR_FUTURE)
        job = next(j for j in job if j.name == target.name)
        windows = [day_window(job.pace, day, FAR_FUTURE) for day in job.days]
        planned[target.name] = [
            item.query for window in windows for item in bf._items(job, window, (0, 0), job.visitors.tickets(window))
        ]
    return planned


def _options(**extra):
    return bf.BackfillOptions(
        first=POLICY_DAYS[0], last=POLICY_DAYS[1], checkpoint=None, report=None, progress_every=0.01, **extra
    )


def _backfill_in_memory(config, matomo, **extra):
    out, err = io.StringIO(), io.StringIO()
    options = _options(**extra)
    code = bf.run_backfill(config, options, out=out, err=err, now=FAR_FUTURE, poster_factory=matomo.factory)
    return code, out.getvalue(), err.getvalue()


def test_deadlocks_between_targets_are_retried_and_every_hit_is_stored_once(write_yaml):
    config = load_config(write_yaml(POLICY_CONFIG))
    planned = _planned_queries(config)
    matomo = MatomoInMemory(fail=lambda call: call % 3 == 1)  # a third of the requests deadlock, the first too
    code, out, err = _backfill_in_memory(config, matomo)
    assert code == 0, out + err
    assert matomo.stored == Counter(q for queries in planned.values() for q in queries)
    assert max(matomo.stored.values()) == 1 and "backfill complete" in out


def test_an_interrupted_backfill_resumes_with_the_same_visitors_and_sends_every_hit_once(write_yaml, tmp_path):
    config = load_config(write_yaml(POLICY_CONFIG))
    planned = _planned_queries(config)  # uninterrupted: tickets from each target's book, days in order
    matomo = MatomoInMemory()
    path = tmp_path / "cp.json"
    options = bf.BackfillOptions(first=POLICY_DAYS[0], last=POLICY_DAYS[1], checkpoint=path, report=None, bulk_size=7)
    out, err = io.StringIO(), io.StringIO()
    stopped = bf.run_backfill(
        config, bf.BackfillOptions(**{**vars(options), "stop_after_batches": 30}), out=out, err=err,
        now=FAR_FUTURE, poster_factory=matomo.factory,
    )  # fmt: skip
    assert stopped != 0 and 0 < sum(matomo.stored.values()) < sum(len(q) for q in planned.values())
    saved = json.loads(path.read_text())["targets"]
    assert {saved[name]["visitors"] for name in saved} == {"book"}
    # A target stopped in its second day or later: its resumed day needs the replayed book of the days before.
    assert any(
        any(day["done"] for day in t["days"].values())
        and any(not day["done"] and day["cursor"] != [0, 0] for day in t["days"].values())
        for t in saved.values()
    ), saved
    code = bf.run_backfill(config, options, out=out, err=err, now=FAR_FUTURE, poster_factory=matomo.factory)
    assert code == 0, out.getvalue() + err.getvalue()
    assert matomo.stored == Counter(q for queries in planned.values() for q in queries)
    assert max(matomo.stored.values()) == 1


def test_a_checkpoint_from_before_visitor_books_resumes_with_the_fixed_pool(write_yaml, tmp_path):
    config = load_config(write_yaml(POLICY_CONFIG))
    one = config.targets[0]
    day = POLICY_DAYS[0]
    window = day_window(one.pace(), day, FAR_FUTURE)
    state = new_day(window, one.pace().plan(day).end)
    state["cursor"] = [5, 1]  # half-way through visit 5 when the old version stopped
    old = {"fingerprint": target_fingerprint(one), "seed": 9, "run_id": run_id_for(9, one.name), "days": {}}
    old["days"][day.isoformat()] = state
    path = tmp_path / "cp.json"
    path.write_text(json.dumps({"version": 1, "targets": {one.name: old}}))
    options = bf.BackfillOptions(first=day, last=day, targets=[one.name], checkpoint=path, report=None)
    [job] = bf.prepare(config, options, Checkpoint.load(path), FAR_FUTURE)
    assert job.visitors is None  # the fixed pool, as the day began: visit 5 keeps its visitor
    legacy = [item.query for item in bf._items(job, window, (5, 1))]
    matomo = MatomoInMemory()
    out, err = io.StringIO(), io.StringIO()
    code = bf.run_backfill(config, options, out=out, err=err, now=FAR_FUTURE, poster_factory=matomo.factory)
    assert code == 0, out.getvalue() + err.getvalue()
    assert matomo.stored == Counter(legacy)
    assert "visitors" not in json.loads(path.read_text())["targets"][one.name]


def test_a_hit_matomo_refuses_is_counted_by_kind_and_the_rest_is_stored_once(write_yaml, tmp_path):
    config = load_config(write_yaml(POLICY_CONFIG))
    planned = _planned_queries(config)
    orders = {q for queries in planned.values() for q in queries if "ec_id=" in q}
    assert orders
    matomo = MatomoInMemory(poison=lambda item: "ec_id=" in item)  # Matomo refuses every order
    report = tmp_path / "report.json"
    out, err = io.StringIO(), io.StringIO()
    options = bf.BackfillOptions(
        first=POLICY_DAYS[0], last=POLICY_DAYS[1], checkpoint=tmp_path / "cp.json", report=report
    )
    code = bf.run_backfill(config, options, out=out, err=err, now=FAR_FUTURE, poster_factory=matomo.factory)
    assert code == 0, out.getvalue() + err.getvalue()
    assert matomo.stored == Counter(q for queries in planned.values() for q in queries if q not in orders)
    document = json.loads(report.read_text())
    refused = {entry["target"]: entry["refused_hits"] for entry in document["targets"]}
    assert sum(r["total"] for r in refused.values()) == len(orders)
    assert all(set(r["by_kind"]) == {"order"} for r in refused.values() if r["total"])
    assert all(
        "alone, 4 tries" in r["sample"] and "one-token" not in r["sample"] for r in refused.values() if r["total"]
    )
    days = [d for entry in document["targets"] for d in entry["days"].values()]
    assert sum(d["invalid"] for d in days) == len(orders) and all(d["complete"] for d in days)
    assert sum(d["hits"] for d in days) == sum(len(q) for q in planned.values())
    assert sum(d["tracked"] for d in days) == sum(matomo.stored.values())


def test_invalid_hits_are_refused_without_resending_and_a_wholly_refused_batch_stops_its_target(write_yaml):
    config = load_config(write_yaml(POLICY_CONFIG))
    planned = _planned_queries(config)
    matomo = MatomoInMemory(invalid=lambda item: "idsite=2" in item or "idgoal=0" in item and "idsite=1" in item)
    code, out, err = _backfill_in_memory(config, matomo)
    assert code == 1 and "target Two failed" in err and "refused every hit of a batch of 50" in err
    assert "target One failed" not in err
    assert matomo.stored == Counter(q for q in planned["One"] if "idgoal=0" not in q)  # One's carts/orders refused
    assert not any("idsite=2" in q for q in matomo.stored)


def test_a_batch_without_an_answer_is_not_resent_and_stops_its_target(write_yaml):
    config = load_config(write_yaml(POLICY_CONFIG))
    matomo = MatomoInMemory(silent=lambda call: call == 2)
    code, out, err = _backfill_in_memory(config, matomo, targets=["One"])
    assert code == 1 and "timed out" in err and "may have stored it" in err
    assert max(matomo.stored.values()) == 1 and matomo.calls == 2


def test_stopping_while_waiting_to_resend_keeps_the_checkpoint_exact(write_yaml, tmp_path):
    config = load_config(write_yaml(POLICY_CONFIG.replace("bulk_retry_delay: 0", "bulk_retry_delay: 0.05")))
    planned = _planned_queries(config)
    stop = threading.Event()
    matomo = MatomoInMemory(fail=lambda call: call >= 5 and (stop.set() or True))  # Matomo goes away; Ctrl-C
    options = bf.BackfillOptions(
        first=POLICY_DAYS[0], last=POLICY_DAYS[1], checkpoint=tmp_path / "cp.json", report=None, targets=["One"]
    )
    code = bf.run_backfill(
        config, options, out=io.StringIO(), err=io.StringIO(), now=FAR_FUTURE, poster_factory=matomo.factory, stop=stop
    )
    assert code == 130
    matomo.fail = lambda call: False
    code = bf.run_backfill(
        config, options, out=io.StringIO(), err=io.StringIO(), now=FAR_FUTURE, poster_factory=matomo.factory
    )
    assert code == 0 and matomo.stored == Counter(planned["One"])


# --- end to end into the embedded receiver ----------------------------------------------------------
E2E_CONFIG = """
seed: 2024
defaults:
  traffic:
    pageviews: {{min: 2, max: 5}}
    visitors: {{returning: 0.3, pool_size: 25, logged_in: 0.1}}
    ecommerce: {{product_view: 0.2, cart: 0.35, order: 0.25}}
    actions: {{search: 0.2, event: 0.3, goal: 0.1}}
    goals: [{{id: 1, revenue: {{min: 5, max: 50}}}}]
targets:
  - name: Berlin
    url: http://127.0.0.1:{port}/berlin/matomo.php
    site_id: 1
    token_auth: e2e-berlin-token-111
    timezone: Europe/Berlin
    visits_per_day: 28
    profile: {{weekdays: [1, 1, 1, 1, 1.5, 0.75, 0.75]}}
  - name: NewYork
    url: http://127.0.0.1:{port}/ny/matomo.php
    site_id: 2
    token_auth: e2e-ny-token-222
    timezone: America/New_York
    visits_per_day: 20
    profile: {{hours: [0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 1, 1, 0, 0]}}
  - name: Tokyo
    url: http://127.0.0.1:{port}/tokyo/matomo.php
    site_id: 3
    token_auth: e2e-tokyo-token-333
    timezone: Asia/Tokyo
    visits_per_day: 36
{extra}"""
CLOSED_TARGET = """  - name: Closed
    url: http://127.0.0.1:{closed}/closed/matomo.php
    site_id: 4
    token_auth: e2e-closed-token-444
    visits_per_day: 20
"""


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backfill")
    port = free_port()
    config = folder / "traffic.yaml"
    config.write_text(E2E_CONFIG.format(port=port, extra=""), encoding="utf-8")
    closed = folder / "with-closed.yaml"
    closed.write_text(E2E_CONFIG.format(port=port, extra=CLOSED_TARGET.format(closed=free_port())), encoding="utf-8")
    sink = start_receiver(config, port, {**__import__("os").environ})
    last = datetime.now(timezone.utc).date() - timedelta(days=2)  # past in every zone
    try:
        yield {
            "folder": folder,
            "port": port,
            "config": config,
            "closed": closed,
            "first": last - timedelta(days=6),
            "last": last,
        }
    finally:
        stop_process(sink)


def _reset(port: int) -> None:
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{port}/sink/reset", data=b"", method="POST"), timeout=10
    ).read()


def _backfill(e2e, *extra, config=None, name="run"):
    folder = e2e["folder"]
    command = [
        sys.executable,
        "-m",
        "trafficinator_locust.cli",
        "backfill",
        str(config or e2e["config"]),
        "--from",
        e2e["first"].isoformat(),
        "--to",
        e2e["last"].isoformat(),
        "--checkpoint",
        str(folder / f"{name}.checkpoint.json"),
        "--report",
        str(folder / f"{name}.report.json"),
        *map(str, extra),
    ]
    return command


def _run(command, timeout=60):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _planned(e2e, names=("Berlin", "NewYork", "Tokyo")):
    config = load_config(e2e["config"])
    days = [e2e["first"] + timedelta(days=n) for n in range(7)]
    return {t.name: {d.isoformat(): t.pace().cap(d) for d in days} for t in config.targets if t.name in names}


def _stored(e2e):
    config = load_config(e2e["config"])
    stats = receiver_stats(e2e["port"])
    return {t.name: stats[instance_path(t.url)]["sites"][str(t.site_id)] for t in config.targets}


def _assert_exact(e2e, planned):
    stored = _stored(e2e)
    for name, days in planned.items():
        site = stored[name]
        assert site["visits_by_day"] == {d: n for d, n in days.items() if n}, name
        assert site["invalid"] == {}, (name, site["invalid"])  # a repeated ec_id would be invalid
    assert sum(stored[name]["actions"]["order"] for name in planned) > 10
    return stored


def test_three_targets_seven_days_store_exactly_the_planned_visits_per_local_day(e2e):
    _reset(e2e["port"])
    result = _run(_backfill(e2e, "--max-hits-per-second", 100000, name="exact"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    planned = _planned(e2e)
    assert len({n for days in planned.values() for n in days.values()}) > 2  # weekday factors at work
    _assert_exact(e2e, planned)
    report = json.loads((e2e["folder"] / "exact.report.json").read_text())
    for entry in report["targets"]:
        days = entry["days"]
        assert {d: v["visits"] for d, v in days.items()} == planned[entry["target"]]
        assert all(v["tracked"] == v["hits"] > 0 and v["invalid"] == 0 and v["complete"] for v in days.values())
        assert entry["status"] == "complete"
    assert "backfill complete" in result.stdout and "Berlin" in result.stdout
    for token in ("e2e-berlin-token-111", "e2e-ny-token-222", "e2e-tokyo-token-333"):
        assert token not in result.stdout + result.stderr
        assert token not in (e2e["folder"] / "exact.report.json").read_text()
        assert token not in (e2e["folder"] / "exact.checkpoint.json").read_text()
    again = _run(_backfill(e2e, name="exact"))  # every day finished: nothing is sent twice
    assert again.returncode == 0 and _stored(e2e)["Tokyo"]["hits"] == sum(
        v["hits"] for v in report["targets"][2]["days"].values()
    )


def _batches_planned(e2e) -> int:
    config = load_config(e2e["config"])
    total = 0
    for target in config.targets:
        pace, planner = target.pace(), VisitPlanner(target, 2024)
        visitors = BackfillVisitors(planner, pace)
        for n in range(7):
            window = day_window(pace, e2e["first"] + timedelta(days=n), time.time())
            hits = sum(len(v.times) for v in day_visits(planner, pace, window, 0, visitors.tickets(window)))
            total += math.ceil(hits / 50)
    return total


def test_a_run_stopped_half_way_resumes_without_duplicates(e2e):
    _reset(e2e["port"])
    half = _batches_planned(e2e) // 2
    first = _run(_backfill(e2e, "--stop-after-batches", half, name="resume"))
    assert first.returncode == 130, first.stdout[-2000:] + first.stderr[-2000:]
    assert "run the same command again to resume" in first.stdout
    checkpoint = json.loads((e2e["folder"] / "resume.checkpoint.json").read_text())
    # Days are added to the checkpoint when started: count finished ones against every planned day.
    finished = sum(d["done"] for t in checkpoint["targets"].values() for d in t["days"].values())
    assert 0 < finished < sum(len(days) for days in _planned(e2e).values()), finished
    stored_half = sum(site["visits"] for site in _stored(e2e).values())
    assert 0 < stored_half < sum(sum(days.values()) for days in _planned(e2e).values())
    second = _run(_backfill(e2e, name="resume"))
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    _assert_exact(e2e, _planned(e2e))


def test_sigterm_stops_cleanly_and_the_rerun_completes_exactly(e2e):
    _reset(e2e["port"])
    checkpoint = e2e["folder"] / "term.checkpoint.json"
    process = subprocess.Popen(
        _backfill(e2e, "--max-hits-per-second", 300, name="term"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for real progress, not for a fixed time
            if checkpoint.exists():
                days = [d for t in json.loads(checkpoint.read_text())["targets"].values() for d in t["days"].values()]
                if sum(d["hits"] for d in days) >= 300:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("no progress in the checkpoint within 30 s")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    assert "SIGTERM" in out
    saved = json.loads(checkpoint.read_text())
    assert not all(d["done"] for t in saved["targets"].values() for d in t["days"].values())
    rerun = _run(_backfill(e2e, name="term"))
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    _assert_exact(e2e, _planned(e2e))


def test_a_target_on_a_closed_port_fails_alone(e2e):
    _reset(e2e["port"])
    result = _run(_backfill(e2e, "--retries", 1, config=e2e["closed"], name="closed"))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "target Closed failed" in result.stderr and "connection refused" in result.stderr
    _assert_exact(e2e, _planned(e2e))
    report = json.loads((e2e["folder"] / "closed.report.json").read_text())
    status = {entry["target"]: entry["status"] for entry in report["targets"]}
    assert status == {"Berlin": "complete", "NewYork": "complete", "Tokyo": "complete", "Closed": "failed"}


def test_dry_run_sends_nothing(e2e, capsys):
    _reset(e2e["port"])
    code, out, _ = _main(
        capsys,
        "backfill",
        e2e["config"],
        "--from",
        e2e["first"],
        "--to",
        e2e["last"],
        "--dry-run",
        "--checkpoint",
        e2e["folder"] / "dry.json",
    )
    assert code == 0 and "dry run" in out and "Tokyo" in out
    assert not (e2e["folder"] / "dry.json").exists()
    assert sum(site["hits"] for site in _stored(e2e).values()) == 0


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one(write_yaml):
    target = resumable_target(write_yaml)
    job = bf.TargetJob(
        target,
        0,
        target.pace(),
        [date(2025, 1, 1), date(2025, 1, 2)],
        5,
        "bf",
        VisitPlanner(target, 5),
        TrackingEncoder(target),
    )
    plain = io.StringIO()
    progress = bf.Progress([job], plain, 1.0)
    progress.done["Site"], progress.hits["Site"] = 1, 1234
    progress.show()
    progress.show()  # unchanged: no new line
    assert plain.getvalue() == "backfill [##########----------] 1/2 days | Site 1,234 hits\n"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    progress = bf.Progress([job], tty, 1.0)
    progress.show()
    progress.done["Site"] = 2
    progress.show(final=True)
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("2/2 days | Site 0 hits\n")
