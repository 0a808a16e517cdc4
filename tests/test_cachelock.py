"""One file lock per cache entry (weights.cachelock): locks are taken in one order, and several
processes sharing one empty cache all succeed from their first use."""

from __future__ import annotations

import json
import subprocess

import torch

import fake_engine as fe
from helpers import files_under, pth_bytes, random_png, sandbox_env, start_cli
from restorecli.weights import cachelock
from rogueserver import RogueServer


def test_locks_are_taken_once_each_in_sorted_order(tmp_path, monkeypatch):
    taken = []
    real = cachelock._acquire

    def recording(path, name, note, deadline):
        taken.append(name)
        return real(path, name, note, deadline)

    monkeypatch.setattr(cachelock, "_acquire", recording)
    # a repeated name taken twice would wait for itself: the timeout turns that into an error
    with cachelock.cache_entry_locks(tmp_path, ["b", "a", "b"], timeout=3):
        pass
    assert taken == ["a", "b"]


def test_concurrent_first_use_of_an_empty_cache_all_succeed(tmp_path):
    """Three `--shard k/3` jobs and a `restore fetch` start together on an empty cache; the server
    holds its answers until all four asked, so they download at the same moment (the race)."""
    for i in range(9):
        random_png(tmp_path / "in" / f"{i}.png", seed=i)
    out = tmp_path / "out"
    with RogueServer() as srv:
        # a 32 MB file (padding beside the state dict), so checking and loading it takes a while
        big = pth_bytes({"state_dict": fe.conv_state(), "padding": torch.zeros(8 << 20)})
        url = srv.add("/fake_net.pth", big, gather=4, gather_s=10)
        ov = str(fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url))))
        env = sandbox_env(tmp_path)
        procs = [
            start_cli(
                "--registry",
                ov,
                "sr",
                str(tmp_path / "in"),
                str(out),
                "--model",
                "fakenet",
                "--shard",
                f"{k}/3",
                "--json",
                env=env,
                fake=True,
            )
            for k in range(3)
        ]
        procs.append(start_cli("--registry", ov, "fetch", "fakenet", env=env, fake=True))
        results = []
        for p in procs:
            try:
                stdout, stderr = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                p.kill()
                stdout, stderr = p.communicate()
            results.append((p.returncode, stdout, stderr.decode(errors="replace")))
    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    done = sum(json.loads(o)["done"] for _, o, _ in results[:3])
    assert done == 9 and len([p for p in out.iterdir() if not p.name.startswith(".")]) == 9
    cache = tmp_path / "cache"
    assert [p.name for p in (cache / "bundles").iterdir()] == [p.name for p in files_under(cache / "bundles")]
    assert not [p for p in files_under(cache) if p.suffix in (".part", ".tmp")]
