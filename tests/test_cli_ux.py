"""The command line's output and argument handling, through the real entry point.

Tables written to a pipe or file, bundled models, the `-v` line, `--tile`,
output names, bundles of the wrong task, one-line errors, per-task `--help`,
reruns that load nothing heavy, and `--report PATH.html`.
"""

from __future__ import annotations

import json
import re

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


def test_models_of_an_unknown_task_is_a_usage_error_listing_the_tasks():
    res = run_cli("models", "--task", "nope")
    err = res.stderr.decode()
    assert res.returncode == 2 and res.stdout == b"", err
    assert err.count("\n") == 1 and "'nope'" in err
    for task in ("sr", "derain", "lowlight", "inpaint", "shadow"):
        assert task in err.split("known tasks:")[1]


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


# ---- 3. `-v` says what ran ---------------------------------------------------------------


def _overlay_model_like_derain_small(tmp_path):
    """A registered (not bundled) copy of rddm-derain-small (same arch as weights.toml ships), served from the cache."""
    from restorecli.weights.cache import bundle_path, packaged_bundle
    from restorecli.weights.registry import load_registry

    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[models.my-derain]\nmethod = "rddm"\ntask = "derain"\ntrained_steps = 2\ndefault_steps = 1\n'
        'min_steps = 1\nmax_steps = 2\norigin = "user-trained"\n'
        'sampler = { objective = "pred_res", condition = true, input_condition = false, time_input = "int", '
        'sum_scale = 1.0, timesteps = 1000, schedule = { type = "linear" } }\n'
        '[models.my-derain.components.unet0]\narch = "rddm-unet-fast-restore"\nfile = "my.safetensors"\n'
        'sources = [{ kind = "url", url = "http://127.0.0.1:9/my.safetensors" }]\n'
    )
    registry = load_registry((overlay,))
    cache = tmp_path / "cache"
    target = bundle_path(registry.get("my-derain"), cache)
    target.parent.mkdir(parents=True)
    target.write_bytes(packaged_bundle(registry.get("rddm-derain-small")).read_bytes())
    return overlay, cache, target


