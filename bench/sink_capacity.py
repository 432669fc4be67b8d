"""How many tracking hits per second the embedded sink stores, beside a trivial baseline.

Why: the demo and the end-to-end tests rely on the sink never being the bottleneck (target: at
least 3,000 hits/s on one core with keep-alive clients). Absolute figures depend on the machine,
so the same Locust client is measured in the same run against a bare gevent WSGI app that answers
204 to everything: the ratio sink/baseline is the figure to watch.

Both servers run in their own process on 127.0.0.1 (a free port); Locust runs headless in a third
process with ``FastHttpUser`` and sends form-POST pageviews with a unique ``cid`` each.
Prints figures, asserts nothing.

    .venv/bin/python bench/sink_capacity.py [--seconds 15] [--users 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

LOCUSTFILE = '''
import itertools
import os
import random

from locust import FastHttpUser, constant, task

PATH = os.environ["BENCH_PATH"]
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
_PREFIX = f"{random.getrandbits(32):08x}"
_IDS = itertools.count()


class Hit(FastHttpUser):
    wait_time = constant(0)

    @task
    def pageview(self):
        cid = f"{_PREFIX}{next(_IDS):08x}"
        body = ("idsite=1&rec=1&send_image=0&cid=" + cid
                + "&url=https%3A%2F%2Fbench.example%2Fpage&action_name=Bench&res=1920x1080")
        self.client.post(PATH, data=body, headers=HEADERS, name="hit")
'''

BASELINE = '''
from gevent.pywsgi import WSGIServer

count = 0


def app(environ, start_response):
    global count
    if environ["PATH_INFO"] == "/count":
        body = str(count).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    length = environ.get("CONTENT_LENGTH") or "0"
    if int(length):
        environ["wsgi.input"].read(int(length))
    count += 1
    start_response("204 No Content", [])
    return []


server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
print(f"baseline listening on http://127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
'''


@dataclass
class Result:
    """One measured server."""

    name: str
    requests: int
    failures: int
    rps: float
    avg_ms: float
    cpu_seconds: float
    served: int

    @property
    def per_cpu_second(self) -> float:
        """Requests the server answered per second of its own CPU time (one-core capacity)."""
        return self.served / self.cpu_seconds if self.cpu_seconds else float("nan")


def _start(command: list[str]) -> tuple[subprocess.Popen, int]:
    """Start a server process that prints one '... http://127.0.0.1:PORT ...' line when ready."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    port = int(line.split("http://127.0.0.1:", 1)[1].split()[0].split("/")[0])
    return process, port


def _cpu(process: subprocess.Popen) -> float:
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def _locust(workdir: Path, port: int, path: str, seconds: int, users: int) -> dict[str, str]:
    locustfile = workdir / "bench_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = workdir / f"run_{port}"
    locust = Path(sys.executable).with_name("locust")
    command = [
        str(locust), "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
        "-t", f"{seconds}s", "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix),
        "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2",
    ]
    subprocess.run(command, env={**os.environ, "BENCH_PATH": path}, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    return rows[0]


def _served(port: int, count_path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{count_path}") as response:
        answer = json.load(response)
    return answer if isinstance(answer, int) else answer["sites"]["1"]["hits"]


def _measure(name: str, command: list[str], path: str, workdir: Path, seconds: int,
             users: int, count_path: str) -> Result:
    process, port = _start(command)
    try:
        cpu_before = _cpu(process)
        row = _locust(workdir, port, path, seconds, users)
        cpu = _cpu(process) - cpu_before
        served = _served(port, count_path)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
    return Result(name, int(row["Request Count"]), int(row["Failure Count"]),
                  float(row["Requests/s"]), float(row["Average Response Time"]), cpu, served)


def _table(results: list[Result], seconds: int) -> str:
    header = (f"{'server':<14}{'locust req':>11}{'fail':>6}{'req/s':>8}{'avg ms':>8}"
              f"{'served':>9}{'CPU s':>7}{'CPU %':>7}{'served/CPU s':>14}")
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.name:<14}{r.requests:>11}{r.failures:>6}{r.rps:>8.0f}{r.avg_ms:>8.1f}"
                     f"{r.served:>9}{r.cpu_seconds:>7.1f}{100 * r.cpu_seconds / seconds:>7.0f}"
                     f"{r.per_cpu_second:>14.0f}")
    return "\n".join(lines)


def main() -> int:
    """Measure the baseline and the sink with the same client and print both and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        workdir = Path(tmp)
        baseline = _measure("baseline 204", [sys.executable, "-c", BASELINE], "/matomo.php",
                            workdir, args.seconds, args.users, "/count")
        sink_cmd = [sys.executable, "-m", "trafficinator_locust.cli", "sink", "--port", "0",
                    "--instance", "/bench", "--ready-file", str(workdir / "ready")]
        sink = _measure("sink", sink_cmd, "/bench/matomo.php", workdir, args.seconds, args.users,
                        "/bench/sink/stats")
    cores = psutil.cpu_count(logical=True)
    print(f"sink capacity: Locust FastHttpUser, {args.users} users, {args.seconds}s each, "
          f"form-POST pageviews, unique cid per hit, {cores} logical CPU(s), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(_table([baseline, sink], args.seconds))
    ratio = sink.rps / baseline.rps if baseline.rps else float("nan")
    print(f"ratio sink/baseline, Locust req/s:           {ratio:.2f}")
    print(f"ratio sink/baseline, served per server CPU s: "
          f"{sink.per_cpu_second / baseline.per_cpu_second:.2f}")
    print("served = answered as counted by the server (sink: stored hits); CPU % near 100 means "
          "the server was the bottleneck, otherwise the client was.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
