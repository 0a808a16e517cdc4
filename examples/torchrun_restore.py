"""Restore a folder with torchrun: every rank takes its shard of the files and its local device.

This is docs/batch.md "Cluster recipe 2" as a runnable file. Rank R of W restores the files
whose relative path hashes to R modulo W (`shard=(RANK, WORLD_SIZE)`, the same split as
`restore --shard R/W`), so the ranks together cover the folder exactly once and a rerun
resumes. With CUDA each rank uses `cuda:LOCAL_RANK`; without, the CPU. The process group
(NCCL on GPUs, gloo on CPU) is used only to gather the per-file records at the end, so
every rank exits with the job's exit code and rank 0 prints the summary (and `--json`).

    # 4 machines x 8 GPUs
    torchrun --nnodes=4 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29400 \
        examples/torchrun_restore.py /data/photos /data/restored --task sr --steps 4 -r

    # this machine, CPU, 2 processes
    python -m torch.distributed.run --nproc_per_node 2 examples/torchrun_restore.py \
        photos/ restored/ --task derain

Also runs as a plain `python examples/torchrun_restore.py ...` (one rank).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", help="folder (or glob, or @list.txt) of images")
    p.add_argument("output", type=Path, help="output folder (the input tree is mirrored)")
    p.add_argument("--task", default="sr", help="sr, derain, deblur, lowlight, face, ... (default: sr)")
    p.add_argument("--model", "-m", default=None, help="registered model (default: the task's default)")
    p.add_argument(
        "--weights", "-w", action="append", default=None, help="a bundle .safetensors, or COMPONENT=PATH (repeatable)"
    )
    p.add_argument("--steps", "-s", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the model's)")
    p.add_argument(
        "--device", "-d", default="auto", help="auto (cuda:LOCAL_RANK when CUDA is available, else cpu), cpu or cuda:N"
    )
    p.add_argument("--precision", "-p", default="auto", help="auto, fp32, fp16, bf16 (default: auto)")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    p.add_argument("--batch-size", "-b", type=int, default=1, help="same-size images per engine call")
    p.add_argument("--overwrite", action="store_true", help="redo files whose output exists")
    p.add_argument("--json", action="store_true", help="rank 0 prints every file's record as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="only failures and errors on stderr")
    return p.parse_args(argv)


def pick_device(choice: str, local_rank: int) -> str:
    import torch

    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import torch.distributed as dist

    import restorecli

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(args.device, local_rank)
    distributed = world > 1 and "MASTER_ADDR" in os.environ
    if distributed:
        on_gpu = device.startswith("cuda")
        if on_gpu:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if on_gpu else "gloo", timeout=datetime.timedelta(hours=2))
    try:
        report = restorecli.restore(
            args.input,
            str(args.output),
            task=args.task,
            model=args.model,
            weights=args.weights,
            steps=args.steps,
            seed=args.seed,
            device=device,
            precision=args.precision,
            recursive=args.recursive,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            shard=(rank, world),
            quiet=args.quiet,
        )
        records = [
            {
                "path": r.path,
                "output": r.output,
                "status": r.status,
                "reason": r.reason,
                "seconds": round(r.seconds, 3),
                "warnings": r.warnings,
                "rank": rank,
                "device": device,
            }
            for r in report.records
        ]
        per_rank = [records]
        if distributed:
            per_rank = [None] * world
            dist.all_gather_object(per_rank, records)  # small: a few fields per file
    finally:
        if distributed:
            dist.destroy_process_group()

    files = sorted((r for part in per_rank for r in part), key=lambda r: r["path"])
    counts = {s: sum(r["status"] == s for r in files) for s in ("done", "skipped", "failed")}
    if rank == 0:
        if args.json:
            print(json.dumps({"task": args.task, "ranks": world, **counts, "files": files}, indent=1))
        if not args.quiet or counts["failed"]:
            print(
                f"all ranks: {counts['done']} restored, {counts['skipped']} skipped, "
                f"{counts['failed']} failed ({world} rank(s))",
                file=sys.stderr,
            )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
