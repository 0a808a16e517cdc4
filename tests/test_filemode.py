"""Files written through a private temporary file (a downloaded bundle, a `restore convert -o` bundle)
get the mode the user's umask gives a new file (weights.filemode), not 0600."""

from __future__ import annotations

import os

import pytest

import fake_engine as fe
from helpers import err_of, pth_bytes, run_fake_convert, run_sandboxed
from rogueserver import RogueServer

NET = pth_bytes(fe.conv_state())  # the fake model's official file


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_bundles_follow_the_umask(tmp_path, umask):
    with RogueServer() as srv:
        url = srv.add("/fake_net.pth", NET)
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        res = run_sandboxed(tmp_path, "--registry", ov, "fetch", "-q", "fakenet", preexec=lambda: os.umask(umask))
        assert res.returncode == 0, err_of(res)
    (tmp_path / "net.pth").write_bytes(NET)
    res = run_fake_convert(
        tmp_path, tmp_path / "net.pth", tmp_path / "mine.safetensors", preexec=lambda: os.umask(umask)
    )
    assert res.returncode == 0, err_of(res)
    bundles = list((tmp_path / "cache" / "bundles").glob("*.safetensors"))
    assert len(bundles) == 1
    for path in (bundles[0], tmp_path / "mine.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))
