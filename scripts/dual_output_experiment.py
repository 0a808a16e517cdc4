"""Does DDO's gated dual output help residual diffusion? Same data, same budget, 1 / 2 / 5 steps.

Trains two RDDM deraining models that differ only in the objective: plain
`pred_res_noise` (two UNets) and the same plus the gate head (`--dual-output`:
the noise UNet emits one extra channel, a gate logit that mixes the two
clean-image estimates; see restorecli.engines.rddm.schedule.gated_x0). Both use the same seed,
so they see identical crops, rain, timesteps and noise. Each EMA model is then
scored on the held-out synthetic-rain pairs at 1, 2 and 5 sampling steps, the
gated one both with and without its gate (to separate the gate from any
change the extra loss term made to the heads). Results go to a JSON file and a
Markdown table on stdout.

    PYTHONPATH=src python scripts/dual_output_experiment.py --out runs/dual --iters 600
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from restorecli.engines.rddm.schedule import linear_schedule
from restorecli.training.config import TrainConfig, model_spec
from restorecli.training.loop import build_nets, train
from restorecli.training.validate import build_data, input_scores, validate

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CLEAN = [
    DATA / "denoise" / "CBSD68",
    DATA / "denoise" / "Kodak24",
    DATA / "denoise" / "McMaster",
    DATA / "sr" / "Set14" / "HR",
    DATA / "sr" / "Val_SR" / "gt",
    DATA / "sr" / "ImageNet-val-x4" / "gt",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--dim-mults", default="1,2,4")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-count", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    for variant, dual in (("plain", False), ("gated", True)):
        cfg = TrainConfig(
            name=f"dual-exp-{variant}",
            task="derain",
            objective="pred_res_noise",
            dual_output=dual,
            dim=args.dim,
            dim_mults=tuple(int(m) for m in args.dim_mults.split(",")),
            batch_size=args.batch_size,
            iters=args.iters,
            crop=args.crop,
            lr=4e-4,
            lr_min=4e-5,
            ema_decay=0.995,
            steps=5,
            seed=args.seed,
            degradation="rain",
            held_out=0.1,
            val_every=0,
            save_every=0,
            val_size=128,
            val_count=args.val_count,
            clean=[str(c) for c in CLEAN],
        )
        start = time.monotonic()
        result = train(cfg, args.out / variant, log=print)
        spent = time.monotonic() - start
        _, val_pairs = build_data(cfg)
        nets = {k: v for k, v in _load_ema(result.bundle, cfg).items()}
        sched = linear_schedule(cfg.timesteps, cfg.sum_scale)
        row: dict[str, dict] = {"baseline": input_scores(val_pairs), "seconds": spent}
        for steps in (1, 2, 5):
            row[f"steps{steps}"] = validate(nets, cfg, sched, val_pairs, torch.device("cpu"), steps=steps)
            if dual:
                row[f"steps{steps}_nogate"] = validate(
                    nets, cfg, sched, val_pairs, torch.device("cpu"), steps=steps, use_gate=False
                )
        results[variant] = row
        print(variant, json.dumps(row, indent=1))
    (args.out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)
    )
    print(table(results))


def _load_ema(bundle: Path, cfg: TrainConfig) -> dict[str, torch.nn.Module]:
    from safetensors.torch import load_file

    spec = model_spec(cfg)
    nets = build_nets(spec, torch.device("cpu"))
    tensors = load_file(str(bundle))
    for name, net in nets.items():
        net.load_state_dict({k[len(name) + 1 :]: v.float() for k, v in tensors.items() if k.startswith(name + ".")})
        net.eval()
    return nets


def table(results: dict[str, dict]) -> str:
    base = results["plain"]["baseline"]
    lines = [
        "| model | 1 step | 2 steps | 5 steps |",
        "|---|---|---|---|",
        f"| rainy input | {base['psnr_y']:.2f} / {base['ssim_y']:.4f} | | |",
    ]
    for label, key, suffix in (
        ("plain RDDM (res + noise)", "plain", ""),
        ("gated (DDO mix)", "gated", ""),
        ("gated model, gate off", "gated", "_nogate"),
    ):
        cells = [
            f"{results[key][f'steps{s}{suffix}']['psnr_y']:.2f} / {results[key][f'steps{s}{suffix}']['ssim_y']:.4f}"
            for s in (1, 2, 5)
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
