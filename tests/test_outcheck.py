"""Can the outputs be written? Asked once per output folder, and of every single output file, before
any model is loaded (jobs.outcheck). Each case runs the real `restore` entry point with the fake method,
in a sandbox; a refusal is one line with the documented exit code, and nothing is left behind."""

from __future__ import annotations

import json
import signal

import pytest

import fake_engine as fe
from helpers import (
    blocker,
    err_of,
    locked_folder,
    one_line,
    pth_bytes,
    random_png,
    run_fake_convert,
    run_fake_x2,
    run_sandboxed,
    snapshot,
)

NET = pth_bytes(fe.conv_state())  # the fake model's official file


@pytest.mark.parametrize("case", ["own-source", "link-to-source", "txt", "folder"])
def test_convert_never_writes_over_its_source_or_a_wrong_name(tmp_path, case):
    net = tmp_path / "net.pth"
    net.write_bytes(NET)
    (tmp_path / "link.safetensors").symlink_to(net)
    (tmp_path / "folder.safetensors").mkdir()
    out = {"own-source": net, "link-to-source": tmp_path / "link.safetensors", "txt": tmp_path / "out.txt"}.get(
        case, tmp_path / "folder.safetensors"
    )
    res = run_fake_convert(tmp_path, net, out)
    assert res.returncode == 2, err_of(res)
    one_line(res)
    assert net.read_bytes() == NET and not (tmp_path / "out.txt").exists()
    assert not any((tmp_path / "folder.safetensors").iterdir())


def test_convert_under_a_file_says_not_a_directory(tmp_path):
    (tmp_path / "net.pth").write_bytes(NET)
    (tmp_path / "file").write_text("a file")
    out = tmp_path / "file" / "x.safetensors"
    res = run_fake_convert(tmp_path, tmp_path / "net.pth", out)
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "Not a directory" in err and "File exists" not in err, err
    assert (tmp_path / "file").read_text() == "a file"


def _full_disk(limit: int = 300):
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("how", ["full-disk", "under-a-file", "read-only"])
def test_convert_onto_an_unwritable_place_is_one_line(tmp_path, how, request):
    (tmp_path / "net.pth").write_bytes(NET)
    preexec = None
    if how == "full-disk":
        out, preexec = tmp_path / "b.safetensors", _full_disk()
    else:
        folder = blocker(tmp_path) / "out" if how == "under-a-file" else locked_folder(tmp_path / "ro", request)
        out = folder / "b.safetensors"
    res = run_fake_convert(tmp_path, tmp_path / "net.pth", out, preexec=preexec)
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "cannot write" in err and str(out) in err, err
    assert not out.exists() and not [p for p in out.parent.glob(".*.tmp")] if out.parent.is_dir() else True


@pytest.mark.parametrize("target", ["r/x.png", "g/x.png", "r", "r/x.txt"])
def test_eval_report_never_replaces_an_input(tmp_path, target):
    for side in "rg":
        random_png(tmp_path / side / "x.png", size=(16, 16))
    before = snapshot(tmp_path / "r", tmp_path / "g")
    res = run_sandboxed(tmp_path, "eval", str(tmp_path / "r"), str(tmp_path / "g"), "-o", str(tmp_path / target))
    assert res.returncode == 2, err_of(res)
    one_line(res)
    assert snapshot(tmp_path / "r", tmp_path / "g") == before


def test_eval_report_to_a_json_file_works(tmp_path):
    for side in "rg":
        random_png(tmp_path / side / "x.png", size=(16, 16))
    res = run_sandboxed(
        tmp_path, "eval", str(tmp_path / "r"), str(tmp_path / "g"), "-o", str(tmp_path / "r" / "m.json")
    )
    assert res.returncode == 0, err_of(res)
    assert json.loads((tmp_path / "r" / "m.json").read_text())["files"]


@pytest.mark.parametrize("how", ["under-a-file", "read-only"])
def test_an_unwritable_output_folder_fails_before_the_model_loads(tmp_path, how, request):
    for i in range(3):
        random_png(tmp_path / "in" / f"{i}.png", seed=i)
    out = blocker(tmp_path) / "out" if how == "under-a-file" else locked_folder(tmp_path / "ro", request)
    # weights that do not exist: loading the model would fail with exit 3, so exit 1 proves it never loaded
    res = run_fake_x2(
        tmp_path, "sr", str(tmp_path / "in"), str(out), "--json", weights=tmp_path / "missing.safetensors"
    )
    err = err_of(res)
    assert res.returncode == 1, err
    doc = json.loads(res.stdout)
    assert doc["failed"] == 3 and all("cannot write" in f["reason"] and str(out) in f["reason"] for f in doc["files"])
    assert err.count("failed: ") == 1 and "(3 files)" in err and "Traceback" not in err  # one line per folder


def test_an_unwritable_output_folder_is_one_line_whatever_the_number_of_files(tmp_path):
    for i in range(6):
        random_png(tmp_path / "in" / f"{i}.png", seed=i)
    (tmp_path / "file").write_text("a file")
    out = tmp_path / "file" / "out"
    res = run_fake_x2(tmp_path, "sr", str(tmp_path / "in"), str(out), "--json")
    assert res.returncode == 1, err_of(res)
    failed = [line for line in err_of(res).splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "6 files" in failed[0] and "Not a directory" in failed[0], err_of(res)
    assert json.loads(res.stdout)["failed"] == 6
