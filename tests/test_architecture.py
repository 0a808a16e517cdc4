"""The shape of the package (docs/architecture.md): no import cycles, small modules, a short top level.

The layer contract itself is `lint-imports` (pyproject.toml); these are the checks it does not make,
computed by scripts/check_architecture.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"


def _checker():
    spec = importlib.util.spec_from_file_location("check_architecture", REPO / "scripts" / "check_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_cycles_counting_lazy_imports():
    arch = _checker()
    edges = arch.graph(SRC)
    assert "restorecli.engines.rddm.engine" in edges and edges["restorecli.api"]  # the scan sees the package
    assert arch.cycles(edges) == []


def test_the_checker_sees_a_cycle_made_by_a_lazy_import():
    arch = _checker()
    assert arch.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_500_lines_outside_nets():
    assert _checker().oversized(SRC) == []


def test_at_most_10_modules_at_the_top_level():
    top = _checker().top_level(SRC)
    assert len(top) <= 10, top


def test_inference_never_imports_training():
    edges = _checker().graph(SRC)
    for module, targets in edges.items():
        if module.startswith(("restorecli.engines", "restorecli.nets", "restorecli.runtime")):
            assert not any(t.startswith("restorecli.training") for t in targets), module
