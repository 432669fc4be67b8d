"""Bulk transport vs single hits: tracking hits per second into the embedded receiver.

Why: backfill sends months of history; the question is how much bulk requests (batches of 50 hits
in one JSON POST, as ``trafficinator backfill`` sends them) gain over one form-POST per hit (what
a live Locust run sends). Both modes use the same client (``http.client`` keep-alive connections,
one per thread), the same number of threads and the same hits (pageviews with a unique ``cid``),
against the same receiver started in its own process on 127.0.0.1. Goal: bulk >= 5x single.

Prints figures and the ratio, asserts nothing. Bounded: two phases of ``--seconds`` each (default
8) plus start-up, about 20 s.

    .venv/bin/python bench/bulk.py [--seconds 8] [--threads 4] [--bulk-size 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trafficinator_locust.core.bulk import build_payload, encode_item, parse_answer  # noqa: E402
from trafficinator_locust.receiver.process import receiver_command, wait_until_listening  # noqa: E402

TOKEN = "bench-bulk-token-0123"
PATH = "/bench/matomo.php"


@dataclass
class Phase:
    """One measured mode."""

    name: str
    requests: int
    hits: int
    seconds: float
    stored: int
    threads: int

    @property
    def hits_per_second(self) -> float:
        return self.hits / self.seconds if self.seconds else 0.0

    @property
    def ms_per_request(self) -> float:
        """Average time per request seen by one thread (threads run side by side)."""
        return 1000 * self.seconds * self.threads / self.requests if self.requests else 0.0


def start_sink(workdir: Path) -> tuple[subprocess.Popen[str], int]:
    ready = workdir / "ready"
    command = receiver_command("--port", "0", "--instance", "/bench", "--token", TOKEN, "--ready-file", str(ready))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    try:
        wait_until_listening(process)
    except RuntimeError as error:
        raise SystemExit(str(error)) from None
    return process, int(ready.read_text())


def _hit(prefix: int, n: int) -> dict[str, str]:
    return {
        "idsite": "1",
        "rec": "1",
        "send_image": "0",
        "cid": f"{prefix:08x}{n:08x}",
        "url": "https://bench.example/page",
        "action_name": "Bench",
        "res": "1920x1080",
    }


def _worker(port: int, mode: str, bulk_size: int, deadline: float, index: int, totals: list[list[int]]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    prefix = (os.getpid() << 8 | index) & 0xFFFFFFFF
    counter = requests = hits = 0
    try:
        while time.monotonic() < deadline:
            if mode == "single":
                body = urlencode(_hit(prefix, counter)).encode()
                counter += 1
                connection.request(
                    "POST", PATH, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
                )
                response = connection.getresponse()
                response.read()
                if response.status == 204:
                    hits += 1
            else:
                items = [encode_item(_hit(prefix, counter + k)) for k in range(bulk_size)]
                counter += bulk_size
                connection.request(
                    "POST", PATH, body=build_payload(items, TOKEN), headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                hits += parse_answer(response.status, response.read(), bulk_size, TOKEN).tracked
            requests += 1
    finally:
        connection.close()
        totals[index] = [requests, hits]


def _stored(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/bench/sink/stats")
    hits = json.loads(connection.getresponse().read())["sites"]["1"]["hits"]
    connection.request("POST", "/bench/sink/reset", body=b"")
    connection.getresponse().read()
    connection.close()
    return hits


def measure(port: int, mode: str, seconds: float, threads: int, bulk_size: int) -> Phase:
    totals: list[list[int]] = [[0, 0] for _ in range(threads)]
    started = time.monotonic()
    deadline = started + seconds
    workers = [
        threading.Thread(target=_worker, args=(port, mode, bulk_size, deadline, i, totals)) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    return Phase(mode, sum(t[0] for t in totals), sum(t[1] for t in totals), elapsed, _stored(port), threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per mode (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=4, help="client threads = keep-alive connections (default: %(default)s)"
    )
    parser.add_argument("--bulk-size", type=int, default=50, help="hits per bulk request (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bulk-bench-") as tmp:
        sink, port = start_sink(Path(tmp))
        try:
            single = measure(port, "single", args.seconds, args.threads, args.bulk_size)
            bulk = measure(port, "bulk", args.seconds, args.threads, args.bulk_size)
        finally:
            sink.send_signal(signal.SIGTERM)
            try:
                sink.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait()
            if sink.stdout:
                sink.stdout.close()
    print(
        f"bulk vs single: embedded receiver on 127.0.0.1, http.client keep-alive, {args.threads} thread(s), "
        f"{args.seconds:g} s per mode, pageviews with a unique cid, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    header = f"{'mode':<22}{'requests':>10}{'hits':>10}{'stored':>10}{'hits/s':>10}{'ms/request':>12}"
    print(header)
    print("-" * len(header))
    for phase, label in ((single, "single form POST"), (bulk, f"bulk JSON x{args.bulk_size}")):
        print(
            f"{label:<22}{phase.requests:>10}{phase.hits:>10}{phase.stored:>10}{phase.hits_per_second:>10.0f}{phase.ms_per_request:>12.2f}"
        )
    ratio = bulk.hits_per_second / single.hits_per_second if single.hits_per_second else float("nan")
    print(f"ratio bulk/single, hits/s: {ratio:.1f}x  (goal >= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
