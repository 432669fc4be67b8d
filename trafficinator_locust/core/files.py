"""Small files: replaced atomically, and read only when they are small regular files.

Writing: a reader, or a writer killed half-way, sees the old or the new file (one helper for the
budget state, the backfill checkpoint and report, and the receiver's ready file). Reading: a path a
user or a web request names may be ``/dev/zero``, a FIFO or a huge file; :func:`read_small_text`
reads at most ``limit`` bytes of a regular file and refuses the rest, so no input can exhaust memory
or block forever::

    text = read_small_text(path, 1 << 20, "--report")   # FileRefused (exit 2) for /dev/zero
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from trafficinator_locust.core.errors import FileRefused

MiB = 1 << 20


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


def read_small_text(path: str | Path, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; :class:`FileRefused` otherwise.

    ``what`` says how the user named the file (``--report``, ``targets[0].traffic.urls``). Opened
    without following it to a device first (``O_NONBLOCK``: a FIFO never blocks the open), checked
    with ``fstat`` on the open file (no race with a swap of the path), read to ``limit + 1`` bytes at
    most. ``FileNotFoundError`` and other ``OSError`` propagate for the caller to word; bytes that
    are not UTF-8 are a ``UnicodeDecodeError`` (a ``ValueError``).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{what} {path}: not a regular file (a device, FIFO, socket or folder is never read)")
        if info.st_size > limit:
            raise FileRefused(f"{what} {path}: {info.st_size:,} bytes, more than the {limit:,} allowed")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, MiB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew while being read
            raise FileRefused(f"{what} {path}: more than the {limit:,} bytes allowed")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")
