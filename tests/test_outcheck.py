"""No writing command ever writes over an input: each case through the real `restore` entry point.

Every case leaves real files as bait (the inputs themselves, a hard or symbolic link to
one, an input folder) and checks them byte for byte afterwards; a refusal is exit 2, one
line, before any work. Name parts given by the user (`--suffix`) are names, never paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import fake_engines as fe
from restorecli.errors import UsageError
from test_reliability import NET, err_of, one_line, png, restore


def snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    for i, name in enumerate(["x.png", "y.png"]):
        png(folder / name, size=(16, 16), seed=i)
    return folder


# ---- degrade ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["file-onto-itself", "folder-onto-itself", "file-into-its-folder", "hard-link", "symlink"]
)
def test_degrade_never_writes_over_an_input(tmp_path, case):
    src = photos(tmp_path)
    if case == "hard-link":
        os.link(src / "x.png", tmp_path / "alias.png")
    if case == "symlink":
        (tmp_path / "alias.png").symlink_to(src / "x.png")
    args = {
        "file-onto-itself": [src / "x.png", src / "x.png"],
        "folder-onto-itself": [src, src],
        "file-into-its-folder": [src / "x.png", src],
        "hard-link": [src / "x.png", tmp_path / "alias.png"],
        "symlink": [tmp_path / "alias.png", src / "x.png"],
    }[case]
    before = snapshot(src)
    res = restore(tmp_path, "degrade", "rain", *map(str, args))
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res) or "input folder" in err_of(res)
    assert snapshot(src) == before and not (src / "degrade.json").exists()


def test_degrade_two_inputs_with_one_stem_is_refused_and_the_count_is_true(tmp_path):
    src = photos(tmp_path)
    png(src / "x.jpg", size=(16, 16), seed=5)
    res = restore(tmp_path, "degrade", "rain", str(src), str(tmp_path / "out"))
    assert res.returncode == 2, err_of(res)
    err = one_line(res)
    assert "x.jpg" in err and "x.png" in err, err
    assert not (tmp_path / "out").exists()
    (src / "x.jpg").unlink()
    res = restore(tmp_path, "degrade", "rain", str(src), str(tmp_path / "out"))
    assert res.returncode == 0 and "wrote 2 " in err_of(res), err_of(res)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["x.png", "y.png"]


# ---- convert -o, eval -o -------------------------------------------------------------------


@pytest.mark.parametrize("case", ["own-source", "link-to-source", "txt", "folder"])
def test_convert_never_writes_over_its_source_or_a_wrong_name(tmp_path, case):
    overlay, _ = fe.write_model(tmp_path / "model")
    net = tmp_path / "net.pth"
    net.write_bytes(NET)
    (tmp_path / "link.safetensors").symlink_to(net)
    (tmp_path / "folder.safetensors").mkdir()
    out = {"own-source": net, "link-to-source": tmp_path / "link.safetensors", "txt": tmp_path / "out.txt"}.get(
        case, tmp_path / "folder.safetensors"
    )
    res = restore(tmp_path, "--registry", str(overlay), "convert", "fake-x2", f"net={net}", "-o", str(out))
    assert res.returncode == 2, err_of(res)
    one_line(res)
    assert net.read_bytes() == NET and not (tmp_path / "out.txt").exists()
    assert not any((tmp_path / "folder.safetensors").iterdir())


def test_convert_under_a_file_says_not_a_directory(tmp_path):
    overlay, _ = fe.write_model(tmp_path / "model")
    (tmp_path / "net.pth").write_bytes(NET)
    (tmp_path / "file").write_text("a file")
    out = tmp_path / "file" / "x.safetensors"
    res = restore(
        tmp_path, "--registry", str(overlay), "convert", "fake-x2", f"net={tmp_path / 'net.pth'}", "-o", str(out)
    )
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "Not a directory" in err and "File exists" not in err, err
    assert (tmp_path / "file").read_text() == "a file"


@pytest.mark.parametrize("target", ["r/x.png", "g/x.png", "r", "r/x.txt"])
def test_eval_report_never_replaces_an_input(tmp_path, target):
    for side in "rg":
        png(tmp_path / side / "x.png", size=(16, 16))
    before = snapshot(tmp_path / "r", tmp_path / "g")
    res = restore(tmp_path, "eval", str(tmp_path / "r"), str(tmp_path / "g"), "-o", str(tmp_path / target))
    assert res.returncode == 2, err_of(res)
    one_line(res)
    assert snapshot(tmp_path / "r", tmp_path / "g") == before


def test_eval_report_to_a_json_file_works(tmp_path):
    for side in "rg":
        png(tmp_path / side / "x.png", size=(16, 16))
    res = restore(tmp_path, "eval", str(tmp_path / "r"), str(tmp_path / "g"), "-o", str(tmp_path / "r" / "m.json"))
    assert res.returncode == 0, err_of(res)
    assert json.loads((tmp_path / "r" / "m.json").read_text())["files"]


# ---- train -o ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["clean-folder", "clean-image", "init-bundle", "pairs-folder"])
def test_train_never_writes_over_its_data_or_init(tmp_path, case):
    src = photos(tmp_path)
    _, bundle = fe.write_model(tmp_path / "run")
    run = tmp_path / "run"
    (run / "fake.safetensors").rename(run / "last.safetensors")
    args = {
        "clean-folder": ["-o", str(src), "--clean", str(src)],
        "clean-image": ["-o", str(src / "x.png"), "--clean", str(src)],
        "init-bundle": ["-o", str(run), "--clean", str(src), "--init", str(run / "last.safetensors")],
        "pairs-folder": ["-o", str(src), "--pairs", f"{src},{src}"],
    }[case]
    before = snapshot(src, run)
    res = restore(tmp_path, "train", "rddm", *args, "--iters", "1", "--val-every", "0")
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res)
    assert snapshot(src, run) == before


# ---- task commands -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["same-file", "same-folder-no-suffix", "link-to-input"])
def test_task_output_onto_an_input_is_a_usage_error_before_any_work(tmp_path, case):
    overlay, _ = fe.write_model(tmp_path / "model")
    src = photos(tmp_path)
    (tmp_path / "alias.png").symlink_to(src / "x.png")
    args = {
        "same-file": [str(src / "x.png"), str(src / "x.png")],
        "same-folder-no-suffix": [str(src), str(src), "--suffix", ""],
        "link-to-input": [str(src / "x.png"), str(tmp_path / "alias.png"), "--overwrite"],
    }[case]
    before = snapshot(src)
    # weights that do not exist: exit 2 (not 3) shows the refusal came before the model was looked at
    missing = str(tmp_path / "missing.safetensors")
    res = restore(tmp_path, "--registry", str(overlay), "sr", *args, "--model", "fake-x2", "--weights", missing)
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res)
    assert snapshot(src) == before


@pytest.mark.parametrize("suffix", ["/../../x/evil", "../evil", "a/b", "..", "a\\b"])
def test_suffix_is_a_name_never_a_path(tmp_path, suffix):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = photos(tmp_path)
    out = tmp_path / "deep" / "out"
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(src),
        str(out),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
        "--suffix",
        suffix,
    )
    assert res.returncode == 2, err_of(res)
    assert "--suffix" in one_line(res)
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep").exists()
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []


@pytest.mark.parametrize("value", ["a\x00b", "a/b", "a\\b", "..", "x..y", "/abs"])
def test_check_name_part_refuses_separators_dotdot_and_nul(value):
    from restorecli.io.outpaths import check_name_part

    with pytest.raises(UsageError):
        check_name_part(value, "--suffix")


@pytest.mark.parametrize("value", ["_clean", "", "-x2", "é", "a.b"])
def test_check_name_part_keeps_plain_names(value):
    from restorecli.io.outpaths import check_name_part

    check_name_part(value, "--suffix")


def test_report_folder_that_would_hold_the_outputs_is_refused(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = photos(tmp_path)
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(src),
        str(tmp_path / "rep_files"),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
        "--report",
        str(tmp_path / "rep.html"),
    )
    assert res.returncode == 2, err_of(res)
    assert "thumbnail folder" in one_line(res)
    assert not (tmp_path / "rep_files").exists()


def test_a_linked_report_folder_is_refused_and_leaves_nothing_behind(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    src = photos(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".restorecli-report").write_text("")
    (elsewhere / "keep.txt").write_text("keep me")
    (tmp_path / "rep_files").symlink_to(elsewhere, target_is_directory=True)
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(src),
        str(tmp_path / "out"),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
        "--report",
        str(tmp_path / "rep.html"),
    )
    assert res.returncode == 2, err_of(res)
    assert "symbolic link" in one_line(res)
    assert (elsewhere / "keep.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".rep_files.old-*"))


# ---- one line per unwritable folder ----------------------------------------------------------


def test_an_unwritable_output_folder_is_one_line_whatever_the_number_of_files(tmp_path):
    overlay, bundle = fe.write_model(tmp_path / "model")
    for i in range(6):
        png(tmp_path / "in" / f"{i}.png", seed=i)
    (tmp_path / "file").write_text("a file")
    out = tmp_path / "file" / "out"
    res = restore(
        tmp_path,
        "--registry",
        str(overlay),
        "sr",
        str(tmp_path / "in"),
        str(out),
        "--model",
        "fake-x2",
        "--weights",
        str(bundle),
        "--json",
    )
    assert res.returncode == 1, err_of(res)
    failed = [line for line in err_of(res).splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "6 files" in failed[0] and "Not a directory" in failed[0], err_of(res)
    assert json.loads(res.stdout)["failed"] == 6


def test_make_folder_names_the_file_in_the_way(tmp_path):
    from restorecli.io.outpaths import make_folder

    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_folder(tmp_path / "f")
    with pytest.raises(NotADirectoryError):
        make_folder(tmp_path / "f" / "sub")
    assert (tmp_path / "f").read_text() == "x"
    make_folder(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()
