"""The backfill's checkpoint file: what was confirmed per target and local day, so a rerun resumes.

Why: a backfill of months runs for hours and may be stopped (Ctrl-C, a failed target, a reboot).
Per (target, day) the file keeps the number of planned visits and a cursor (next visit, next hit
in it) advanced after each batch Matomo confirmed, written atomically; finished days are marked.
A resumed run starts at the cursor, so nothing is sent twice::

    checkpoint = Checkpoint.load(Path("backfill-checkpoint.json"))
    state = checkpoint.adopt("Shop", target_fingerprint(target), seed, run_id)
    with checkpoint.lock:
        state["days"]["2025-03-14"] = new_day(window, full_day_end)
        checkpoint.save()

Threads: the backfill's target threads share one checkpoint; they change ``data`` and call
:meth:`Checkpoint.save` only while holding :attr:`Checkpoint.lock`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from trafficinator_locust.core.backfill_days import DayWindow
from trafficinator_locust.core.config import Target
from trafficinator_locust.core.errors import UsageError
from trafficinator_locust.core.files import write_atomic

__all__ = ["CHECKPOINT_VERSION", "VISITOR_BOOK", "Checkpoint", "new_day", "target_fingerprint"]

CHECKPOINT_VERSION = 1
VISITOR_BOOK = "book"
"""A target's ``"visitors"`` when its visits take tickets from a visitor book (``BackfillVisitors``).

A target saved without it (by a version before visitor books) keeps planning its returning
visitors from the fixed pool, so its resumed days send exactly what its first run planned.
"""


def target_fingerprint(target: Target) -> str:
    """What shapes a target's planned visits and where they go (token, weight, enabled excluded)."""
    data = target.model_dump(mode="json", exclude={"token_auth", "report_token_auth", "weight", "enabled"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def new_day(window: DayWindow, full_day_end: int) -> dict[str, Any]:
    """A day's state before its first batch; ``until`` only for today (planned up to that instant)."""
    day = {
        "planned": window.visits,
        "cursor": [0, 0],
        "visits": 0,
        "hits": 0,
        "tracked": 0,
        "invalid": 0,
        "actions": 0,
        "reports": {},  # core.reports figures of the confirmed hits (money in cents)
        "done": window.visits == 0,
    }
    if window.end != full_day_end:
        day["until"] = window.end
    return day


class Checkpoint:
    """Progress per target and local day, saved atomically after every confirmed batch.

    File layout (version 1)::

        {"version": 1, "targets": {NAME: {"fingerprint": ..., "seed": ..., "run_id": ..., "visitors": "book",
            "days": {"YYYY-MM-DD": {"planned": N, "until": TS (today only), "cursor": [visit, hit],
                                     "visits": .., "hits": .., "tracked": .., "invalid": ..,
                                     "actions": .., "done": bool}}}}}

    ``cursor`` is the next hit to send: visit index and hit index within that visit. ``path=None``
    keeps everything in memory (dry runs, tests). ``visitors`` (absent in older files, see
    :data:`VISITOR_BOOK`): the book is not stored, a resumed run rebuilds it by replaying the planning
    of the target's days in date order (the days saved here before the range, then the range).
    """

    def __init__(self, path: Path | None, data: dict[str, Any] | None = None):
        self.path = path
        self.data: dict[str, Any] = data or {"version": CHECKPOINT_VERSION, "targets": {}}
        self.lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None) -> Checkpoint:
        """The checkpoint at ``path`` (an empty one when there is no file); :class:`UsageError` for
        a file that is not a checkpoint of this version."""
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"--checkpoint {path}: not a readable checkpoint ({exc.__class__.__name__}); move it away to start over"
            ) from None
        if (
            not isinstance(data, dict)
            or data.get("version") != CHECKPOINT_VERSION
            or not isinstance(data.get("targets"), dict)
        ):
            raise UsageError(
                f"--checkpoint {path}: not a backfill checkpoint of version {CHECKPOINT_VERSION}; "
                "move it away to start over"
            )
        return cls(path, data)

    def target(self, name: str) -> dict[str, Any] | None:
        return self.data["targets"].get(name)

    def adopt(self, name: str, fingerprint: str, seed: int, run_id: str) -> dict[str, Any]:
        return self.data["targets"].setdefault(
            name, {"fingerprint": fingerprint, "seed": seed, "run_id": run_id, "visitors": VISITOR_BOOK, "days": {}}
        )

    def save(self) -> None:
        if self.path is not None:
            write_atomic(self.path, json.dumps(self.data, separators=(",", ":"), sort_keys=True), durable=True)
