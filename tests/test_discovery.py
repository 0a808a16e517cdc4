"""Which files a job reads and which files it writes (jobs.discovery): output names are checked before
any work, a job's own earlier outputs are not inputs, an output onto an input is refused, and a
broken link in an input folder fails as that file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import ONE_THREAD, err_of, one_line, photos, random_png, run_cli, run_fake_x2, snapshot, solid_png


def test_output_with_unknown_extension_is_a_usage_error(tmp_path):
    solid_png(tmp_path / "a.png", (40, 56), 120)
    r = run_cli("--offline", "derain", "a.png", "out.xyz", cwd=tmp_path, env=ONE_THREAD)
    assert r.returncode == 2, r.stderr
    err = r.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "out.xyz" in err and ".xyz" in err and "/" in err, err
    assert not (tmp_path / "out.xyz").exists()


def test_output_folder_names_with_a_dot_need_a_slash_or_must_exist(tmp_path):
    from restorecli.errors import UsageError
    from restorecli.jobs.discovery import discover, plan_outputs
    from restorecli.jobs.options import JobOptions

    src = solid_png(tmp_path / "a.png", (40, 56), 120)

    def planned(output):
        items, _ = discover([str(src)])
        return plan_outputs(items, JobOptions(task="derain", inputs=[str(src)], output=output))[0].output

    with pytest.raises(UsageError, match="out.xyz"):
        planned(str(tmp_path / "out.xyz"))
    assert planned(str(tmp_path / "out.xyz") + "/") == tmp_path / "out.xyz" / "a.png"
    (tmp_path / "results.v2").mkdir()
    assert planned(str(tmp_path / "results.v2")) == tmp_path / "results.v2" / "a.png"
    assert planned(str(tmp_path / "plain")) == tmp_path / "plain" / "a.png"  # no extension: a folder
    assert planned(str(tmp_path / "b.JPG")) == tmp_path / "b.JPG"


def test_earlier_outputs_of_the_same_task_next_to_the_inputs_are_not_inputs(tmp_path):
    from restorecli.jobs.discovery import discover, plan_outputs
    from restorecli.jobs.options import JobOptions

    for name in ("a.png", "a_derain.png", "c.jpg", "c_derain.png", "b_derain.png", "d_lowlight.png"):
        solid_png(tmp_path / "in" / name, (40, 56), 120)

    def inputs(task, output, **kw):
        items, _ = discover([str(tmp_path / "in")])
        opts = JobOptions(task=task, inputs=[str(tmp_path / "in")], output=output, **kw)
        return sorted(i.rel.name for i in plan_outputs(items, opts))

    # a separate output folder: a_derain.png and c_derain.png are restorecli outputs of a.png and c.jpg
    assert inputs("derain", str(tmp_path / "out")) == ["a.png", "b_derain.png", "c.jpg", "d_lowlight.png"]
    # next to the inputs, as before
    assert inputs("derain", None) == ["a.png", "b_derain.png", "c.jpg", "d_lowlight.png"]
    # another task's outputs are inputs like any other file
    assert "a_derain.png" in inputs("lowlight", str(tmp_path / "out"))
    # with --suffix, that suffix marks the outputs
    assert "a_derain.png" in inputs("derain", str(tmp_path / "out"), suffix="_clean")
    # a file named explicitly is always an input
    items, _ = discover([str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / "a_derain.png")])
    opts = JobOptions(task="derain", inputs=[], output=str(tmp_path / "out2"))
    assert len(plan_outputs(items, opts)) == 2


@pytest.mark.parametrize("case", ["same-file", "same-folder-no-suffix", "link-to-input"])
def test_task_output_onto_an_input_is_a_usage_error_before_any_work(tmp_path, case):
    src = photos(tmp_path)
    (tmp_path / "alias.png").symlink_to(src / "x.png")
    args = {
        "same-file": [str(src / "x.png"), str(src / "x.png")],
        "same-folder-no-suffix": [str(src), str(src), "--suffix", ""],
        "link-to-input": [str(src / "x.png"), str(tmp_path / "alias.png"), "--overwrite"],
    }[case]
    before = snapshot(src)
    # weights that do not exist: exit 2 (not 3) shows the refusal came before the model was looked at
    missing = str(tmp_path / "missing.safetensors")
    res = run_fake_x2(tmp_path, "sr", *args, weights=missing)
    assert res.returncode == 2, err_of(res)
    assert "never overwritten" in one_line(res)
    assert snapshot(src) == before


def test_a_symlink_loop_in_an_input_folder_is_reported_per_file(tmp_path):
    src = tmp_path / "in"
    random_png(src / "good.png")
    (src / "a.png").symlink_to("b.png")
    (src / "b.png").symlink_to("a.png")
    res = run_fake_x2(tmp_path, "sr", str(src), str(tmp_path / "out"), "--json")
    err = err_of(res)
    assert res.returncode == 1, err
    doc = json.loads(res.stdout)
    status = {Path(f["path"]).name: f for f in doc["files"]}
    assert status["good.png"]["status"] == "done"
    for name in ("a.png", "b.png"):
        assert status[name]["status"] == "failed" and "symbolic link" in status[name]["reason"], status
    assert "Traceback" not in err and (tmp_path / "out" / "good.png").is_file()
