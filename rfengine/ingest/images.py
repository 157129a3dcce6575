"""The images table: one row per image, the rows and order of every output."""

from __future__ import annotations

import csv
import json
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from rfengine.errors import InputError
from rfengine.ingest.formats import (
    NOT_UTF8,
    check_readable,
    csv_header,
    is_unicode,
    not_a_file,
    parquet_where,
    read_parquet,
)
from rfengine.ingest.sources import ImageColumns, dataset_records, is_dataset, local_folder
from rfengine.schema import MAX_SIDE


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

    @property
    def word_offsets(self) -> np.ndarray:
        """``(N + 1,)`` start of each image's word slots in a flat array of all images'
        slots: its tokens, then No_Mistake (``n_tokens + 1`` slots per image)."""
        return np.concatenate([[0], np.cumsum(self.n_tokens + 1)]).astype(np.int64)


def _rows(path: Path, fmt: str) -> tuple[list[Any], list[str]]:
    """The table's records (dicts, or an error text) and where each one is."""
    if fmt == "parquet":
        table, groups = read_parquet(path)
        rows = table.to_pylist()
        return rows, [parquet_where(i, groups) for i in range(len(rows))]
    rows, where = [], []
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            reader, _ = csv_header(path, fh)
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise InputError(f"{path}: line {reader.line_num}: {exc}") from None
                where.append(f"line {reader.line_num}")
                bad = [k for k, v in rec.items() if isinstance(v, str) and NOT_UTF8.search(v)]
                if None in rec:
                    raise InputError(f"{path}: {where[-1]}: more cells than columns")
                if bad:
                    raise InputError(f"{path}: {where[-1]}: field '{bad[0]}': invalid UTF-8")
                rows.append({k: (v if v != "" else None) for k, v in rec.items()})
        return rows, where
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}: line {n}: invalid UTF-8 at byte {exc.start}") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else "unreadable value"
                raise InputError(f"{path}: line {n}: malformed JSON: {why}") from None
            if not isinstance(rec, dict):
                raise InputError(f"{path}: line {n}: expected a JSON object")
            rows.append(rec)
            where.append(f"line {n}")
    return rows, where


def _inside(folder: Path, target: Path) -> bool:
    """Whether ``target`` (resolved: links followed) lies inside ``folder`` (resolved)."""
    return target == folder or folder in target.parents


def _size_field(rec: dict[str, Any], fld: str, bad: Any) -> int | None:
    v = rec.get(fld)
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise bad(fld, f"expected an integer, got {v[:40]!r}") from None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_SIDE:
        shown = repr(v) if not isinstance(v, int) or abs(v) < 10**20 else f"{str(v)[:20]}..."
        raise bad(fld, f"expected an integer in 1..{MAX_SIDE} pixels, got {shown}")
    return v


def open_image(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, after checking it is one: a format Pillow
    knows, within Pillow's decompression-bomb limit, and whole (``verify``; for a PNG also
    its pixel data inflated and counted against what its header's size needs, since
    ``verify`` and even ``load`` accept a PNG holding fewer rows than it claims). A
    ValueError says what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size, fmt = im.size, im.format
                im.verify()
        if fmt == "PNG":
            _check_png_data(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, zlib.error) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    return size


#: channels per PNG colour type (greyscale, RGB, palette, grey + alpha, RGBA)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7's passes: first column, first row, column step, row step
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


