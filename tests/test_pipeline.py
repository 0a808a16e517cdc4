"""The batch pipeline: discovery, naming, resuming, failures, sharding, devices, signals, reports, API.

Most tests call `run_job` in-process with the tiny `fake_engine.FakeEngine`;
the end-to-end ones run the real `restore` entry point in a subprocess
(`tests/fake_engine.py` is the CLI with the fake method registered, plus a
registry overlay and weights bundle for it).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

import fake_engine as fe
from helpers import (
    bomb_png,
    cli_env,
    err_of,
    fake_x2_args,
    random_png,
    run_bounded,
    run_cli,
    run_sandboxed,
    solid_png,
    start_cli,
)
from restorecli.errors import UsageError
from restorecli.jobs.discovery import shard_of
from restorecli.jobs.pipeline import JobOptions, run_job

pytestmark = pytest.mark.usefixtures("fresh_fake_engine")


def console() -> Console:
    return Console(file=io.StringIO(), width=200)


def run(inputs, output=None, *, engine=None, con=None, **kw):
    """run_job with a fake x2 engine; returns (report, engine, number of make_engine calls)."""
    engine = engine or fe.make_engine()
    made = []

    def make(device):
        made.append(device)
        return engine

    opts = JobOptions(
        task=kw.pop("task", "sr"), inputs=[str(i) for i in inputs], output=None if output is None else str(output), **kw
    )
    return run_job(make, opts, con or console()), engine, made


def statuses(report) -> dict[str, str]:
    return {Path(r.path).name: r.status for r in report.records}


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if p.is_file()]


# ---- a folder of mixed files, run twice ------------------------------------------------


def mixed_folder(shared, root: Path) -> Path:
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    io_dir = shared("data", "io")
    for f in io_dir.iterdir():
        shutil.copy(f, src / f.name)
    shutil.copy(io_dir / "16x16.png", src / "sub" / "nested.png")
    haze = (io_dir / "haze.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(haze[: len(haze) // 3])
    (src / "bomb.png").write_bytes(bomb_png())
    (src / "notes.png").write_text("not an image")
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(src / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(src / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray((np.arange(12 * 14).reshape(12, 14) * 331 % 65536).astype(np.uint16)).save(src / "gray16.png")
    return src


BROKEN = {"truncated.jpg", "bomb.png", "notes.png"}


def test_mixed_folder_twice_second_run_does_no_work(shared, tmp_path):
    src = mixed_folder(shared, tmp_path)
    out = tmp_path / "out"
    report, engine, made = run([src], out, recursive=True)
    st = statuses(report)
    assert {n for n, s in st.items() if s == "failed"} == BROKEN
    assert all(s == "done" for n, s in st.items() if n not in BROKEN) and len(st) == 21
    reasons = {Path(r.path).name: r.reason for r in report.records if r.status == "failed"}
    assert "truncated" in reasons["truncated.jpg"] and "pixel limit" in reasons["bomb.png"]
    assert "not an image" in reasons["notes.png"]
    assert report.exit_code == 1 and report.failed == 3
    calls = len(fe.FakeEngine.calls)
    assert calls == 18

    # Each output is a real, complete image of twice the size, in the input's format.
    assert Image.open(out / "sub" / "nested.png").size == (32, 32)
    assert Image.open(out / "children-alpha.png").mode == "RGBA"
    assert Image.open(out / "wolf_gray.jpg").mode == "L"
    assert Image.open(out / "cmyk.jpg").mode == "RGB"
    assert Image.open(out / "rotated.jpg").size == (20, 60)  # EXIF rotation applied: 10x30 shown as 30x10
    assert cv2.imread(str(out / "tree_alpha_16bit.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert Image.open(out / "haze.jpg").info["icc_profile"] == Image.open(src / "haze.jpg").info["icc_profile"]
    assert not any(out.rglob("truncated*")) and not hidden_files(out)

    again, _, made_again = run([src], out, recursive=True)
    assert len(fe.FakeEngine.calls) == calls and made_again == []  # no restoring, not even a model load
    assert again.done == 0 and again.skipped == 18 and again.failed == 3 and again.exit_code == 1


# ---- naming, resuming, never overwriting ---------------------------------------------------


def test_next_to_input_with_suffix_and_rerun_ignores_own_outputs(tmp_path):
    random_png(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.jpg")
    report, _, _ = run([tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_sr.png", "b.jpg", "b_sr.jpg"]
    again, _, _ = run([tmp_path])
    assert again.done == 0 and again.skipped == 2 and len(again.records) == 2  # a_sr.png is not an input
    assert not (tmp_path / "a_sr_sr.png").exists()


def test_output_folder_mirrors_subfolders_with_suffix_and_ext(tmp_path):
    random_png(tmp_path / "in" / "top.png")
    random_png(tmp_path / "in" / "deep" / "er" / "low.png")
    run([tmp_path / "in"], tmp_path / "out", suffix="_x", ext="webp", quality=80, recursive=True)
    assert (tmp_path / "out" / "top_x.webp").is_file()
    assert Image.open(tmp_path / "out" / "deep" / "er" / "low_x.webp").format == "WEBP"
    flat, _, _ = run([tmp_path / "in"], tmp_path / "out2")  # not recursive: sub-folders left alone
    assert flat.done == 1 and not (tmp_path / "out2" / "deep").exists()


def test_an_input_is_never_overwritten(tmp_path):
    a = random_png(tmp_path / "a.png")
    before = a.read_bytes()
    with pytest.raises(UsageError, match="never overwritten"):
        run([tmp_path], tmp_path, suffix="")
    with pytest.raises(UsageError, match="never overwritten"):
        run([a], a)
    assert a.read_bytes() == before


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path):
    random_png(tmp_path / "in" / "a.png")
    out = tmp_path / "o.png"
    run([tmp_path / "in" / "a.png"], out)
    stamp = out.stat().st_mtime_ns
    skipped, _, _ = run([tmp_path / "in" / "a.png"], out)
    assert skipped.skipped == 1 and out.stat().st_mtime_ns == stamp
    redone, _, _ = run([tmp_path / "in" / "a.png"], out, overwrite=True)
    assert redone.done == 1


def test_list_file_glob_and_missing_entries(tmp_path):
    random_png(tmp_path / "p" / "one.png")
    random_png(tmp_path / "p" / "x" / "two.png")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{tmp_path / 'p' / 'one.png'}\n{tmp_path / 'p' / 'gone.png'}\n")
    report, _, _ = run([f"@{listing}"], tmp_path / "o1")
    assert statuses(report) == {"one.png": "done", "gone.png": "failed"}
    assert "not found" in [r.reason for r in report.records if r.status == "failed"][0]
    report, _, _ = run([str(tmp_path / "p" / "**" / "*.png")], tmp_path / "o2")
    assert report.done == 2 and (tmp_path / "o2" / "x" / "two.png").is_file()  # mirrored below the glob root


def test_usage_errors_are_raised_before_any_work(tmp_path):
    random_png(tmp_path / "a.png")
    random_png(tmp_path / "b.png", seed=1)
    with pytest.raises(UsageError, match="2 images"):
        run([tmp_path], tmp_path / "single.png")
    with pytest.raises(UsageError, match="not found"):
        run([tmp_path / "missing.png"])
    with pytest.raises(UsageError, match="--ext"):
        run([tmp_path], tmp_path / "o", ext="gif")
    assert fe.FakeEngine.calls == []


# ---- sharding -----------------------------------------------------------------------------


def test_two_shards_cover_the_folder_exactly_once(tmp_path):
    names = [f"d{i % 3}/img{i:02d}.png" for i in range(30)]
    for i, name in enumerate(names):
        random_png(tmp_path / "in" / name, size=(4, 4), seed=i)
    parts = []
    for index in range(2):
        report, _, _ = run([tmp_path / "in"], tmp_path / "out", recursive=True, shard=(index, 2))
        parts.append({Path(r.path).relative_to(tmp_path / "in").as_posix() for r in report.records})
        assert all(r.status == "done" for r in report.records)
    assert parts[0] and parts[1] and not parts[0] & parts[1]
    assert parts[0] | parts[1] == set(names)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 30
    # A file's shard depends only on its own name: adding files moves nobody.
    assert all(shard_of(n, 2) == (0 if n in parts[0] else 1) for n in names)


# ---- pixels through the pipeline ----------------------------------------------------------


def test_alpha_is_kept_resized_and_free_of_fringes(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1] = 255  # green hidden under full transparency
    rgba[4:12, 4:12] = (255, 0, 0, 255)  # an opaque red square
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    run([tmp_path / "a.png"], tmp_path / "o.png", engine=fe.make_engine(conv="blur"))
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == (32, 32, 4)
    assert out[..., 3].max() == 255 and out[0, 0, 3] == 0 and out[16, 16, 3] == 255
    visible = out[..., 3] > 0
    assert out[visible][:, 1].max() <= 2  # the blur saw no green: no fringe at the edges
    report, _, _ = run([tmp_path / "a.png"], tmp_path / "flat.jpg")
    assert any("alpha dropped" in w for w in report.records[0].warnings)  # never silently


def test_gray_stays_gray_and_16bit_stays_16bit(tmp_path):
    arr = (np.random.default_rng(0).integers(0, 65536, (10, 12))).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g.png")
    rgb16 = np.random.default_rng(1).integers(0, 65536, (10, 12, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c.png"), rgb16)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "l.jpg")
    run([tmp_path], tmp_path / "out")
    g = cv2.imread(str(tmp_path / "out" / "g.png"), cv2.IMREAD_UNCHANGED)
    assert g.dtype == np.uint16 and g.ndim == 2 and np.array_equal(g[::2, ::2], arr)  # identity engine
    c = cv2.imread(str(tmp_path / "out" / "c.png"), cv2.IMREAD_UNCHANGED)
    assert c.dtype == np.uint16 and np.array_equal(c[::2, ::2], rgb16)
    assert Image.open(tmp_path / "out" / "l.jpg").mode == "L"


def test_results_do_not_depend_on_batching(tmp_path):
    for i in range(5):
        random_png(tmp_path / "in" / f"s{i}.png", size=(8, 8), seed=i)
    for i in range(2):
        random_png(tmp_path / "in" / f"t{i}.png", size=(8, 12), seed=10 + i)
    engine = fe.make_engine(noise=0.2)
    run([tmp_path / "in"], tmp_path / "one", engine=engine, batch_size=1, seed=7)
    assert {c[0] for c in fe.FakeEngine.calls} == {1}
    fe.FakeEngine.calls = []
    run([tmp_path / "in"], tmp_path / "three", engine=engine, batch_size=3, seed=7)
    assert max(c[0] for c in fe.FakeEngine.calls) == 3
    for f in sorted((tmp_path / "one").iterdir()):
        assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(tmp_path / "three" / f.name))), f
    run([tmp_path / "in" / "s0.png"], tmp_path / "other.png", engine=engine, seed=8)
    assert not np.array_equal(
        np.asarray(Image.open(tmp_path / "other.png")), np.asarray(Image.open(tmp_path / "one" / "s0.png"))
    )  # the seed matters


# ---- failures -----------------------------------------------------------------------------


def test_out_of_memory_retries_with_smaller_tiles(tmp_path):
    random_png(tmp_path / "big.png", size=(48, 48), seed=3)
    engine = fe.make_engine(conv="blur")
    run([tmp_path / "big.png"], tmp_path / "ref.png", engine=engine)
    fe.FakeEngine.oom_above = 20
    fe.FakeEngine.calls = []
    con = console()
    report, _, _ = run(
        [tmp_path / "big.png"], tmp_path / "tiled.png", engine=engine, verbose=True, tile_overlap=4, con=con
    )
    assert report.done == 1
    sides = [max(c[-2:]) for c in fe.FakeEngine.calls]
    assert sides[0] == 48 and sides[1] == 24 and max(sides[2:]) <= 12  # whole, then 24, then 12-pixel tiles
    assert "retrying with 12-pixel tiles" in con.file.getvalue()
    ref = np.asarray(Image.open(tmp_path / "ref.png")).astype(int)
    tiled = np.asarray(Image.open(tmp_path / "tiled.png")).astype(int)
    assert np.abs(ref - tiled).max() <= 1


def test_out_of_memory_that_tiles_cannot_fix_fails_only_that_image(tmp_path):
    random_png(tmp_path / "big.png", size=(64, 64))
    random_png(tmp_path / "small.png", size=(4, 4))
    fe.FakeEngine.oom_above = 4  # even the smallest tile (min_tile 8) does not fit
    report, _, _ = run([tmp_path], tmp_path / "out")
    st = {Path(r.path).name: r for r in report.records}
    assert st["small.png"].status == "done"
    assert st["big.png"].status == "failed" and "out of memory even with 8-pixel tiles" in st["big.png"].reason
    assert report.exit_code == 1


def test_engine_error_on_one_image_does_not_stop_the_batch(tmp_path):
    random_png(tmp_path / "a.png", size=(8, 24))
    random_png(tmp_path / "b.png", size=(8, 8))
    fe.FakeEngine.fail_width = 24
    report, _, _ = run([tmp_path], tmp_path / "out", batch_size=4)
    assert statuses(report) == {"a.png": "failed", "b.png": "done"}
    assert "engine exploded" in report.records[0].reason


def test_automatic_tiling_asks_the_engine(tmp_path):
    random_png(tmp_path / "a.png", size=(40, 40))
    fe.FakeEngine.auto_tile_size = 16
    run([tmp_path / "a.png"], tmp_path / "o.png", tile=None)
    assert max(max(c[-2:]) for c in fe.FakeEngine.calls) == 16 and len(fe.FakeEngine.calls) > 1


# ---- masks --------------------------------------------------------------------------------


def test_inpaint_masks_by_stem_size_checked(tmp_path):
    random_png(tmp_path / "in" / "a.png", size=(8, 8))
    random_png(tmp_path / "in" / "b.png", size=(8, 8))
    random_png(tmp_path / "in" / "c.png", size=(8, 8))
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 200
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "a.jpg", quality=70)  # lossy: thresholded at 127
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "b_mask.png")
    engine = fe.make_engine(scale=1, task="inpaint")
    report, _, _ = run([tmp_path / "in"], tmp_path / "out", engine=engine, task="inpaint", mask=str(tmp_path / "masks"))
    st = {Path(r.path).name: r for r in report.records}
    assert st["a.png"].status == "done"
    assert st["b.png"].status == "failed" and "is 4x4 but the image is 8x8" in st["b.png"].reason
    assert st["c.png"].status == "failed" and "no mask" in st["c.png"].reason
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    src = np.asarray(Image.open(tmp_path / "in" / "a.png"))
    assert (out[:4] == 128).all() and np.array_equal(out[4:], src[4:])


# ---- stdin / stdout, reports, progress -------------------------------------------------


def test_stdin_to_stdout(tmp_path, capsysbinary):
    data = random_png(tmp_path / "a.png", size=(6, 10)).read_bytes()
    opts = JobOptions(task="sr", inputs=["-"], output="-", stdin=data)
    engine = fe.make_engine()
    report = run_job(lambda d: engine, opts, console())
    out = capsysbinary.readouterr().out
    assert report.exit_code == 0
    assert Image.open(io.BytesIO(out)).size == (20, 12)


def test_json_report_on_stdout_progress_on_stderr(tmp_path, capsys):
    random_png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_text("nope")
    con = console()
    report, _, _ = run([tmp_path / "in"], tmp_path / "out", con=con, json=True)
    doc = json.loads(capsys.readouterr().out)
    assert doc["done"] == 1 and doc["failed"] == 1 and doc["exit_code"] == 1
    assert [f["status"] for f in doc["files"]] == ["done", "failed"]
    assert {"path", "output", "status", "reason", "seconds", "warnings"} <= set(doc["files"][0])
    err = con.file.getvalue()
    assert "[1/2]" in err or "[2/2]" in err
    assert "img/s" in err and "ETA" in err and "1 restored, 0 skipped, 1 failed" in err
    # one image's time and the run's rate are told apart; the summary's time is the run's wall time
    assert re.search(r"\(\d+\.\d s this image; run: \d+\.\d\d img/s, ETA \d+:\d\d\)", err), err
    assert re.search(r"1 failed in \d+:\d\d wall time", err), err


def test_quiet_prints_only_failures(tmp_path):
    random_png(tmp_path / "in" / "a.png")
    con = console()
    run([tmp_path / "in"], tmp_path / "out", con=con, quiet=True)
    assert con.file.getvalue() == ""
    (tmp_path / "in" / "b.png").write_text("nope")
    run([tmp_path / "in"], tmp_path / "out", con=con, quiet=True)
    lines = con.file.getvalue().strip().splitlines()
    assert any("failed:" in line and "b.png" in line for line in lines)
    assert not any("skipped" in line and "a.png" in line for line in lines)


def test_no_color_is_respected(tmp_path, monkeypatch):
    (tmp_path / "bad.png").write_text("nope")
    monkeypatch.delenv("NO_COLOR", raising=False)
    colored = Console(file=io.StringIO(), force_terminal=True, width=200)
    run([tmp_path / "bad.png"], tmp_path / "o.png", con=colored)
    assert "\x1b[" in colored.file.getvalue()  # this console does use colour...
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Console(file=io.StringIO(), force_terminal=True, width=200)
    run([tmp_path / "bad.png"], tmp_path / "o.png", con=plain)
    assert "\x1b[3" not in plain.file.getvalue() and "\x1b[1;3" not in plain.file.getvalue()  # ...not with NO_COLOR


# ---- interruption ---------------------------------------------------------------------------


def test_ctrl_c_keeps_finished_files_leaves_no_partial_and_resumes(tmp_path):
    for i in range(5):
        random_png(tmp_path / "in" / f"{i}.png", size=(8, 8), seed=i)
    fe.FakeEngine.interrupt_after = 2
    report, _, _ = run([tmp_path / "in"], tmp_path / "out")
    assert report.exit_code == 130 and report.done == 2
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["0.png", "1.png"]  # complete files only, no temporary ones
    for name in written:
        assert Image.open(tmp_path / "out" / name).size == (16, 16)
    fe.FakeEngine.interrupt_after = None
    again, _, _ = run([tmp_path / "in"], tmp_path / "out")
    assert again.skipped == 2 and again.done == 3 and again.exit_code == 0


def test_a_write_cut_off_before_it_is_on_disk_leaves_no_output_and_is_redone(tmp_path, monkeypatch):
    """The bytes reach the output name only once they are complete and synced (disk full, kill, power cut)."""

    random_png(tmp_path / "in" / "a.png", size=(8, 8), seed=1)
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    report, _, _ = run([tmp_path / "in"], tmp_path / "out")
    assert report.failed == 1 and "No space left" in report.records[0].reason
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    again, _, _ = run([tmp_path / "in"], tmp_path / "out")
    assert again.done == 1 and again.skipped == 0


# ---- several devices --------------------------------------------------------------------------


def test_one_worker_per_device(tmp_path):
    for i in range(8):
        random_png(tmp_path / "in" / f"{i}.png", size=(8, 8), seed=i)
    fe.FakeEngine.delay = 0.1
    made, lock = [], __import__("threading").Lock()

    def make(device):
        with lock:
            made.append(device)
        return fe.make_engine()

    opts = JobOptions(task="sr", inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"), devices=["cpu", "cpu:1"])
    report = run_job(make, opts, console())
    assert report.done == 8 and len(fe.FakeEngine.calls) == 8
    assert sorted(made) == ["cpu", "cpu:1"]
    assert len(list((tmp_path / "out").iterdir())) == 8


# ---- the real CLI entry point ------------------------------------------------------------------


def cli(tmp_path: Path, *args: str, stdin: bytes | None = None, env: dict | None = None, popen: bool = False):
    """A command of the fake x2 model (helpers.fake_x2_args) in a subprocess, with a cache of its own."""
    argv = fake_x2_args(tmp_path, *args)
    env = {"RESTORECLI_CACHE": str(tmp_path / "cache"), **(env or {})}
    if popen:
        return start_cli(*argv, env=env, fake=True)
    return run_cli(*argv, env=env, stdin=stdin, timeout=120, fake=True)


def test_cli_mixed_folder_in_two_shards_then_rerun(shared, tmp_path):
    src = mixed_folder(shared, tmp_path)
    done, failed = [], []
    for index in range(2):
        res = cli(tmp_path, "sr", str(src), str(tmp_path / "out"), "--recursive", "--json", "--shard", f"{index}/2")
        assert res.returncode in (0, 1), res.stderr.decode()
        files = json.loads(res.stdout)["files"]
        done.append({f["path"] for f in files if f["status"] == "done"})
        failed += [f["path"] for f in files if f["status"] == "failed"]
        for f in files:
            if f["status"] == "failed":  # reported on stderr with path and reason
                assert f"failed: {f['path']}: {f['reason']}" in res.stderr.decode()
    assert done[0] and done[1] and not done[0] & done[1] and len(done[0] | done[1]) == 18
    assert sorted(Path(p).name for p in failed) == sorted(BROKEN)
    again = cli(tmp_path, "sr", str(src), str(tmp_path / "out"), "--recursive", "--json", "-q")
    doc = json.loads(again.stdout)
    assert again.returncode == 1 and doc["done"] == 0 and doc["skipped"] == 18 and doc["failed"] == 3
    lines = again.stderr.decode().strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("failed: ") for line in lines)  # -q: only the failures


def test_cli_stdin_to_stdout(tmp_path):
    data = random_png(tmp_path / "a.png", size=(6, 10)).read_bytes()
    res = cli(tmp_path, "sr", "-", "-", stdin=data)
    assert res.returncode == 0, res.stderr.decode()
    assert Image.open(io.BytesIO(res.stdout)).size == (20, 12)


def _wait_for_outputs(folder: Path, proc, count: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if folder.is_dir() and len([p for p in folder.iterdir() if not p.name.startswith(".")]) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished early: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    raise AssertionError("no output appeared")


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_cli_killed_midway_leaves_no_partial_output(tmp_path, sig, code):
    for i in range(10):
        random_png(tmp_path / "in" / f"{i}.png", size=(64, 64), seed=i)
    out = tmp_path / "out"
    proc = cli(tmp_path, "sr", str(tmp_path / "in"), str(out), env={"FAKE_ENGINE_DELAY": "0.3"}, popen=True)
    _wait_for_outputs(out, proc, 2)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    finished = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 2 <= len(finished) < 10
    for p in finished:  # every file under a real name is complete
        assert np.asarray(Image.open(p)).shape == (128, 128, 3)
    if sig == signal.SIGTERM:
        assert not hidden_files(out)  # stopped cleanly: temporary files removed
        assert "interrupted" in proc.stderr.read().decode()
        return
    res = cli(tmp_path, "sr", str(tmp_path / "in"), str(out), "--json")  # after a hard kill: resume
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["skipped"] == len(finished) and doc["done"] == 10 - len(finished)


# ---- the Python API -----------------------------------------------------------------------------


def test_api_restore_files(tmp_path):
    import restorecli

    random_png(tmp_path / "in" / "sub" / "a.png")
    report = restorecli.restore(tmp_path / "in", tmp_path / "out", engine=fe.make_engine(), recursive=True)
    assert report.exit_code == 0 and (tmp_path / "out" / "sub" / "a.png").is_file()
    with pytest.raises(TypeError, match="no_such_option"):
        restorecli.restore(tmp_path / "in", engine=fe.make_engine(), no_such_option=1)


def test_api_restore_images_keeps_layout_and_dtype():
    import restorecli

    engine = fe.make_engine(noise=0.1)
    gray16 = np.random.default_rng(0).integers(0, 65536, (6, 8)).astype(np.uint16)
    rgba = np.random.default_rng(1).integers(0, 256, (6, 8, 4)).astype(np.uint8)
    pil = Image.fromarray(np.zeros((5, 7, 3), np.uint8))
    outs = restorecli.restore_images([gray16, rgba, pil], engine=engine, seed=3)
    assert outs[0].shape == (12, 16) and outs[0].dtype == np.uint16
    alpha = (
        torch.nn.functional.interpolate(
            torch.from_numpy(rgba[..., 3] / 255.0)[None, None].float(), scale_factor=2, mode="bicubic"
        )
        .clamp(0, 1)[0, 0]
        .numpy()
    )
    assert outs[1].shape == (12, 16, 4) and np.abs(outs[1][..., 3] / 255.0 - alpha).max() <= 1 / 255
    assert outs[2].shape == (10, 14, 3) and outs[2].dtype == np.uint8
    alone = restorecli.restore_images([rgba], engine=engine, seed=3)
    assert np.array_equal(alone[0], outs[1])  # independent of what else is in the call


def test_ray_style_batches_on_cpu(tmp_path):
    """The cluster recipe's code path (docs/batch.md), with the dict batches Ray Data hands over."""
    from restorecli import FileBatchRestorer, ImageBatchRestorer

    paths = [random_png(tmp_path / "in" / d / f"{i}.png", size=(8, 8), seed=i) for i, d in enumerate(["x", "y", "y"])]
    restorer = FileBatchRestorer(tmp_path / "out", input_root=tmp_path / "in", engine=fe.make_engine())
    batch = {"path": np.array([str(p) for p in paths], dtype=object)}
    result = restorer(batch)
    assert list(result["status"]) == ["done"] * 3
    assert (tmp_path / "out" / "y" / "2.png").is_file()
    assert list(restorer(batch)["status"]) == ["skipped"] * 3  # rerunning the Ray job resumes

    images = ImageBatchRestorer(engine=fe.make_engine())
    arrays = np.stack([np.asarray(Image.open(p)) for p in paths])
    out = images({"image": arrays})
    assert out["image"].shape == (3, 16, 16, 3)


