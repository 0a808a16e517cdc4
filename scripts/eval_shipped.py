"""Score a shipped (or candidate) deraining / low-light model the way docs/training.md reports it, through the real CLI.

1. Held-out synthetic degradation: the clean files that `restore train` held out
   (same name-hash split, fraction 0.1) from the bundled models' training folders,
   whole images, degraded with `restore degrade rain|lowlight --seed 1234`.
2. For deraining, the Rain100L sample pairs in ../shared/data/derain/Rain100L-sample
   (real benchmark rain, never seen in training). For low light, the LOL inputs in
   ../shared/data/lowlight/LOL-eval-low have no ground truth: they are restored
   into WORK/out/LOL for looking at, not scored.

For each set it runs `restore TASK INPUTS OUT` (with --weights if given, else
the task's default model) and `restore eval`, and prints a Markdown table of
PSNR/SSIM (Y channel and RGB) for the inputs and the outputs.

    PYTHONPATH=src python scripts/eval_shipped.py --task derain --work /tmp/derain-eval [--weights B.safetensors] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from restorecli.quality.evaluate import evaluate_pairs
from restorecli.training.datasets import collect_images, split_files

DATA = Path(os.environ.get("RESTORECLI_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "data"
DEGRADATION = {"derain": "rain", "lowlight": "lowlight"}
TRAIN_FOLDERS = [
    "denoise/CBSD68",
    "denoise/Kodak24",
    "denoise/McMaster",
    "sr/Set5/HR",
    "sr/Set14/HR",
    "sr/Val_SR/gt",
    "sr/ImageNet-val-x4/gt",
]


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "restorecli", *args]
    print("$ restore " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(DEGRADATION), default="derain")
    ap.add_argument("--work", type=Path, required=True, help="Scratch folder for the pairs and outputs.")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    work = args.work
    clean_dir = work / "heldout" / "clean"
    if clean_dir.exists():
        shutil.rmtree(work / "heldout")
    clean_dir.mkdir(parents=True)
    _, held = split_files(collect_images([DATA / f for f in TRAIN_FOLDERS]), 0.1)
    for path in held:  # held-out names are unique across the folders used
        shutil.copy(path, clean_dir / f"{path.parent.name}_{path.stem}{path.suffix}")
    degraded = work / "heldout" / "degraded"
    cli("degrade", DEGRADATION[args.task], str(clean_dir), str(degraded), "--seed", str(args.seed), "--quiet")

    extra = (["--weights", args.weights] if args.weights else []) + (["--steps", str(args.steps)] if args.steps else [])
    sets = {f"held-out synthetic {DEGRADATION[args.task]}": (degraded, clean_dir)}
    if args.task == "derain":
        sets["Rain100L sample"] = (
            DATA / "derain" / "Rain100L-sample" / "input",
            DATA / "derain" / "Rain100L-sample" / "target",
        )
    else:  # no ground truth: restored for looking at only
        cli(
            args.task,
            str(DATA / "lowlight" / "LOL-eval-low"),
            str(work / "out" / "LOL"),
            "--device",
            "cpu",
            "--quiet",
            "--overwrite",
            *extra,
        )
    rows = []
    summary = {}
    for label, (inputs, clean) in sets.items():
        out = work / "out" / label.replace(" ", "_")
        if out.exists():
            shutil.rmtree(out)
        cli(args.task, str(inputs), str(out), "--device", "cpu", "--quiet", *extra)
        before = evaluate_pairs(inputs, clean)
        after = evaluate_pairs(out, clean)
        summary[label] = {"count": len(after.files), "input": before.mean, "restored": after.mean, "files": after.files}
        b, a = before.mean, after.mean
        rows.append(
            f"| {label} ({len(after.files)}) | {b['psnr_y']:.2f} / {b['ssim_y']:.4f} | "
            f"{a['psnr_y']:.2f} / {a['ssim_y']:.4f} | {a['psnr_y'] - b['psnr_y']:+.2f} | "
            f"{b['psnr_rgb']:.2f} / {b['ssim_rgb']:.4f} | {a['psnr_rgb']:.2f} / {a['ssim_rgb']:.4f} |"
        )
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        "| set | input PSNR-Y / SSIM-Y | restored PSNR-Y / SSIM-Y | gain (dB) | input PSNR / SSIM (RGB) | restored PSNR / SSIM (RGB) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
