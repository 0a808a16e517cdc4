"""Standard output that cannot be written (closed, full, a reader gone) is one line and exit 1,
never a traceback and never a silent exit 0 (cli.stdout)."""

from __future__ import annotations

import os
import subprocess

import pytest

from helpers import random_png, start_cli

COMMANDS = {
    "models --json": ["models", "--json"],
    "models table": ["models"],
    "eval --json": ["eval", "{r}", "{g}", "--json"],
    "eval table": ["eval", "{r}", "{g}"],
}


def run(args, tmp_path, stdout, preexec=None):
    """Start `restore ARGS` (two folders of one image each as {r} and {g}) writing to `stdout`."""
    random_png(tmp_path / "r" / "x.png")
    random_png(tmp_path / "g" / "x.png")
    args = [a.format(r=tmp_path / "r", g=tmp_path / "g") for a in args]
    return start_cli(*args, stdout=stdout, preexec=preexec)


def check(proc) -> str:
    _, err = proc.communicate(timeout=120)
    text = err.decode().strip()
    assert proc.returncode == 1, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text and "standard output" in text, text
    return text


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_full_stdout_is_one_line_exit_1(tmp_path, args):
    with open("/dev/full", "w") as full:
        assert "No space" in check(run(args, tmp_path, full))


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_closed_stdout_is_one_line_exit_1(tmp_path, args):
    proc = run(args, tmp_path, subprocess.DEVNULL, preexec=lambda: os.close(1))
    assert "closed" in check(proc)


@pytest.mark.parametrize("args", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_reader_that_is_gone_is_one_line_exit_1(tmp_path, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write breaks the pipe
    with os.fdopen(write_end, "w") as pipe:
        assert "pipe" in check(run(args, tmp_path, pipe))
