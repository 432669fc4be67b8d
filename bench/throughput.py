"""Hits per second of one Locust worker process sending trafficinator visits, beside bare Locust.

Why: users pick a load generator by its numbers. The plugin plans realistic visits (identity,
device, channel, pages, actions) and encodes each hit; that work must cost little next to what any
hand-written Locust user costs per request. Goal: trafficinator >= 0.9x the bare figure.

Each run measures, one after the other, with the same ``-u`` users, duration and endpoint:

* **baseline**: a bare ``FastHttpUser`` (a locustfile written to a temp dir) posting one typical
  Matomo pageview per task (form body with the usual parameters and a fresh visitor id, built with
  ``urlencode`` per request) to ``/matomo.php``, zero wait;
* **trafficinator**: the plugin with one target, the default traffic model with zero think time
  (``dwell_seconds`` 0..0, ``pause_between_visits`` 0..0), ``--traffic-pacing stress`` and no
  ``visits_per_day`` (nothing limits it but the CPU).

The endpoint is Debian's nginx answering 204 on 127.0.0.1 (installed with apt-get when missing and
run as root, started with a temp config, ``daemon off``, stopped at the end); fallback: the
embedded receiver. Hits/s are Locust's own per-second counts (``--json-file``) over the steady
window (after ``--warmup`` seconds, before the end of ``-t``); CPU is that of the Locust process
tree over the same window. After the runs: scaling with ``--processes 1`` and ``2`` (both clients)
and hits per CPU second; bulk transport when the config schema accepts ``transport: bulk``.
``--profile`` runs one more trafficinator run under py-spy and prints the top functions.

The machine may be shared: before each run the bench waits up to ``--settle`` seconds for a quiet
second, and every row shows the CPU other processes used meanwhile ("others"); the ratio on hits
per second of Locust's own CPU is printed beside the plain ratio, as it is less sensitive to them.

Prints figures, asserts nothing, writes ``bench/results/throughput.json``. Bounded: about
``(2 * runs + 4) * (seconds + 4 + settle)`` seconds (3 min on a quiet machine with the defaults).

    .venv/bin/python bench/throughput.py [--seconds 15] [--users 50] [--runs 3] [--endpoint nginx|receiver] [--profile]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import locust  # noqa: E402,F401  (first: gevent monkey-patching before anything imports urllib3)

from bench.common import (  # noqa: E402
    BULK_SIZE,
    PLUGIN_LOCUSTFILE,
    Endpoint,
    LocustRun,
    bare_locustfile,
    bench_env,
    fmt,
    run_locust,
    start_endpoint,
    start_receiver_endpoint,
    stop,
    wait_for_quiet,
    write_results,
)
from trafficinator_locust.core.table import render_table

GOAL = 0.9
BUSY_PERCENT = 30.0  # CPU used by other processes above which a run's figures are flagged
CONFIG = """
targets:
  - name: Bench
    url: {url}
    site_id: 1
{extra}    traffic:
      dwell_seconds: {{min: 0, max: 0}}
      pause_between_visits: {{min: 0, max: 0}}
