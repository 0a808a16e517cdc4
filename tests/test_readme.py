"""The README's main command works on a fresh clone with an empty cache and no network."""

from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
from PIL import Image

from helpers import REPO, run_cli


def main_command() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- main-command -->\s*```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md has no main command after <!-- main-command -->"
    last = block.group(1).strip().split("&&")[-1].strip()
    argv = shlex.split(last)
    assert argv[0] == "restore", last
    return argv[1:]


def test_readme_main_command_runs_offline_with_an_empty_cache(tmp_path):
    argv = main_command()
    shutil.copytree(REPO / "examples", tmp_path / "examples")  # as in a fresh clone
    cache = tmp_path / "empty-cache"
    r = run_cli(
        *argv, cwd=tmp_path, env={"RESTORECLI_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "RESTORECLI_OFFLINE": "1"}
    )
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / argv[-1]
    src = np.asarray(Image.open(tmp_path / argv[-2]).convert("RGB"), np.float32)
    res = np.asarray(Image.open(out).convert("RGB"), np.float32)
    assert res.shape == src.shape and np.abs(res - src).mean() > 0.5  # it really changed the picture
    assert not cache.exists()  # nothing was downloaded or cached
