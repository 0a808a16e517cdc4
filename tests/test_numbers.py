"""Every int and float option of every command refuses values outside its type (exit 2, naming the option)."""

from __future__ import annotations

import sys

import pytest
import typer

from restorecli.cli import app, main
from restorecli.cli.numbers import INT64, SEED


def _numeric_options():
    command = typer.main.get_command(app)
    out = []
    for name, sub in command.commands.items():
        for param in sub.params:
            desc = getattr(param, "type_descriptor", None)
            if desc is None or desc.annotation not in (int, float) or not param.opts[0].startswith("--"):
                continue
            out.append((name, param.opts[0], desc.annotation, param.name))
    return out


OPTIONS = _numeric_options()


def _hostile(kind, name):
    if kind is float:
        return ["nan", "inf", "-inf"]
    low, high = SEED if name == "seed" else INT64
    return [str(high + 1), str(low - 1), str(2**200)]


CASES = [(cmd, opt, value) for cmd, opt, kind, name in OPTIONS for value in _hostile(kind, name)]


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["restore", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code, capsys.readouterr().err


def test_the_options_are_found():
    names = {opt for _, opt, _, _ in OPTIONS}
    assert {"--seed", "--lr", "--steps", "--tile", "--ema-decay", "--crop"} <= names


@pytest.mark.parametrize("command,option,value", CASES)
def test_out_of_type_values_are_usage_errors(monkeypatch, capsys, command, option, value):
    # the option comes first, so Click checks it before any missing argument
    code, err = _run(monkeypatch, capsys, command, f"{option}={value}")
    assert code == 2
    assert option in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_seed_of_64_bits_is_accepted(monkeypatch, capsys):
    # the largest seed passes the check: the error is then the missing argument, not the seed
    code, err = _run(monkeypatch, capsys, "degrade", f"--seed={2**64 - 1}")
    assert code == 2 and "--seed" not in err
