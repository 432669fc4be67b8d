"""What the throughput, memory and startup benchmarks share: a local endpoint, a measured Locust run, results.

Why one module: the three benches run the same kinds of processes (nginx answering 204 or the
embedded receiver on 127.0.0.1, ``locust --headless`` with the plugin or a bare locustfile) and
read the same figures (Locust's own per-second counts from ``--json-file``, the CPU and memory of
the Locust process tree). Each bench keeps its own measuring logic and table.

Everything here targets 127.0.0.1 only. Processes started here are stopped by their own pid.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from trafficinator_locust.receiver.process import receiver_command, stop_process, wait_until_listening

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PLUGIN_LOCUSTFILE = REPO / "trafficinator_locust" / "locustfile.py"
FORM = "application/x-www-form-urlencoded"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)

# A typical Matomo pageview as a hand-written Locust user would send it: the parameters a real
# tracker sends (the same keys the plugin sends for a pageview), form-encoded per request with a
# fresh visitor id. Formatted with {path}, {wait} (the wait_time expression) and {on_start}.
BARE_LOCUSTFILE = """
import itertools
import random
from urllib.parse import urlencode

import gevent
from locust import FastHttpUser, constant, task

PATH = {path!r}
HEADERS = {{"Content-Type": "{form}"}}
UA = {ua!r}
_IDS = itertools.count(random.getrandbits(40) << 20)


def pageview_body():
    cid = f"{{next(_IDS):016x}}"
    return urlencode({{
        "idsite": "1", "rec": "1", "apiv": "1", "send_image": "0",
        "url": "https://www.example.com/blog/post-1", "action_name": "Blog post 1",
        "urlref": "https://www.google.com/", "pv_id": cid[-6:], "_id": cid, "cid": cid,
        "ua": UA, "lang": "en-US,en;q=0.9", "res": "1920x1080", "h": "12", "m": "30", "s": "0",
    }})


class BarePageview(FastHttpUser):
    wait_time = {wait}

{on_start}
    @task
    def pageview(self):
        self.client.post(PATH, data=pageview_body(), headers=HEADERS, name="pageview")
"""

SLEEPING_ON_START = """    def on_start(self):
        # Like a visitor mid-visit: one hit sent (an open keep-alive connection), then a long read.
        self.client.post(PATH, data=pageview_body(), headers=HEADERS, name="pageview")
        gevent.sleep(3600)
"""


def bare_locustfile(workdir: Path, path: str, *, sleeping: bool = False) -> Path:
    """Write the baseline locustfile; ``sleeping`` users send one pageview, then sleep for an hour."""
    source = BARE_LOCUSTFILE.format(
        path=path,
        form=FORM,
        ua=USER_AGENT,
        wait="constant(3600)" if sleeping else "constant(0)",
        on_start=SLEEPING_ON_START if sleeping else "",
    )
    locustfile = workdir / ("bare_sleeping.py" if sleeping else "bare_locustfile.py")
    locustfile.write_text(source)
    return locustfile


def free_port() -> int:
    """A port the OS considers free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of child processes: budget state in the temp dir, nothing persisted elsewhere."""
    return {**os.environ, "XDG_STATE_HOME": str(workdir / "state"), "PYTHONUNBUFFERED": "1", **extra}


def raise_open_files() -> None:
    """Thousands of concurrent users need thousands of sockets: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for_port(port: int, deadline_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def stop(process: subprocess.Popen[Any] | None) -> None:
    """Stop one process we started (SIGTERM, then SIGKILL after 10 s)."""
    if process is not None and process.poll() is None:
        stop_process(process)


# -- endpoints -------------------------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    log_format stamp '$msec $request_method $uri $status';
    access_log {access_log};
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
        # Bulk requests (bench/throughput.py): Matomo's bulk answer for a full batch of BULK_SIZE hits.
        location /bulk/ {{
            default_type application/json;
            return 200 '{{"status":"success","tracked":{bulk_size},"invalid":0}}';
        }}
    }}
}}
"""


BULK_SIZE = 50  # the bulk size of the benches' bulk configs (the plugin's default)


def nginx_binary(install: bool = True) -> str | None:
    """Debian's nginx; installed with apt-get when missing and we are root (``install``)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("nginx not found: installing Debian's package (apt-get install -y nginx)...", file=sys.stderr, flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, **quiet).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, **quiet)
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


