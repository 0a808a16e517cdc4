"""Registry facts from primary sources: licenses, verified pins, where to download by hand."""

from __future__ import annotations

import pytest

from restorecli.errors import UsageError
from restorecli.weights.catalog import model_rows
from restorecli.weights.registry import load_registry

UMBRELLA = "https://drive.google.com/drive/folders/10miVILiopE414GyaSZM3EFAZITeY9q0p"
VERIFIED = {
    "resshift_realsrx4_s4_v3.pth": (477917058, "878da888bbbe10b8b0d4ff179c2de3059fd8a4cf2c705942a77a7f3b23ea1efd"),
    "autoencoder_vq_f4.pth": (221364711, "e967eaa2c380152811c53e312990d6967a8a957c4f7590f19490ec72110b2889"),
}


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


def test_an_overlay_cannot_claim_a_check_without_a_pin(tmp_path):
    overlay = tmp_path / "o.toml"
    overlay.write_text(
        '[models.resshift-realsr-x4-v3.components.unet]\nsha256_checked = "trust me"\n', encoding="utf-8"
    )
    with pytest.raises(UsageError, match="sha256_checked"):
        load_registry((overlay,))
