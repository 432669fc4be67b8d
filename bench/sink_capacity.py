"""How many tracking hits per second the embedded sink stores, beside a trivial baseline.

Why: the demo and the end-to-end tests rely on the sink never being the bottleneck (target: at
least 3,000 hits/s on one core with keep-alive clients). Absolute figures depend on the machine,
so the same Locust client is measured in the same run against a bare gevent WSGI app that answers
204 to everything: the ratio sink/baseline is the figure to watch.

Both servers run in their own process on 127.0.0.1 (a free port). The client runs in a third
process and sends form-POST pageviews with a unique ``cid`` each: ``wrk`` (Debian's, installed with
apt-get if missing) by default, because a single Locust process saturates before the server does;
``--client locust`` uses Locust's ``FastHttpUser`` instead. Prints figures, asserts nothing.

    .venv/bin/python bench/sink_capacity.py [--client wrk|locust] [--seconds 15] [--users 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

LOCUSTFILE = """
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
"""

BASELINE = """
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
"""


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
        str(locust),
        "-f",
        str(locustfile),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        f"http://127.0.0.1:{port}",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "2",
    ]
    subprocess.run(
        command,
        env={**os.environ, "BENCH_PATH": path},
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(f"{prefix}_stats.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    return rows[0]


WRK_SCRIPT = r"""
counter = 0
math.randomseed(os.time())
local prefix = math.random(1, 2^30)
local template = "idsite=1&rec=1&send_image=0&cid=%08x%08x"
  .. "&url=https%%3A%%2F%%2Fbench.example%%2Fpage&action_name=Bench&res=1920x1080"
request = function()
  counter = counter + 1
  local body = string.format(template, prefix, counter)
  return wrk.format("POST", wrk.path, {["Content-Type"]="application/x-www-form-urlencoded"}, body)
end
"""


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if not found:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and apt-get could not install it; use --client locust")
    return found


def _wrk(workdir: Path, port: int, path: str, seconds: int, users: int) -> dict[str, str]:
    script = workdir / "hit.lua"
    script.write_text(WRK_SCRIPT)
    output = subprocess.run(
        [ensure_wrk(), "-t1", f"-c{users}", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)] if latency else 0.0
    return {
        "Request Count": str(requests),
        "Failure Count": errors.group(1) if errors else "0",
        "Requests/s": re.search(r"Requests/sec:\s+([\d.]+)", output).group(1),
        "Average Response Time": str(float(latency.group(1)) * scale if latency else 0.0),
    }


def _served(port: int, count_path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{count_path}") as response:
        answer = json.load(response)
    return answer if isinstance(answer, int) else answer["sites"]["1"]["hits"]


def _measure(
    name: str, command: list[str], path: str, workdir: Path, seconds: int, users: int, count_path: str, client: str
) -> Result:
    process, port = _start(command)
    try:
        cpu_before = _cpu(process)
        row = (_wrk if client == "wrk" else _locust)(workdir, port, path, seconds, users)
        cpu = _cpu(process) - cpu_before
        served = _served(port, count_path)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
    return Result(
        name,
        int(row["Request Count"]),
        int(row["Failure Count"]),
        float(row["Requests/s"]),
        float(row["Average Response Time"]),
        cpu,
        served,
    )


def _table(results: list[Result], seconds: int) -> str:
    header = (
        f"{'server':<14}{'client req':>11}{'fail':>6}{'req/s':>8}{'avg ms':>8}"
        f"{'served':>9}{'CPU s':>7}{'CPU %':>7}{'served/CPU s':>14}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<14}{r.requests:>11}{r.failures:>6}{r.rps:>8.0f}{r.avg_ms:>8.1f}"
            f"{r.served:>9}{r.cpu_seconds:>7.1f}{100 * r.cpu_seconds / seconds:>7.0f}"
            f"{r.per_cpu_second:>14.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    """Measure the baseline and the sink with the same client and print both and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=50, help="Locust users or wrk connections")
    parser.add_argument("--client", choices=("wrk", "locust"), default="wrk")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        workdir = Path(tmp)
        baseline = _measure(
            "baseline 204",
            [sys.executable, "-c", BASELINE],
            "/matomo.php",
            workdir,
            args.seconds,
            args.users,
            "/count",
            args.client,
        )
        sink_cmd = [
            sys.executable,
            "-m",
            "trafficinator_locust.cli",
            "sink",
            "--port",
            "0",
            "--instance",
            "/bench",
            "--ready-file",
            str(workdir / "ready"),
        ]
        sink = _measure(
            "sink", sink_cmd, "/bench/matomo.php", workdir, args.seconds, args.users, "/bench/sink/stats", args.client
        )
    cores = psutil.cpu_count(logical=True)
    client = "wrk" if args.client == "wrk" else "Locust FastHttpUser"
    print(
        f"sink capacity: {client}, {args.users} connections, {args.seconds}s each, "
        f"form-POST pageviews, unique cid per hit, {cores} logical CPU(s), "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    print(_table([baseline, sink], args.seconds))
    ratio = sink.rps / baseline.rps if baseline.rps else float("nan")
    print(f"ratio sink/baseline, client req/s:           {ratio:.2f}")
    print(f"sink hits stored per second of its own CPU (one-core capacity): {sink.per_cpu_second:.0f}  (goal >= 3000)")
    print(f"ratio sink/baseline, served per server CPU s: {sink.per_cpu_second / baseline.per_cpu_second:.2f}")
    print(
        "served = answered as counted by the server (sink: stored hits); CPU % near 100 means "
        "the server was the bottleneck, otherwise the client was."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
