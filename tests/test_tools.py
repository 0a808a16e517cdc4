"""The tool commands' outputs (cli.tools): `eval -o`, `degrade` and `train -o` name a place that cannot
be written, or the wrong kind of thing, in one line with the right exit code, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import blocker, locked_folder, one_line, random_png, run_cli


def pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    random_png(tmp_path / "r" / "x.png")
    random_png(tmp_path / "g" / "x.png")
    return tmp_path / "r", tmp_path / "g"


@pytest.fixture
def immutable(tmp_path, request):
    return locked_folder(tmp_path / "locked", request)


def test_eval_o_onto_a_folder_is_a_usage_error(tmp_path):
    r, g = pair_folders(tmp_path)
    res = run_cli("eval", str(r), str(g), "-o", str(r), timeout=60)
    assert res.returncode == 2 and "-o" in one_line(res)
    assert sorted(p.name for p in r.iterdir()) == ["x.png"]


def test_eval_o_into_a_missing_folder_makes_it(tmp_path):
    r, g = pair_folders(tmp_path)
    out = tmp_path / "new" / "deeper" / "scores.json"
    res = run_cli("eval", str(r), str(g), "-o", str(out), timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert out.is_file() and out.read_text().strip().startswith("{")


@pytest.mark.parametrize("where", ["under a file", "immutable"])
def test_eval_o_into_an_unwritable_place_is_one_line(tmp_path, where, request):
    r, g = pair_folders(tmp_path)
    folder = blocker(tmp_path) if where == "under a file" else request.getfixturevalue("immutable")
    res = run_cli("eval", str(r), str(g), "-o", str(folder / "scores.json"), timeout=60)
    assert res.returncode == 2 and "scores.json" in one_line(res)  # -o is checked like every output option


@pytest.mark.parametrize("where", ["under a file", "immutable", "file output under a file"])
def test_degrade_into_an_unwritable_place_is_one_line_for_the_folder(tmp_path, where, request):
    for i in range(3):
        random_png(tmp_path / "in" / f"{i}.png", seed=i)
    if where == "immutable":
        out = request.getfixturevalue("immutable")
        src = tmp_path / "in"
    elif where == "under a file":
        out, src = blocker(tmp_path) / "out", tmp_path / "in"
    else:
        out, src = blocker(tmp_path) / "x.png", tmp_path / "in" / "0.png"
    res = run_cli("degrade", "rain", str(src), str(out), timeout=60)
    assert res.returncode == 1 and "cannot write" in one_line(res)


def test_degrade_with_a_folder_at_an_output_path_is_one_line(tmp_path):
    random_png(tmp_path / "in" / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    res = run_cli("degrade", "rain", str(tmp_path / "in"), str(tmp_path / "out"), timeout=60)
    assert res.returncode == 1 and "a.png" in one_line(res)


@pytest.mark.parametrize("where", ["a file", "under a file", "immutable"])
def test_train_o_onto_a_file_or_an_unwritable_place_is_one_line(tmp_path, where, request):
    random_png(tmp_path / "clean" / "a.png", size=(64, 64))
    if where == "a file":
        out, code = blocker(tmp_path), 2
    elif where == "under a file":
        out, code = blocker(tmp_path) / "run", 1
    else:
        out, code = request.getfixturevalue("immutable") / "run", 1
    res = run_cli(
        "train", "rddm", "-o", str(out), "--clean", str(tmp_path / "clean"), "--steps", "1", "--crop", "32",
        "--dim", "8", "--dim-mults", "1,2", "--time-limit", "1", timeout=120,
    )  # fmt: skip
    assert res.returncode == code, res.stderr.decode()
    one_line(res)
    if where == "a file":
        assert out.read_text() == "a file where a folder would be"
