"""Score the shipped deraining / low-light models the way docs/training.md reports them, through the real CLI.

derain:
  1. Rain100L training pairs that `restore train` held out (name hash, fraction 0.1): real rain, never trained on.
  2. The three Rain100L *test* pairs in ../shared/data/derain/Rain100L-sample (never used for training or tuning).
  Targets: mean gain >= +5 dB PSNR-Y on each set, and no image worse than its input.
  3. Synthetic rain on Kodak24 (never trained on), made with `restore degrade rain`: the full parameter range
     (seed 11) and heavy refracting streaks like the Rain100L test samples' (seed 12, blend=refract, length=45).
  4. Rain-free photos (Kodak24): PSNR of the output against its own input (a clear photo must stay as it is).
lowlight:
  1. LOL eval15 (`LOL/test/{low,normal}`, --lol folder): reporting only, never used for training or tuning.
  2. LOL training pairs held out by name hash.
  3. Well-exposed photos (Kodak24 and the FiveK sample in ../shared/data/io): PSNR of the output against
     its own input, which should stay >= 30 dB (a low-light model must not wreck a normal photo).
  Every set also reports the grid measure of its outputs (restorecli.quality.grid; photos score about 1).
  The LOL-eval-low inputs of ../shared/data/lowlight (no ground truth) are restored for looking at.

    PYTHONPATH=src python scripts/eval_shipped.py --task derain --work /tmp/eval-derain [--weights B.safetensors]
    PYTHONPATH=src python scripts/eval_shipped.py --task lowlight --work /tmp/eval-ll --lol /path/to/LOL/dataset
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from restorecli.quality.evaluate import evaluate_pairs, read_rgb8
from restorecli.quality.grid import grid_score
from restorecli.training.datasets import is_held_out

DATA = Path(os.environ.get("RESTORECLI_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")) / "data"


REFRACT = ["-P", "blend=refract", "-P", "length=45"]


def cli(*args: str) -> None:
    print("$ restore " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "restorecli", *args], check=True)


def held_out_copy(inputs: Path, targets: Path, dest: Path) -> tuple[Path, Path]:
    """Copy the held-out pairs (same name-hash rule as `restore train`, fraction 0.1) into dest/{input,target}."""
    for sub in ("input", "target"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for path in sorted(inputs.iterdir()):
        if is_held_out(path.name, 0.1):
            shutil.copy(path, dest / "input" / path.name)
            shutil.copy(targets / path.name, dest / "target" / path.name)
    return dest / "input", dest / "target"


def score(label: str, task: str, inputs: Path, refs: Path, work: Path, extra: list[str]) -> dict:
    out = work / "out" / label.replace(" ", "_")
    if out.exists():
        shutil.rmtree(out)
    cli(task, str(inputs), str(out), "--device", "cpu", "--quiet", *extra)
    before, after = evaluate_pairs(inputs, refs), evaluate_pairs(out, refs)
    base = {f["name"]: f for f in before.files}
    gains = {f["name"]: f["psnr_y"] - base[f["name"]]["psnr_y"] for f in after.files if f["name"] in base}
    identity = inputs == refs  # well-exposed photos scored against themselves: input PSNR is infinite
    grids = [grid_score(read_rgb8(p)) for p in sorted(out.iterdir()) if p.suffix.lower() in (".png", ".jpg")]
    return {
        "grid_median": float(sorted(grids)[len(grids) // 2]),
        "grid_max": max(grids),
        "label": label,
        "count": len(after.files),
        "input": before.mean,
        "restored": after.mean,
        "worst_gain_y": None if identity or not gains else min(gains.values()),
        "gains_y": {} if identity else gains,
        "per_file_psnr": {f["name"]: f["psnr_rgb"] for f in after.files},
        "worst_psnr_rgb": min(f["psnr_rgb"] for f in after.files),
    }


def real_looks(folder: Path, count: int, work: Path, extra: list[str]) -> None:
    """Real rainy photos have no reference: restore a few with an HTML report (before/after) to look at."""
    picked = work / "real_input"
    if picked.exists():
        shutil.rmtree(picked)
    picked.mkdir(parents=True)
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    for path in photos:
        shutil.copy(path, picked / path.name)
    out = work / "out" / "real"
    if out.exists():
        shutil.rmtree(out)
    cli(
        "derain",
        str(picked),
        str(out),
        "--device",
        "cpu",
        "--quiet",
        "--report",
        str(work / "real_report.html"),
        *extra,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("derain", "lowlight"), default="derain")
    ap.add_argument("--work", type=Path, required=True, help="Scratch folder for the pairs and outputs.")
    ap.add_argument(
        "--lol", type=Path, default=None, help="LOL dataset folder holding train/{low,normal} and test/{low,normal}."
    )
    ap.add_argument("--weights", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument(
        "--real",
        type=Path,
        default=None,
        help="derain: a folder of real rainy photos (no ground truth) to restore into WORK/out/real with an HTML "
        "--report, for looking at; its first --real-count photos by name.",
    )
    ap.add_argument("--real-count", type=int, default=12)
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    extra = (["--weights", args.weights] if args.weights else []) + (["--steps", str(args.steps)] if args.steps else [])
    results = []
    if args.task == "derain":
        rain = DATA / "train" / "Rain100L-train"
        results.append(
            score(
                "Rain100L held-out train pairs",
                "derain",
                *held_out_copy(rain / "input", rain / "target", work / "heldout"),
                work,
                extra,
            )
        )
        sample = DATA / "derain" / "Rain100L-sample"
        results.append(score("Rain100L test sample", "derain", sample / "input", sample / "target", work, extra))
        kodak = DATA / "denoise" / "Kodak24"
        for label, seed, params in (("Kodak24 synthetic rain", 11, []), ("Kodak24 refracting rain", 12, REFRACT)):
            rainy = work / label.replace(" ", "_")
            if rainy.exists():  # made anew each run, like the outputs: a half-written set must not be scored
                shutil.rmtree(rainy)
            cli("degrade", "rain", str(kodak), str(rainy), "--seed", str(seed), "--quiet", *params)
            results.append(score(label, "derain", rainy, kodak, work, extra))
        # a photo without rain must come back nearly unchanged (no veil removed that is not there)
        results.append(score("rain-free photos (output vs input)", "derain", kodak, kodak, work, extra))
        if args.real is not None:
            real_looks(args.real, args.real_count, work, extra)
    else:
        if args.lol is not None:
            results.append(
                score("LOL eval15", "lowlight", args.lol / "test" / "low", args.lol / "test" / "normal", work, extra)
            )
            results.append(
                score(
                    "LOL held-out train pairs",
                    "lowlight",
                    *held_out_copy(args.lol / "train" / "low", args.lol / "train" / "normal", work / "heldout"),
                    work,
                    extra,
                )
            )
        exposed = work / "well-exposed"
        exposed.mkdir(exist_ok=True)
        for path in sorted((DATA / "denoise" / "Kodak24").iterdir()):
            shutil.copy(path, exposed / path.name)
        shutil.copy(DATA / "io" / "low-light-FiveK-a4501-DSC_0354.jpg", exposed)
        results.append(score("well-exposed photos (output vs input)", "lowlight", exposed, exposed, work, extra))
        cli(
            "lowlight",
            str(DATA / "lowlight" / "LOL-eval-low"),
            str(work / "out" / "LOL-eval-low"),
            "--device",
            "cpu",
            "--quiet",
            "--overwrite",
            *extra,
        )
    (work / "summary.json").write_text(json.dumps(results, indent=1))
    print(
        "| set | input PSNR-Y / PSNR (RGB) | restored PSNR-Y / SSIM-Y | restored PSNR / SSIM (RGB) | gain Y "
        "| worst gain Y | grid median / max |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        b, a = r["input"], r["restored"]
        gain = "-" if r["worst_gain_y"] is None else f"{a['psnr_y'] - b['psnr_y']:+.2f}"
        worst = f"worst RGB {r['worst_psnr_rgb']:.2f}" if r["worst_gain_y"] is None else f"{r['worst_gain_y']:+.2f}"
        print(
            f"| {r['label']} ({r['count']}) | {b['psnr_y']:.2f} / {b['psnr_rgb']:.2f} | {a['psnr_y']:.2f} / "
            f"{a['ssim_y']:.4f} | {a['psnr_rgb']:.2f} / {a['ssim_rgb']:.4f} | {gain} | {worst} "
            f"| {r['grid_median']:.2f} / {r['grid_max']:.2f} |"
        )
    for r in results:
        if r["label"] == "Rain100L test sample":  # the per-sample bar
            print("Rain100L samples, gain Y: " + ", ".join(f"{k} {v:+.2f}" for k, v in sorted(r["gains_y"].items())))


if __name__ == "__main__":
    main()