def test_verbose_names_model_weights_source_steps_seed_device_precision(tmp_path):
    from restorecli.weights.cache import packaged_bundle
    from restorecli.weights.registry import load_registry

    _png(tmp_path / "a.png", size=(120, 200))
    env = {**ONE_THREAD, "RESTORECLI_CACHE": str(tmp_path / "cache")}
    r = run_cli(
        "--offline",
        "derain",
        "a.png",
        "out.png",
        "-v",
        "--seed",
        "7",
        "--steps",
        "2",
        "--tile",
        "16",
        "--device",
        "cpu",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    line = next(ln for ln in err.splitlines() if ln.startswith("model "))
    packaged = packaged_bundle(load_registry().get("rddm-derain-small"))
    assert line == (
        f"model rddm-derain-small; weights bundled with restorecli ({packaged}); 2 steps; seed 7; "
        "device cpu; precision fp32"
    ), line
    assert "in 64-pixel tiles" in err  # the tile that really runs (tests/test_rddm_memory.py)

    bundle = tmp_path / "mine.safetensors"
    bundle.write_bytes(packaged.read_bytes())
    r = run_cli("--offline", "derain", "a.png", "out2.png", "-v", "--weights", str(bundle), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.decode().splitlines() if ln.startswith("model "))
    assert f"weights --weights {bundle};" in line and "1 step;" in line and "seed 0" in line, line

    overlay, cache, target = _overlay_model_like_derain_small(tmp_path)
    r = run_cli(
        "--offline",
        "--registry",
        str(overlay),
        "--cache-dir",
        str(cache),
        "derain",
        "a.png",
        "out3.png",
        "-m",
        "my-derain",
        "-v",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.decode().splitlines() if ln.startswith("model "))
    assert line.startswith(f"model my-derain; weights cache {target};"), line


# ---- 4. --tile is validated --------------------------------------------------------------


def test_negative_tile_is_a_usage_error(tmp_path):
    _png(tmp_path / "a.png")
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "-5", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2, r.stderr
    assert "--tile" in r.stderr.decode() and "-5" in r.stderr.decode()
    assert not (tmp_path / "out.png").exists()


def test_tile_below_the_minimum_says_what_is_used(tmp_path):
    _png(tmp_path / "a.png", size=(120, 200))
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "16", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "warning: --tile 16 is below the smallest tile model rddm-derain-small takes; using 64-pixel tiles" in err


# ---- 5. an OUTPUT with an unknown image extension ---------------------------------------


def test_output_with_unknown_extension_is_a_usage_error(tmp_path):
    _png(tmp_path / "a.png")
    r = run_cli("--offline", "derain", "a.png", "out.xyz", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "out.xyz" in err and ".xyz" in err and "/" in err, err
    assert not (tmp_path / "out.xyz").exists()


def test_output_folder_names_with_a_dot_need_a_slash_or_must_exist(tmp_path):
    from restorecli.errors import UsageError
    from restorecli.jobs.discovery import discover, plan_outputs
    from restorecli.jobs.options import JobOptions

    src = _png(tmp_path / "a.png")

    def planned(output):
        items, _ = discover([str(src)])
        return plan_outputs(items, JobOptions(task="derain", inputs=[str(src)], output=output))[0].output

    with pytest.raises(UsageError, match="out.xyz"):
        planned(str(tmp_path / "out.xyz"))
    assert planned(str(tmp_path / "out.xyz") + "/") == tmp_path / "out.xyz" / "a.png"
    (tmp_path / "results.v2").mkdir()
    assert planned(str(tmp_path / "results.v2")) == tmp_path / "results.v2" / "a.png"
    assert planned(str(tmp_path / "plain")) == tmp_path / "plain" / "a.png"  # no extension: a folder
    assert planned(str(tmp_path / "b.JPG")) == tmp_path / "b.JPG"


# ---- 6. a bundle for another task is refused ---------------------------------------------


def _derain_bundle_copy(tmp_path):
    from restorecli.weights.cache import packaged_bundle
    from restorecli.weights.registry import load_registry

    bundle = tmp_path / "rddm-derain-small.safetensors"
    bundle.write_bytes(packaged_bundle(load_registry().get("rddm-derain-small")).read_bytes())
    return bundle


@pytest.mark.parametrize("task", ["lowlight", "shadow"])
def test_bundle_of_another_task_exits_3_naming_both_tasks(tmp_path, task):
    _png(tmp_path / "x.png")
    bundle = _derain_bundle_copy(tmp_path)
    extra = ["--mask", "x.png"] if task == "shadow" else []
    r = run_cli("--offline", task, "x.png", "out.png", "--weights", str(bundle), *extra, cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 3, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "'derain'" in err and f"'{task}'" in err and str(bundle) in err, err
    assert not (tmp_path / "out.png").exists()


def test_bundle_task_check_in_the_api_and_for_converted_bundles(tmp_path):
    import torch

    from restorecli.errors import WeightsError
    from restorecli.runtime.load import load_engine
    from restorecli.weights.bundle import check_bundle_task, write_bundle
    from restorecli.weights.registry import load_registry

    registry = load_registry()
    with pytest.raises(WeightsError, match="'derain'.*'lowlight'"):
        load_engine(None, "lowlight", weights=[str(_derain_bundle_copy(tmp_path))], device="cpu", offline=True)
    # a `restore convert` bundle has no spec: its registered model's task decides
    official = write_bundle(
        tmp_path / "conv.safetensors", registry.get("rddm-derain"), {"unet0": {"w": torch.zeros(1)}}
    )
    with pytest.raises(WeightsError, match="'derain'.*'shadow'"):
        check_bundle_task([str(official)], "shadow", registry)
    check_bundle_task([str(official)], "derain", registry)
    check_bundle_task(["unet0=some.pth"], "shadow", registry)  # official files: nothing recorded, nothing refused


def test_a_model_serving_several_tasks_still_runs_them(tmp_path):
    """A registry entry whose default_for lists another task: its bundle is accepted there."""
    _png(tmp_path / "x.png")
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[models.rddm-derain-small]\ndefault_for = ["derain", "deblur"]\n[models.diffir-deblur]\ndefault_for = []\n'
    )
    bundle = _derain_bundle_copy(tmp_path)
    r = run_cli(
        "--offline",
        "--registry",
        str(overlay),
        "deblur",
        "x.png",
        "out.png",
        "--weights",
        str(bundle),
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.png").is_file()


# ---- 7. every error is one line; exit codes agree everywhere --------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("sr", "a.png", "--no-such-option"),
        ("sr",),
        ("derain", "a.png", "--steps", "many"),
        ("derain", "a.png", "--tile", "-5"),
        ("no-such-command",),
    ],
)
def test_click_usage_errors_are_one_line_with_exit_2(tmp_path, args):
    _png(tmp_path / "a.png")
    r = run_cli(*args, cwd=tmp_path, env={"COLUMNS": ""})
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "--help" in err and "╭" not in err and "Usage:" not in err, err


def test_help_is_still_the_full_help():
    r = run_cli("derain", "--help")
    assert r.returncode == 0 and "Usage: restore derain" in r.stdout.decode() and "--tile" in r.stdout.decode()
    r = run_cli()  # no arguments: the top-level help, as before
    assert "Usage: restore" in (r.stdout + r.stderr).decode()


def test_fetch_failure_names_the_url_once_on_unwrapped_lines(tmp_path):
    url = "http://127.0.0.1:9/" + "a-long-path-segment/" * 5 + "tiny_net.pth"
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[arch.t]\nkind = "rddm.unet"\n[models.tiny]\nmethod = "rddm"\ntask = "derain"\n'
        f'trained_steps = 1\n[models.tiny.components.net]\narch = "t"\nfile = "tiny_net.pth"\n'
        f'sources = [{{ kind = "url", url = "{url}" }}]\n'
    )
    env = {"COLUMNS": "", "RESTORECLI_CACHE": str(tmp_path / "cache"), "NO_PROXY": "*", "no_proxy": "*"}
    r = run_cli("--registry", str(overlay), "fetch", "tiny", env=env, timeout=120)
    assert r.returncode == 4, r.stderr
    err = r.stderr.decode()
    assert err.count(url) == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and url in errors[0] and "127.0.0.1" in errors[0], err
    assert all(ln.startswith(("error: ", "downloading ")) for ln in err.splitlines() if ln.strip()), err


