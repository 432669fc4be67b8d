"""Time from starting ``locust`` to the first request the endpoint receives, for 1, 10 and 100 targets.

Why: users judge a tool by how fast it gets going, and a config with many Matomo instances builds
one user class, visit planner and encoder per target at start. Goal: 100 targets < 3 s.

Each run starts ``locust --headless`` (local runner) and watches the receiving side: nginx's access
log, whose lines carry the request time in milliseconds (``$msec``), or, without nginx, the embedded
receiver's stats polled every 10 ms. The clock starts just before the process is started; the
figures are the first request, and the moment every target has received one (``-u`` = the number
of targets, all spawned at once). Configs are generated in a temp dir, every target pointing to its
own path on the same 127.0.0.1 endpoint. Two pacings: ``stress`` (no rate: the plugin's own start-up)
and ``paced`` (100 visits/s per target, so the first permit is at most 10 ms away: adds the permit
broker's first lease). Baseline: a bare locustfile with one ``FastHttpUser`` posting one pageview.
Each case runs ``--repeats`` times; the median is shown (and the spread).

Prints figures, asserts nothing, writes ``bench/results/startup.json``. Bounded: each run is stopped
once every target got a request, or after ``--deadline`` seconds; before each start the bench waits
up to ``--settle`` seconds for a quiet machine (about 1 min in all on a quiet machine).

    .venv/bin/python bench/startup.py [--targets 1,10,100] [--repeats 3] [--endpoint nginx|receiver]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    start_endpoint,
    stop,
    wait_for_quiet,
    write_results,
)
from trafficinator_locust.core.table import render_table

GOAL_SECONDS = 3.0
PACED_PER_DAY = 8_640_000  # 100 visits/s per target: the first permit of a fresh bucket after 10 ms


def target_path(index: int) -> str:
    return f"/t{index:03d}/matomo.php"


def write_config(workdir: Path, count: int, host: str, paced: bool) -> Path:
    """``count`` targets, each on its own tracker path of the endpoint (site 1 of instance /tNNN)."""
    lines = ["targets:"]
    for index in range(1, count + 1):
        rate = f", visits_per_day: {PACED_PER_DAY}" if paced else ""
        lines.append(f'  - {{name: T{index:03d}, url: "{host}{target_path(index)}", site_id: 1{rate}}}')
    path = workdir / f"targets-{count}-{'paced' if paced else 'stress'}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Arrivals:
    """When each tracker path first received a request, read on the receiving side."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.first: dict[str, float] = {}
        self._offset = 0
        self._before: dict[str, int] = self._receiver_hits() if endpoint.kind == "receiver" else {}
        if endpoint.access_log is not None:  # what earlier runs left in the log is not this run's
            self._read_log()
            self.first.clear()

    def poll(self) -> None:
        if self.endpoint.access_log is not None:
            self._read_log()
        else:
            now = time.time()
            for path, hits in self._receiver_hits().items():
                if hits > self._before.get(path, 0):
                    self.first.setdefault(path, now)

    def _read_log(self) -> None:
        assert self.endpoint.access_log is not None
        with open(self.endpoint.access_log, encoding="utf-8", errors="replace") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        for line in complete.splitlines():
            stamp, _method, path, *_ = line.split(" ")
            self.first.setdefault(path, float(stamp))

    def _receiver_hits(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.endpoint.host}/sink/stats", timeout=5) as response:
            stats = json.load(response)
        return {
            f"{prefix}/matomo.php": sum(site.get("hits", 0) for site in data.get("sites", {}).values())
            for prefix, data in stats.items()
        }


@dataclass
class Start:
    """One start of Locust: seconds to the first request and to a request on every target."""

    case: str
    targets: int
    first_request: float
    all_targets: float
    reached: int


