"""The images table: one row per image, the rows and order of every output."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from rfengine.errors import InputError
from rfengine.ingest.formats import check_readable, parquet_where, read_parquet


@dataclass
class Images:
    """The images table, validated.

    ``width``/``height`` are native pixels; ``paths`` are resolved against the table's
    folder (None where the table gives no path); ``tokens[k]`` is ``prompts[k].split()``.
    """

    ids: list[str]
    prompts: list[str]
    width: np.ndarray
    height: np.ndarray
    paths: list[Path | None]
    source: Path | None = None
    tokens: list[list[str]] = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = [p.split() for p in self.prompts]
        self.index = {k: i for i, k in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, lo: int, hi: int) -> Images:
        """Rows ``lo:hi`` as an images table of their own (a partition)."""
        return Images(
            self.ids[lo:hi],
            self.prompts[lo:hi],
            self.width[lo:hi],
            self.height[lo:hi],
            self.paths[lo:hi],
            self.source,
        )

    @property
    def n_tokens(self) -> np.ndarray:
        """``(N,)`` number of prompt tokens per image (the No_Mistake index)."""
        return np.array([len(t) for t in self.tokens], dtype=np.int64)


def read_images(path: str | Path, *, require_files: bool = True) -> Images:
    """Read and validate an images table (JSONL, CSV or Parquet).

    Columns: ``image_id`` (unique str), ``prompt`` (str), ``width`` and ``height`` (int
    pixels) and ``path`` (optional, relative to the table's folder). Missing sizes are read
    from the image file's header. Any bad row raises an InputError naming its line and field;
    so does a ``path`` that names no file, unless ``require_files=False`` (for tools that
    only match names, such as the Rapidata importer).
    """
    path = Path(path)
    fmt = check_readable(path)
    if fmt == "parquet":
        table, groups = read_parquet(path)
        rows = table.to_pylist()
        where = [parquet_where(i, groups) for i in range(len(rows))]
    elif fmt == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, where = [], []
            for rec in reader:
                rows.append({k: (v if v != "" else None) for k, v in rec.items()})
                where.append(f"line {reader.line_num}")
    else:
        rows, where = [], []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {n}: malformed JSON: {exc.msg}") from None
                if not isinstance(rec, dict):
                    raise InputError(f"{path}: line {n}: expected a JSON object")
                rows.append(rec)
                where.append(f"line {n}")
    if not rows:
        raise InputError(f"{path}: the images table has no rows")

    ids: list[str] = []
    prompts: list[str] = []
    widths: list[int] = []
    heights: list[int] = []
    paths: list[Path | None] = []
    seen: dict[str, str] = {}
    for rec, loc in zip(rows, where, strict=True):

        def bad(fld: str, why: str, loc: str = loc) -> InputError:
            return InputError(f"{path}: {loc}: field '{fld}': {why}")

        image_id = rec.get("image_id")
        if image_id is None or image_id == "":
            raise bad("image_id", "missing")
        if not isinstance(image_id, str):
            raise bad("image_id", f"expected a string, got {image_id!r}")
        if image_id in seen:
            raise bad("image_id", f"duplicate image_id {image_id!r} (first at {seen[image_id]})")
        seen[image_id] = loc
        prompt = rec.get("prompt")
        if not isinstance(prompt, str):
            raise bad(
                "prompt", "missing" if prompt is None else f"expected a string, got {prompt!r}"
            )
        rel = rec.get("path")
        img_path = None
        if rel is not None:
            if not isinstance(rel, str) or not rel:
                raise bad("path", f"expected a relative path string, got {rel!r}")
            img_path = (path.parent / rel).resolve()
            if require_files and not img_path.is_file():
                raise bad("path", f"no such file: {img_path}")
        size = []
        for fld in ("width", "height"):
            v = rec.get(fld)
            if v is None:
                size.append(None)
                continue
            if isinstance(v, str):
                try:
                    v = int(v)
                except ValueError:
                    raise bad(fld, f"expected an integer, got {v!r}") from None
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise bad(fld, f"expected a positive integer, got {v!r}")
            size.append(v)
        if None in size:
            if img_path is None:
                raise bad(
                    "width" if size[0] is None else "height", "missing, and no path to read it"
                )
            try:
                with Image.open(img_path) as im:
                    w, h = im.size
            except (OSError, UnidentifiedImageError) as exc:
                raise bad("path", f"cannot read the image header of {img_path}: {exc}") from None
            size = [size[0] or w, size[1] or h]
        ids.append(image_id)
        prompts.append(prompt)
        widths.append(size[0])
        heights.append(size[1])
        paths.append(img_path)
    return Images(
        ids=ids,
        prompts=prompts,
        width=np.array(widths, dtype=np.int64),
        height=np.array(heights, dtype=np.int64),
        paths=paths,
        source=path,
    )


def image_index(images: Images, ids: pa.Array) -> np.ndarray:
    """Row of each id in the images table, -1 where unknown (vectorised)."""
    idx = pc.index_in(ids, value_set=pa.array(images.ids, pa.string()))
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
