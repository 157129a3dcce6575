"""Export an rfengine output in the layout a RAHF trainer reads (RichHF-18K style).

``export_richhf(OUT, DIR)`` writes a ``datasets.DatasetDict`` (``save_to_disk``) with splits
``train``, ``dev`` and ``test``, as youweiliang/RichHF's ``get_dataset.py`` builds it and
its ``train.py`` reads it. Per row:

* ``image``: the embedded image file's bytes; ``filename``: the image id;
* ``artifact_map`` = coherence, ``misalignment_map`` = alignment: 512x512 8-bit PNG bytes
  (the map resampled bilinearly, x 255; a map not collected is all zeros, a NaN map too);
* ``aesthetics_score`` = style, ``artifact_score`` = coherence, ``misalignment_score`` =
  alignment: the ``*_score_norm`` in [0, 1] (NaN where null); ``overall_score``: RichHF has
  it and Rapidata does not — the mean of the three, a stand-in so that the trainer runs;
* ``prompt``; ``clean_prompt``: the prompt split on ``,.?!":; `` with empty tokens removed;
  ``labeled_prompt``: the same tokens, a misaligned one suffixed ``_0``;
  ``prompt_misalignment_label``: per token "0" (misaligned) or "1". A token inherits the
  label of the whitespace word it came from (rfengine scores ``prompt.split()`` words).

Lost on the way: the masks (not collected vs empty), the clicks, the counts and weights.
Rows go to a split by a seeded hash of their image id (default 90 / 5 / 5 %).
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from rfengine.errors import InputError
from rfengine.schema import HEATMAP_KINDS
from rfengine.store.owned import check_folder, new_folder
from rfengine.train.dataset import RichFeedbackDataset, resize_map

#: RichHF's tokeniser: split on these characters, drop empty tokens
RICHHF_DELIMITERS = ',.?!":; '
_SPLIT = re.compile("|".join(map(re.escape, RICHHF_DELIMITERS)))
MAP_NAMES = {"coherence": "artifact_map", "alignment": "misalignment_map"}
SCORE_NAMES = ("aesthetics_score", "artifact_score", "misalignment_score")  # style, coh, ali
SPLITS = ("train", "dev", "test")


def richhf_prompts(prompt: str, misaligned: list[bool]) -> tuple[str, str, str]:
    """``(clean_prompt, labeled_prompt, prompt_misalignment_label)`` of a prompt whose
    whitespace words carry ``misaligned`` flags.

    >>> richhf_prompts("a red, cat", [False, True, False])
    ('a red cat', 'a red_0 cat', '1 0 1')
    """
    tokens: list[tuple[str, bool]] = []
    for word, bad in zip(prompt.split(), misaligned, strict=True):
        tokens += [(t, bad) for t in _SPLIT.split(word) if t]
    clean = " ".join(t for t, _ in tokens)
    labeled = " ".join(f"{t}_0" if bad else t for t, bad in tokens)
    labels = " ".join("0" if bad else "1" for _, bad in tokens)
    return clean, labeled, labels


def _split_of(image_id: str, fractions: tuple[float, float, float], seed: int) -> str:
    h = hashlib.sha256(f"{seed}\0{image_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right").clip(0, 2))]


def _png(heat: torch.Tensor, size: int) -> bytes:
    m = resize_map(torch.nan_to_num(heat.float(), nan=0.0), (size, size))
    img = Image.fromarray((m.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def export_richhf(
    out: str | Path,
    dest: str | Path,
    *,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
    seed: int = 0,
    threshold: float = 0.5,
    size: int = 512,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write ``dest`` (see the module docstring); returns the rows per split.

    ``dest`` must not exist unless ``overwrite``, and then only as an earlier export's
    folder (``rfengine.store.owned``); it appears by one rename."""
    dest = Path(dest)
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise InputError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    check_folder(dest, "export", overwrite)
    ds = RichFeedbackDataset(out, threshold=threshold)
    if not ds.with_image:
        raise InputError(f"{out}: no images in the dataset (the images table gave no paths)")
    raw = ds.dataset.select_columns(["image", "image_id", "prompt"]).cast_column(
        "image", datasets.Image(decode=False)
    )  # the embedded files' bytes, as stored
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for k in range(len(ds)):
        item = ds.targets(k)
        cell = raw[k]
        norm = torch.where(item["scores_mask"], item["scores_norm"], float("nan")).tolist()
        misaligned = (item["token_scores"] >= threshold).tolist()
        clean, labeled, labels = richhf_prompts(cell["prompt"], misaligned)
        row = {
            "filename": cell["image_id"],
            "image": cell["image"]["bytes"],
            "prompt": cell["prompt"],
            "clean_prompt": clean,
            "labeled_prompt": labeled,
            "prompt_misalignment_label": labels,
            **dict(zip(SCORE_NAMES, norm, strict=True)),
            "overall_score": float(np.nanmean(norm)) if not np.isnan(norm).all() else np.nan,
        }
        for kind in HEATMAP_KINDS:
            heat = item[f"{kind}_heatmap"]
            row[MAP_NAMES[kind]] = _png(heat if item[f"{kind}_mask"] else heat * 0, size)
        rows[_split_of(cell["image_id"], fractions, seed)].append(row)
    features = datasets.Features(
        {
            "filename": datasets.Value("string"),
            "image": datasets.Value("binary"),
            "prompt": datasets.Value("string"),
            "clean_prompt": datasets.Value("string"),
            "labeled_prompt": datasets.Value("string"),
            "prompt_misalignment_label": datasets.Value("string"),
            **{name: datasets.Value("float32") for name in (*SCORE_NAMES, "overall_score")},
            **{name: datasets.Value("binary") for name in MAP_NAMES.values()},
        }
    )
    columns = {s: {name: [row[name] for row in rows[s]] for name in features} for s in SPLITS}
    dd = datasets.DatasetDict(
        {s: datasets.Dataset.from_dict(columns[s], features=features) for s in SPLITS}
    )  # by columns: an empty split keeps its features
    with new_folder(dest, "export", overwrite) as tmp:
        dd.save_to_disk(str(tmp))
    return {s: len(rows[s]) for s in SPLITS}


__all__ = ["RICHHF_DELIMITERS", "export_richhf", "richhf_prompts"]
