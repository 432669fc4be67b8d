"""Plain fixed-width tables for terminals and CI logs (no terminal features needed).

Every table the package prints goes through :func:`render_table`::

    >>> print(render_table(["target", "visits"], [["Production", 120], ["Staging", 7]]))
    target      visits
    ----------  ------
    Production     120
    Staging          7
"""

from __future__ import annotations

from typing import Any


def render_table(headers: list[str], rows: list[list[Any]]) -> str:
    """The first column left-aligned, the others right-aligned, a dashed line under the headers."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