def test_convert_of_a_file_that_is_no_checkpoint_says_so(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"fake\n")
    r = run_cli("convert", "rddm-derain-small", str(fake), "-o", str(tmp_path / "x.safetensors"))
    assert r.returncode == 3, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert f"cannot read checkpoint {fake}: not a PyTorch checkpoint" in err, err
    assert "Weights only load failed" not in err and "Unsupported operand" not in err


def test_exit_codes_agree_in_errors_py_help_and_docs():
    import re

    from cli_helpers import REPO
    from restorecli.errors import EXIT_CODES

    flat = " ".join(run_cli("--help").stdout.decode().split())
    for doc in ("cli.md", "batch.md"):
        text = (REPO / "docs" / doc).read_text()
        section = text.split("## Exit codes", 1)[1]
        rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE))
        assert {int(k): v for k, v in rows.items()} == EXIT_CODES, doc
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in flat, (code, flat)
    assert "mask of the wrong size" in EXIT_CODES[1] and "mask" not in EXIT_CODES[2].replace("missing --mask", "")


def test_a_mask_of_the_wrong_size_exits_with_the_documented_code(tmp_path):
    import os
    import subprocess
    import sys

    from cli_helpers import REPO
    from restorecli.errors import EXIT_CODES

    sys.path.insert(0, str(REPO / "tests"))
    import fake_engines as fe
    from restorecli.weights.bundle import write_bundle

    overlay, _ = fe.write_model(tmp_path / "model")
    bundle = write_bundle(
        tmp_path / "inpaint.safetensors", fe.fake_spec("fake-inpaint", "inpaint", 1), {"net": fe.identity_state()}
    )
    _png(tmp_path / "a.png", size=(16, 16))
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "NO_COLOR": "1", **ONE_THREAD}
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "fake_engines.py"),
            "--registry",
            str(overlay),
            "inpaint",
            "a.png",
            "out.png",
            "--mask",
            "m.png",
            "--model",
            "fake-inpaint",
            "--weights",
            str(bundle),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "mask" in r.stderr.decode() and "mask of the wrong size" in EXIT_CODES[r.returncode]


# ---- 8. each task's --help lists its own options and names its default model ----------------


@pytest.mark.parametrize(
    "task, model, download, mask, resize",
    [
        ("sr", "resshift-realsr-x4-v3", "downloads 699 MB once", False, False),
        ("inpaint", "resshift-inpaint-imagenet", "downloads", True, False),
        ("face", "resshift-faceir", "downloads", False, False),
        ("deblur", "diffir-deblur", "by hand", False, True),
        ("derain", "rddm-derain-small", "shipped in the package: no download", False, True),
        ("lowlight", "rddm-lowlight-small", "shipped in the package: no download", False, True),
        ("shadow", "rddm-shadow", "no published weights", True, True),
    ],
)
def test_task_help_lists_its_options_and_default_model(task, model, download, mask, resize):
    r = run_cli(task, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.decode().replace("│", " ").split())
    assert f"Default model: {model}" in text, text
    assert download in text, text
    assert ("--mask" in text) is mask, text
    assert ("--resize" in text) is resize, text


def test_an_option_of_another_task_is_refused_in_one_line():
    r = run_cli("sr", "a.png", "--resize", "256")
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "'restore sr' takes no --resize" in err, err


# ---- 9. a rerun that skips everything loads nothing heavy; earlier outputs are not inputs -----


WRAPPER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(
    "\\nHEAVY=" + ",".join(m for m in ("torch", "restorecli.engines", "restorecli.runtime.restorer") if m in sys.modules) + "\\n"))
