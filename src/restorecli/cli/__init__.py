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

from ..errors import EXIT_CODES, ExitCode, RestoreError
from ..io.imageio import max_pixels_default
from ..version import __version__
from . import restore, tools, weights
from .helptext import Group
from .numbers import bound_numbers
from .options import GLOBAL, print_error
from .restore import TASK_OPTIONS, task_options, task_registry

# one exit code per line (rich help joins lines, and keeps paragraphs apart)
EPILOG = "Exit codes:\n\n" + "\n\n".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="restore",
    cls=Group,
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


def _task_only_option(task: str, option: str | None) -> str | None:
    """What to say when a task command is given an option that only other task commands take."""
    registry = task_registry()
    name = (option or "").removeprefix("--")
    if task not in registry.tasks or name not in TASK_OPTIONS:
        return None
    takers = [f"'restore {t}'" for t in registry.tasks if name in task_options(registry, t)]
    return f"{option} is for {', '.join(takers) or 'no task command'}"


def similar_options(typed: str, known: list[str]) -> list[str]:
    """Options a typo was probably meant as: a near spelling, or one the typed word begins.

    Click compares with the dashes included, so any two options look half alike
    (`--bogus` was offered `--verbose`); here only the names are compared, strictly.
    """
    from difflib import SequenceMatcher

    word = typed.lstrip("-")
    scored = []
    for option in dict.fromkeys(known):
        name = option.lstrip("-")
        ratio = SequenceMatcher(None, word, name).ratio()
        if ratio >= 0.75 or (len(word) >= 3 and name.startswith(word)):
            scored.append((-ratio, option))
    return [option for _, option in sorted(scored)[:3]]


def _click_error(exc: object) -> str:
    """A Click usage error (unknown option, bad value, missing argument) as one line with a pointer to --help."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "restore"
    option = getattr(exc, "option_name", None)
    if ctx is not None and (elsewhere := _task_only_option(ctx.info_name or "", option)) is not None:
        return f"'{where}' takes no {option}; {elsewhere}"
    if type(exc).__name__ == "NoSuchOption" and ctx is not None:
        name = str(getattr(exc, "option_name", ""))
        known = [o for p in ctx.command.get_params(ctx) for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        close = similar_options(name, known)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"no such option: {name}{hint}; see '{where} --help'"
    message = str(exc.format_message()).strip().rstrip(".")  # type: ignore[attr-defined]
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    return f"{message}; see '{where} --help'"


def main() -> None:
    """Console-script entry point: every error is one line on stderr with its exit code.

    Click's usage errors (exit 2) are printed as one line instead of Typer's box; `--help`
    (and `restore` without arguments) prints the help as usual. A RestoreError becomes one
    line and its own exit code (errors.EXIT_CODES); Ctrl-C is 130 and SIGTERM 143 wherever
    they arrive (cleanup in `finally` blocks runs first, so no partial file is left).
    """
    from ..interrupts import Terminated, install_sigterm
    from ..io.printable import printable
    from .stdout import guard_stdout

    install_sigterm()
    guard_stdout()  # a closed or full stdout is one line and exit 1 (cli.stdout)
    # Click's exceptions, wherever this Typer takes them from (click, or its vendored copy)
    click_errors = sys.modules[typer.BadParameter.__module__]
    no_args_help = getattr(click_errors, "NoArgsIsHelpError", ())

    command = typer.main.get_command(app)
    bound_numbers(command)
    try:
        max_pixels_default()  # a bad RESTORECLI_MAX_PIXELS is a usage error before any work, not one per file
        code = command.main(prog_name="restore", standalone_mode=False)
    except no_args_help as exc:  # `restore` alone: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        print_error(printable(_click_error(exc)))
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt) as exc:  # Click turns Ctrl-C outside a batch into Abort
        if isinstance(exc, typer.Abort) and not isinstance(exc.__cause__, KeyboardInterrupt):
            print_error("aborted")
            sys.exit(ExitCode.FAILED)
        print_error("interrupted (Ctrl-C): stopped; no partial file was kept")
        sys.exit(ExitCode.INTERRUPTED)
    except Terminated:
        print_error("interrupted (SIGTERM): stopped; no partial file was kept")
        sys.exit(Terminated.code)
    except RestoreError as exc:
        print_error(printable(str(exc)))
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)
