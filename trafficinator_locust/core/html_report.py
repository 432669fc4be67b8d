"""``--traffic-html FILE``: the run as one self-contained HTML page, charts per target.

Self-contained means the page asks nothing of the network: its style is inline, its charts are SVG
elements in the page (:mod:`.target_charts`, drawn by :mod:`.charts`), it has no script, font, image
or link to fetch. It opens from ``file://`` offline, prints, and can be attached to a ticket.

One ``<section class="target" data-target="NAME">`` per enabled target, in the config's order: its
summary figures (the JSON report's entry, :func:`~trafficinator_locust.runtime.summary.report_entry`),
its run charts and, in a ramp run, its capacity charts and knee. Every text is escaped, and the
whole page passes :func:`~.masking.mask_secrets` with the config's tokens, so a token can never be
in it::

    html = render_report([TargetPage("Production", entry, samples, entry.get("capacity"))],
                         title="Trafficinator run", run={"pacing": "paced", "seconds": 60.0},
                         secrets=["<token>"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any, NamedTuple

from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.core.target_charts import target_charts
from trafficinator_locust.core.timeline import Sample

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; background: #fafafa; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.15rem; margin: 0 0 .6rem; }
.run { color: #555; margin-bottom: 1.2rem; }
section.target { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; margin: 0 0 1.2rem; }
.charts { display: flex; flex-wrap: wrap; gap: .6rem; }
.charts figure { margin: 0; border: 1px solid #eee; }
table.figures { border-collapse: collapse; margin: 0 0 .8rem; font-size: .9rem; }
table.figures th, table.figures td { border-bottom: 1px solid #eee; padding: .2rem .6rem; text-align: left; }
table.figures td { font-variant-numeric: tabular-nums; }
@media print { body { background: #fff; } section.target { break-inside: avoid; } }
"""
FIGURES = (
    ("state", "state"),
    ("visits_started", "visits started"),
    ("visits_failed", "visits failed"),
    ("expected_visits", "visits expected at the pace"),
    ("cap_today", "cap today"),
    ("granted_today", "granted today"),
    ("requests", "requests"),
    ("failures", "failed requests"),
    ("fail_ratio", "fail %"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("hits", "hits"),
    ("hits_per_second", "hits/s"),
)
CAPACITY_FIGURES = (
    ("knee_hits_per_second", "knee hits/s"),
    ("knee_visits_per_second", "knee visits/s"),
    ("limited_by", "limited by"),
    ("spec", "ramp"),
)


class TargetPage(NamedTuple):
    """What the page shows of one target."""

    name: str
    figures: Mapping[str, Any]
    samples: Sequence[Sample]
    capacity: Mapping[str, Any] | None = None


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "fail_ratio" and isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _figures_table(page: TargetPage) -> str:
    rows = [(label, _shown(key, page.figures.get(key))) for key, label in FIGURES if key in page.figures]
    if page.capacity:
        lower = page.capacity.get("knee_is_lower_bound")
        for key, label in CAPACITY_FIGURES:
            text = _shown(key, page.capacity.get(key))
            rows.append((label, (">= " + text) if key == "knee_hits_per_second" and lower and text != "-" else text))
    body = "".join(f"<tr><th>{escape(label)}</th><td>{escape(text)}</td></tr>" for label, text in rows)
    return f'<table class="figures">{body}</table>'


def target_section(page: TargetPage) -> str:
    """One target's ``<section>``: heading, figures, charts."""
    charts = "".join(
        f'<figure class="chart" data-chart="{escape(chart.key)}">{chart.svg}</figure>'
        for chart in target_charts(page.samples, page.capacity)
    )
    return (
        f'<section class="target" data-target="{escape(page.name)}">'
        f"<h2>{escape(page.name)}</h2>{_figures_table(page)}"
        f'<div class="charts">{charts}</div></section>'
    )


def render_report(
    targets: Sequence[TargetPage],
    *,
    title: str = "Trafficinator run",
    run: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
    generated: datetime | None = None,
) -> str:
    """The whole page (see the module docstring)."""
    when = (generated or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    facts = [f"written {when}"]
    for key in ("pacing", "seconds"):
        if run and run.get(key) is not None:
            facts.append(f"{key} {run[key]}")
    facts.append(f"{len(targets)} target(s)")
    sections = "".join(target_section(page) for page in targets)
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="run">{escape(" · ".join(facts))}</p>'
        f"{sections}</body></html>\n"
    )
    return mask_secrets(document, secrets)
