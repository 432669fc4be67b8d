"""Resident memory per 1,000 concurrent paced visitors on one Locust process, beside bare Locust users.

Why: a worker holds every simulated visitor mid-visit at once (a Matomo visit lasts minutes), so the
memory of one visitor decides how many a machine can hold. Goal: <= 60 MB per 1,000 visitors.

For each user count (default 0, 1000 and 3000) and each client, one ``locust --headless`` process
(local runner) runs against the embedded receiver on 127.0.0.1:

* **trafficinator**: a paced config (``visits_per_day`` high enough that permits never hold a user
  back), the default traffic model with a dwell time of 600 s, so every user sends the first hit
  of its visit and then reads its page: all of them are mid-visit at once;
* **baseline**: a bare ``FastHttpUser`` that sends one typical pageview (the same form POST) in
  ``on_start`` and then sleeps for an hour: Locust's own cost of a user with an open connection.

Once Locust says every user is spawned and the receiver has stored one hit per user, VmRSS of the
Locust process is read from /proc/<pid>/status (three readings a second apart, the last one kept)
and the run is stopped. MB per 1,000 = (RSS(N) - RSS(0 users)) / N * 1000; the slope between the
two largest counts is printed beside it (it leaves out what the first visitors cost once).

Prints figures, asserts nothing, writes ``bench/results/memory.json``. Bounded: each run ends
within ``--deadline`` seconds (about 1.5 min in all with the defaults).

    .venv/bin/python bench/memory.py [--users 0,1000,3000] [--spawn-rate 500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import locust  # noqa: E402,F401  (first: gevent monkey-patching before anything imports urllib3)

from bench.common import (  # noqa: E402
    PLUGIN_LOCUSTFILE,
    Endpoint,
    bare_locustfile,
    bench_env,
    fmt,
    raise_open_files,
    rss_mb,
    start_receiver_endpoint,
    stop,
    write_results,
)
from trafficinator_locust.core.table import render_table

GOAL_MB = 60.0
INSTANCE = "/mem"
CONFIG = """
targets:
  - name: Memory
    url: {url}
    site_id: 1
    visits_per_day: {per_day}
    traffic:
      dwell_seconds: {{min: 600, max: 600}}
      pause_between_visits: {{min: 0, max: 0}}
