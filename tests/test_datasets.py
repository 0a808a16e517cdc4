"""training.datasets: the held-out split is stable and keeps equal names in different folders apart, and
`restore degrade` refuses two inputs that would write one output name."""

from __future__ import annotations

from pathlib import Path

from helpers import err_of, one_line, photos, random_png, run_sandboxed
from restorecli.training.datasets import split_files


def test_equal_names_in_different_folders_are_split_independently():
    names = [f"{i:04d}.png" for i in range(200)]
    files = [Path("rain100l") / n for n in names] + [Path("rain200h") / n for n in names]
    train, val = split_files(files, 0.2)
    assert sorted(train + val) == sorted(files) and 0.1 < len(val) / len(files) < 0.3
    held = {(p.parent.name, p.name) for p in val}
    apart = [n for n in names if (("rain100l", n) in held) != (("rain200h", n) in held)]
    assert apart, "every name landed on the same side in both folders: the split key ignores the folder"
    assert set(split_files(list(reversed(files)), 0.2)[1]) == set(val)  # the order of the listing does not matter


def test_degrade_two_inputs_with_one_stem_is_refused_and_the_count_is_true(tmp_path):
    src = photos(tmp_path)
    random_png(src / "x.jpg", size=(16, 16), seed=5)
    res = run_sandboxed(tmp_path, "degrade", "rain", str(src), str(tmp_path / "out"))
    assert res.returncode == 2, err_of(res)
    err = one_line(res)
    assert "x.jpg" in err and "x.png" in err, err
    assert not (tmp_path / "out").exists()
    (src / "x.jpg").unlink()
    res = run_sandboxed(tmp_path, "degrade", "rain", str(src), str(tmp_path / "out"))
    assert res.returncode == 0 and "wrote 2 " in err_of(res), err_of(res)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["x.png", "y.png"]