"""
BULK_KEY = "    transport: bulk\n"


@dataclass
class Figure:
    """One measured client on one endpoint."""

    client: str
    processes: int
    hits_per_second: float
    cpu_percent: float  # the Locust process tree, % of one core
    endpoint_cpu: float
    others_cpu: float  # everything else on the machine (other people's work)
    requests: int
    failures: int
    exit_code: int
    per_second: list[int]  # Locust's count for each second of the steady window

    @property
    def per_cpu_second(self) -> float:
        """Hits per second of CPU used by the Locust process tree (what one busy core delivers)."""
        return (
            self.hits_per_second / (self.cpu_percent / 100)
            if self.cpu_percent and self.cpu_percent == self.cpu_percent
            else float("nan")
        )


def _figure(client: str, processes: int, run: LocustRun, warmup: float, seconds: float) -> Figure:
    start, end = run.steady_window(warmup, seconds)
    if run.code != 0 or run.failures or not run.requests:
        print(
            f"  note: {client} (--processes {processes}) exit code {run.code}, {run.failures} failures; "
            f"log tail:\n{run.log_tail}",
            file=sys.stderr,
        )
    cpu = run.cpu_percent(start, end)
    return Figure(
        client,
        processes,
        run.steady_rate(warmup, seconds),
        cpu["locust"],
        cpu["endpoint"],
        cpu["others"],
        run.requests,
        run.failures,
        run.code,
        [run.per_second.get(second, 0) for second in range(start, end)],
    )


def measure_bare(endpoint: Endpoint, workdir: Path, args: argparse.Namespace, processes: int, tag: str) -> Figure:
    locustfile = bare_locustfile(workdir, endpoint.path)
    options = ["-f", str(locustfile), "--host", endpoint.host]
    run = _run(options, workdir, args, processes, f"bare-{tag}", endpoint.process.pid)
    return _figure("bare FastHttpUser", processes, run, args.warmup, args.seconds)


def trafficinator_options(workdir: Path, url: str, *, bulk: bool = False) -> list[str]:
    config = workdir / ("bulk.yaml" if bulk else "traffic.yaml")
    config.write_text(CONFIG.format(url=url, extra=BULK_KEY if bulk else ""))
    return [
        "-f",
        str(PLUGIN_LOCUSTFILE),
        "--traffic-config",
        str(config),
        "--traffic-pacing",
        "stress",
        "--traffic-state",
        "",
    ]


def measure_trafficinator(
    endpoint: Endpoint, workdir: Path, args: argparse.Namespace, processes: int, tag: str
) -> Figure:
    options = trafficinator_options(workdir, endpoint.url())
    run = _run(options, workdir, args, processes, f"traffic-{tag}", endpoint.process.pid)
    return _figure("trafficinator", processes, run, args.warmup, args.seconds)


def _run(
    options: list[str],
    workdir: Path,
    args: argparse.Namespace,
    processes: int,
    name: str,
    endpoint_pid: int | None = None,
) -> LocustRun:
    if args.settle > 0:
        busy = wait_for_quiet(args.settle)
        if busy >= BUSY_PERCENT:
            print(
                f"  ({name}: the machine stayed busy ({busy:.0f} % of a core in use) for {args.settle:g} s; "
                "measuring anyway)",
                flush=True,
            )
    common = ["-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds}s", "--stop-timeout", "5"]
    if processes > 1:
        common += ["--processes", str(processes)]
    return run_locust([*options, *common], workdir, name, timeout=args.seconds + 60, endpoint_pid=endpoint_pid)


# -- bulk transport (when the config schema has it) --------------------------------------------


def bulk_supported(workdir: Path) -> bool:
    """Whether ``trafficinator validate`` accepts a target with ``transport: bulk``."""
    config = workdir / "probe-bulk.yaml"
    config.write_text(CONFIG.format(url="http://127.0.0.1:9/matomo.php", extra=BULK_KEY))
    probe = subprocess.run(
        [sys.executable, "-m", "trafficinator_locust.cli", "validate", str(config)],
        capture_output=True,
        text=True,
        env=bench_env(workdir),
        cwd=workdir,
    )
    return probe.returncode == 0


def measure_bulk_generator(endpoint: Endpoint, workdir: Path, args: argparse.Namespace) -> Figure:
    """What one Locust process can send with ``transport: bulk``: nginx answers every request at
    /bulk/ as Matomo answers a full batch, so the endpoint costs nothing; hits = requests x BULK_SIZE
    (the batches of a steady window are full)."""
    options = trafficinator_options(workdir, endpoint.url("/bulk/matomo.php"), bulk=True)
    run = _run(options, workdir, args, 1, "bulk-generator", endpoint.process.pid)
    figure = _figure("trafficinator bulk", 1, run, args.warmup, args.seconds)
    return replace(figure, hits_per_second=figure.hits_per_second * BULK_SIZE)


def measure_via_receiver(workdir: Path, args: argparse.Namespace, *, bulk: bool) -> dict[str, float | int]:
    """Hits the embedded receiver stored per second of the run (a bulk request carries many hits,
    so Locust's request counts do not count hits); Locust's request rate beside it."""
    receiver = start_receiver_endpoint(workdir)
    try:
        options = trafficinator_options(workdir, receiver.url(), bulk=bulk)
        run = _run(options, workdir, args, 1, "bulk" if bulk else "single-receiver", receiver.process.pid)
        hits = receiver.receiver_hits()
    finally:
        receiver.stop()
    seconds = (max(run.per_second) + 1 - min(run.per_second)) if run.per_second else float("nan")
    return {
        "hits_stored": hits,
        "seconds": seconds,
        "hits_per_second": hits / seconds,
        "requests_per_second": run.requests / seconds,
        "failures": run.failures,
        "exit_code": run.code,
    }


# -- profile ----------------------------------------------------------------------------------


def py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (p for p in (str(Path(sys.executable).with_name("py-spy")),) if os.path.exists(p)), None
    )


def profile(endpoint: Endpoint, workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    """One more trafficinator run; ``py-spy record --gil`` attached over its steady window (start-up
    imports and idle threads left out); top self and inclusive costs from the raw collapsed stacks."""
    spy = py_spy()
    if spy is None:
        print("profile: py-spy is not installed (.venv/bin/pip install py-spy)", file=sys.stderr)
        return {}
    raw = Path(args.profile_out).resolve() if args.profile_out else workdir / "profile.txt"
    raw.unlink(missing_ok=True)
    options = trafficinator_options(workdir, endpoint.url())
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
        str(args.users),
        "-r",
        str(args.users),
        "-t",
        f"{args.seconds}s",
        "--stop-timeout",
        "5",
    ]
    process = subprocess.Popen(
        command, cwd=workdir, env=bench_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(args.warmup + 1.5)  # imports and spawning are not the hot path being profiled
        duration = max(1, int(args.seconds - args.warmup - 3))
        spied = subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(process.pid),
                "--gil",
                "--rate",
                "200",
                "--duration",
                str(duration),
                "--format",
                "raw",
                "-o",
                str(raw),
            ],
            capture_output=True,
            text=True,
            timeout=duration + 30,
            check=False,
        )
        process.wait(timeout=args.seconds + 60)
    finally:
        stop(process)
    if not raw.exists():
        print(
            "profile: py-spy wrote nothing (it needs ptrace rights on the Locust process): "
            f"{spied.stderr.strip()[-500:]}",
            file=sys.stderr,
        )
        return {}
    return top_costs(raw.read_text(), limit=args.profile_top)


def top_costs(collapsed: str, limit: int = 25) -> dict[str, object]:
    """Self and total shares of samples per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    share = lambda items: [(name, round(100 * n / samples, 1)) for name, n in items[:limit]]  # noqa: E731
    ours = [(name, n) for name, n in total.most_common() if "trafficinator_locust/" in name]
    return {
        "samples": samples,
        "self": share(own.most_common()),
        "total": share(total.most_common()),
        "plugin": share(ours),
    }


def _frame(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``: lines merged, paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    short = (
        "/".join(parts[-2:])
        if parts
        and parts[-2:-1]
        and parts[-2] in {"locust", "trafficinator_locust", "geventhttpclient", "gevent", "contrib", "user"}
        else Path(where).name
    )
    return f"{name} ({short})"


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="run time of each measured run (default: %(default)s)")
    parser.add_argument("--users", type=int, default=50, help="Locust users of every run (default: %(default)s)")
    parser.add_argument(
        "--runs", type=int, default=3, help="consecutive baseline/trafficinator pairs (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds after the first request left out of the figures (default: %(default)s)",
    )
    parser.add_argument("--endpoint", choices=("nginx", "receiver"), default="nginx")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help=(
            "before each run, wait up to this many seconds for other processes to leave the CPU "
            "(default: %(default)s; 0: don't)"
        ),
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the --processes 1/2 comparison")
    parser.add_argument(
        "--profile", action="store_true", help="one more trafficinator run under py-spy; print the top costs"
    )
    parser.add_argument(
        "--profile-top", type=int, default=25, help="functions per profile table (default: %(default)s)"
    )
    parser.add_argument(
        "--profile-out",
        metavar="FILE",
        help="keep py-spy's raw collapsed stacks in FILE (for flamegraph.pl or speedscope)",
    )
    args = parser.parse_args()

    results: dict[str, object] = {"settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as tmp:
        workdir = Path(tmp)
        endpoint = start_endpoint(workdir, args.endpoint)
        try:
            print(
                f"throughput: one Locust process, {args.users} users, {args.seconds} s per run (steady window after "
                f"{args.warmup:g} s), endpoint {endpoint.label} on 127.0.0.1:{endpoint.port}, {os.cpu_count()} CPU(s), "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
                flush=True,
            )
            pairs = []
            for index in range(1, args.runs + 1):
                # Alternate which client goes first, so a drift in the machine's load favours neither.
                if index % 2:
                    bare = measure_bare(endpoint, workdir, args, 1, f"run{index}")
                    traffic = measure_trafficinator(endpoint, workdir, args, 1, f"run{index}")
                else:
                    traffic = measure_trafficinator(endpoint, workdir, args, 1, f"run{index}")
                    bare = measure_bare(endpoint, workdir, args, 1, f"run{index}")
                ratio = traffic.hits_per_second / bare.hits_per_second if bare.hits_per_second else float("nan")
                pairs.append((index, bare, traffic, ratio))
                print(
                    f"  run {index}: bare {bare.hits_per_second:.0f} hits/s, "
                    f"trafficinator {traffic.hits_per_second:.0f} hits/s, "
                    f"ratio {ratio:.2f} (CPU used by other processes: "
                    f"{fmt(bare.others_cpu)} % / {fmt(traffic.others_cpu)} %)",
                    flush=True,
                )
            scaling: list[Figure] = []
            if not args.no_scaling:
                for processes in (1, 2):
                    scaling.append(
                        measure_bare(endpoint, workdir, args, processes, f"p{processes}")
                        if processes > 1
                        else pairs[-1][1]
                    )
                    scaling.append(
                        measure_trafficinator(endpoint, workdir, args, processes, f"p{processes}")
                        if processes > 1
                        else pairs[-1][2]
                    )
            profiled = profile(endpoint, workdir, args) if args.profile else {}
            generator_bulk = (
                measure_bulk_generator(endpoint, workdir, args)
                if endpoint.label.startswith("nginx") and bulk_supported(workdir)
                else None
            )
        finally:
            stop(endpoint.process)
        bulk: dict[str, object] | None = None
        if bulk_supported(workdir):
            single = measure_via_receiver(workdir, args, bulk=False)
            bulk = {"single": single, "bulk": measure_via_receiver(workdir, args, bulk=True)}

    print()
    rows = [
        [
            f"run {i}",
            fmt(b.hits_per_second),
            fmt(b.cpu_percent),
            fmt(t.hits_per_second),
            fmt(t.cpu_percent),
            f"{r:.2f}",
            "yes" if r >= GOAL else "NO",
            f"{t.per_cpu_second / b.per_cpu_second:.2f}",
            f"{fmt(b.others_cpu)}/{fmt(t.others_cpu)}",
        ]
        for i, b, t, r in pairs
    ]
    print(
        render_table(
            [
                "run",
                "bare hits/s",
                "bare CPU %",
                "trafficinator hits/s",
                "trafficinator CPU %",
                "ratio",
                f">= {GOAL}",
                "ratio per CPU s",
                "others CPU %",
            ],
            rows,
        )
    )
    ratios = [r for *_, r in pairs]
    print(
        f"ratio trafficinator/bare per run: {', '.join(f'{r:.2f}' for r in ratios)}  "
        f"(goal >= {GOAL} in {args.runs} consecutive runs: "
        f"{'met' if all(r >= GOAL for r in ratios) else 'not met'})"
    )
    busy = [i for i, b, t, _ in pairs if max(b.others_cpu, t.others_cpu) > BUSY_PERCENT]
    if busy:
        print(
            f"runs {', '.join(map(str, busy))}: other processes used more than {BUSY_PERCENT:g} % of a core meanwhile; "
            "their hits/s and ratio are not reliable (rerun on a quiet machine, or read the ratio per CPU s)"
        )
    print(
        "CPU % = the Locust process tree in % of one core; "
        "ratio per CPU s = the same ratio on hits per second of Locust's own CPU "
        "(less sensitive to other load); "
        "others CPU % = what other processes on the machine used meanwhile (bare/trafficinator)"
    )
    if scaling:
        print("\nscaling (same users split over the processes; CPU in % of one core, the whole process tree)")
        print(
            render_table(
                [
                    "client",
                    "processes",
                    "hits/s",
                    "CPU %",
                    "hits per CPU second",
                    "hits/s per process",
                    "endpoint CPU %",
                    "others CPU %",
                ],
                [
                    [
                        f.client,
                        f.processes,
                        fmt(f.hits_per_second),
                        fmt(f.cpu_percent),
                        fmt(f.per_cpu_second),
                        fmt(f.hits_per_second / f.processes),
                        fmt(f.endpoint_cpu),
                        fmt(f.others_cpu),
                    ]
                    for f in scaling
                ],
            )
        )
    if generator_bulk is not None:
        single_run = pairs[-1][2]
        print(
            "\nbulk transport vs single hits, one Locust process, nginx answering as Matomo "
            f"(the generator's own capacity; bulk hits = requests x {BULK_SIZE})"
        )
        print(
            render_table(
                ["transport", "hits/s", "requests/s", "CPU %", "hits per CPU second", "bulk / single"],
                [
                    [
                        "single",
                        fmt(single_run.hits_per_second),
                        fmt(single_run.hits_per_second),
                        fmt(single_run.cpu_percent),
                        fmt(single_run.per_cpu_second),
                        "1.00",
                    ],
                    [
                        "bulk",
                        fmt(generator_bulk.hits_per_second),
                        fmt(generator_bulk.hits_per_second / BULK_SIZE),
                        fmt(generator_bulk.cpu_percent),
                        fmt(generator_bulk.per_cpu_second),
                        f"{generator_bulk.hits_per_second / single_run.hits_per_second:.2f}",
                    ],
                ],
            )
        )
    if bulk is None:
        print("\nbulk transport: n/a (no bulk transport yet: the config schema rejects 'transport: bulk')")
    else:
        single, batched = bulk["single"], bulk["bulk"]
        print("\nbulk transport vs single hits, one process, embedded receiver (hits counted by the receiver)")
        print(
            render_table(
                ["transport", "hits/s stored", "requests/s", "failures"],
                [
                    [name, fmt(d["hits_per_second"]), fmt(d["requests_per_second"]), d["failures"]]
                    for name, d in (("single", single), ("bulk", batched))
                ],
            )
        )
    if profiled:
        kept = f"; raw stacks in {args.profile_out}" if args.profile_out else ""
        print(
            "\nprofile of one trafficinator run "
            f"(py-spy --gil over the steady window, {profiled['samples']} samples{kept})"
        )
        print(render_table(["function (self)", "% samples"], [list(item) for item in profiled["self"]]))
        print()
        print(render_table(["function (inclusive)", "% samples"], [list(item) for item in profiled["total"]]))
        print()
        print(render_table(["plugin function (inclusive)", "% samples"], [list(item) for item in profiled["plugin"]]))

    results.update(
        {
            "endpoint": endpoint.label,
            "runs": [
                {
                    "run": i,
                    "bare": asdict(b),
                    "trafficinator": asdict(t),
                    "ratio": round(r, 3),
                    "ratio_per_cpu_second": round(t.per_cpu_second / b.per_cpu_second, 3),
                }
                for i, b, t, r in pairs
            ],
            "ratios": [round(r, 3) for r in ratios],
            "goal": GOAL,
            "scaling": [{**asdict(f), "hits_per_cpu_second": f.per_cpu_second} for f in scaling],
            "bulk": bulk if bulk is not None else "n/a (no bulk transport yet)",
            "bulk_generator": {
                **asdict(generator_bulk),
                "bulk_over_single": round(generator_bulk.hits_per_second / pairs[-1][2].hits_per_second, 2),
            }
            if generator_bulk
            else None,
            "profile": profiled or None,
        }
    )
    print(f"\nwritten: {write_results('throughput', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