"""


@dataclass
class Reading:
    """RSS of one Locust process holding ``users`` users mid-visit."""

    client: str
    users: int
    rss_mb: float
    hits_stored: int
    seconds_to_ready: float
    ready: bool


def receiver_sites(endpoint: Endpoint) -> dict[str, int]:
    """Hits and visits the receiver stored for site 1 of the bench instance."""
    with urllib.request.urlopen(f"{endpoint.host}{INSTANCE}/sink/stats", timeout=10) as response:
        site = json.load(response).get("sites", {}).get("1", {})
    return {"hits": int(site.get("hits", 0)), "visits": int(site.get("visits", 0))}


def measure(
    client: str, options: list[str], users: int, endpoint: Endpoint, workdir: Path, args: argparse.Namespace
) -> Reading:
    """Start Locust with ``users`` users, wait until all are spawned and mid-visit, read its RSS, stop it."""
    before = receiver_sites(endpoint)["hits"]
    log = workdir / f"{client}-{users}.log"
    command = [
        sys.executable,
        "-m",
        "locust",
        "--headless",
        "--only-summary",
        "--loglevel",
        "INFO",
        *options,
        "-u",
        str(users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{int(args.deadline) + 30}s",
        "--stop-timeout",
        "1",
    ]
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=bench_env(workdir),
            preexec_fn=raise_open_files,
        )
        try:
            ready = False
            hits = 0
            while time.monotonic() - started < args.deadline and process.poll() is None:
                spawned = "All users spawned" in log.read_text(encoding="utf-8", errors="replace")
                hits = receiver_sites(endpoint)["hits"] - before
                if spawned and hits >= users:
                    ready = True
                    break
                time.sleep(0.1)
            waited = time.monotonic() - started
            rss = float("nan")
            if process.poll() is None:
                for _ in range(3):  # let the allocator settle after the last spawn
                    time.sleep(1.0)
                    rss = rss_mb(process.pid)
        finally:
            stop(process)
    if not ready:
        print(
            f"  note: {client} with {users} users was not ready within {args.deadline:g} s ({hits} hits stored); "
            f"log tail:\n{log.read_text(encoding='utf-8', errors='replace')[-2000:]}",
            file=sys.stderr,
        )
    return Reading(client, users, rss, hits, round(waited, 2), ready)


def per_thousand(readings: list[Reading]) -> list[dict[str, float | int | str]]:
    """MB per 1,000 users against the 0-user process, and the slope between the two largest counts."""
    rows: list[dict[str, float | int | str]] = []
    for client in dict.fromkeys(r.client for r in readings):
        mine = sorted((r for r in readings if r.client == client), key=lambda r: r.users)
        base = mine[0]
        for reading in mine[1:]:
            rows.append(
                {
                    "client": client,
                    "users": reading.users,
                    "rss_mb": reading.rss_mb,
                    "base_mb": base.rss_mb,
                    "mb_per_1000": (reading.rss_mb - base.rss_mb) / reading.users * 1000
                    if reading.users
                    else float("nan"),
                }
            )
        if len(mine) >= 3:
            low, high = mine[-2], mine[-1]
            rows.append(
                {
                    "client": client,
                    "users": f"{low.users}->{high.users}",
                    "rss_mb": high.rss_mb,
                    "base_mb": low.rss_mb,
                    "mb_per_1000": (high.rss_mb - low.rss_mb) / (high.users - low.users) * 1000,
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users",
        default="0,1000,3000",
        help="comma-separated user counts, the first the reference (default: %(default)s)",
    )
    parser.add_argument("--spawn-rate", type=int, default=500, help="users started per second (default: %(default)s)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        help="seconds a run may take to get every user mid-visit (default: %(default)s)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.users.split(",")]
    readings: list[Reading] = []
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        workdir = Path(tmp)
        receiver = start_receiver_endpoint(workdir, instance=INSTANCE)
        try:
            config = workdir / "traffic.yaml"
            # 1,000 visits per second (86.4 million a day): the permit bucket never holds a user back.
            config.write_text(CONFIG.format(url=receiver.url(), per_day=86_400_000))
            clients = {
                "bare FastHttpUser": [
                    "-f",
                    str(bare_locustfile(workdir, receiver.path, sleeping=True)),
                    "--host",
                    receiver.host,
                ],
                "trafficinator": ["-f", str(PLUGIN_LOCUSTFILE), "--traffic-config", str(config), "--traffic-state", ""],
            }
            print(
                f"memory: one Locust process (local runner), users spawned at {args.spawn_rate}/s, "
                f"embedded receiver on {receiver.host}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
                flush=True,
            )
            for users in counts:
                for client, options in clients.items():
                    reading = measure(client, options, users, receiver, workdir, args)
                    readings.append(reading)
                    print(
                        f"  {client:<18} {users:>6} users: RSS {fmt(reading.rss_mb, 1)} MB "
                        f"({reading.hits_stored} first hits stored, ready after {reading.seconds_to_ready:.1f} s)",
                        flush=True,
                    )
            visits = receiver_sites(receiver)["visits"]
        finally:
            receiver.stop()

    print()
    print(
        render_table(
            ["client", "users", "RSS MB", "hits stored", "ready"],
            [[r.client, r.users, fmt(r.rss_mb, 1), r.hits_stored, "yes" if r.ready else "NO"] for r in readings],
        )
    )
    rows = per_thousand(readings)
    print()
    print(
        render_table(
            ["client", "users", "RSS MB", "reference MB", "MB per 1,000 users"],
            [
                [
                    r["client"],
                    r["users"],
                    fmt(float(r["rss_mb"]), 1),
                    fmt(float(r["base_mb"]), 1),
                    fmt(float(r["mb_per_1000"]), 1),
                ]
                for r in rows
            ],
        )
    )
    mine = [float(r["mb_per_1000"]) for r in rows if r["client"] == "trafficinator" and isinstance(r["users"], int)]
    worst = max(mine) if mine else float("nan")
    print(
        f"trafficinator: {fmt(worst, 1)} MB per 1,000 concurrent paced visitors "
        f"(largest of the counts; goal <= {GOAL_MB:g}: "
        f"{'met' if worst <= GOAL_MB else 'not met'}); the receiver stored {visits} visits from both clients"
    )
    path = write_results(
        "memory",
        {
            "settings": vars(args),
            "goal_mb_per_1000": GOAL_MB,
            "readings": [asdict(r) for r in readings],
            "per_1000": rows,
            "trafficinator_mb_per_1000": worst,
        },
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
