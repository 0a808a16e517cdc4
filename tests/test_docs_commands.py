"""Every command shown in README.md and docs/ is one a user can type.

The commands are read from the Markdown (code blocks and inline `restore ...`
spans) and checked in three ways:

- every one: the sub-command exists and each `--option` it names is one of its options;
- every concrete one in a code block (no placeholder such as MODEL or [--json]): the arguments parse as the
  real `restore` would parse them (no unknown option, bad value or missing argument);
- the ones a fresh clone can run here (files the test lays out, no weights of the user's,
  no full-size benchmark) are run offline with an empty cache: they finish (exit 0) or, when
  they need weights from the network, stop with the documented offline error (exit 4).

Python scripts shown (`python examples/ray_restore.py ...`) must exist and define each
option the docs give them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from helpers import REPO, cli_env, run_bounded, run_cli

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

# shell variables in the docs' recipes, as a scheduler would set them
VARIABLES = {
    "$SLURM_ARRAY_TASK_ID": "0",
    "$SLURM_ARRAY_TASK_COUNT": "4",
    "$JOB_COMPLETION_INDEX": "0",
    "$i": "0",
}
# a word in capitals is a placeholder (MODEL, PATH, RUN/last.safetensors), as are [optional] parts
PLACEHOLDER = re.compile(r"(?<![\w$-])[A-Z][A-Z_]+(?![a-z])|\[|\.\.\.|\$")
# not run here: the user's own files, full-size networks, paths of another machine, GPUs
NOT_RUN = re.compile(r"--weights|--file|--device cuda|/data/| convert | train | bench| generate | eval | degrade ")


def _shell_lines(block: str) -> list[str]:
    """The command lines of a code block: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lines.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return lines


def _restore_parts(line: str) -> list[str]:
    """Each `restore ...` command in a shell line (pipes, `&&`, loops), as text."""
    parts = re.split(r"\|\||&&|\||;|\bdo\b|\bdone\b|&(?!&)", line)
    out = []
    for part in parts:
        part = re.sub(r"\s[12]?>\s*\S+", "", part).strip()  # redirections
        if part.startswith("restore "):
            out.append(part)
    return out


def doc_commands() -> list[tuple[str, str, str]]:
    """(where, the shell line, one restore command in it) for every command the docs show."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        where = doc.relative_to(REPO).as_posix()
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
            for line in _shell_lines(block):
                for command in _restore_parts(line):
                    found.append((where, line, command))
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`(restore [^`]+)`", prose):
            found.append((where, "", span))
    return found


COMMANDS = doc_commands()


def _argv(command: str) -> list[str]:
    for name, value in VARIABLES.items():
        command = command.replace(name, value)
    return shlex.split(command)[1:]


def _parse(argv: list[str]) -> None:
    """Parse as `restore` would, without running: raises Click's UsageError (or ours) on a mistake."""
    from restorecli.cli import app

    root = typer.main.get_command(app)
    ctx = root.make_context("restore", list(argv))
    args = [*ctx._protected_args, *ctx.args]  # type: ignore[attr-defined]
    name, command, rest = root.resolve_command(ctx, args)  # type: ignore[attr-defined]
    command.make_context(name, rest, parent=ctx)


def _options_of(argv: list[str]) -> tuple[str, set[str]]:
    """The command an example runs and the options it may name (its own and the global ones).

    A placeholder for the command (`restore TASK --help`, `restore derain|lowlight`) may name
    the options of any command."""
    from restorecli.cli import app

    root = typer.main.get_command(app)
    ctx = root.make_context("restore", [], resilient_parsing=True)
    names = list(root.commands)  # type: ignore[attr-defined]
    words = [w.strip("[]") for w in argv if not w.lstrip("[").startswith("-")]
    name = next((w for w in words if w in names), None)
    if name is None:
        assert not words or not words[0].islower() or "|" in words[0], f"no command '{words[0]}'"
        chosen = names
    else:
        chosen = [name]
    opts = {o for p in root.get_params(ctx) for o in [*p.opts, *p.secondary_opts]}
    for each in chosen:
        command = root.get_command(ctx, each)  # type: ignore[attr-defined]
        opts |= {o for p in command.get_params(ctx) for o in [*p.opts, *p.secondary_opts]}
    return name or "COMMAND", opts


def test_the_docs_show_commands():
    assert len(COMMANDS) > 60
    assert any("restore derain examples/rainy.png" in c for _, _, c in COMMANDS)


