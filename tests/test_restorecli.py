"""The restorecli package as a whole, its shape (docs/architecture.md): no import cycles, small modules,
a short top level, one SIGTERM handler, exit statuses spelled in one place.

The layer contract itself is `lint-imports` (pyproject.toml); these are the checks it does not make,
computed by scripts/check_architecture.py.
"""

from __future__ import annotations

import importlib.util

from helpers import REPO

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


def test_no_function_over_80_lines_outside_nets():
    assert _checker().long_functions(SRC) == []


def test_at_most_10_modules_at_the_top_level():
    top = _checker().top_level(SRC)
    assert len(top) <= 10, top


def test_inference_never_imports_training():
    edges = _checker().graph(SRC)
    for module, targets in edges.items():
        if module.startswith(("restorecli.engines", "restorecli.nets", "restorecli.runtime")):
            assert not any(t.startswith("restorecli.training") for t in targets), module


def _sources():
    return sorted((SRC / "restorecli").rglob("*.py"))


def test_one_module_sets_the_sigterm_handler():
    setters = [p.relative_to(SRC).as_posix() for p in _sources() if "signal.signal(signal.SIGTERM" in p.read_text()]
    assert setters == ["restorecli/interrupts.py"]


def test_exit_statuses_are_spelled_only_in_the_exit_code_enum():
    import ast

    def spells(path):
        nodes = ast.walk(ast.parse(path.read_text()))
        return any(isinstance(n, ast.Constant) and type(n.value) is int and n.value in (130, 143) for n in nodes)

    assert [p.relative_to(SRC).as_posix() for p in _sources() if spells(p)] == ["restorecli/errors.py"]
