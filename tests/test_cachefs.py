"""The cache never leads outside itself (weights.cachefs): a symbolic link planted below its root is
refused, never followed, and a linked file counts as absent.

A team's shared cache is writable by every member, so each case plants a symbolic link at
a path restorecli uses (`downloads/KEY`, `.locks`, `bundles`, a lock file, a bundle, a staged
download) pointing at bait outside the cache, runs the real `restore fetch` (with the fake
method, in a sandbox) against a loopback server, and checks the bait afterwards, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import fake_engine as fe
from helpers import CLOSED, err_of, one_line, pth_bytes, run_sandboxed, sha, snapshot
from restorecli.weights.cache import bundle_path, component_key
from restorecli.weights.registry import load_registry
from rogueserver import RogueServer

NET = pth_bytes(fe.conv_state())  # the fake model's official file


def bait_folder(tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A folder outside the cache holding files named as restorecli would name its own."""
    bait = tmp_path / "elsewhere"
    bait.mkdir()
    files = {
        "fake_net.pth": b"a file of someone else, named like the download",
        ".fake_net.pth.123.part": b"looks like a stale part file",
        "notes.txt": b"keep me",
    }
    for name, data in files.items():
        (bait / name).write_bytes(data)
    return bait, {bait / name: data for name, data in files.items()}


def cache_paths(tmp_path: Path, overlay: Path) -> tuple[Path, Path, Path]:
    """(the cache root, CACHE/downloads/KEY, CACHE/bundles/NAME-KEY.safetensors) of model fakenet."""
    spec = load_registry((overlay,)).get("fakenet")
    root = tmp_path / "cache"
    return root, root / "downloads" / component_key(spec.components["net"]), bundle_path(spec, root)


def pinned_overlay(tmp_path: Path, url: str) -> Path:
    """The overlay of model fakenet, whose file at `url` is pinned to the fake model's sha256."""
    return fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(url), comp_extra=f'sha256 = "{sha(NET)}"\n'))


@contextmanager
def served_fakenet(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(overlay, cache root, staged folder, bundle) of model fakenet while a loopback server has its file."""
    with RogueServer() as srv:
        overlay = pinned_overlay(tmp_path, srv.add("/fake_net.pth", NET))
        yield (overlay, *cache_paths(tmp_path, overlay))


@pytest.mark.parametrize("where", ["downloads-key", "downloads", "locks", "bundles"])
def test_a_linked_cache_folder_is_refused_and_nothing_outside_changes(tmp_path, where):
    bait, files = bait_folder(tmp_path)
    with served_fakenet(tmp_path) as (ov, root, staged_dir, bundle):
        link = {
            "downloads-key": staged_dir,
            "downloads": staged_dir.parent,
            "locks": root / ".locks",
            "bundles": bundle.parent,
        }[where]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(bait, target_is_directory=True)
        res = run_sandboxed(tmp_path, "--registry", str(ov), "fetch", "fakenet")
    assert res.returncode == 3, err_of(res)
    err = one_line(res)
    assert "symbolic link" in err and str(link) in err, err
    assert snapshot(bait) == files  # nothing overwritten, deleted or created outside the cache


def test_a_linked_download_folder_is_refused_offline_too(tmp_path):
    """Offline, the staged file is only looked at: through a link that check would delete the bait."""
    bait, files = bait_folder(tmp_path)
    ov = pinned_overlay(tmp_path, CLOSED + "/x.pth")
    _, staged_dir, _ = cache_paths(tmp_path, ov)
    staged_dir.parent.mkdir(parents=True)
    staged_dir.symlink_to(bait, target_is_directory=True)
    res = run_sandboxed(tmp_path, "--offline", "--registry", str(ov), "fetch", "fakenet")
    assert res.returncode == 3, err_of(res)
    assert "symbolic link" in one_line(res)
    assert snapshot(bait) == files


@pytest.mark.parametrize("which", ["lock", "bundle", "staged"])
def test_a_linked_cache_file_is_never_written_or_read_through(tmp_path, which):
    bait, files = bait_folder(tmp_path)
    with served_fakenet(tmp_path) as (ov, root, staged_dir, bundle):
        link = {
            "lock": root / ".locks" / f"bundle-{bundle.stem}.lock",
            "bundle": bundle,
            "staged": staged_dir / "fake_net.pth",
        }[which]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(bait / ("notes.txt" if which != "staged" else "fake_net.pth"))
        res = run_sandboxed(tmp_path, "--registry", str(ov), "fetch", "fakenet")
    assert snapshot(bait) == files  # a lock never truncates, a bundle or download never lands, outside
    if which == "lock":
        assert res.returncode == 3, err_of(res)
        assert "symbolic link" in one_line(res)
    else:  # a linked file counts as absent: fetched afresh, and the real file replaces the link
        assert res.returncode == 0, err_of(res)
        assert bundle.is_file() and not bundle.is_symlink()
        assert not link.is_symlink()


def test_models_listing_does_not_count_a_linked_bundle_as_cached(tmp_path):
    bait, _ = bait_folder(tmp_path)
    ov = fe.write_overlay(tmp_path, fe.model_toml(sources=fe.url_source(CLOSED + "/x.pth")))
    _, _, bundle = cache_paths(tmp_path, ov)
    bundle.parent.mkdir(parents=True)
    bundle.symlink_to(bait / "notes.txt")
    res = run_sandboxed(tmp_path, "--registry", str(ov), "models", "--json")
    assert res.returncode == 0, err_of(res)
    row = next(r for r in json.loads(res.stdout) if r["name"] == "fakenet")
    assert not row["cached"], row
