"""Text from outside is read with a bound, as UTF-8, and never from a device or FIFO."""

from __future__ import annotations

import pytest

from restorecli.errors import UsageError
from restorecli.io.bounded import read_text_file
from restorecli.jobs.discovery import discover
from restorecli.weights.registry import load_registry


def test_dev_zero_is_refused_without_reading():
    with pytest.raises(UsageError, match="not a regular file"):
        read_text_file("/dev/zero", "list file")


@pytest.mark.parametrize("data", [b"a\xff\xfe\n", b"a.png\0b.png\n", b"\x80" * 10])
def test_text_that_is_not_utf8_is_one_line(tmp_path, data):
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    with pytest.raises(UsageError):
        discover([f"@{path}"])


def test_a_long_file_is_refused_at_the_bound(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(UsageError, match="larger"):
        read_text_file(path, "list file", limit=1000)


def test_registry_overlays_are_bounded_and_utf8(tmp_path):
    bad = tmp_path / "weights.toml"
    bad.write_bytes(b'[models.x]\ndescription = "\xff"\n')
    for path in ("/dev/zero", bad):
        with pytest.raises(UsageError):
            load_registry([path])
