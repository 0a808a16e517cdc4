"""What a task run says about itself (jobs.runinfo): the `-v` line names the model, where its weights
came from and the settings that ran; a --tile below the model's smallest says what is used instead;
and the --report page's path is checked before any work."""

from __future__ import annotations

from helpers import ONE_THREAD, err_of, one_line, photos, run_cli, run_fake_x2, solid_png


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

    solid_png(tmp_path / "a.png", (120, 200), 120)
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
    assert "in 64-pixel tiles" in err  # the tile that really runs (tests/test_rddm.py)

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


def test_tile_below_the_minimum_says_what_is_used(tmp_path):
    solid_png(tmp_path / "a.png", (120, 200), 120)
    r = run_cli("--offline", "derain", "a.png", "out.png", "--tile", "16", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert "warning: --tile 16 is below the smallest tile model rddm-derain-small takes; using 64-pixel tiles" in err


def test_report_needs_an_html_name(tmp_path):
    solid_png(tmp_path / "a.png", (40, 56), 120)
    r = run_cli("--offline", "derain", "a.png", "out.png", "--report", "run.png", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2 and "--report" in r.stderr.decode() and ".html" in r.stderr.decode()
    assert not (tmp_path / "out.png").exists()


def test_report_folder_that_would_hold_the_outputs_is_refused(tmp_path):
    src = photos(tmp_path)
    res = run_fake_x2(tmp_path, "sr", str(src), str(tmp_path / "rep_files"), "--report", str(tmp_path / "rep.html"))
    assert res.returncode == 2, err_of(res)
    assert "thumbnail folder" in one_line(res)
    assert not (tmp_path / "rep_files").exists()


def test_a_linked_report_folder_is_refused_and_leaves_nothing_behind(tmp_path):
    src = photos(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".restorecli-report").write_text("")
    (elsewhere / "keep.txt").write_text("keep me")
    (tmp_path / "rep_files").symlink_to(elsewhere, target_is_directory=True)
    res = run_fake_x2(tmp_path, "sr", str(src), str(tmp_path / "out"), "--report", str(tmp_path / "rep.html"))
    assert res.returncode == 2, err_of(res)
    assert "symbolic link" in one_line(res)
    assert (elsewhere / "keep.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".rep_files.old-*"))
