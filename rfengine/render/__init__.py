"""Render: overlays, coloured prompts, per-image panels and the HTML report."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from rfengine.errors import InputError
from rfengine.output import as_heatmap, as_word_scores, load_dataset
from rfengine.render.overlay import colormap, overlay, panel, prompt_image, word_colours
from rfengine.render.report import write_report
from rfengine.schema import HEATMAP_KINDS

__all__ = [
    "colormap",
    "overlay",
    "panel",
    "prompt_image",
    "render_output",
    "safe_name",
    "word_colours",
    "write_report",
]


def safe_name(text: str, limit: int = 120) -> str:
    """A file name made from data (an image id): letters, digits, '.', '_' and '-' only,
    never hidden, never a path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    name = re.sub(r"_+", "_", re.sub(r"\.{2,}", "_", name)).lstrip(".")[:limit]
    return name or "_"


def render_output(
    out: str | Path, dest: str | Path, image_ids: Sequence[str] | None = None
) -> list[Path]:
    """One PNG panel per image (image, coherence and alignment overlays, coloured prompt).

    Needs the dataset's image column (an images table with paths). Returns the files.
    """
    ds = load_dataset(out)
    if "image" not in ds.column_names:
        raise InputError(f"{out}: the dataset has no images (the images table gave no paths)")
    ids = list(ds["image_id"])
    rows = range(len(ids)) if not image_ids else [_index(ids, i, out) for i in image_ids]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for k in rows:
        row = ds[k]
        heat = {kind: as_heatmap(row[f"{kind}_heatmap"]) for kind in HEATMAP_KINDS}
        words = str(row["prompt"]).split()
        scores = as_word_scores(row["word_scores"])
        img = panel(row["image"], words, scores, heat, title=str(row["image_id"]))
        path = dest / f"{safe_name(str(row['image_id']))}.png"
        img.save(path)
        files.append(path)
    return files


def _index(ids: list[str], image_id: str, out: str | Path) -> int:
    try:
        return ids.index(image_id)
    except ValueError:
        raise ValueError(f"{out}: no image with image_id {image_id!r}") from None