@dataclass
class Endpoint:
    """A running local endpoint: nginx answering 204 to everything, or the embedded receiver."""

    kind: str  # "nginx" or "receiver"
    port: int
    path: str  # the tracker path a single-target run posts to
    process: subprocess.Popen[Any]
    access_log: Path | None = None

    @property
    def label(self) -> str:
        return "nginx 204" if self.kind == "nginx" else "embedded receiver"

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str | None = None) -> str:
        return f"{self.host}{self.path if path is None else path}"

    def receiver_hits(self) -> int:
        """Hits the receiver stored over every instance (receiver only)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/sink/stats", timeout=10) as response:
            stats = json.load(response)
        return sum(site.get("hits", 0) for instance in stats.values() for site in instance.get("sites", {}).values())

    def stop(self) -> None:
        stop(self.process)


def start_nginx(workdir: Path, *, access_log: bool = False) -> Endpoint | None:
    """nginx on a free loopback port in the foreground (``daemon off``), or None when not available."""
    binary = nginx_binary()
    if binary is None:
        return None
    folder = workdir / "nginx"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "access.log"
    (folder / "nginx.conf").write_text(
        NGINX_CONF.format(
            dir=folder, port=port, access_log=f"{log} stamp" if access_log else "off", bulk_size=BULK_SIZE
        )
    )
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(folder),
            "-c",
            str(folder / "nginx.conf"),
            "-e",
            str(folder / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=raise_open_files,
    )
    try:
        wait_for_port(port)
    except OSError:
        stop(process)
        return None
    return Endpoint("nginx", port, "/matomo.php", process, log if access_log else None)


def start_receiver_endpoint(workdir: Path, *, config: Path | None = None, instance: str = "/bench") -> Endpoint:
    """The embedded receiver (``trafficinator sink``) on a free loopback port."""
    ready = workdir / f"receiver-{time.monotonic_ns()}.port"
    learn = ["--config", str(config)] if config else ["--instance", instance]
    process = subprocess.Popen(
        receiver_command("--port", "0", *learn, "--ready-file", str(ready)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=bench_env(workdir),
        preexec_fn=raise_open_files,
    )
    try:
        wait_until_listening(process)
    except RuntimeError as error:
        raise SystemExit(f"the embedded {error}") from None
    return Endpoint("receiver", int(ready.read_text()), f"{instance}/matomo.php", process)


def start_endpoint(
    workdir: Path, choice: str, *, access_log: bool = False, receiver_config: Path | None = None
) -> Endpoint:
    """``choice``: "nginx" (falls back to the receiver when nginx cannot be had), or "receiver"."""
    if choice == "nginx":
        endpoint = start_nginx(workdir, access_log=access_log)
        if endpoint is not None:
            return endpoint
        print("nginx is not available: falling back to the embedded receiver", file=sys.stderr, flush=True)
    return start_receiver_endpoint(workdir, config=receiver_config)


# -- measured Locust runs --------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (Locust's --processes workers)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc/<pid>/status VmRSS (MB = 2^20 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (all processes, ours or not)."""
    times = psutil.cpu_times()
    return (
        sum(times)
        - times.idle
        - getattr(times, "iowait", 0.0)
        - getattr(times, "guest", 0.0)
        - getattr(times, "guest_nice", 0.0)
    )


