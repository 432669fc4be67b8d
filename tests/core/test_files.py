"""Small files: read only when regular and small, whatever a user or a request names."""

from __future__ import annotations

import os

import pytest

from trafficinator_locust.core.errors import FileRefused, UsageError
from trafficinator_locust.core.files import read_small_text


def test_a_small_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("héllo\n", encoding="utf-8")
    assert read_small_text(path, 100, "--report") == "héllo\n"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_folders_and_fifos_are_refused_at_once(tmp_path, device):
    with pytest.raises(FileRefused, match=f"--report {device}: not a regular file"):
        read_small_text(device, 100, "--report")
    with pytest.raises(FileRefused, match="not a regular file"):
        read_small_text(tmp_path, 100, "urls")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="not a regular file"):  # the open does not block on a FIFO
        read_small_text(fifo, 100, "urls")


def test_a_file_over_the_limit_is_refused_with_sizes(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FileRefused, match="101 bytes, more than the 100 allowed") as caught:
        read_small_text(path, 100, "--report")
    assert isinstance(caught.value, UsageError)  # exit 2 wherever it is caught
    with pytest.raises(FileNotFoundError):
        read_small_text(tmp_path / "missing", 100, "--report")
