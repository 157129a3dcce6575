"""``rfengine publish OUT DEST``: a Hub-ready dataset folder with its card; ``--push``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="write an output as a Hub-ready dataset (Parquet shards and a dataset card)",
        description="From an aggregation output OUT, write DEST: data/train-0000N-of-0000M."
        "parquet (images embedded; datasets.load_dataset(DEST) reads it with no other "
        "argument), README.md (the dataset card, generated from the output) and figures/. "
        "--push also uploads DEST to the Hugging Face Hub.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="an rfengine aggregate output")
    p.add_argument("dest", type=Path, metavar="DEST", help="the folder to write")
    p.add_argument(
        "--max-shard-size",
        default="500MB",
        help="largest Parquet file, as datasets' max_shard_size (500MB, 200KB; default 500MB)",
    )
    p.add_argument(
        "--license",
        default="other",
        help="the card's license id (e.g. cc-by-4.0, apache-2.0; default other)",
    )
    p.add_argument("--pretty-name", help="the card's title (default: OUT's folder name)")
    p.add_argument("--examples", type=int, default=3, help="example panels in the card (default 3)")
    p.add_argument(
        "--campaign", type=Path, help="the campaign file: the card says how it was collected"
    )
    p.add_argument(
        "--push",
        metavar="ORG/NAME",
        help="upload DEST to this Hub dataset repository (token: HF_TOKEN or hf auth login)",
    )
    p.add_argument("--private", action="store_true", help="with --push: a private repository")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing DEST, only one rfengine publish wrote",
    )
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    from rfengine.publish import publish_output

    summary = publish_output(
        args.out,
        args.dest,
        max_shard_size=args.max_shard_size,
        license=args.license,
        pretty_name=args.pretty_name,
        examples=args.examples,
        campaign=args.campaign,
        repo_id=args.push,
        overwrite=args.overwrite,
    )
    print(
        f"rfengine: {summary['rows']} rows in {len(summary['shards'])} shard(s), card and "
        f"{len(summary['histograms']) + len(summary['examples'])} figures -> {args.dest}",
        file=sys.stderr,
    )
    if args.push:
        from rfengine.publish.hub import push

        url = push(args.dest, args.push, private=args.private)
        print(f"rfengine: pushed -> {url}", file=sys.stderr)
    return 0
