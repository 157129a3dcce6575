"""The card's pictures, drawn by rfengine's own renderer: score histograms and example panels."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from rfengine.render.overlay import panel
from rfengine.render.report import histogram
from rfengine.schema import CRITERIA, HEATMAP_KINDS
from rfengine.store.load import as_heatmap, as_word_scores, read_row
from rfengine.store.owned import write_atomic


def _save(img: Any, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(path, buf.getvalue())


def example_rows(ds: Any, n: int) -> list[int]:
    """Up to ``n`` rows to show: images with both heatmaps first (the lowest alignment score
    first: where the feedback has most to say), then any others, in row order."""
    if n <= 0 or "image" not in ds.column_names:
        return []
    score = np.asarray(ds["alignment_score"], dtype=np.float64)
    both = np.ones(len(ds), dtype=bool)
    for kind in HEATMAP_KINDS:
        col = f"{kind}_heatmap"
        if col in ds.column_names:
            both &= ds.data.column(col).is_valid().to_numpy(zero_copy_only=False)
    key = np.where(np.isnan(score), np.inf, score)
    order = sorted(range(len(ds)), key=lambda k: (not both[k], key[k], k))
    return order[:n]


def write_figures(ds: Any, out: Path, folder: Path, examples: int) -> dict[str, list[str]]:
    """``figures/score-<criterion>.png`` and ``figures/example-<k>.png`` under ``folder``;
    their paths relative to it, for the card."""
    figs = folder / "figures"
    figs.mkdir()
    made: dict[str, list[str]] = {"histograms": [], "examples": []}
    for c in CRITERIA:
        values = np.asarray(ds[f"{c}_score"], dtype=np.float64)
        _save(histogram(values, f"{c} score"), figs / f"score-{c}.png")
        made["histograms"].append(f"figures/score-{c}.png")
    for k, row_index in enumerate(example_rows(ds, examples)):
        row = read_row(ds, row_index, out)
        heat = {kind: as_heatmap(row.get(f"{kind}_heatmap")) for kind in HEATMAP_KINDS}
        img = panel(
            row["image"],
            str(row["prompt"]).split(),
            as_word_scores(row["word_scores"]),
            heat,
            title=str(row["image_id"]),
        )
        _save(img, figs / f"example-{k}.png")
        made["examples"].append(f"figures/example-{k}.png")
    return made