sys.argv = ["restore", *sys.argv[1:]]
from restorecli.cli import main
main()
"""


def test_a_rerun_that_skips_every_file_does_not_import_torch(tmp_path):
    import os
    import subprocess
    import sys

    from cli_helpers import REPO

    for name in ("a", "b"):
        _png(tmp_path / "in" / f"{name}.png")
        _png(tmp_path / "out" / f"{name}.png")  # finished earlier
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "NO_COLOR": "1", "RESTORECLI_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, str(wrapper), "--offline", "derain", "in", "out", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped"] == 2
    assert r.stderr.decode().strip().splitlines()[-1] == "HEAVY=", r.stderr.decode()


def test_earlier_outputs_of_the_same_task_next_to_the_inputs_are_not_inputs(tmp_path):
    from restorecli.jobs.discovery import discover, plan_outputs
    from restorecli.jobs.options import JobOptions

    for name in ("a.png", "a_derain.png", "c.jpg", "c_derain.png", "b_derain.png", "d_lowlight.png"):
        _png(tmp_path / "in" / name)

    def inputs(task, output, **kw):
        items, _ = discover([str(tmp_path / "in")])
        opts = JobOptions(task=task, inputs=[str(tmp_path / "in")], output=output, **kw)
        return sorted(i.rel.name for i in plan_outputs(items, opts))

    # a separate output folder: a_derain.png and c_derain.png are restorecli outputs of a.png and c.jpg
    assert inputs("derain", str(tmp_path / "out")) == ["a.png", "b_derain.png", "c.jpg", "d_lowlight.png"]
    # next to the inputs, as before
    assert inputs("derain", None) == ["a.png", "b_derain.png", "c.jpg", "d_lowlight.png"]
    # another task's outputs are inputs like any other file
    assert "a_derain.png" in inputs("lowlight", str(tmp_path / "out"))
    # with --suffix, that suffix marks the outputs
    assert "a_derain.png" in inputs("derain", str(tmp_path / "out"), suffix="_clean")
    # a file named explicitly is always an input
    items, _ = discover([str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / "a_derain.png")])
    opts = JobOptions(task="derain", inputs=[], output=str(tmp_path / "out2"))
    assert len(plan_outputs(items, opts)) == 2


# ---- 12. --report PATH.html on every task command and on `restore eval` ---------------------


def _page_text(page):
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.imgs = [], []

        def handle_data(self, data):
            self.parts.append(data)

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs).get("src"))

    parser = Text()
    parser.feed(page.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split()), parser.imgs


def test_task_report_page_with_thumbnails_names_files_and_settings(tmp_path):
    _png(tmp_path / "in" / "a.png", size=(40, 56), value=90)
    _png(tmp_path / "in" / "b.png", size=(48, 32), value=160)
    r = run_cli(
        "--offline",
        "derain",
        "in",
        "out",
        "--report",
        "run.html",
        "--seed",
        "3",
        "--device",
        "cpu",
        cwd=tmp_path,
        env=ONE_THREAD,
    )
    assert r.returncode == 0, r.stderr
    page = tmp_path / "run.html"
    text, imgs = _page_text(page)
    for needle in (
        "a.png",
        "b.png",
        "derain",
        "rddm-derain-small",
        "seed",
        "3",
        "cpu",
        "fp32",
        "steps",
        "done",
        "bundled with restorecli",
    ):
        assert needle in text, (needle, text)
    # the run's wall time, and the files' own times labelled as a sum (they overlap), never "in total"
    assert re.search(r"wall time\s*\d+\.\d\d s", text) and "summed over files" in text, text
    assert "in total" not in text
    thumbs = sorted(p.name for p in (tmp_path / "run_files").iterdir() if not p.name.startswith("."))
    assert len(thumbs) == 4, thumbs  # input and output of each file
    assert all(src and src.startswith("run_files/") for src in imgs) and len(imgs) >= 4
    assert "wrote report run.html" in r.stderr.decode()

    # a rerun that skips everything still writes the page (the outputs exist)
    r = run_cli("--offline", "derain", "in", "out", "--report", "run.html", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    text, _ = _page_text(page)
    assert "skipped" in text and "a.png" in text


def test_eval_report_page_shows_metrics(tmp_path):
    _png(tmp_path / "ref" / "a.png", value=100)
    _png(tmp_path / "res" / "a_derain.png", value=104)
    r = run_cli("eval", "res", "ref", "--strip-suffix", "_derain", "--report", "eval.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text, _ = _page_text(tmp_path / "eval.html")
    assert "a.png" in text and "reference" in text and "restored" in text
    assert "a_derain.png" in (tmp_path / "eval.html").read_text()  # the link to the restored file
    assert "PSNR" in text and "SSIM" in text, text
    assert len([p for p in (tmp_path / "eval_files").iterdir() if not p.name.startswith(".")]) == 2


def test_report_needs_an_html_name(tmp_path):
    _png(tmp_path / "a.png")
    r = run_cli("--offline", "derain", "a.png", "out.png", "--report", "run.png", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2 and "--report" in r.stderr.decode() and ".html" in r.stderr.decode()
    assert not (tmp_path / "out.png").exists()
