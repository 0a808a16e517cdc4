"""weights.cache and weights.cachelock: what names a cached bundle, and the locks around filling it."""

from __future__ import annotations

from dataclasses import replace

from restorecli.weights import cachelock
from restorecli.weights.cache import bundle_path
from restorecli.weights.registry import load_registry


def test_an_overlay_that_changes_a_network_config_gets_another_bundle(tmp_path):
    spec = load_registry().get("rddm-derain-small")
    name, comp = next(iter(spec.components.items()))
    changed = replace(spec, components={**spec.components, name: replace(comp, config={**comp.config, "dim": 7})})
    assert bundle_path(spec, tmp_path) != bundle_path(changed, tmp_path)
    same = replace(spec, components={**spec.components, name: replace(comp, config=dict(comp.config))})
    assert bundle_path(spec, tmp_path) == bundle_path(same, tmp_path)


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
