"""Helpers shared by the command modules: argparse types, usage errors, JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=``: the parser's ValueError becomes a usage error (exit 2)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


OVERWRITE_FOLDER = "replace an existing OUT, only one rfengine {} wrote and holding nothing else"

OVERWRITE_RESPONSES = (
    "replace an existing responses file, only a .parquet one rfengine wrote (a .jsonl is never "
    "replaced)"
)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def fractions(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-9:
        raise ValueError(f"expected three fractions summing to 1, e.g. 0.9,0.05,0.05, got {text!r}")
    return parts[0], parts[1], parts[2]


def print_json(rows: list[dict[str, Any]]) -> None:
    """One JSON object per line on stdout."""
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")


def add_coherence_scale(p: argparse.ArgumentParser) -> None:
    """``--coherence-scale``: how an importer reads the coherence question."""
    p.add_argument(
        "--coherence-scale",
        action="store_const",
        const="coherence",
        default="severity",
        help="coherence was asked on the coherence scale (5 = coherent); by default it is "
        "taken as error severity, as in the seed (5 = most errors), and flipped",
    )


def add_images_columns(p: argparse.ArgumentParser) -> None:
    """The options naming a dataset's columns, where ``--images`` is a dataset."""
    g = p.add_argument_group(
        "images from a dataset (--images a save_to_disk folder, a folder of Parquet files, "
        "or hf://datasets/ORG/NAME)"
    )
    g.add_argument("--image-column", default="image", help="the image column (default image)")
    g.add_argument("--prompt-column", default="prompt", help="the prompt column (default prompt)")
    g.add_argument("--id-column", default="image_id", help="the id column (default image_id)")
    g.add_argument("--split", default="train", help="the split to read (default train)")


def image_columns(args: argparse.Namespace) -> Any:
    """The ``ImageColumns`` of ``add_images_columns``' options."""
    from rfengine.ingest.sources import ImageColumns

    return ImageColumns(args.image_column, args.prompt_column, args.id_column, args.split)


class UsageError(ValueError):
    """An option value the parser could not check alone (e.g. two options that conflict)."""
