"""A safetensors header that is not a table is a damaged file, one line, never a traceback."""

from __future__ import annotations

import json
import struct

import pytest

from restorecli.weights.bundle import bundle_spec, read_bundle_metadata


@pytest.mark.parametrize("header", [[1, 2], "text", 5, {"__metadata__": [1]}, {"__metadata__": {"a": 1}}])
def test_a_header_that_is_not_a_table_is_refused(tmp_path, header):
    path = tmp_path / "x.safetensors"
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ValueError):
        read_bundle_metadata(path)
    assert bundle_spec(path) is None
