"""CPU time per megapixel of the shipped models in a folder run, as docs/performance.md reports it.

Makes a folder of photo-sized inputs (Kodak24 images resized to --size, written as PNG in
--work), runs `restore TASK FOLDER OUT --json` through the real CLI, and divides the
per-file times of the JSON report (decode + restore + encode and write; model loading
and process start excluded) by the megapixels.

    PYTHONPATH=src python scripts/bench_shipped.py --task derain --work /tmp/bench --count 4 --size 1536x1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

DATA = Path(os.environ.get("RESTORECLI_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="derain")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--size", default="1536x1024", help="WIDTHxHEIGHT of each input")
    ap.add_argument("--extra", default="", help="more CLI options, e.g. '--tile 512'")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    inputs = args.work / f"in-{args.size}"
    inputs.mkdir(parents=True, exist_ok=True)
    sources = sorted((DATA / "denoise" / "Kodak24").iterdir())[: args.count]
    for src in sources:
        Image.open(src).convert("RGB").resize((width, height), Image.BICUBIC).save(inputs / f"{src.stem}.png")
    out = args.work / f"out-{args.task}-{args.size}"
    cmd = [
        sys.executable,
        "-m",
        "restorecli",
        args.task,
        str(inputs),
        str(out),
        "--json",
        "--overwrite",
        "--quiet",
        *args.extra.split(),
    ]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    seconds = sum(f["seconds"] for f in report["files"] if f["status"] == "done")
    megapixels = report["done"] * width * height / 1e6
    print(
        json.dumps(
            {
                "task": args.task,
                "images": report["done"],
                "size": args.size,
                "seconds": round(seconds, 2),
                "megapixels": round(megapixels, 2),
                "s_per_mp": round(seconds / megapixels, 3),
                "job_seconds": report["seconds"],
            }
        )
    )


if __name__ == "__main__":
    main()
