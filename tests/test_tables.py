"""Tables on stdout are never cut where there is no terminal (io.tables): in a pipe or a file every
column and cell is printed whole, whatever COLUMNS says."""

from __future__ import annotations

from helpers import run_cli, solid_png


def test_models_table_in_a_pipe_keeps_every_column_and_cell(tmp_path):
    from restorecli.weights.catalog import model_rows, short_license
    from restorecli.weights.registry import load_registry

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
        assert short_license(row["license"]) in line, (row["name"], line)  # the license's name, one line
    assert all(line == line.rstrip() for line in lines)
    assert max(len(line) for line in lines) <= 160  # a row fits a wide terminal even in a pipe


def test_bench_table_in_a_file_is_never_truncated(capsys, monkeypatch):
    from restorecli.jobs.bench import print_table

    monkeypatch.delenv("COLUMNS", raising=False)
    result = {
        "workload": "resshift-x4-1080p-long-name",
        "model": "resshift-realsr-x4-v3",
        "arch": "registered",
        "shape": "1080x1920",
        "batch": 16,
        "steps": 4,
        "precision": "bfloat16",
        "cpu_threads": 16,
        "ms_per_image": 123456.7,
        "images_per_s": 0.01,
        "peak_mem_gib": 161.25,
        "reference_ms_per_batch": 1975307.2,
        "speedup_vs_reference": 1.0,
        "notes": [],
    }
    print_table(
        {"device_name": "NVIDIA H200 (139 GiB)", "torch": "2.13.0+cu128", "date": "2025-01-01", "results": [result]}
    )
    out = capsys.readouterr().out
    assert "…" not in out
    for text in (
        "resshift-x4-1080p-long-name",
        "resshift-realsr-x4-v3",
        "1080x1920",
        "bfloat16",
        "123456.7",
        "161.25",
        "123456.7",
        "1.00x",
        "peak GiB",
        "ref ms/img",
        "speedup",
    ):
        assert text in out, (text, out)


def test_eval_table_keeps_long_file_names(tmp_path):
    restored, reference = tmp_path / "restored", tmp_path / "reference"
    name = "a-very-long-file-name-from-a-real-dataset-0001"
    solid_png(restored / f"{name}.png", (40, 56), 100)
    solid_png(reference / f"{name}.png", (40, 56), 110)
    res = run_cli("eval", str(restored), str(reference), env={"COLUMNS": ""})
    assert res.returncode == 0, res.stderr
    assert name in res.stdout.decode()
