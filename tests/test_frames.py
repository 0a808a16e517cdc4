"""Multi-frame inputs are restored as their first frame and say so, on stderr and in the --json record,
never a silent loss (io.frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import err_of, random_png, run_fake_x2


def test_multi_frame_inputs_are_flagged_in_stderr_and_json(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 128, 250)]
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    random_png(src / "single.png")
    out = tmp_path / "out"
    for inp in (str(src), str(tmp_path / "anim.gif")):
        res = run_fake_x2(tmp_path, "sr", inp, str(out), "--json")
        err = err_of(res)
        assert res.returncode == 0, err
        files = {Path(f["path"]).name: f for f in json.loads(res.stdout)["files"]}
        for name, f in files.items():
            flagged = [w for w in f["warnings"] if "first of 3" in w]
            assert bool(flagged) == (name != "single.png"), files
            if flagged:
                assert f"warning: {f['path']}: {flagged[0]}" in err