def _png_needs(w: int, h: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes of filtered scanlines a ``w x h`` PNG's data must inflate to."""
    bits = depth * _PNG_CHANNELS.get(colour, 4)

    def lines(cols: int, rows: int) -> int:
        return rows * (1 + (cols * bits + 7) // 8) if cols and rows else 0

    if not interlace:
        return lines(w, h)
    return sum(lines(-(-(w - x) // dx), -(-(h - y) // dy)) for x, y, dx, dy in _ADAM7)


def _check_png_data(path: Path) -> None:
    """Inflate a PNG's IDAT data, 1 MB at a time, and refuse it when it holds less than its
    header says (rows missing at the end). A ValueError says how much is there."""
    data = path.read_bytes()
    pos, need, got = 8, None, 0
    d = zlib.decompressobj()
    while pos + 8 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            need = _png_needs(w, h, body[8], body[9], body[12])
        elif kind == b"IDAT":
            while body and got <= need:
                got += len(d.decompress(body, 1 << 20))
                body = d.unconsumed_tail
        elif kind == b"IEND":
            break
    if need is not None and got < need:
        got += len(d.flush())
    if need is not None and got < need:
        raise ValueError(
            f"truncated: its pixel data inflates to {got} bytes, its header's size needs {need}"
        )


def read_images(
    path: str | Path,
    *,
    require_files: bool = True,
    allow_outside_paths: bool = False,
    columns: ImageColumns | None = None,
) -> Images:
    """Read and validate an images table (JSONL, CSV or Parquet).

    Columns: ``image_id`` (unique, non-empty str), ``prompt`` (str), ``width`` and
    ``height`` (int pixels, 1..``MAX_SIDE``) and ``path`` (optional, relative to the table's
    folder). Any bad row raises an InputError naming its line and field.

    A ``path`` must stay inside the table's folder (no ``..``, absolute path or symlink
    leading out of it) unless ``allow_outside_paths``, and must name an image file: it is
    opened and checked (format, Pillow's bomb limit, integrity) here, before anything is
    written, and its size must equal ``width`` and ``height`` when those are given (they are
    read from the file when missing). ``require_files=False`` skips the file checks, for
    tools that only match names (the Rapidata importer).

    ``path`` may also be a dataset (``ingest.sources``): a ``save_to_disk`` folder, a folder
    of Parquet files or ``hf://datasets/ORG/NAME``, its columns named by ``columns``; its
    image paths are confined to its folder alike (images rfengine extracted from bytes
    excepted), and every check above applies.
    """
    image_field = "path"
    if is_dataset(path):
        cols = columns or ImageColumns()
        folder = local_folder(path).resolve()
        rows, where = dataset_records(folder, cols)
        path, image_field = folder, cols.image
    else:
        path = Path(path)
        rows, where = _rows(path, check_readable(path))
        folder = path.parent.resolve()
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
            raise bad("image_id", f"expected a string, got {image_id!r:.60}")
        if image_id in seen:
            raise bad("image_id", f"duplicate image_id {image_id!r} (first at {seen[image_id]})")
        seen[image_id] = loc
        prompt = rec.get("prompt")
        if not isinstance(prompt, str):
            raise bad(
                "prompt", "missing" if prompt is None else f"expected a string, got {prompt!r:.60}"
            )
        for fld, text in (("image_id", image_id), ("prompt", prompt)):
            if not is_unicode(text):
                raise bad(fld, "invalid Unicode (a lone surrogate, e.g. an escaped \\ud800)")
        rel = rec.get("path")
        img_path = None
        if "_image" in rec:  # a dataset's image cell, resolved (``sources``)
            img_path, ours = rec["_image"]
            if img_path is not None and not ours and not allow_outside_paths:
                if not _inside(folder, img_path):
                    raise bad(
                        image_field,
                        f"{img_path} lies outside the dataset's folder {folder}; pass "
                        "--allow-outside-paths (API: allow_outside_paths=True) to embed it",
                    )
            if img_path is not None and require_files and not img_path.is_file():
                raise bad(image_field, f"{not_a_file(img_path)}: {img_path}")
        elif rel is not None:
            if not isinstance(rel, str) or not rel or "\x00" in rel:
                raise bad("path", f"expected a relative path string, got {rel!r:.60}")
            img_path = (folder / rel).resolve()
            if not allow_outside_paths and not _inside(folder, img_path):
                raise bad(
                    "path",
                    f"{rel!r} leads outside the table's folder {folder} (to {img_path}); "
                    "pass --allow-outside-paths (API: allow_outside_paths=True) to embed it",
                )
            if require_files and not img_path.is_file():
                raise bad("path", f"{not_a_file(img_path)}: {img_path}")
        size = [_size_field(rec, fld, bad) for fld in ("width", "height")]
        if img_path is not None and (require_files or None in size):
            try:
                w, h = open_image(img_path)
            except ValueError as exc:
                raise bad(image_field, f"{img_path}: {exc}") from None
            for fld, given, real in (("width", size[0], w), ("height", size[1], h)):
                if given is not None and given != real:
                    raise bad(fld, f"{given} differs from the image file's {real} ({img_path})")
            if max(w, h) > MAX_SIDE:
                raise bad(image_field, f"{img_path}: {w}x{h} pixels; at most {MAX_SIDE} a side")
            size = [w, h]
        if None in size:
            raise bad("width" if size[0] is None else "height", "missing, and no path to read it")
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
