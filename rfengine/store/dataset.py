"""The Hugging Face dataset: the published dataset's columns plus rfengine's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Image, List, Value, concatenate_datasets, load_from_disk
from datasets.arrow_writer import ArrowWriter
from datasets.utils.py_utils import asdict  # the serialisation save_to_disk uses

from rfengine.schema import CRITERIA, HEATMAP_KINDS, REGION_KINDS
from rfengine.store.files import link_or_copy

if TYPE_CHECKING:
    from rfengine.aggregation.result import AggregationResult, Heatmaps


#: the published dataset's columns in its order (Rapidata/text-2-image-Rich-Human-Feedback)
PUBLISHED_ORDER = (
    "image",
    "prompt",
    "word_scores",
    "alignment_score_norm",
    "coherence_score_norm",
    "style_score_norm",
    "alignment_heatmap",
    "coherence_heatmap",
    "alignment_score",
    "coherence_score",
    "style_score",
)


#: the uncertainty of a score: Kish's effective sample size, the standard error and the
#: 95% confidence interval (see ``rfengine.aggregation.result.Scores``)
UNCERTAINTY = ("n_eff", "se", "ci_low", "ci_high")


def column_order(names: list[str], preset: str) -> list[str]:
    """The dataset's column order: ``rapidata-2025`` puts the published columns in the
    published order (rfengine's after them); ``default`` keeps scores, then norms, then maps."""
    if preset != "rapidata-2025":
        return names
    return [n for n in PUBLISHED_ORDER if n in names] + [
        n for n in names if n not in PUBLISHED_ORDER
    ]


def features(
    with_image: bool,
    heatmap_dtype: str,
    preset: str = "default",
    heatmaps: bool = True,
    reliability: bool = False,
    regions: bool = False,
) -> Features:
    """The declared schema (never inferred): published columns first, then rfengine's
    (without the heatmap columns when ``heatmaps`` is False; with each kind's split-half
    reliability when ``reliability``; with the region heatmaps and their effective sample
    sizes when ``regions``)."""
    kinds = sorted(HEATMAP_KINDS) + (sorted(REGION_KINDS) if regions else [])
    cols: dict = {}
    if with_image:
        cols["image"] = Image()
    cols["prompt"] = Value("string")
    cols["word_scores"] = Value("string")
    for c in CRITERIA:
        cols[f"{c}_score"] = Value("float32")
    for c in CRITERIA:
        cols[f"{c}_score_norm"] = Value("float32")
    for kind in kinds if heatmaps else ():  # published: alignment, coherence
        cols[f"{kind}_heatmap"] = List(List(Value(heatmap_dtype)))
    cols["image_id"] = Value("string")
    cols["no_mistake_score"] = Value("float32")
    cols["word_weight_total"] = Value("float32")
    for c in CRITERIA:
        cols[f"{c}_count"] = Value("int32")
        cols[f"{c}_weight"] = Value("float32")
        cols[f"{c}_std"] = Value("float32")
        for stat in UNCERTAINTY:
            cols[f"{c}_{stat}"] = Value("float32")
    for stat in UNCERTAINTY:
        cols[f"no_mistake_{stat}"] = Value("float32")
    for kind in sorted(REGION_KINDS) if regions else ():
        cols[f"{kind}_n_eff"] = Value("float32")
    for kind in kinds if reliability else ():
        cols[f"{kind}_heatmap_reliability"] = Value("float32")
        cols[f"{kind}_heatmap_annotators"] = Value("int32")
    return Features({name: cols[name] for name in column_order(list(cols), preset)})


def _nullable(values: np.ndarray, null: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.array(np.where(null, 0, values), type=typ, mask=null)


def heatmap_column(maps: Heatmaps, rows: np.ndarray, typ: pa.DataType) -> pa.Array:
    """The ``(H, W)`` maps (or None) of ``rows`` as a list<list<typ>> Arrow column; rows
    that lie consecutively in one of the splat's blocks are its bytes, not copied."""
    block = maps.block(rows)
    if block is not None:
        values = block.reshape(-1)
        heights = np.full(len(rows), block.shape[1])
        widths = np.full(len(rows) * block.shape[1], block.shape[2])
    else:
        got = [maps[k] for k in rows]
        present = [m for m in got if m is not None]
        values = (
            np.concatenate([m.ravel() for m in present])
            if present
            else np.zeros(0, dtype=typ.to_pandas_dtype())
        )
        widths = np.concatenate([np.full(m.shape[0], m.shape[1]) for m in present] or [[]])
        heights = np.array([0 if m is None else m.shape[0] for m in got])
    inner_off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_off), pa.array(values, type=typ))
    outer_off = np.concatenate([[0], np.cumsum(heights)]).astype(np.int32)
    mask = pa.array(~maps.present(rows))
    return pa.ListArray.from_arrays(pa.array(outer_off), inner, mask=mask)


