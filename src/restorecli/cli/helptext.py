"""What `--help` shows for each option: no type names, only a word for the value a user types.

Typer labels every option with its Python type (`--overwrite <bool>`, `--clean
<list[Path]>`). A user reads `<bool>` as "give true or false", and `restore
derain photo.png --overwrite true` then took `true` as the output folder. Here
an on/off flag shows nothing after its name, and an option that takes a value
shows what to type (`PATH`, `N`, `MODEL`, `TASK`). `Command` and `Group` apply
this to every parameter of every command, so a new option needs no help code.

The same classes refuse a flag followed by a word like `true` or `no` (exit 2),
which would otherwise become a positional argument silently.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import UsageError

# value words a user may put after a flag, believing it takes one
BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f"})

# option (long name) or argument -> what the user types (everything else comes from the type or name)
METAVARS = {
    "model": "MODEL",
    "models": "MODEL",
    "task": "TASK",
    "weights": "PATH",
    "file": "COMPONENT=PATH",
    "files": "[COMPONENT=]PATH",
    "shard": "I/N",
    "devices": "IDS",
    "device": "DEVICE",
    "precision": "PRECISION",
    "shape": "MODEL:HxW[:B]",
    "param": "KEY=VALUE",
    "pairs": "DEGRADED_DIR,CLEAN_DIR",
    "dim-mults": "LIST",
    "lr": "RATE",
    "seed": "N",
    "workloads": "WORKLOAD",
    "kind": "KIND",
    "degradation": "KIND",
    "init": "MODEL|PATH",
}


def _name(param: Any) -> str:
    """An option's long name without dashes (`dim-mults`), an argument's parameter name."""
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if longs and not isinstance(param, typer.core.TyperArgument):
        return longs[0][2:]
    return str(param.name or "")


def metavar_for(param: Any) -> str:
    """The word shown after an option (empty for a flag), or an argument's name in capitals."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    name = _name(param)
    if name in METAVARS:
        return METAVARS[name]
    desc = getattr(param, "type_descriptor", None)
    annotation = getattr(desc, "annotation", None)
    if isinstance(param, typer.core.TyperArgument):
        word = name.upper()
    elif desc is not None and (desc.is_path or "Path" in str(annotation)):
        word = "PATH"
    elif annotation is int or "int" == getattr(annotation, "__name__", ""):
        word = "N"
    elif annotation is float:
        word = "NUMBER"
    else:
        word = name.upper().replace("-", "_")
    return word


def tidy(params: list[Any]) -> list[Any]:
    """Give every parameter its help word (once; a metavar set by hand is kept)."""
    for param in params:
        if not getattr(param, "_restorecli_tidy", False):
            param.metavar = metavar_for(param)
            param._restorecli_tidy = True
            if isinstance(param, typer.core.TyperArgument):
                _plain_argument(param)
    return params


def _plain_argument(param: Any) -> None:
    """An argument shows its name only (`INPUT [OUTPUT]`, `[MODEL]...`), no type column."""
    many = "..." if param.nargs != 1 else ""
    usage = (param.metavar if param.required else f"[{param.metavar}]") + many
    param.display_type_rich = lambda ctx: None
    param._usage_display_name = lambda: usage
    param._rich_display_name = lambda: param.metavar + many


def refuse_flag_values(params: list[Any], args: list[str]) -> None:
    """`--overwrite true`: a flag takes no value; the word would silently become an argument."""
    flags = {opt for p in params if getattr(p, "is_flag", False) for opt in p.opts}
    for flag, word in zip(args, args[1:]):
        if flag == "--":
            return
        if flag in flags and word.lower() in BOOL_WORDS:
            raise UsageError(
                f"{flag} takes no value, but '{word}' follows it",
                f"write {flag} alone to turn it on, and leave it out to keep it off "
                f"(a file or folder named '{word}': write ./{word})",
            )


class Command(TyperCommand):
    """A Typer command whose help shows value words, not types, and which refuses `--flag true`."""

    def get_params(self, ctx: Any) -> list[Any]:
        return tidy(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        refuse_flag_values(self.get_params(ctx), args)
        return super().parse_args(ctx, args)


class Group(TyperGroup):
    """The `restore` group: its own options shown like a command's."""

    def get_params(self, ctx: Any) -> list[Any]:
        return tidy(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # only the options before the command name are the group's
        own = []
        for arg in args:
            if not arg.startswith("-"):
                break
            own.append(arg)
        refuse_flag_values(self.get_params(ctx), own + args[len(own) : len(own) + 1])
        return super().parse_args(ctx, args)
