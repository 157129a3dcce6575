"""Render: what a person looks at. Overlays of heatmaps on images and prompts coloured by
word score (``overlay``), one PNG panel per image (``render_output``), and the HTML report
of an output (``report``).

Imports ``store`` (to load outputs), ``train`` (the recovery figures) and the ground
modules; never ``run`` or the front-ends.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from pathlib import Path

from rfengine.errors import InputError
from rfengine.render.overlay import colormap, overlay, panel, prompt_image, word_colours
from rfengine.render.report import write_report
from rfengine.schema import HEATMAP_KINDS, REGION_KINDS
from rfengine.store.load import as_heatmap, as_word_scores, load_dataset, read_row
from rfengine.store.owned import is_own_folder, write_atomic, write_mark

__all__ = [
    "colormap",
    "overlay",
    "panel",
    "panel_name",
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


def panel_name(image_id: str) -> str:
    """The file name of an image's panel: ``safe_name(id)``, plus 8 hex digits of the id's
    SHA-1 where sanitising changed it, so that distinct ids never share a file."""
    name = safe_name(image_id)
    if name != image_id:
        name = f"{name}-{hashlib.sha1(image_id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return f"{name}.png"


def render_output(
    out: str | Path,
    dest: str | Path,
    image_ids: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """One PNG panel per image (image, coherence and alignment overlays, region overlays
    where the output has them, coloured prompt).

    Needs the dataset's image column (an images table with paths). Files are named by
    ``panel_name``; an existing one is never replaced unless ``overwrite``. ``dest`` is
    new, empty, or a folder this function wrote (its mark lists every panel); anything
    else is refused. Returns the files.
    """
    ds = load_dataset(out)
    if "image" not in ds.column_names:
        raise InputError(f"{out}: the dataset has no images (the images table gave no paths)")
    ids = list(ds["image_id"])
    rows = range(len(ids)) if not image_ids else [_index(ids, i, out) for i in image_ids]
    dest = Path(dest)
    names = {k: panel_name(str(ids[k])) for k in rows}
    if len(set(names.values())) != len(names):  # an id that looks like another's hashed name
        raise InputError(f"{out}: two image ids map to one panel file name; render them apart")
    if (dest.exists() or dest.is_symlink()) and not is_own_folder(dest, "render"):
        raise FileExistsError(
            f"{dest} is not a folder of rfengine render's (it holds other files); "
            "choose another --out"
        )
    taken = [n for n in names.values() if (dest / n).exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{dest / taken[0]} exists ({len(taken)} panel(s) in the way); pass --overwrite "
            "or choose another --out"
        )
    dest.mkdir(parents=True, exist_ok=True)
    write_mark(dest, "render", planned=names.values())
    files = []
    for k in rows:
        row = read_row(ds, k, out)
        heat = {
            kind: as_heatmap(row[f"{kind}_heatmap"])
            for kind in HEATMAP_KINDS + REGION_KINDS
            if f"{kind}_heatmap" in row
        }
        words = str(row["prompt"]).split()
        scores = as_word_scores(row["word_scores"])
        img = panel(row["image"], words, scores, heat, title=str(row["image_id"]))
        path = dest / names[k]
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        write_atomic(path, buf.getvalue())
        files.append(path)
    return files


def _index(ids: list[str], image_id: str, out: str | Path) -> int:
    try:
        return ids.index(image_id)
    except ValueError:
        raise InputError(f"{out}: no image with image_id {image_id!r}") from None
