"""Reading an rfengine output back: the dataset, the targets and the manifest.

The counterpart of ``rfengine.store``: ``load_output(OUT)`` returns what
``save_output``/``aggregate_to_disk`` wrote, and the cell readers turn the dataset's
columns into arrays.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq

from rfengine.errors import InputError
from rfengine.options import AggregateOptions
from rfengine.schema import HEATMAP_KINDS, REGION_KINDS
from rfengine.store.targets import Shard, load_targets
from rfengine.store.work import OUTPUT_FORMAT


@dataclass(frozen=True)
class Output:
    """An rfengine output folder, loaded.

    Attributes:
        dataset: the Hugging Face dataset (heatmap columns formatted as numpy arrays);
            None when the run wrote no dataset (``outputs``).
        targets: every target shard, in ``targets/index.json`` order (``(tensors, meta)``);
            empty when the run wrote no targets.
        manifest: ``manifest.json`` as a dict.
        options: the run's options, from the manifest's ``config``.
    """

    dataset: datasets.Dataset | None
    targets: list[Shard]
    manifest: dict[str, Any]
    options: AggregateOptions


#: columns every consumer of an output's dataset reads
DATASET_COLUMNS = ("image_id", "prompt")


def _check_output(out: Path) -> None:
    if not (out / "manifest.json").is_file():
        raise InputError(f"{out}: not an rfengine aggregate output (no manifest.json)")


def load_manifest(out: str | Path) -> dict[str, Any]:
    """An output's ``manifest.json``, checked to be rfengine's: a JSON object with its
    ``format``, ``counts`` and a ``config`` that gives the run's options."""
    out = Path(out)
    _check_output(out)
    path = out / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != OUTPUT_FORMAT:
        raise InputError(f"{path}: not an rfengine manifest (format {OUTPUT_FORMAT!r} expected)")
    for key in ("config", "counts", "run"):
        if not isinstance(manifest.get(key), dict):
            raise InputError(f"{path}: '{key}' is missing or not an object")
    _options(manifest, out)
    return manifest


def _options(manifest: dict[str, Any], out: Path) -> AggregateOptions:
    try:
        return AggregateOptions.from_json(manifest["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"{out / 'manifest.json'}: 'config' is not a run's options ({exc})"
        ) from None


def load_dataset(out: str | Path) -> datasets.Dataset:
    """An rfengine output's dataset: heatmaps as numpy arrays, images as PIL images."""
    out = Path(out)
    load_manifest(out)
    if not (out / "dataset").is_dir():
        raise InputError(
            f"{out}: this output has no dataset (it was written with --outputs targets)"
        )
    try:
        ds = datasets.load_from_disk(str(out / "dataset"))
    except Exception as exc:  # a damaged folder raises whatever its first bad byte causes
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise InputError(f"{out / 'dataset'}: not a readable dataset folder ({why})") from None
    if not isinstance(ds, datasets.Dataset):
        raise InputError(f"{out / 'dataset'}: a dataset dict, not an rfengine dataset")
    missing = [c for c in DATASET_COLUMNS if c not in ds.column_names]
    if missing:
        raise InputError(f"{out / 'dataset'}: column(s) {', '.join(missing)} missing")
    kinds = HEATMAP_KINDS + REGION_KINDS
    cols = [f"{kind}_heatmap" for kind in kinds if f"{kind}_heatmap" in ds.column_names]
    return ds.with_format("numpy", columns=cols, output_all_columns=True)


def load_annotators(out: str | Path) -> pa.Table:
    """An output's ``annotators.parquet`` (written with ``weights="estimate"``)."""
    out = Path(out)
    load_manifest(out)
    path = out / "annotators.parquet"
    if not path.is_file():
        raise InputError(
            f"{out}: this output has no annotators.parquet (aggregate with --weights estimate)"
        )
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def load_output(out: str | Path, *, device: str = "cpu") -> Output:
    """Load everything an aggregation wrote into ``out`` (targets onto ``device``).

    >>> import rfengine
    >>> output = rfengine.load_output("out/")  # doctest: +SKIP
    >>> output.dataset.num_rows, len(output.targets), output.options.heatmap_size  # doctest: +SKIP
    (48, 3, None)
    """
    out = Path(out)
    manifest = load_manifest(out)
    return Output(
        dataset=load_dataset(out) if (out / "dataset").is_dir() else None,
        targets=load_targets(out / "targets", device=device) if (out / "targets").is_dir() else [],
        manifest=manifest,
        options=_options(manifest, out),
    )


def read_row(ds: datasets.Dataset, k: int, out: str | Path) -> dict[str, Any]:
    """Row ``k`` of an output's dataset, decoded; an image that cannot be decoded (not an
    image, truncated, a decompression bomb) is an InputError naming the row and image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            return ds[k]
    except (
        OSError,
        SyntaxError,
        ValueError,
        PIL.UnidentifiedImageError,
        PIL.Image.DecompressionBombError,
        PIL.Image.DecompressionBombWarning,
    ) as exc:
        image_id = ds.select_columns(["image_id"])[k]["image_id"]
        raise InputError(
            f"{out}: dataset row {k} (image_id {image_id!r}): the image cannot be decoded: {exc}"
        ) from None


def as_heatmap(value: Any) -> np.ndarray | None:
    """A dataset heatmap cell as a 2-D array (None stays None): datasets' numpy format
    gives rows of ragged lists as an object array of rows."""
    if value is None:
        return None
    return np.stack(value) if value.dtype == object else value


def as_word_scores(text: str | None) -> np.ndarray | None:
    """A ``word_scores`` cell (JSON ``[[word, score], ...]``) as the scores, or None."""
    if text is None:
        return None
    return np.array([v for _, v in json.loads(str(text))], dtype=np.float64)


__all__ = [
    "Output",
    "as_heatmap",
    "as_word_scores",
    "load_annotators",
    "load_dataset",
    "load_manifest",
    "load_output",
    "read_row",
]
