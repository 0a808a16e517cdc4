"""Issue #15: the command line's output and argument handling, through the real entry point.

Tables written to a pipe or file, bundled models, the `-v` line, `--tile`,
output names, bundles of the wrong task, one-line errors, per-task `--help`,
reruns that load nothing heavy, and `--report PATH.html`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli

# tiny models on a busy 2-core machine: one torch thread per CLI subprocess
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _png(path, size=(40, 56), value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


# ---- 1. tables are never cut when stdout is not a terminal -----------------------------


def test_models_table_in_a_pipe_keeps_every_column_and_cell(tmp_path):
    from restorecli.fetch import model_rows
    from restorecli.registry import load_registry

    # COLUMNS unset (empty): what `restore models | cat` sees from a shell
    res = run_cli("models", env={"COLUMNS": "", "RESTORECLI_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    assert "…" not in out
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("name"))
    assert "license" in header and "cached" in header
    for row in model_rows(load_registry(), tmp_path):
        line = next(line for line in lines if line.lstrip().startswith(row["name"] + " "))
        assert row["task"] in line and row["method"] in line
        assert (row["license"] or "-") in line, (row["name"], line)  # whole license, one line
    assert all(line == line.rstrip() for line in lines)


def test_bench_table_in_a_file_is_never_truncated(capsys, monkeypatch):
    from restorecli.bench import print_table

    monkeypatch.delenv("COLUMNS", raising=False)
    result = {"workload": "resshift-x4-1080p-long-name", "model": "resshift-realsr-x4-v3", "arch": "registered",
              "shape": "1080x1920", "batch": 16, "steps": 4, "precision": "bfloat16", "cpu_threads": 16,
              "ms_per_image": 123456.7, "images_per_s": 0.01, "peak_mem_gib": 161.25,
              "reference_ms_per_batch": 1975307.2, "speedup_vs_reference": 1.0, "notes": []}
    print_table({"device_name": "NVIDIA H200 (139 GiB)", "torch": "2.13.0+cu128", "date": "2025-01-01",
                 "results": [result]})
    out = capsys.readouterr().out
    assert "…" not in out
    for text in ("resshift-x4-1080p-long-name", "resshift-realsr-x4-v3", "1080x1920", "bfloat16",
                 "123456.7", "161.25", "123456.7", "1.00x", "peak GiB", "ref ms/img", "speedup"):
        assert text in out, (text, out)


def test_eval_table_keeps_long_file_names(tmp_path):
    restored, reference = tmp_path / "restored", tmp_path / "reference"
    name = "a-very-long-file-name-from-a-real-dataset-0001"
    _png(restored / f"{name}.png", value=100)
    _png(reference / f"{name}.png", value=110)
    res = run_cli("eval", str(restored), str(reference), env={"COLUMNS": ""})
    assert res.returncode == 0, res.stderr
    assert name in res.stdout.decode()


# ---- 2. bundled models are shown as bundled ---------------------------------------------


def test_models_shows_bundled_models_as_bundled_not_as_downloads(tmp_path):
    env = {"COLUMNS": "", "RESTORECLI_CACHE": str(tmp_path)}
    res = run_cli("models", "--task", "derain", env=env)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.decode().splitlines() if ln.startswith(" rddm-derain-small"))
    cells = line.split()
    assert "MB" not in line and cells[-1] == "bundled", line  # the download and cached columns
    assert line.count("bundled") == 2, line
    res = run_cli("models", "--task", "lowlight", "--json", env=env)
    row = next(r for r in json.loads(res.stdout) if r["name"] == "rddm-lowlight-small")
    assert row["availability"] == "bundled" and row["ready"] is True and row["cached"] is False
    assert row["bundle"].endswith("models/rddm-lowlight-small.safetensors")
    # `restore fetch` agrees: ready, from the package, nothing downloaded
    res = run_cli("fetch", "rddm-derain-small", env=env)
    assert res.returncode == 0 and "ready" in res.stderr.decode()
    assert not (tmp_path / "bundles").exists()


def test_weights_doc_explains_the_bundled_availability():
    from cli_helpers import REPO

    text = " ".join((REPO / "docs" / "weights.md").read_text().split())
    assert "`availability` (`download`, `manual`, `none`, `bundled`)" in text
    assert "`bundled`:" in text
