"""Where bundles live and what names them (weights.cache): a changed network config is another bundle."""

from __future__ import annotations

from dataclasses import replace

from restorecli.weights.cache import bundle_path
from restorecli.weights.registry import load_registry


def test_an_overlay_that_changes_a_network_config_gets_another_bundle(tmp_path):
    spec = load_registry().get("rddm-derain-small")
    name, comp = next(iter(spec.components.items()))
    changed = replace(spec, components={**spec.components, name: replace(comp, config={**comp.config, "dim": 7})})
    assert bundle_path(spec, tmp_path) != bundle_path(changed, tmp_path)
    same = replace(spec, components={**spec.components, name: replace(comp, config=dict(comp.config))})
    assert bundle_path(spec, tmp_path) == bundle_path(same, tmp_path)
