"""In-process cost of the receiver's report data: tracking throughput and retained memory.

Why: the sink runs for hours at hundreds of hits/s, so what it keeps per visit decides whether a
long load test fits in memory, and the tracking path's speed decides whether it is ever the
bottleneck. This bench calls :meth:`~trafficinator_locust.receiver.tracker.Tracker.track` directly
(no HTTP, no gevent): ``--visits`` visits of ``--hits`` hits each (pageviews with a distinct URL
and title per visit, every 5th hit an event, a site search or an outlink, 1,500 referrer hosts), a
unique ``cid`` per visit, one visit starting per simulated second (so the 30-minute visit window
retires old ones: about 1,800 visits go on at once), all on one site-local day (at most 86,400
visits). Then every Reporting API day report the profiler reads is asked once.

Prints hits/s of the tracking path (best of ``--runs``), the memory the receiver still holds after
the run (``tracemalloc``, after a garbage collection, in a separate run) per 1,000 visits, and the
time to answer the reports. Asserts nothing; figures depend on the machine.

    .venv/bin/python bench/receiver_reports.py [--visits 20000] [--hits 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite  # noqa: E402
from trafficinator_locust.receiver.reporting import _METRIC_REPORTS, _TABLE_REPORTS, answer  # noqa: E402
from trafficinator_locust.receiver.store import InstanceState  # noqa: E402
from trafficinator_locust.receiver.tracker import Tracker  # noqa: E402
from trafficinator_locust.receiver.wsgi import Client  # noqa: E402

TOKEN = "bench-token"
T0 = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc).timestamp()
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def hits(visits: int, per_visit: int) -> list[tuple[float, dict[str, str]]]:
    """The hits of the run, in time order: (unix time, parameters)."""
    out: list[tuple[float, dict[str, str]]] = []
    for n in range(visits):
        start = T0 + n
        cid = f"{n:016x}"
        for k in range(per_visit):
            params = {"idsite": "1", "rec": "1", "cid": cid, "url": f"https://shop.example/p/{n}/{k}"}
            if k % 5 == 4:
                params.update(
                    [("e_c", "Video"), ("e_a", "Play"), ("e_n", f"clip-{n % 50}")]
                    if n % 3 == 0
                    else [("search", f"kw {n % 700}")]
                    if n % 3 == 1
                    else [("link", f"https://other.example/{n % 900}")]
                )
            else:
                params["action_name"] = f"Product {n} {k}"
            if k == 0:
                params["urlref"] = f"https://ref{n % 1500}.example/"
            out.append((start + 10 * k, params))
    out.sort(key=lambda item: item[0])
    return out


def run(stream: list[tuple[float, dict[str, str]]]) -> tuple[InstanceState, float]:
    state = InstanceState(ReceiverInstance("/b", {1: ReceiverSite(1)}, {TOKEN}), "/b")
    clock = Clock()
    tracker = Tracker(clock)
    client = Client(UA, "en-US,en;q=0.9", "10.0.0.1")
    started = time.perf_counter()
    for ts, params in stream:
        clock.now = ts
        tracker.track(state, params, client)
    return state, time.perf_counter() - started


def ask_reports(state: InstanceState, now: float) -> float:
    started = time.perf_counter()
    for method in [*_METRIC_REPORTS, *_TABLE_REPORTS]:
        answer(state, {"module": "API", "method": method, "idSite": "1", "date": "2026-11-25",
                       "token_auth": TOKEN, "filter_limit": "-1"}, now)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=20000)
    parser.add_argument("--hits", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.visits > 86000:
        parser.error("--visits: at most 86000 (one visit per second of one day)")
    stream = hits(args.visits, args.hits)
    best = min(run(stream)[1] for _ in range(args.runs))
    gc.collect()
    tracemalloc.start()
    state, _ = run(stream)
    gc.collect()
    retained, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report_seconds = ask_reports(state, stream[-1][0])
    print(f"visits {args.visits}, hits {len(stream)}")
    print(f"tracking: {len(stream) / best:,.0f} hits/s (best of {args.runs})")
    print(f"retained: {retained / 2**20:.1f} MB ({retained / args.visits * 1000 / 2**20:.2f} MB per 1,000 visits)")
    print(f"every day report once: {report_seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
