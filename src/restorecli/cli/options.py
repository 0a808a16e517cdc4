"""What the commands share: the global options, the console for messages, and the common option types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import UsageError
from ..io.imageio import OUTPUT_FORMATS

err_console = Console(stderr=True)


class GlobalOptions:
    """Options given before the command (`restore --offline sr ...`) or via environment variables."""

    offline: bool = False
    cache_dir: Optional[Path] = None
    registry: list[Path] = []


GLOBAL = GlobalOptions()


Model = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Registered model (see 'restore models'); default: the task's default."),
]
Weights = Annotated[
    Optional[list[str]],
    typer.Option("--weights", "-w", help="A bundle .safetensors, or COMPONENT=PATH of official files (repeatable)."),
]
Steps = Annotated[
    Optional[int], typer.Option("--steps", "-s", help="Sampling steps; default: what the model was trained with.")
]
Seed = Annotated[
    Optional[int], typer.Option("--seed", help="Random seed; each image gets its own generator seeded with it.")
]
Device = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps.")]
Precision = Annotated[
    str, typer.Option("--precision", "-p", help="auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16.")
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Same-size images run together.")]


def _check_tile(value: Optional[int]) -> Optional[int]:
    """--tile: 0 (whole image) or a size; a negative value is a usage error (a size below the model's
    smallest tile is raised to it, with a warning, once the model is loaded)."""
    if value is not None and value < 0:
        raise typer.BadParameter(f"{value} is negative; use 0 (whole image) or a tile size in pixels")
    return value


Tile = Annotated[
    Optional[int],
    typer.Option(
        "--tile",
        callback=_check_tile,
        help="Tile size in input pixels (raised to the model's smallest tile); 0 = whole image; default: automatic from memory.",
    ),
]
TileOverlap = Annotated[int, typer.Option("--tile-overlap", min=0, help="Overlap between tiles in input pixels.")]
Recursive = Annotated[
    bool, typer.Option("--recursive", "-r", help="Descend into sub-folders (mirrored in the output).")
]
Suffix = Annotated[
    Optional[str], typer.Option("--suffix", help="Added to output names written next to the input (default _TASK).")
]
Ext = Annotated[Optional[str], typer.Option("--ext", help=f"Output format ({OUTPUT_FORMATS}); default: the input's.")]
Quality = Annotated[int, typer.Option("--quality", min=1, max=100, help="Quality of lossy outputs.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo images whose output already exists.")]
Shard = Annotated[
    Optional[str], typer.Option("--shard", help="I/N: process only the I-th of N disjoint parts (0-based).")
]
Devices = Annotated[Optional[str], typer.Option("--devices", help="Comma-separated GPUs, one worker each, e.g. 0,1.")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON report (one record per file) on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]
HtmlReport = Annotated[
    Optional[Path],
    typer.Option(
        "--report",
        help="Also write one self-contained HTML page of the run to PATH.html (thumbnails in PATH_files/): each input beside its output, status, time and settings.",
        metavar="PATH.html",
    ),
]
Resize = Annotated[
    Optional[int],
    typer.Option(
        "--resize", min=1, help="RDDM models only: resize inputs to SIZE x SIZE first (the paper's protocol: 256)."
    ),
]
Exposure = Annotated[
    Optional[float],
    typer.Option(
        "--exposure",
        min=-4.0,
        max=4.0,
        metavar="STOPS",
        help="Brighter (+) or darker (-) than the model's own choice, in stops (e.g. +1 doubles the light).",
    ),
]


def print_error(text: str) -> None:
    """`error: WHAT; WHAT TO DO` as one line on stderr (never wrapped, never read as markup)."""
    from rich.text import Text

    from ..io.printable import printable

    line = printable(" ".join(str(text).split()))
    err_console.print(Text.assemble(("error:", "bold red"), " " + line), highlight=False, soft_wrap=True)


def parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise UsageError(f"--shard {value} is not I/N", "e.g. --shard 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {value}: need 0 <= I < N", "e.g. --shard 0/4 ... --shard 3/4")
    return i, n


def parse_devices(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = []
    for item in value.split(","):
        item = item.strip()
        out.append(f"cuda:{item}" if item.isdigit() else item)
    return out


def parse_params(values: list[str] | None) -> dict[str, object]:
    """KEY=VALUE pairs; values become int, float or str (in that order of preference)."""
    out: dict[str, object] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item} is not KEY=VALUE", "e.g. --param density=0.01")
        value: object = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                pass
        out[key.strip()] = value
    return out
