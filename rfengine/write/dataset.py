"""The Hugging Face dataset: the published dataset's columns plus rfengine's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Image, List, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter
from datasets.utils import logging as ds_logging

from rfengine.ingest import CRITERIA

if TYPE_CHECKING:
    from rfengine.aggregate import AggregationResult


def features(with_image: bool, heatmap_dtype: str) -> Features:
    """The declared schema (never inferred): published columns first, then rfengine's."""
    cols: dict = {}
    if with_image:
        cols["image"] = Image()
    cols["prompt"] = Value("string")
    cols["word_scores"] = Value("string")
    for c in CRITERIA:
        cols[f"{c}_score"] = Value("float32")
    for c in CRITERIA:
        cols[f"{c}_score_norm"] = Value("float32")
    cols["alignment_heatmap"] = List(List(Value(heatmap_dtype)))
    cols["coherence_heatmap"] = List(List(Value(heatmap_dtype)))
    cols["image_id"] = Value("string")
    cols["no_mistake_score"] = Value("float32")
    cols["word_weight_total"] = Value("float32")
    for c in CRITERIA:
        cols[f"{c}_count"] = Value("int32")
        cols[f"{c}_weight"] = Value("float32")
        cols[f"{c}_std"] = Value("float32")
    return Features(cols)


def _nullable(values: np.ndarray, null: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.array(np.where(null, 0, values), type=typ, mask=null)


def heatmap_column(maps: list[np.ndarray | None], dtype: str) -> pa.Array:
    """Per-image ``(H, W)`` arrays (or None) as a list<list<float>> Arrow column."""
    typ = pa.float16() if dtype == "float16" else pa.float32()
    present = [m for m in maps if m is not None]
    values = np.concatenate([m.ravel() for m in present]) if present else np.zeros(0, dtype=dtype)
    widths = np.concatenate([np.full(m.shape[0], m.shape[1]) for m in present]) if present else []
    inner_off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_off), pa.array(values, type=typ))
    rows = np.array([0 if m is None else m.shape[0] for m in maps], dtype=np.int64)
    outer_off = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
    mask = pa.array([m is None for m in maps])
    return pa.ListArray.from_arrays(pa.array(outer_off), inner, mask=mask)


def word_scores_json(result: AggregationResult) -> list[str | None]:
    """``[[word, score], ...]`` per image (JSON text), None without word responses."""
    out: list[str | None] = []
    w = result.words
    for k, tokens in enumerate(result.images.tokens):
        if w.count[k] == 0:
            out.append(None)
            continue
        pairs = [[t, v] for t, v in zip(tokens, w.tokens(k).tolist(), strict=True)]
        out.append(json.dumps(pairs, ensure_ascii=False))
    return out


def build_table(result: AggregationResult) -> tuple[pa.Table, Features]:
    """The dataset as an Arrow table cast to its declared features."""
    imgs = result.images
    with_image = any(p is not None for p in imgs.paths)
    dtype = result.config["dtype"]
    feats = features(with_image, dtype)
    cols: dict[str, pa.Array] = {}
    if with_image:
        cols["image"] = pa.array(
            [None if p is None else {"bytes": p.read_bytes(), "path": p.name} for p in imgs.paths],
            type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
    cols["prompt"] = pa.array(imgs.prompts, pa.string())
    cols["word_scores"] = pa.array(word_scores_json(result), pa.string())
    for c in CRITERIA:
        s = result.scores[c]
        cols[f"{c}_score"] = _nullable(s.score, np.isnan(s.score), pa.float32())
    for c in CRITERIA:
        s = result.scores[c]
        cols[f"{c}_score_norm"] = _nullable(s.norm, np.isnan(s.score), pa.float32())
    cols["alignment_heatmap"] = heatmap_column(result.heatmaps["alignment"], dtype)
    cols["coherence_heatmap"] = heatmap_column(result.heatmaps["coherence"], dtype)
    cols["image_id"] = pa.array(imgs.ids, pa.string())
    no_words = result.words.count == 0
    cols["no_mistake_score"] = _nullable(result.words.no_mistake, no_words, pa.float32())
    cols["word_weight_total"] = pa.array(result.words.total, pa.float32())
    for c in CRITERIA:
        s = result.scores[c]
        cols[f"{c}_count"] = pa.array(s.count, pa.int32())
        cols[f"{c}_weight"] = pa.array(s.weight, pa.float32())
        cols[f"{c}_std"] = _nullable(s.std, np.isnan(s.std), pa.float32())
    table = pa.table(cols).cast(feats.arrow_schema)
    return table, feats


def write_dataset_part(result: AggregationResult, path: Path) -> int:
    """One partition's rows as an Arrow file in datasets' format; returns the row count."""
    table, feats = build_table(result)
    with ArrowWriter(features=feats, path=str(path)) as writer:
        writer.write_table(table)
        writer.finalize()
    return table.num_rows


def finalize_dataset(parts: list[Path], dest: Path, *, progress: bool = False) -> int:
    """Concatenate partition files (memory-mapped) and ``save_to_disk`` them to ``dest``."""
    ds = concatenate_datasets([Dataset.from_file(str(p)) for p in parts])
    ds.info.description = "rfengine aggregation"
    was_enabled = ds_logging.is_progress_bar_enabled()
    (ds_logging.enable_progress_bar if progress else ds_logging.disable_progress_bar)()
    try:
        ds.save_to_disk(str(dest), max_shard_size="500MB")
    finally:
        (ds_logging.enable_progress_bar if was_enabled else ds_logging.disable_progress_bar)()
    return ds.num_rows
