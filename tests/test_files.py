"""Folder scans and globs: each real folder once, and only regular files."""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image

from restorecli.io.files import glob_once, list_images
from restorecli.jobs.discovery import discover


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(path)


def _finishes(fn, seconds=20.0):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert out, "the walk did not finish"
    return out[0]


def test_a_glob_through_self_referencing_links_visits_each_folder_once(tmp_path):
    root = tmp_path / "g"
    _png(root / "a" / "x.png")
    for i in range(6):  # each link leads back up: glob's ** would walk 6**depth paths
        os.symlink("..", root / "a" / f"up{i}")
        os.symlink(".", root / f"self{i}")
    items, _ = _finishes(lambda: discover([f"{root}/**/*.png"]))
    assert [i.source.resolve() for i in items] == [(root / "a" / "x.png").resolve()]
    assert _finishes(lambda: list_images(root, recursive=True)) == [root / "a" / "x.png"]


def test_glob_once_matches_like_glob(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "s" / "t" / "b.png")
    _png(tmp_path / ".hidden" / "c.png")
    (tmp_path / "s" / "n.txt").write_text("x")
    assert glob_once(f"{tmp_path}/**/*.png") == [tmp_path / "a.png", tmp_path / "s" / "t" / "b.png"]
    assert glob_once(f"{tmp_path}/s/**/[a-b].png") == [tmp_path / "s" / "t" / "b.png"]


def test_a_fifo_in_a_folder_is_skipped_with_one_line(tmp_path):
    _png(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    items, notes = _finishes(lambda: discover([str(tmp_path)]))
    assert [i.source.name for i in items] == ["a.png"]
    assert len([n for n in notes if "b.png" in n]) == 1
