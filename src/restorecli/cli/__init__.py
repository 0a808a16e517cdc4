"""The `restore` command line: argument handling only, the work happens in the modules it calls.

`restore` sub-commands: the task commands and `generate` (`cli.restore`, which
hand the job to `restorecli.api`), `models` / `fetch` / `convert`
(`cli.weights`) and `bench` / `degrade` / `train` / `eval` (`cli.tools`).
Errors are one line on stderr with a distinct exit code (see `restore --help`
epilog and docs/cli.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EXIT_CODES, RestoreError
from ..version import __version__
from . import restore, tools, weights
from .options import GLOBAL, err_console

EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="restore",
    help="Restore images with diffusion models (ResShift, SinSR, DiffIR, RDDM, DDO).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"restorecli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    offline: Annotated[
        bool, typer.Option("--offline", envvar="RESTORECLI_OFFLINE", help="Never use the network; only cached weights.")
    ] = False,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", envvar="RESTORECLI_CACHE", help="Where downloaded weights are kept."),
    ] = None,
    registry: Annotated[
        Optional[list[Path]], typer.Option("--registry", help="Extra weights.toml overlay (repeatable).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    GLOBAL.offline = offline
    GLOBAL.cache_dir = cache_dir
    GLOBAL.registry = list(registry or [])


restore.register(app)
weights.register(app)
tools.register(app)


def main() -> None:
    """Console-script entry point. Click handles its own usage errors (exit 2) and typer.Exit;
    a RestoreError becomes one line on stderr and its own exit code."""
    from .interrupts import Terminated, exit_code_after, install_sigterm

    install_sigterm()  # issue #13: SIGTERM stops every command like Ctrl-C (cleanup runs, exit 143)
    try:
        app()
    except RestoreError as exc:
        from rich.markup import escape

        from ..jobs.printable import printable

        # issue #13: one line whatever the message quotes (control characters escaped, no markup)
        err_console.print(f"[bold red]error:[/] {escape(printable(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Terminated:  # issue #13
        err_console.print("interrupted (SIGTERM): stopped; no partial file was kept", highlight=False)
        sys.exit(Terminated.code)
    except SystemExit as exc:  # issue #13: click's "Aborted!" after Ctrl-C exits 130, not 1
        sys.exit(exit_code_after(exc))