def test_torchrun_style_ranks_cover_the_folder_once(tmp_path):
    import restorecli

    for i in range(9):
        random_png(tmp_path / "in" / f"{i}.png", size=(4, 4), seed=i)
    seen = []
    for rank in range(3):  # what each torchrun process does with its RANK / WORLD_SIZE
        report = restorecli.restore(tmp_path / "in", tmp_path / "out", engine=fe.make_engine(), shard=(rank, 3))
        seen += [r.path for r in report.records]
    assert sorted(seen) == sorted(str(p) for p in (tmp_path / "in").iterdir())
    assert len(list((tmp_path / "out").iterdir())) == 9


def test_api_seed_default_matches_the_registry(tmp_path):
    from restorecli.api import _plan

    engine = fe.make_engine()
    assert _plan(engine, None, "sr", None, None, ()) == (engine.spec, 1, 0)
    assert _plan(engine, None, "sr", 3, 5, ()) == (engine.spec, 3, 5)
    with pytest.raises(UsageError):
        _plan(engine, None, "sr", 9, None, ())


def test_generators_are_fresh_per_image():
    """A reused generator would give the second image different noise than the first."""
    from restorecli.runtime.restorer import Restorer

    engine = fe.make_engine(noise=0.5)
    r = Restorer(engine, steps=1, seed=0)
    x = torch.zeros(1, 3, 4, 4)
    a, b = r.run([x, x], [None, None])
    assert torch.equal(a, b)