def word_scores_json(result: AggregationResult, rows: range) -> list[str | None]:
    """``[[word, score], ...]`` per image of ``rows`` (JSON text), None without word responses."""
    out: list[str | None] = []
    w = result.words
    rounded = result.options.preset == "rapidata-2025"
    for k in rows:
        tokens = result.images.tokens[k]
        if w.count[k] == 0:
            out.append(None)
            continue
        values = w.word_values(k).tolist()
        if rounded:  # as published: 4 decimals, a zero as the integer 0
            values = [round(v, 4) or 0 for v in values]
        pairs = [[t, v] for t, v in zip(tokens, values, strict=True)]
        out.append(json.dumps(pairs, ensure_ascii=False))
    return out


def result_features(result: AggregationResult, with_image: bool) -> Features:
    """The declared schema of ``result``'s dataset (region columns where it has them)."""
    opts = result.options
    return features(
        with_image,
        opts.dtype_name,
        opts.preset,
        opts.dataset_heatmaps,
        opts.reliability,
        regions=bool(result.region_n_eff),
    )


def build_table(
    result: AggregationResult, lo: int = 0, hi: int | None = None
) -> tuple[pa.Table, Features]:
    """Rows ``lo:hi`` of the dataset as an Arrow table cast to its declared features."""
    imgs = result.images
    hi = len(imgs) if hi is None else hi
    rows = slice(lo, hi)
    with_image = any(p is not None for p in imgs.paths)
    opts = result.options
    feats = result_features(result, with_image)
    cols: dict[str, pa.Array] = {}
    if with_image:
        cols["image"] = pa.array(
            [
                None if p is None else {"bytes": p.read_bytes(), "path": p.name}
                for p in imgs.paths[rows]
            ],
            type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        )
    cols["prompt"] = pa.array(imgs.prompts[rows], pa.string())
    cols["word_scores"] = pa.array(word_scores_json(result, range(lo, hi)), pa.string())
    for c in CRITERIA:
        s = result.scores[c]
        cols[f"{c}_score"] = _nullable(s.score[rows], np.isnan(s.score[rows]), pa.float32())
    for c in CRITERIA:
        s = result.scores[c]
        norm = result.score_norm(c)[rows]
        cols[f"{c}_score_norm"] = _nullable(norm, np.isnan(norm), pa.float32())
    for kind in sorted(result.heatmaps) if opts.dataset_heatmaps else ():
        cols[f"{kind}_heatmap"] = heatmap_column(
            result.heatmaps[kind], np.arange(lo, hi), opts.arrow_type
        )
    cols["image_id"] = pa.array(imgs.ids[rows], pa.string())
    words = result.words
    no_words = words.count[rows] == 0
    cols["no_mistake_score"] = _nullable(words.no_mistake[rows], no_words, pa.float32())
    cols["word_weight_total"] = pa.array(words.total[rows], pa.float32())
    for c in CRITERIA:
        s = result.scores[c]
        cols[f"{c}_count"] = pa.array(s.count[rows], pa.int32())
        cols[f"{c}_weight"] = pa.array(s.weight[rows], pa.float32())
        cols[f"{c}_std"] = _nullable(s.std[rows], np.isnan(s.std[rows]), pa.float32())
        low, high = s.ci()
        for stat, v in zip(UNCERTAINTY, (s.n_eff, s.se, low, high), strict=True):
            cols[f"{c}_{stat}"] = _nullable(v[rows], np.isnan(v[rows]), pa.float32())
    low, high = words.no_mistake_ci()
    for stat, v in zip(UNCERTAINTY, (words.n_eff, words.no_mistake_se, low, high), strict=True):
        cols[f"no_mistake_{stat}"] = _nullable(v[rows], np.isnan(v[rows]), pa.float32())
    for kind, n_eff in result.region_n_eff.items():
        cols[f"{kind}_n_eff"] = _nullable(n_eff[rows], np.isnan(n_eff[rows]), pa.float32())
    for kind, rel in result.heatmap_reliability.items():
        cols[f"{kind}_heatmap_reliability"] = _nullable(
            rel[rows], np.isnan(rel[rows]), pa.float32()
        )
        cols[f"{kind}_heatmap_annotators"] = pa.array(
            result.heatmap_annotators[kind][rows], pa.int32()
        )
    table = pa.table({name: cols[name] for name in feats}).cast(feats.arrow_schema)
    return table, feats


