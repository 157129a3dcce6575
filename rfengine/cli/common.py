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


class UsageError(ValueError):
    """An option value the parser could not check alone (e.g. two options that conflict)."""
