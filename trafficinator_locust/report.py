"""Per-target run summary: visits started (counted by the plugin) beside Locust's request stats.

Locust counts requests; a Matomo administrator counts visits. The tally counts a visit when its
first hit is answered 2xx (Matomo then has the visit), workers ship their counts to the master in
Locust's own worker reports, and the master builds one table and one JSON document per run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from locust.stats import RequestStats, StatsEntry

from .config import Config

REPORT_KEY = "trafficinator_tally"


class VisitTally:
    """Visits started per target in this process (and, on the master, summed from workers)."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def visit_started(self, target: str, ok: bool) -> None:
        (self.started if ok else self.failed)[target] += 1

    def drain(self) -> dict[str, dict[str, int]]:
        """Counts since the last drain, for a worker report (workers send deltas, like Locust's stats)."""
        data = {"started": dict(self.started), "failed": dict(self.failed)}
        self.started.clear()
        self.failed.clear()
        return data

    def merge(self, data: dict[str, dict[str, int]]) -> None:
        self.started.update(data.get("started", {}))
        self.failed.update(data.get("failed", {}))

    def reset(self) -> None:
        self.started.clear()
        self.failed.clear()


@dataclass(frozen=True)
class TargetSummary:
    target: str
    site_id: int
    visits_started: int
    visits_failed: int
    requests: int
    failures: int
    fail_ratio: float
    p50_ms: int
    p95_ms: int
    requests_by_kind: dict[str, int]


def summarize(config: Config, stats: RequestStats, tally: VisitTally) -> list[TargetSummary]:
    """One row per enabled target, from Locust's per-name stats and the plugin's tally."""
    rows = []
    for target in config.enabled_targets:
        prefix = f"[{target.name}] "
        merged = StatsEntry(stats, target.name, "", use_response_times_cache=False)
        kinds: dict[str, int] = {}
        for (name, _method), entry in stats.entries.items():
            if name.startswith(prefix):
                merged.extend(entry)
                kinds[name[len(prefix):]] = kinds.get(name[len(prefix):], 0) + entry.num_requests
        rows.append(
            TargetSummary(
                target=target.name,
                site_id=target.site_id,
                visits_started=tally.started[target.name],
                visits_failed=tally.failed[target.name],
                requests=merged.num_requests,
                failures=merged.num_failures,
                fail_ratio=round(merged.fail_ratio, 4),
                p50_ms=int(merged.get_response_time_percentile(0.5) or 0),
                p95_ms=int(merged.get_response_time_percentile(0.95) or 0),
                requests_by_kind=dict(sorted(kinds.items())),
            )
        )
    return rows


def render_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table (works in CI logs, no terminal features needed)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_table(rows: list[TargetSummary]) -> str:
    headers = ["target", "site", "visits", "requests", "failures", "fail %", "p50 ms", "p95 ms"]
    body = [[r.target, r.site_id, r.visits_started, r.requests, r.failures, f"{100 * r.fail_ratio:.1f}", r.p50_ms, r.p95_ms] for r in rows]
    return render_table(headers, body)


def write_report(path: str | Path, config: Config, rows: list[TargetSummary]) -> None:
    """The JSON report (``--traffic-report``): config fingerprint and one entry per target."""
    document = {"config": config.source, "fingerprint": config.fingerprint(), "targets": [asdict(r) for r in rows]}
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
