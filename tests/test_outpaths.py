"""Where a command may write (io.outpaths): never onto an input, never outside the folder a name is
joined to. Writing commands run through the real `restore` entry point with the fake method, in a
sandbox; every case leaves real files as bait (the inputs themselves, a hard or symbolic link to one,
an input folder) and checks them byte for byte afterwards. A refusal is exit 2, one line, before any
work. Name parts given by the user (`--suffix`) are names, never paths."""

from __future__ import annotations

import os

import pytest

import fake_engine as fe
from helpers import err_of, one_line, photos, run_fake_x2, run_sandboxed, snapshot
from restorecli.errors import UsageError


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
    res = run_sandboxed(tmp_path, "degrade", "rain", *map(str, args))
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res) or "input folder" in err_of(res)
    assert snapshot(src) == before and not (src / "degrade.json").exists()


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
    res = run_sandboxed(tmp_path, "train", "rddm", *args, "--iters", "1", "--val-every", "0")
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res)
    assert snapshot(src, run) == before


@pytest.mark.parametrize("suffix", ["/../../x/evil", "../evil", "a/b", "..", "a\\b"])
def test_suffix_is_a_name_never_a_path(tmp_path, suffix):
    src = photos(tmp_path)
    out = tmp_path / "deep" / "out"
    res = run_fake_x2(tmp_path, "sr", str(src), str(out), "--suffix", suffix)
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