def wait_for_quiet(max_seconds: float, busy_percent: float = 30.0) -> float:
    """Wait (at most ``max_seconds``) for a second in which the whole machine is under ``busy_percent``
    of one core busy, so other people's work does not eat into a measurement. Returns the last
    second's busy percentage (above the threshold when the machine never went quiet)."""
    deadline = time.monotonic() + max_seconds
    while True:
        before, started = machine_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        busy = 100 * (machine_busy_seconds() - before) / (time.monotonic() - started)
        if busy < busy_percent or time.monotonic() >= deadline:
            return busy


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds at one moment: the Locust process tree, the endpoint, and the whole machine."""

    at: float
    locust: float
    endpoint: float
    machine: float


@dataclass
class LocustRun:
    """One finished ``locust --headless`` run: its exit code, Locust's stats entries and CPU samples."""

    code: int
    entries: list[dict[str, Any]]
    cpu_samples: list[CpuSample]
    log_tail: str
    wall: tuple[float, float] = (0.0, 0.0)
    per_second: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        counts: dict[int, int] = {}
        for entry in self.entries:
            for second, count in (entry.get("num_reqs_per_sec") or {}).items():
                counts[int(second)] = counts.get(int(second), 0) + int(count)
        self.per_second = counts

    @property
    def requests(self) -> int:
        return sum(int(entry["num_requests"]) for entry in self.entries)

    @property
    def failures(self) -> int:
        return sum(int(entry["num_failures"]) for entry in self.entries)

    def steady_window(self, warmup: float, run_seconds: float) -> tuple[int, int]:
        """Whole seconds [first, last) after the warm-up and before the end of ``-t`` (stopping excluded)."""
        if not self.per_second:
            return (0, 0)
        first_request = min(self.per_second)
        start = int(first_request + warmup)
        end = min(int(first_request + run_seconds), max(self.per_second))  # the last second is partial
        return (start, max(start, end))

    def steady_rate(self, warmup: float, run_seconds: float) -> float:
        """Requests per second that Locust counted in the steady window (its own per-second counts)."""
        start, end = self.steady_window(warmup, run_seconds)
        if end <= start:
            return 0.0
        return sum(self.per_second.get(s, 0) for s in range(start, end)) / (end - start)

    def cpu_percent(self, start: float, end: float) -> dict[str, float]:
        """CPU over [start, end) in wall time, in % of one core: Locust's process tree, the endpoint,
        the whole machine, and everything else on the machine (other people's work skews figures)."""
        inside = [s for s in self.cpu_samples if start <= s.at <= end and s.locust == s.locust]
        if len(inside) < 2 or inside[-1].at <= inside[0].at:
            return {"locust": float("nan"), "endpoint": float("nan"), "machine": float("nan"), "others": float("nan")}
        first, last = inside[0], inside[-1]
        span = last.at - first.at
        shares = {
            key: 100 * (getattr(last, key) - getattr(first, key)) / span for key in ("locust", "endpoint", "machine")
        }
        shares["others"] = max(0.0, shares["machine"] - shares["locust"] - shares["endpoint"])
        return shares


def run_locust(
    arguments: list[str],
    workdir: Path,
    name: str,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    endpoint_pid: int | None = None,
) -> LocustRun:
    """Run ``python -m locust --headless ARGS`` to its end, sampling CPU; read Locust's ``--json-file``."""
    stats = workdir / f"{name}-stats"
    log = workdir / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "locust",
        "--headless",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--json-file",
        str(stats),
        *arguments,
    ]
    samples: list[CpuSample] = []
    with open(log, "w", encoding="utf-8") as output:
        started = time.time()
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env or bench_env(workdir),
            preexec_fn=raise_open_files,
        )
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            samples.append(
                CpuSample(
                    time.time(),
                    tree_cpu_seconds(process.pid),
                    tree_cpu_seconds(endpoint_pid) if endpoint_pid else 0.0,
                    machine_busy_seconds(),
                )
            )
            if time.monotonic() > deadline:
                stop(process)
                break
            time.sleep(0.25)
        ended = time.time()
    stats_file = stats.with_name(stats.name + ".json")
    entries = json.loads(stats_file.read_text()) if stats_file.exists() else []
    return LocustRun(
        process.returncode,
        entries,
        samples,
        log.read_text(encoding="utf-8", errors="replace")[-3000:],
        (started, ended),
    )


# -- results ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "locust": importlib.metadata.version("locust"),
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """``bench/results/<name>.json``: the figures of the latest run, with the machine they ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"bench": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}
    path.write_text(json.dumps(_rounded(document), indent=2) + "\n")
    return path


def _rounded(value: Any) -> Any:
    """Floats to 3 decimals (and NaN to null) all the way down: figures, not float noise."""
    if isinstance(value, float):
        return None if value != value else round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def fmt(value: float, digits: int = 0) -> str:
    """A figure for a table cell; NaN (not measured) shows as '-'."""
    if value != value:  # NaN
        return "-"
    return f"{value:.{digits}f}"
