"""Help text and argument mistakes (cli.helptext): what a user reads in `--help`, and what a typo gets back.

Every command's help shows a word for each value (`PATH`, `N`, `MODEL`, `TASK`)
and nothing after an on/off flag; Python types (`<bool>`, `<list[str]>`) never
appear. A flag followed by `true` is refused instead of becoming a file name,
and an unknown option is offered only options spelled like it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from helpers import run_cli
from restorecli.cli import app, similar_options


def _all_helps() -> dict[str, str]:
    """`restore --help` and `restore COMMAND --help` for every command, wide enough not to wrap."""
    runner = CliRunner()
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    helps = {}
    for args in ([], *([name] for name in names)):
        res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
        assert res.exit_code == 0, (args, res.output)
        helps[" ".join(["restore", *args])] = res.output
    return helps


HELPS = _all_helps()


def test_every_command_is_walked():
    assert {"restore", "restore sr", "restore derain", "restore models", "restore train", "restore fetch"} <= set(HELPS)
    assert len(HELPS) >= 15


@pytest.mark.parametrize("command", sorted(HELPS))
def test_help_shows_no_python_types(command):
    text = HELPS[command]
    assert "<bool>" not in text and "list[" not in text, text
    assert not re.search(r"<(str|int|float|path|bool|int range|float range)>", text), text
    assert "{" not in text.split("\n", 3)[1], text  # the usage line: INPUT, not {input}


def _row(text: str, option: str) -> str:
    line = next(line for line in text.splitlines() if re.search(rf"\s{re.escape(option)}\b", line))
    return line.split(option, 1)[1]


@pytest.mark.parametrize(
    "command, flag",
    [
        ("restore derain", "--overwrite"),
        ("restore derain", "--json"),
        ("restore derain", "--recursive"),
        ("restore models", "--json"),
        ("restore train", "--dual-output"),
        ("restore fetch", "--all"),
        ("restore", "--offline"),
        ("restore sr", "--help"),
    ],
)
def test_flags_show_no_value_word(command, flag):
    row = _row(HELPS[command], flag)
    # after the flag (and its short form) comes the help sentence, capitalised, not a value word
    assert re.match(r"^(\s+-\w)?\s+[A-Z][a-z]", row), row


@pytest.mark.parametrize(
    "command, option, word",
    [
        ("restore derain", "--model", "MODEL"),
        ("restore derain", "--steps", "N"),
        ("restore derain", "--tile", "N"),
        ("restore derain", "--weights", "PATH"),
        ("restore derain", "--shard", "I/N"),
        ("restore models", "--task", "TASK"),
        ("restore train", "--output", "PATH"),
        ("restore train", "--clean", "PATH"),
        ("restore train", "--task", "TASK"),
        ("restore fetch", "--file", "COMPONENT=PATH"),
        ("restore", "--cache-dir", "PATH"),
        ("restore inpaint", "--mask", "MASK"),
        ("restore shadow", "--mask", "MASK"),
    ],
)
def test_values_show_a_readable_word(command, option, word):
    row = _row(HELPS[command], option)
    assert re.match(rf"^(\s+-\w)?\s+{re.escape(word)}\s", row), row


def test_usage_line_names_the_arguments():
    assert "Usage: restore derain [OPTIONS] INPUT [OUTPUT]" in HELPS["restore derain"]
    assert "restore convert [OPTIONS] MODEL [COMPONENT=]PATH..." in HELPS["restore convert"]


@pytest.mark.parametrize("word", ["true", "false", "yes", "1"])
def test_a_flag_followed_by_true_is_a_usage_error_and_writes_nothing(tmp_path, word):
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    res = run_cli("--offline", "derain", "photo.png", "--overwrite", word, cwd=tmp_path)
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert err.count("\n") == 1 and "--overwrite takes no value" in err and f"./{word}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_a_folder_named_true_is_still_reachable(tmp_path):
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    res = run_cli(
        "--offline", "derain", "photo.png", "./true/", "--overwrite", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "true" / "photo.png").is_file()


def test_an_unknown_option_suggests_only_close_spellings():
    known = ["--verbose", "--tile", "--tile-overlap", "--device", "--devices", "--json", "--suffix"]
    assert similar_options("--bogus", known) == []
    assert similar_options("--tiles", known)[0] == "--tile"
    assert similar_options("--jsn", known) == ["--json"]
    assert set(similar_options("--dev", known)) == {"--device", "--devices"}


def test_bogus_option_on_the_command_line_suggests_nothing():
    res = run_cli("sr", "x.png", "--bogus")
    err = res.stderr.decode()
    assert res.returncode == 2
    assert err == "error: no such option: --bogus; see 'restore sr --help'\n"
    res = run_cli("sr", "x.png", "--tiles", "64")
    assert "did you mean --tile?" in res.stderr.decode()


def test_shadow_mask_help_and_no_weights_error_are_about_shadows(tmp_path):
    shadow = _row(HELPS["restore shadow"], "--mask")
    assert "shadow" in shadow and "area to fill" not in shadow
    assert "area to fill" in _row(HELPS["restore inpaint"], "--mask")
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    res = run_cli("--offline", "shadow", "photo.png", "--mask", "photo.png", cwd=tmp_path)
    err = res.stderr.decode()
    assert res.returncode == 4 and err.count("\n") == 1, err
    assert err.count("--weights") == 1 and "restore train rddm --task shadow" in err, err
    res = run_cli("--offline", "shadow", "photo.png", cwd=tmp_path)
    assert res.returncode == 2 and "marks the shadow to remove" in res.stderr.decode()