def write_dataset_part(result: AggregationResult, path: Path, slice_bytes: int = 64 << 20) -> int:
    """One partition's rows as an Arrow file in datasets' format; returns the row count.

    Rows are converted ``slice_bytes`` of heatmaps at a time, so that memory holds one
    slice's Arrow copy, not the partition's.
    """
    n = len(result.images)
    item = result.options.itemsize
    sizes = [
        sum(m.size for m in (maps[i] for maps in result.heatmaps.values()) if m is not None)
        for i in range(n)
    ]
    bounds, acc = [0], 0
    for i, size in enumerate(sizes):
        acc += size * item
        if acc > slice_bytes and i + 1 > bounds[-1]:
            bounds.append(i + 1)
            acc = 0
    if bounds[-1] != n:
        bounds.append(n)
    feats = result_features(result, any(p is not None for p in result.images.paths))
    with ArrowWriter(features=feats, path=str(path)) as writer:
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            writer.write_table(build_table(result, lo, hi)[0])
        writer.finalize()
    return n


def finalize_dataset(parts: list[Path], dest: Path, fingerprint: str) -> int:
    """Make the partition files (datasets' ArrowWriter output) a ``save_to_disk`` folder.

    The files are linked as ``data-{k:05d}-of-{n:05d}.arrow``, the layout ``save_to_disk``
    writes; ``state.json`` and ``dataset_info.json`` are taken from a ``Dataset`` over those
    files, so nothing is copied: ``save_to_disk`` would rewrite every byte (a second full
    write of the largest output, and its memory-mapped source pages would count in RSS).
    ``tests/write/test_outputs.py`` compares the folder with ``save_to_disk``'s field by
    field; ``load_from_disk`` checks it here. ``fingerprint`` is the dataset's
    ``_fingerprint`` (``manifest.run_fingerprint``).
    """
    dest.mkdir(parents=True, exist_ok=True)
    n = len(parts)
    names = [f"data-{k:05d}-of-{n:05d}.arrow" for k in range(n)]
    for part, name in zip(parts, names, strict=True):
        link_or_copy(part, dest / name)
    ds = concatenate_datasets([Dataset.from_file(str(dest / name)) for name in names])
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": fingerprint,  # of the run's content, not random: reproducible bytes
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info = asdict(ds.info)
    info["description"] = "rfengine aggregation"
    (dest / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (dest / "dataset_info.json").write_text(
        json.dumps({k: info[k] for k in sorted(info)}, indent=2)
    )
    rows = ds.num_rows
    del ds
    if load_from_disk(str(dest)).num_rows != rows:
        raise RuntimeError(f"{dest}: the written dataset does not load back with {rows} rows")
    return rows
