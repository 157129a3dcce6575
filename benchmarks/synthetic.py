"""Synthetic campaigns at scale, in the interchange format, for the benchmarks.

Columns are generated with numpy and written with pyarrow (Parquet) or a plain formatter
(JSONL); rows are shuffled across files, as exports arrive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: the seed's image sizes (w, h): mostly square 1024, a few other aspect ratios
SEED_SIZES = [(1024, 1024)] * 6 + [(1024, 768), (768, 1024), (1344, 768), (768, 1344)]
TASKS = ("style", "coherence", "alignment", "coherence_points", "alignment_points", "words")
WORDS = "a photo of a red car parked beside two tall green trees at sunset".split()


def make_images(n: int, sizes: list[tuple[int, int]], seed: int = 0) -> list[dict]:
    """Images table rows: ids, prompts of 6-14 words, sizes drawn from ``sizes`` (w, h)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(6, len(WORDS) + 1, n)
    pick = rng.integers(0, len(sizes), n)
    return [
        {
            "image_id": f"img-{k:06d}",
            "prompt": " ".join(WORDS[: lens[k]]),
            "width": sizes[pick[k]][0],
            "height": sizes[pick[k]][1],
        }
        for k in range(n)
    ]


def make_responses(images: list[dict], per_task: int, seed: int = 0) -> pa.Table:
    """``per_task`` responses per image and task (unsorted), as an Arrow table."""
    rng = np.random.default_rng(seed + 1)
    n_img = len(images)
    n = n_img * len(TASKS) * per_task
    img = np.repeat(np.arange(n_img), len(TASKS) * per_task)
    task = np.tile(np.repeat(np.arange(len(TASKS)), per_task), n_img)
    ann = rng.integers(0, 150_000, n)
    weight = np.round(rng.uniform(0.05, 1.0, n), 4)
    is_rating = task < 3
    rating = np.where(is_rating, rng.integers(1, 6, n), 0)
    is_pts = (task == 3) | (task == 4)
    n_pts = np.where(is_pts, rng.integers(0, 4, n), 0)
    coords = np.round(rng.random((int(n_pts.sum()), 2)), 4)
    n_tok = np.array([len(im["prompt"].split()) for im in images])[img]
    is_words = task == 5
    n_sel = np.where(is_words, rng.integers(0, 3, n), 0)
    # one index in 0..n_tok (n_tok is [No_Mistake]) or two distinct words (never
    # [No_Mistake] together with a word: the engine rejects that)
    tok = np.repeat(n_tok, n_sel)
    span = np.where(np.repeat(n_sel == 2, n_sel), tok, tok + 1)
    first = (rng.random(len(tok)) * span).astype(np.int64)
    second = (first + 1 + (rng.random(len(tok)) * (span - 1)).astype(np.int64)) % span
    slot = np.arange(len(tok)) - np.repeat(np.cumsum(n_sel) - n_sel, n_sel)
    sel = np.where(slot == 0, first, np.roll(second, 1))
    ids = np.array([im["image_id"] for im in images], dtype=object)
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * len(coords) + 1, 2, dtype=np.int32)), pa.array(coords.ravel())
    )
    pts_off = np.concatenate([[0], np.cumsum(n_pts)]).astype(np.int32)
    sel_off = np.concatenate([[0], np.cumsum(n_sel)]).astype(np.int32)
    table = pa.table(
        {
            "image_id": pa.array(ids[img], pa.string()),
            "annotator_id": pa.array(np.char.add("u", ann.astype(str)), pa.string()),
            "task": pa.array(np.array(TASKS, dtype=object)[task], pa.string()),
            "weight": pa.array(weight),
            "rating": pa.array(rating, pa.int64(), mask=~is_rating),
            "points": pa.ListArray.from_arrays(pa.array(pts_off), inner, mask=pa.array(~is_pts)),
            "selected": pa.ListArray.from_arrays(
                pa.array(sel_off), pa.array(sel), mask=pa.array(~is_words)
            ),
        }
    )
    # random annotator ids can repeat within an image and task: make them unique there
    key = img * len(TASKS) + task
    order = np.lexsort((ann, key))
    dup = np.zeros(n, bool)
    dup[order[1:]] = (key[order[1:]] == key[order[:-1]]) & (ann[order[1:]] == ann[order[:-1]])
    table = table.filter(pa.array(~dup))
    return table.take(pa.array(rng.permutation(table.num_rows)))


def write_jsonl(table: pa.Table, path: Path) -> Path:
    """One JSON object per line; null fields left out, as tools export them."""
    cols = {name: table[name].to_pylist() for name in table.column_names}
    names = table.column_names
    with path.open("w") as fh:
        for row in zip(*(cols[c] for c in names), strict=True):
            fh.write(json.dumps({k: v for k, v in zip(names, row, strict=True) if v is not None}))
            fh.write("\n")
    return path


def write_files(
    table: pa.Table, folder: Path, n_files: int, formats: tuple[str, ...]
) -> list[Path]:
    """Split ``table`` into ``n_files`` files cycling through ``formats`` ("jsonl", "parquet")."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int)
    for k in range(n_files):
        part = table.slice(int(bounds[k]), int(bounds[k + 1] - bounds[k]))
        fmt = formats[k % len(formats)]
        path = folder / f"responses-{k:02d}.{fmt}"
        if fmt == "parquet":
            pq.write_table(part, path, row_group_size=100_000)
        else:
            write_jsonl(part, path)
        paths.append(path)
    return paths


def write_images(images: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in images))
    return path


def write_campaign(
    root: Path, n_images: int, per_task: int, sizes: list[tuple[int, int]] = SEED_SIZES
) -> tuple[Path, list[Path], int, int]:
    """A seed-shaped campaign under ``root``: ``images.jsonl`` and four shuffled JSONL
    response files in ``in/``. Returns (images path, response files, rows, Arrow bytes)."""
    images = make_images(n_images, sizes)
    table = make_responses(images, per_task)
    ip = write_images(images, root / "images.jsonl")
    files = write_files(table, root / "in", 4, ("jsonl",))
    return ip, files, table.num_rows, table.nbytes
