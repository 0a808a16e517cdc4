"""`restore bench tiny`: the CI smoke benchmark runs every engine end to end through the real CLI.

Timings are machine-dependent, so nothing here asserts on their values: only
that every engine ran, produced finite positive times and a reference ratio,
and says its network was shrunk. The measured numbers live in docs/performance.md.
"""

from __future__ import annotations

import json
import math

import pytest

from helpers import run_cli
from restorecli.jobs.bench import TINY, Workload, shrunk_spec
from restorecli.weights.registry import load_registry

# workload -> the registered model it must time: the TINY table itself, so a new method adds one line there
EXPECTED = {work.name: work.model for work in TINY.values()}


def test_every_registered_method_has_a_tiny_workload() -> None:
    registry = load_registry()
    timed = {registry.get(model).method for model in EXPECTED.values()}
    assert timed == {spec.method for spec in registry.models.values()}
    assert {
        "resshift-realsr-x4-v3",
        "sinsr-realsr-x4",
        "diffir-srgan-x4",
        "diffir-deblur",
        "rddm-derain",
        "ddo-cifar10",
    } <= set(EXPECTED.values())


@pytest.fixture(scope="module")
def report() -> dict:
    proc = run_cli("bench", "tiny", "--device", "cpu", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_tiny_bench_runs_every_engine_with_a_reference(report: dict) -> None:
    for key in ("date", "torch", "device_name", "cpu_threads", "results"):
        assert key in report
    by_model = {r["model"]: r for r in report["results"]}
    assert set(EXPECTED.values()) <= set(by_model), sorted(by_model)
    for model in EXPECTED.values():
        r = by_model[model]
        for key in ("ms_per_image", "images_per_s", "reference_ms_per_batch", "speedup_vs_reference"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (model, key, r[key])
        assert r["peak_mem_gib"] is None or r["peak_mem_gib"] > 0
        assert r["device"] == "cpu" and r["precision"] == "float32"
        assert r["arch"] == "tiny" and any("shrunk" in n for n in r["notes"]), r
    assert by_model["sinsr-realsr-x4"]["steps"] == 1
    assert by_model["rddm-derain"]["steps"] == 2


def test_tiny_workloads_really_shrink_the_registered_networks() -> None:
    registry = load_registry()
    for work in TINY.values():
        registered = registry.get(work.model)
        small = shrunk_spec(registered, work)
        for name, over in (work.shrink or {}).items():
            for key, value in over.items():
                before = registered.components[name].config[key]
                after = small.components[name].config[key]
                if isinstance(value, dict):  # nested tables merge: untouched keys stay
                    assert after == {**before, **value}
                else:
                    assert after == value != before, (work.name, name, key)
    # the registered specs themselves are untouched
    assert registry.get("resshift-realsr-x4-v3").components["unet"].config["model_channels"] == 160


def test_shrinking_an_unknown_component_is_a_usage_error() -> None:
    from restorecli.errors import UsageError

    work = Workload("bad", "diffir-deblur", 8, 8, shrink={"unet": {"dim": 8}})
    with pytest.raises(UsageError, match="no component 'unet'"):
        shrunk_spec(load_registry().get("diffir-deblur"), work)


def test_unknown_workload_exits_2_with_one_line() -> None:
    proc = run_cli("bench", "no-such-workload", "--device", "cpu", timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "no-such-workload" in err and "tiny" in err