@pytest.mark.parametrize("where, line, command", COMMANDS, ids=[f"{w}: {c[:60]}" for w, _, c in COMMANDS])
def test_each_command_names_real_options(where, line, command):
    argv = _argv(command)
    name, opts = _options_of(argv)
    for word in argv:
        option = word.strip("[]").split("=", 1)[0]
        if re.fullmatch(r"--?[a-zA-Z][\w-]*", option):
            assert option in opts, f"{where}: '{command}': 'restore {name}' has no {option}"
    # prose may name a command alone (`restore train`); code blocks show whole commands
    if line and not PLACEHOLDER.search(command.replace("$", "")) and "$" not in command.replace("$i", ""):
        _parse(argv)


def _sandbox(root: Path) -> Path:
    """What the docs' examples read, as a user would have it: small photos, a mask, a list, the examples."""
    rng = np.random.default_rng(3)

    def photo(path: Path, size=(40, 48)) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)

    for name in ("photo.png", "a.png", "input.png", "photos/one.png", "photo.jpg", "blurry.jpg", "shots/x/y.jpg"):
        photo(root / name)
    Image.fromarray(np.where(np.arange(48) < 24, 255, 0).astype(np.uint8)[None].repeat(40, 0)).save(root / "mask.png")
    (root / "todo.txt").write_text("photo.png\n")
    shutil.copytree(REPO / "examples", root / "examples")
    return root


RUNNABLE = sorted(
    {
        (where, line)
        for where, line, command in COMMANDS
        if line
        and not PLACEHOLDER.search(line)
        and not NOT_RUN.search(line)
        and "pip install" not in line
        and not line.startswith("for ")
    }
)


def test_some_commands_are_run():
    assert len(RUNNABLE) >= 12, RUNNABLE


@pytest.mark.parametrize("where, line", RUNNABLE, ids=[f"{w}: {c[:60]}" for w, c in RUNNABLE])
def test_command_runs_offline_or_says_it_needs_the_network(tmp_path, where, line):
    root = _sandbox(tmp_path)
    cache = tmp_path / "empty-cache"
    if line.startswith("restore ") and "|" not in line and ">" not in line:
        res = run_cli(
            *_argv(line),
            cwd=root,
            env={"RESTORECLI_CACHE": str(cache), "RESTORECLI_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        )
    else:  # a shell line: pipes and redirections, with `restore` from this checkout
        shim = tmp_path / "bin"
        shim.mkdir()
        (shim / "restore").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m restorecli "$@"\n')
        (shim / "restore").chmod(0o755)
        env = {"RESTORECLI_CACHE": str(cache), "RESTORECLI_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        env["PATH"] = f"{shim}:{os.environ['PATH']}"
        res = run_bounded(["bash", "-c", line], env=cli_env(env), cwd=root, timeout=300)
    err = res.stderr.decode()
    if res.returncode == 4:
        assert "the network is off" in err and err.count("error:") == 1, (where, line, err)
    else:
        assert res.returncode == 0, (where, line, err)


@pytest.mark.parametrize(
    "script, options",
    sorted(
        {
            (m.group(1), tuple(sorted(set(re.findall(r"\s(--[a-z][\w-]*)", m.group(0))))))
            for doc in DOCS
            for m in re.finditer(
                r"python (?:-m \S+ (?:--\S+ \S+ )*)?((?:examples|scripts)/\S+\.py)[^\n]*", doc.read_text()
            )
        }
    ),
)
def test_python_scripts_in_the_docs_exist_with_their_options(script, options):
    text = (REPO / script).read_text()
    for option in options:
        assert f'"{option}"' in text, f"{script} has no {option}"


def test_cli_md_verbose_example_shows_the_tile_size_the_code_picks(monkeypatch):
    """docs/cli.md's `-v` example: the bundled derain model on a large photo, memory to spare."""
    from restorecli.runtime.load import load_engine

    text = (REPO / "docs" / "cli.md").read_text()
    example = re.search(r"restoring 1 image\(s\) of (\d+)x(\d+) in (\d+)-pixel tiles", text)
    assert example, "docs/cli.md has no -v batch line"
    width, height, tile = map(int, example.groups())
    assert "model rddm-derain-small;" in text
    engine = load_engine("rddm-derain-small", "derain", device="cpu", offline=True)
    cap = engine.memory_share.cpu_cap
    assert cap is not None and cap <= 7e9 * engine.memory_share.cpu  # "at least 7 GB available" reaches the cap
    monkeypatch.setattr(engine, "_memory_budget", lambda: cap)
    assert engine.auto_tile(height, width) == tile
