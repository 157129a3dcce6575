"""The one rule that picks stage two's images, for every front-end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rfengine.ingest import Images
from rfengine.run.pipeline import aggregate
from rfengine.schema import POINT_TASKS


def poorly_rated(images: Images, responses: Path, threshold: float) -> dict[str, list[str]]:
    """Per points task, the image ids whose stage-one score of its criterion (coherence,
    alignment) is below ``threshold``, from an aggregate of ``responses``; an image without
    ratings (a NaN score) is not picked. Tasks with no image are left out."""
    scores = aggregate(images, responses, device="cpu").scores
    planned = {}
    for task in POINT_TASKS:
        rows = np.flatnonzero(scores[task.heatmap_kind].score < threshold).tolist()
        if rows:
            planned[task.label] = [images.ids[k] for k in rows]
    return planned