def test_tile_progress_is_a_bar_or_a_few_lines_never_one_line_per_tile():
    from rich.console import Console as RichConsole

    from restorecli.jobs.report import Progress

    # stderr in a file or pipe, -v: at most four lines for an image of 225 tiles
    plain = RichConsole(file=io.StringIO(), width=120, color_system=None)
    progress = Progress(plain, 1, verbose=True)
    for done in range(1, 226):
        progress.tile(done, 225)
    lines = [line for line in plain.file.getvalue().splitlines() if "tiles" in line]
    assert lines == ["  tiles 57/225", "  tiles 113/225", "  tiles 169/225", "  tiles 225/225"]
    # without -v, nothing
    quiet_file = RichConsole(file=io.StringIO(), width=120, color_system=None)
    progress = Progress(quiet_file, 1)
    for done in range(1, 226):
        progress.tile(done, 225)
    assert "tile" not in quiet_file.file.getvalue()
    # on a terminal: one bar (drawn over itself), for one image and under the run's bar
    for images in (1, 3):
        term = RichConsole(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
        progress = Progress(term, images, verbose=True)
        for done in range(1, 226):
            progress.tile(done, 225)
        progress.close()
        out = term.file.getvalue()
        assert "tiles" in out and out.count("\n") < 20, out[-2000:]
        assert progress.tile_task is None and progress.tile_bar is None


def test_a_folder_at_an_output_files_path_fails_that_file(tmp_path):
    a, b = random_png(tmp_path / "in" / "a.png"), random_png(tmp_path / "in" / "b.png", seed=1)
    (tmp_path / "out" / "a.png").mkdir(parents=True)  # a folder named like a's output
    report, _, _ = run([a, b], tmp_path / "out")
    assert statuses(report) == {"a.png": "failed", "b.png": "done"}  # not "skipped, exists"
    assert report.exit_code == 1
    failed = next(r for r in report.records if r.status == "failed")
    assert "folder" in failed.reason
    assert (tmp_path / "out" / "a.png").is_dir()  # left as it was


# ---- the real CLI entry point: a broken mask, a rerun with nothing to do -------------------------


def test_a_mask_that_is_not_an_image_is_named(tmp_path):
    overlay, _ = fe.write_model(tmp_path / "model")
    from restorecli.weights.bundle import write_bundle

    # a bundle recording the inpaint task (a bundle for another task is refused)
    write_bundle(tmp_path / "inpaint.safetensors", fe.fake_spec("fake-inpaint", "inpaint", 1), {"net": fe.conv_state()})
    mask = tmp_path / "mask.png"
    mask.write_text("not an image")
    res = run_sandboxed(
        tmp_path,
        "--registry",
        str(overlay),
        "inpaint",
        str(random_png(tmp_path / "a.png")),
        str(tmp_path / "out.png"),
        "--mask",
        str(mask),
        "--model",
        "fake-inpaint",
        "--weights",
        str(tmp_path / "inpaint.safetensors"),
        "--json",
    )
    assert res.returncode == 1, err_of(res)
    reason = json.loads(res.stdout)["files"][0]["reason"]
    assert f"mask {mask}" in reason and "not an image" in reason, reason


WRAPPER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(
    "\\nHEAVY=" + ",".join(m for m in ("torch", "restorecli.engines", "restorecli.runtime.restorer") if m in sys.modules) + "\\n"))
sys.argv = ["restore", *sys.argv[1:]]
from restorecli.cli import main
main()
"""


def test_a_rerun_that_skips_every_file_does_not_import_torch(tmp_path):
    for name in ("a", "b"):
        solid_png(tmp_path / "in" / f"{name}.png", (40, 56), 120)
        solid_png(tmp_path / "out" / f"{name}.png", (40, 56), 120)  # finished earlier
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    r = run_bounded(
        [sys.executable, str(wrapper), "--offline", "derain", "in", "out", "--json"],
        env=cli_env({"RESTORECLI_CACHE": str(tmp_path / "cache")}),
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped"] == 2
    assert r.stderr.decode().strip().splitlines()[-1] == "HEAVY=", r.stderr.decode()
