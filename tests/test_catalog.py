"""`restore models` (weights.catalog): each model's task, method, license and whether its weights are
cached, bundled or a download, in the table, in full for one model, and as the docs describe them."""

from __future__ import annotations

import json

from helpers import REPO, run_cli


def test_models_table_fits_160_columns_and_names_each_license():
    from restorecli.weights.catalog import short_license
    from restorecli.weights.registry import load_registry

    for spec in load_registry().models.values():
        name = short_license(spec.license)
        assert len(name) <= 60 and name.split()[0] == spec.license.split()[0], (spec.name, name)
    res = run_cli("models", env={"COLUMNS": "160"})
    assert res.returncode == 0
    assert max(len(line) for line in res.stdout.decode().splitlines()) <= 160


def test_models_model_shows_the_full_license_and_sources(tmp_path):
    from restorecli.weights.registry import load_registry

    spec = load_registry().get("rddm-derain-small")
    res = run_cli("models", "rddm-derain-small", env={"RESTORECLI_CACHE": str(tmp_path)})
    out = res.stdout.decode()
    assert res.returncode == 0 and f"license: {spec.license}" in out
    res = run_cli("models", "resshift-realsr-x4-v3", "--json", env={"RESTORECLI_CACHE": str(tmp_path)})
    row = json.loads(res.stdout)
    assert row["name"] == "resshift-realsr-x4-v3" and set(row["components"]) == {"unet", "autoencoder"}
    res = run_cli("models", "no-such-model")
    assert res.returncode == 2 and res.stderr.decode().startswith("error: unknown model 'no-such-model'")


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
    text = " ".join((REPO / "docs" / "weights.md").read_text().split())
    assert "`availability` (`download`, `manual`, `none`, `bundled`)" in text
    assert "`bundled`:" in text
