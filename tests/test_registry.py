"""The registry: every entry parses, points at a known engine and architecture, and overlays merge;
its facts come from primary sources (licenses, verified pins, where to download by hand)."""

from __future__ import annotations

import pytest

from restorecli.engines import engine_class
from restorecli.errors import UsageError
from restorecli.weights.catalog import model_rows
from restorecli.weights.registry import builtin_registry_path, load_registry, parse_registry

UMBRELLA = "https://drive.google.com/drive/folders/10miVILiopE414GyaSZM3EFAZITeY9q0p"
VERIFIED = {
    "resshift_realsrx4_s4_v3.pth": (477917058, "878da888bbbe10b8b0d4ff179c2de3059fd8a4cf2c705942a77a7f3b23ea1efd"),
    "autoencoder_vq_f4.pth": (221364711, "e967eaa2c380152811c53e312990d6967a8a957c4f7590f19490ec72110b2889"),
}


def test_builtin_registry_is_consistent():
    reg = load_registry()
    assert "resshift-realsr-x4-v3" in reg.models
    assert reg.default_for("sr").name == "resshift-realsr-x4-v3"
    for spec in reg.models.values():
        assert load_registry().method(spec.method).engine, spec.name
        assert spec.min_steps <= spec.default_steps <= spec.max_steps, spec.name
        assert spec.components, spec.name
        for comp in spec.components.values():
            assert comp.kind and comp.config, (spec.name, comp.name)
            if comp.sha256 is not None:
                assert len(comp.sha256) == 64 and int(comp.sha256, 16) >= 0


def test_every_registered_network_builds_with_its_engine():
    """Each component's architecture builds (on the meta device: shapes only) with the engine its model names."""
    for spec in load_registry().models.values():
        for comp in spec.components.values():
            net = engine_class(spec.method).build_component(comp, device="meta")
            assert sum(p.numel() for p in net.parameters()) > 0, (spec.name, comp.name)


def test_steps_out_of_range_lists_accepted_values():
    spec = load_registry().get("resshift-realsr-x4-v3")
    assert spec.check_steps(None) == spec.trained_steps
    with pytest.raises(UsageError) as info:
        spec.check_steps(spec.max_steps + 1)
    assert info.value.exit_code == 2
    assert f"{spec.min_steps} to {spec.max_steps}" in str(info.value)


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError, match="restore models"):
        load_registry().get("no-such-model")


def test_overlay_replaces_only_what_it_states(tmp_path):
    overlay = tmp_path / "weights.toml"
    overlay.write_text('[models.resshift-realsr-x4-v3.components.unet]\nurl = "http://127.0.0.1:9/mirror/unet.pth"\n')
    base = load_registry().get("resshift-realsr-x4-v3")
    spec = load_registry((overlay,)).get("resshift-realsr-x4-v3")
    assert spec.components["unet"].url == "http://127.0.0.1:9/mirror/unet.pth"
    assert spec.components["unet"].file == base.components["unet"].file
    assert spec.components["autoencoder"] == base.components["autoencoder"]


def test_component_must_name_a_known_arch():
    with pytest.raises(UsageError, match="unknown arch"):
        parse_registry(
            {
                "models": {
                    "m": {
                        "method": "resshift",
                        "task": "sr",
                        "trained_steps": 1,
                        "components": {"unet": {"arch": "nope"}},
                    }
                }
            }
        )


def test_packaged_registry_exists():
    assert builtin_registry_path().is_file()


def test_steps_error_counts_steps_in_good_english():
    import dataclasses

    spec = load_registry().get("resshift-realsr-x4-v3")
    one = dataclasses.replace(spec, trained_steps=1, default_steps=1, min_steps=1, max_steps=1)
    with pytest.raises(UsageError, match=r"\(trained with 1 step\)"):
        one.check_steps(5)
    four = dataclasses.replace(spec, trained_steps=4, default_steps=4, min_steps=1, max_steps=4)
    with pytest.raises(UsageError, match=r"\(trained with 4 steps\)"):
        four.check_steps(9)


def test_every_diffir_model_carries_the_apache_license_and_the_umbrella_folder():
    diffir = [m for m in load_registry().models.values() if m.method == "diffir"]
    assert diffir
    for spec in diffir:
        assert spec.license.startswith("Apache-2.0"), (spec.name, spec.license)
        manual = [s for c in spec.components.values() for s in c.sources if s.kind == "manual"]
        assert manual and all(UMBRELLA in (s.note or "") for s in manual), spec.name


def test_only_the_two_independently_checked_resshift_files_say_so(tmp_path):
    seen = set()
    for row in model_rows(load_registry(), tmp_path):
        for comp in row["components"].values():
            if comp["sha256"] is None:
                assert comp["sha256_checked"] is None
            elif comp["file"] in VERIFIED:
                assert (comp["size"], comp["sha256"]) == VERIFIED[comp["file"]]
                assert comp["sha256_checked"] == "independent-copies", row["name"]
                seen.add(comp["file"])
            else:
                assert comp["sha256_checked"] == "unverified", (row["name"], comp["file"])
    assert seen == set(VERIFIED)


def test_no_home_directory_means_no_user_overlay(monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr("pathlib.Path.home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    from restorecli.weights.registry import user_registry_paths

    assert isinstance(user_registry_paths(), list)
