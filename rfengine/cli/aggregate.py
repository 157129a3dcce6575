"""``rfengine aggregate``: options parsed once (``rfengine.options``), then aggregated to disk."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import get_args

from rfengine.cli.common import UsageError, add_images_columns, image_columns, typed
from rfengine.options import (
    DEFAULT_BUDGET,
    DTYPES,
    OUTPUTS,
    AggregateOptions,
    Engine,
    OnError,
    Preset,
    Prior,
    Weights,
    parse_bytes,
    parse_heatmap_size,
    parse_outputs,
)


def add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "aggregate",
        help="aggregate responses into scores, word scores and heatmaps",
        description="Aggregate responses (interchange format) into OUT/dataset (Hugging Face), "
        "OUT/targets (safetensors) and OUT/manifest.json.",
    )
    p.add_argument(
        "--images",
        required=True,
        help="images table (JSONL, CSV, Parquet), or a dataset: a save_to_disk folder, a "
        "folder of Parquet files, hf://datasets/ORG/NAME (see the column options below)",
    )
    p.add_argument(
        "--responses", required=True, nargs="+", type=Path, metavar="RESP", help="responses files"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (written atomically)")
    p.add_argument(
        "--preset",
        choices=get_args(Preset),
        default="default",
        help="heatmap definition: default (exact Gaussians, any size) or rapidata-2025 (the "
        "published dataset's method, native size); default 'default'",
    )
    p.add_argument(
        "--heatmap-size",
        type=typed(parse_heatmap_size),
        default=None,
        help="'native' (default) or HxW, e.g. 512x512",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the kernels run; default auto (CUDA when torch sees a GPU)",
    )
    p.add_argument(
        "--dtype",
        default="float16",
        choices=list(DTYPES),
        help="heatmap dtype in the outputs; default float16 (as published)",
    )
    p.add_argument(
        "--on-error",
        default="fail",
        choices=get_args(OnError),
        help="fail on the first bad row (default) or skip bad rows into OUT/rejected.jsonl",
    )
    p.add_argument(
        "--weights",
        default="trust",
        choices=get_args(Weights),
        help="use each response's trust weight (default), weigh all responses equally, or "
        "estimate each annotator's trust from their agreement with the others "
        "(writes OUT/annotators.parquet)",
    )
    p.add_argument(
        "--prior",
        default="trust",
        choices=get_args(Prior),
        help="with --weights estimate: start from the given weights (default) or from 1.0",
    )
    p.add_argument(
        "--reliability",
        action="store_true",
        help="also compute each heatmap's split-half reliability per image (two more splats)",
    )
    p.add_argument(
        "--memory-budget",
        type=typed(parse_bytes),
        default=DEFAULT_BUDGET,
        help="memory for a partition's work (e.g. 1GB); sets partition and batch sizes, so "
        "peak memory follows it, not the input size",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT, if it is an rfengine output and holds nothing else",
    )
    p.add_argument(
        "--outputs",
        type=typed(parse_outputs),
        default=OUTPUTS,
        help="what to write: dataset,targets (default both), or one of them",
    )
    p.add_argument(
        "--dataset-heatmaps",
        choices=["yes", "no"],
        default="yes",
        help="'no' leaves the heatmap columns out of the dataset (train from the targets)",
    )
    p.add_argument(
        "--region-sigma",
        type=float,
        default=0.0,
        help="soften region heatmaps' edges by a Gaussian of this fraction of the smaller "
        "side (default 0: none, each value the trusted share of annotators who marked it)",
    )
    p.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="let the images table name files outside its own folder (refused by default)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished stages of an interrupted run with the same inputs and options",
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="run on this machine (default) or on Ray (pip install 'rfengine[ray]'): a local "
        "Ray runtime, or the cluster at --ray-address; the outputs are identical",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: the cluster to join (e.g. auto, or ray://head:10001)",
    )
    p.add_argument(
        "--gpus-per-task",
        type=float,
        default=0.0,
        help="with --engine ray: GPUs each partition task requests (default 0: CPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_images_columns(p)
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args: argparse.Namespace) -> int:
    from rfengine.ingest import read_images
    from rfengine.ingest.sources import is_dataset
    from rfengine.run.pipeline import aggregate_to_disk

    t0 = time.perf_counter()
    try:
        options = AggregateOptions.create(
            preset=args.preset,
            heatmap_size=args.heatmap_size,
            device=args.device,
            dtype=args.dtype,
            on_error=args.on_error,
            weights=args.weights,
            prior=args.prior,
            reliability=args.reliability,
            memory_budget=args.memory_budget,
            outputs=args.outputs,
            dataset_heatmaps=args.dataset_heatmaps == "yes",
            region_sigma=args.region_sigma,
        )
        engine = Engine.create(args.engine, args.ray_address, args.gpus_per_task)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    images = args.images
    if is_dataset(images):  # its columns named by the options
        images = read_images(
            images, allow_outside_paths=args.allow_outside_paths, columns=image_columns(args)
        )
    manifest = aggregate_to_disk(
        images,
        args.responses,
        args.out,
        options,
        overwrite=args.overwrite,
        allow_outside_paths=args.allow_outside_paths,
        resume=args.resume,
        progress=not args.quiet,
        engine=engine,
    )
    c = manifest["counts"]
    if not args.quiet:
        print(
            f"rfengine: {c['images']} images, {c['rows_read']} rows read ({c['rows_used']} used, "
            f"{c['rows_rejected']} rejected) -> {args.out} in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0
