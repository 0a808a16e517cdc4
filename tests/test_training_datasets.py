"""training.datasets: the held-out split is stable and keeps equal names in different folders apart."""

from __future__ import annotations

from pathlib import Path

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
