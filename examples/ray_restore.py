"""Restore a folder of images with Ray Data: one actor per worker, each loading the model once.

This is docs/batch.md "Cluster recipe 1" as a runnable file. Each actor runs restorecli's full
file pipeline (16-bit, alpha, ICC, atomic writes, skip-existing) on batches of file paths and
mirrors the folder tree into OUTPUT, so rerunning the job resumes it. Needs
`pip install "restorecli[ray]"`.

    # a Ray cluster with GPUs (RAY_ADDRESS or --address): 16 actors, one GPU each
    python examples/ray_restore.py /data/photos /data/restored --task sr \
        --model resshift-realsr-x4-v3 --steps 4 --recursive --actors 16

    # on this machine, CPU only: a local Ray instance with 2 CPUs, 2 actors
    python examples/ray_restore.py photos/ restored/ --task derain --num-cpus 2 --actors 2

Prints one line per failed file and a summary on stderr (`--json`: every file's record on
stdout); exits 1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

# The formats restorecli's folder scan picks up (docs/batch.md, "Formats").
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".tif", ".tiff", ".bmp"}


def list_images(root: Path, *, recursive: bool, exclude: Path | None = None) -> list[str]:
    """Image files below root, sorted; hidden files and folders (and an output folder inside root) left out."""
    found = []
    skip = exclude.resolve() if exclude is not None else None
    for here, dirs, files in os.walk(root):
        dirs[:] = (
            sorted(d for d in dirs if not d.startswith(".") and (Path(here) / d).resolve() != skip) if recursive else []
        )
        found += [str(Path(here) / f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTS]
    return sorted(found)


def from_items(items: list[dict], blocks: int):
    """ray.data.from_items in `blocks` blocks (the keyword is `parallelism` before Ray 2.10)."""
    import inspect

    import ray.data

    key = (
        "override_num_blocks"
        if "override_num_blocks" in inspect.signature(ray.data.from_items).parameters
        else "parallelism"
    )
    return ray.data.from_items(items, **{key: max(1, min(blocks, len(items)))})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", type=Path, help="folder of images")
    p.add_argument("output", type=Path, help="output folder (the input tree is mirrored)")
    p.add_argument("--task", default="sr", help="sr, derain, deblur, lowlight, face, ... (default: sr)")
    p.add_argument("--model", "-m", default=None, help="registered model (default: the task's default)")
    p.add_argument(
        "--weights", "-w", action="append", default=None, help="a bundle .safetensors, or COMPONENT=PATH (repeatable)"
    )
    p.add_argument("--steps", "-s", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the model's)")
    p.add_argument("--device", "-d", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--precision", "-p", default="auto", help="auto, fp32, fp16, bf16 (default: auto)")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    p.add_argument("--batch-size", "-b", type=int, default=1, help="same-size images per engine call")
    p.add_argument("--paths-per-call", type=int, default=32, help="file paths handed to an actor at a time")
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="number of actors (default: one per GPU of the cluster, else one per 2 CPUs)",
    )
    p.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="GPUs per actor (default: 1 when the cluster has GPUs and --device is not cpu, else 0)",
    )
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs per actor (default: 1)")
    p.add_argument(
        "--address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a new local instance)"
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local instance (default: all)")
    p.add_argument("--overwrite", action="store_true", help="redo files whose output exists")
    p.add_argument("--json", action="store_true", help="print every file's record as JSON on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="only failures and errors on stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import ray
    except ImportError:
        print('ray is not installed: pip install "restorecli[ray]"', file=sys.stderr)
        return 2
    import numpy as np

    from restorecli import FileBatchRestorer

    class Restorer(FileBatchRestorer):
        """restorecli's FileBatchRestorer, plus a "worker" column (host:pid) to see how the work spread."""

        def __call__(self, batch):
            out = super().__call__(batch)
            out["worker"] = np.array([f"{socket.gethostname()}:{os.getpid()}"] * len(out["path"]), dtype=object)
            return out

    if not args.input.is_dir():
        print(f"{args.input} is not a folder", file=sys.stderr)
        return 2
    paths = list_images(args.input, recursive=args.recursive, exclude=args.output)
    if not paths:
        print(f"warning: no images in {args.input}", file=sys.stderr)
        return 0

    address = args.address or os.environ.get("RAY_ADDRESS")
    init = dict(
        include_dashboard=False,
        log_to_driver=not args.quiet,
        logging_level=logging.WARNING if args.quiet else logging.INFO,
    )
    if address:
        ray.init(address=address, **init)
    else:
        ray.init(num_cpus=args.num_cpus, **init)
    try:
        ctx = ray.data.DataContext.get_current()
        if args.quiet:
            ctx.enable_progress_bars = False
            if hasattr(ctx, "print_on_execution_start"):
                ctx.print_on_execution_start = False
        cluster = ray.cluster_resources()
        gpus = args.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if cluster.get("GPU", 0) >= 1 and args.device != "cpu" else 0.0
        actors = args.actors
        if actors is None:
            actors = int(cluster.get("GPU", 0) // gpus) if gpus else max(1, int(cluster.get("CPU", 1) // 2))
        actors = max(1, min(actors, len(paths)))
        # Ray hides the GPUs from actors that asked for none, so "auto" then means the CPU
        device = args.device if gpus else ("cpu" if args.device == "auto" else args.device)

        # one block per call's worth of paths, so the work spreads over all actors. Made by
        # from_items itself: a repartition() task would wait for a CPU that the actors hold.
        blocks = -(-len(paths) // args.paths_per_call)
        ds = from_items([{"path": p} for p in paths], blocks)
        results = ds.map_batches(
            Restorer,
            fn_constructor_kwargs=dict(
                output=str(args.output),
                input_root=str(args.input),
                task=args.task,
                model=args.model,
                weights=args.weights,
                device=device,
                precision=args.precision,
                steps=args.steps,
                seed=args.seed,
                batch_size=args.batch_size,
                overwrite=args.overwrite,
            ),
            batch_size=args.paths_per_call,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus,
            num_cpus=args.cpus_per_actor,
            batch_format="numpy",
        )
        records = [
            {
                "path": str(r["path"]),
                "output": str(r["output"]) or None,
                "status": str(r["status"]),
                "reason": str(r["reason"]) or None,
                "worker": str(r["worker"]),
            }
            for r in results.iter_rows()
        ]
    finally:
        ray.shutdown()

    records.sort(key=lambda r: r["path"])
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "skipped", "failed")}
    for r in records:
        if r["status"] == "failed":
            print(f"failed: {r['path']}: {r['reason']}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "task": args.task,
                    "device": device,
                    "actors": actors,
                    "gpus_per_actor": gpus,
                    **counts,
                    "files": records,
                },
                indent=1,
            )
        )
    if not args.quiet or counts["failed"]:
        print(
            f"{counts['done']} restored, {counts['skipped']} skipped, {counts['failed']} failed "
            f"({actors} actor(s), {gpus:g} GPU each)",
            file=sys.stderr,
        )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