def measure(case: str, options: list[str], targets: int, endpoint: Endpoint, workdir: Path, deadline: float) -> Start:
    arrivals = Arrivals(endpoint)
    wanted = {target_path(i) for i in range(1, targets + 1)} if case != "bare" else {endpoint.path}
    command = [
        sys.executable,
        "-m",
        "locust",
        "--headless",
        "--only-summary",
        "--loglevel",
        "WARNING",
        *options,
        "-u",
        str(targets),
        "-r",
        str(targets),
        "-t",
        f"{int(deadline) + 30}s",
        "--stop-timeout",
        "1",
    ]
    log = open(workdir / f"{case}-{targets}.log", "w", encoding="utf-8")
    started = time.time()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=bench_env(workdir))
    try:
        while time.time() - started < deadline and process.poll() is None and not wanted <= arrivals.first.keys():
            time.sleep(0.005 if endpoint.access_log is not None else 0.01)
            arrivals.poll()
    finally:
        stop(process)
        log.close()
    seen = [arrivals.first[path] - started for path in wanted if path in arrivals.first]
    if len(seen) < len(wanted):
        tail = (workdir / f"{case}-{targets}.log").read_text(encoding="utf-8", errors="replace")[-1500:]
        print(
            f"  note: {case} with {targets} target(s): {len(seen)} reached within {deadline:g} s; log tail:\n{tail}",
            file=sys.stderr,
        )
    return Start(
        case,
        targets,
        min(seen) if seen else float("nan"),
        max(seen) if len(seen) == len(wanted) else float("nan"),
        len(seen),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1,10,100", help="comma-separated target counts (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="starts per case; the median is shown (default: %(default)s)"
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=20.0,
        help="seconds a start may take before it is given up (default: %(default)s)",
    )
    parser.add_argument("--endpoint", choices=("nginx", "receiver"), default="nginx")
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help=(
            "before each start, wait up to this many seconds for other processes to leave the CPU "
            "(default: %(default)s; 0: don't)"
        ),
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.targets.split(",")]
    starts: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        workdir = Path(tmp)
        # The receiver learns its instances (/t001 ... /tNNN) from the largest config.
        receiver_config = write_config(workdir, max(counts), "http://127.0.0.1:9", paced=False)
        endpoint = start_endpoint(workdir, args.endpoint, access_log=True, receiver_config=receiver_config)
        try:
            print(
                f"startup: locust start -> first request seen by the {endpoint.label} on 127.0.0.1:{endpoint.port}, "
                f"median of {args.repeats}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
                flush=True,
            )
            bare_path = target_path(1) if endpoint.kind == "receiver" else endpoint.path
            endpoint.path = bare_path
            cases: list[tuple[str, int, list[str]]] = [
                ("bare", 1, ["-f", str(bare_locustfile(workdir, bare_path)), "--host", endpoint.host])
            ]
            for count in counts:
                for pacing in ("stress", "paced"):
                    config = write_config(workdir, count, endpoint.host, paced=pacing == "paced")
                    cases.append(
                        (
                            pacing,
                            count,
                            [
                                "-f",
                                str(PLUGIN_LOCUSTFILE),
                                "--traffic-config",
                                str(config),
                                "--traffic-pacing",
                                pacing,
                                "--traffic-state",
                                "",
                            ],
                        )
                    )
            for repeat in range(args.repeats):
                for case, count, options in cases:
                    if args.settle > 0:
                        wait_for_quiet(args.settle)
                    start = measure(case, options, count, endpoint, workdir, args.deadline)
                    starts.append(start)
                    print(
                        f"  {repeat + 1}/{args.repeats} {case:<7}{count:>4} target(s): "
                        f"first request {fmt(start.first_request, 2)} s, "
                        f"all targets {fmt(start.all_targets, 2)} s",
                        flush=True,
                    )
        finally:
            endpoint.stop()

    summary = []
    for case, count, _ in cases:
        mine = [s for s in starts if s.case == case and s.targets == count]
        firsts = [s.first_request for s in mine if s.first_request == s.first_request]
        alls = [s.all_targets for s in mine if s.all_targets == s.all_targets]
        summary.append(
            {
                "client": "bare FastHttpUser" if case == "bare" else f"trafficinator ({case})",
                "targets": count,
                "first_request_s": statistics.median(firsts) if firsts else float("nan"),
                "first_request_range": [min(firsts), max(firsts)] if firsts else None,
                "all_targets_s": statistics.median(alls) if alls else float("nan"),
            }
        )
    print()
    print(
        render_table(
            ["client", "targets", "first request s (median)", "min..max", "all targets reached s"],
            [
                [
                    r["client"],
                    r["targets"],
                    fmt(r["first_request_s"], 2),
                    f"{r['first_request_range'][0]:.2f}..{r['first_request_range'][1]:.2f}"
                    if r["first_request_range"]
                    else "-",
                    fmt(r["all_targets_s"], 2),
                ]
                for r in summary
            ],
        )
    )
    largest = [r for r in summary if r["client"] != "bare FastHttpUser" and r["targets"] == max(counts)]
    worst = max((r["first_request_s"] for r in largest), default=float("nan"))
    print(
        f"{max(counts)} targets: first request after {fmt(worst, 2)} s at worst of the two pacings "
        f"(goal < {GOAL_SECONDS:g} s: {'met' if worst < GOAL_SECONDS else 'not met'})"
    )
    path = write_results(
        "startup",
        {
            "settings": vars(args),
            "endpoint": endpoint.label,
            "goal_seconds": GOAL_SECONDS,
            "summary": summary,
            "starts": [asdict(s) for s in starts],
        },
    )
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
