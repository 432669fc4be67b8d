"""Replacing a small file atomically: a reader, or a writer killed half-way, sees the old or the new file.

One helper for the budget state, the backfill checkpoint and report, and the receiver's ready file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` through a temp file in the same folder and ``os.replace``.

    ``durable`` also fsyncs before the rename (survives a power cut, costs a disk flush); without
    it the guarantee is against a killed process only. Errors propagate; the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; none of these files holds a secret
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
