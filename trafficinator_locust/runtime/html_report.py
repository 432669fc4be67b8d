"""Writes ``--traffic-html FILE`` at the end of a run: the summary rows and the timeline, as one page.

The page itself is pure (:mod:`trafficinator_locust.core.html_report`); this is the glue from the
run summary (:func:`~.summary.summarize` rows, their ``capacity`` in a ramp run) and the run's
:class:`~.timeline.TimelineCollector`. Written atomically, next to the JSON report::

    write_html("run.html", config, rows, collector, run={"pacing": "paced", "seconds": 60.0})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trafficinator_locust.core.config import Config
from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.html_report import TargetPage, render_report
from trafficinator_locust.runtime.summary import TargetSummary, report_entry
from trafficinator_locust.runtime.timeline import TimelineCollector


def write_html(
    path: str | Path,
    config: Config,
    rows: Sequence[TargetSummary],
    collector: TimelineCollector | None,
    run: Mapping[str, Any] | None = None,
) -> None:
    """The HTML report of ``rows`` (one section per row) with ``collector``'s samples (none: empty charts)."""
    pages = [
        TargetPage(row.target, report_entry(row), collector.samples(row.target) if collector else [], row.capacity)
        for row in rows
    ]
    secrets = [token for target in config.targets for token in target.secrets]
    write_atomic(path, render_report(pages, run=run, secrets=secrets))
