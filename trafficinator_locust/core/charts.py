"""Line charts as standalone SVG text: axes, ticks, labels, a legend, a few series. No dependency.

Why server-side SVG (ADR 016): the HTML report must open offline anywhere and the live Targets page
must draw the same pictures; Locust's ECharts sits inside its React bundle and cannot be loaded on
its own, and a vendored charting library would be about 1 MB to keep up to date. One renderer here
draws for both: the report embeds the SVG, the control page swaps it in on every poll.

Every text (title, axis labels, series names) is escaped; colours come from :data:`PALETTE` only,
so nothing a caller passes becomes markup. A series' ``None`` (or non-finite) value is a gap in its
line; a chart without any point still renders its frame and says "no data yet"::

    svg = line_chart(
        "Visits per minute",
        [Series("sent", [(0, 0.0), (10, 55.0), (20, 61.0)]), Series("expected", [(0, 60), (20, 60)], dashed=True)],
        x_label="time since start",
        y_label="visits/min",
        x_format="duration",
    )
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

XFormat = Literal["number", "duration"]
PALETTE = ("#1f6fb5", "#e0761b", "#2a9d3b", "#c23b3b", "#7a4fb0", "#6b6b6b")
"""Series colours, in order (colour-blind friendly enough for two or three lines)."""
WIDTH, HEIGHT = 520, 240
MARKERS_UP_TO = 40
"""A series with at most this many points also draws a dot at each one (ramp steps, a run's first samples)."""
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 58, 16, 30, 62
_NICE = (1.0, 2.0, 2.5, 5.0, 10.0)
_DURATION_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and ``(x, y)`` points (``y`` None: a gap)."""

    name: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(n * power for n in _NICE if n * power >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value < high + step * (1 - 1e-9):
        ticks.append(round(value, 10))
        value += step
        if len(ticks) > 4 * count:
            break
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def duration_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Tick values of seconds on clock-like steps (10 s, 30 s, 1 min, 5 min, 1 h ...)."""
    if high <= low:
        high = low + 10
    raw = (high - low) / max(count, 1)
    step = next((s for s in _DURATION_STEPS if s >= raw), _DURATION_STEPS[-1] * math.ceil(raw / _DURATION_STEPS[-1]))
    first = math.floor(low / step) * step
    ticks, value = [], float(first)
    while value < high + step:
        ticks.append(value)
        if value >= high:
            break
        value += step
    return ticks


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``, ``8`` -> ``0:08``."""
    whole = int(round(seconds))
    sign, whole = ("-", -whole) if whole < 0 else ("", whole)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"


def format_number(value: float) -> str:
    """Short tick text: ``1200`` -> ``1.2k``, ``2.5`` -> ``2.5``, ``0.0001`` -> ``0.0001``."""
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    if abs(value) >= 1 or value == 0:
        return f"{round(value, 2):g}"
    return f"{value:.3g}"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_format: XFormat = "number",
    x_from: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An SVG document (one ``<svg>`` element) of ``series`` as lines over shared axes; y starts at 0,
    x at ``x_from`` when given (a run's start) or else at its smallest value."""
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM
    points = [(x, y) for s in series for x, y in s.points if _finite(x) and _finite(y)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_MARGIN_LEFT}" y="18" font-size="13" font-weight="600" fill="#222">{escape(title)}</text>',
    ]
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        low = min(xs) if x_from is None else min(x_from, min(xs))
        ticks_x = (duration_ticks if x_format == "duration" else nice_ticks)(low, max(xs))
        ticks_y = nice_ticks(min(0.0, min(ys)), max(ys) if max(ys) > 0 else 1.0)
    else:
        ticks_x, ticks_y = [0.0, 1.0], [0.0, 1.0]
    x0, x1, y0, y1 = ticks_x[0], ticks_x[-1], ticks_y[0], ticks_y[-1]

    def px(x: float) -> float:
        return _MARGIN_LEFT + (x - x0) / ((x1 - x0) or 1) * plot_w

    def py(y: float) -> float:
        return _MARGIN_TOP + plot_h - (y - y0) / ((y1 - y0) or 1) * plot_h

    label_x = format_duration if x_format == "duration" else format_number
    out.append('<g class="grid" stroke="#e4e4e4" stroke-width="1">')
    out += [
        f'<line x1="{_MARGIN_LEFT}" x2="{_MARGIN_LEFT + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}"/>' for t in ticks_y
    ]
    out.append("</g>")
    out.append('<g class="axis" fill="#444" stroke="none">')
    if points:
        out += [
            f'<text class="tick" x="{_MARGIN_LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">'
            f"{escape(format_number(t))}</text>"
            for t in ticks_y
        ]
        out += [
            f'<text class="tick" x="{px(t):.1f}" y="{_MARGIN_TOP + plot_h + 15}" text-anchor="middle">'
            f"{escape(label_x(t))}</text>"
            for t in ticks_x
        ]
    out.append(
        f'<text class="label" x="{_MARGIN_LEFT + plot_w / 2:.1f}" y="{_MARGIN_TOP + plot_h + 30}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text class="label" transform="translate(13 {_MARGIN_TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    out.append("</g>")
    bottom, left = _MARGIN_TOP + plot_h, _MARGIN_LEFT
    out.append(f'<path class="frame" d="M{left} {_MARGIN_TOP}V{bottom}H{left + plot_w}" stroke="#999" fill="none"/>')
    if not points:
        out.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{_MARGIN_TOP + plot_h / 2:.1f}" '
            'text-anchor="middle" fill="#888">no data yet</text>'
        )
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        drawn = _path(line.points, px, py)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        out.append(f'<g class="series" data-series="{escape(line.name)}">')
        if drawn:
            out.append(f'<path d="{drawn}" stroke="{color}" stroke-width="2" fill="none"{dash}/>')
        finite = [(x, y) for x, y in line.points if _finite(x) and _finite(y)]
        if 0 < len(finite) <= MARKERS_UP_TO:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in finite]
        out.append("</g>")
    out += _legend(series, left, height - 14)
    out.append("</svg>")
    return "".join(out)


def _path(points: Sequence[tuple[float, float | None]], px, py) -> str:  # noqa: ANN001  (two local closures)
    """SVG path data through the finite points; a gap (``None``) starts a new ``M`` segment."""
    parts, pen_down = [], False
    for x, y in points:
        if not (_finite(x) and _finite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{px(x):.1f} {py(y):.1f}")  # type: ignore[arg-type]
        pen_down = True
    return "".join(parts)


def _legend(series: Sequence[Series], left: float, baseline: float) -> list[str]:
    out, x = ['<g class="legend" fill="#333">'], left
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        out.append(
            f'<line x1="{x:.0f}" x2="{x + 22:.0f}" y1="{baseline - 4}" y2="{baseline - 4}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{x + 27:.0f}" y="{baseline}">{escape(line.name)}</text>')
        x += 40 + 6.5 * len(line.name)
    out.append("</g>")
    return out
