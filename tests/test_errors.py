"""The exit codes (errors.ExitCode): every error class carries one, and the code, `restore --help` and
the docs give each code the same meaning."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

import fake_engine as fe
from helpers import ONE_THREAD, REPO, run_cli, solid_png
from restorecli.errors import EXIT_CODES


def test_every_error_class_and_the_help_table_use_the_exit_code_enum():
    import inspect

    from restorecli import errors

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.RestoreError)]
    assert len(classes) >= 7
    assert all(isinstance(c.exit_code, errors.ExitCode) for c in classes)
    assert errors.EXIT_CODES == {int(code): code.meaning for code in errors.ExitCode}
    assert errors.ExitCode.USAGE == 2 and errors.ExitCode.TERMINATED == 143


def test_exit_codes_agree_in_errors_py_help_and_docs():
    flat = " ".join(run_cli("--help").stdout.decode().split())
    for doc in ("cli.md", "batch.md"):
        text = (REPO / "docs" / doc).read_text()
        section = text.split("## Exit codes", 1)[1]
        rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE))
        assert {int(k): v for k, v in rows.items()} == EXIT_CODES, doc
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in flat, (code, flat)
    assert "mask of the wrong size" in EXIT_CODES[1] and "mask" not in EXIT_CODES[2].replace("missing --mask", "")


def test_a_mask_of_the_wrong_size_exits_with_the_documented_code(tmp_path):
    from restorecli.weights.bundle import write_bundle

    overlay, _ = fe.write_model(tmp_path / "model")
    bundle = write_bundle(
        tmp_path / "inpaint.safetensors", fe.fake_spec("fake-inpaint", "inpaint", 1), {"net": fe.conv_state()}
    )
    solid_png(tmp_path / "a.png", (16, 16), 120)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    r = run_cli(
        "--registry",
        str(overlay),
        "inpaint",
        "a.png",
        "out.png",
        "--mask",
        "m.png",
        "--model",
        "fake-inpaint",
        "--weights",
        str(bundle),
        cwd=tmp_path,
        env=ONE_THREAD,
        timeout=120,
        fake=True,
    )
    assert r.returncode == 1, r.stderr
    assert "mask" in r.stderr.decode() and "mask of the wrong size" in EXIT_CODES[r.returncode]
