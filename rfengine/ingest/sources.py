"""Images tables held as datasets: a ``datasets`` ``save_to_disk`` folder, a folder of Parquet
files (e.g. ``rfengine publish``'s, or a Hub dataset's ``data/``), or a Hub dataset
(``hf://datasets/ORG/NAME``, fetched with ``huggingface_hub.snapshot_download``: its cache
works offline), read into the records that ``read_images`` checks like a table's.

An image cell is an ``Image`` feature's ``{"bytes", "path"}`` or a path string. A path that
names a file is used where it lies, no copy; an image stored only as bytes is written once
into rfengine's cache (``$RFENGINE_CACHE``, default ``~/.cache/rfengine``), named by its
SHA-256, so that the campaign launch, the output's image column and the report have a file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rfengine.errors import InputError

HF_PREFIX = "hf://datasets/"


@dataclass(frozen=True)
class ImageColumns:
    """Which columns of a dataset hold the image, the prompt and the id, and which split."""

    image: str = "image"
    prompt: str = "prompt"
    image_id: str = "image_id"
    split: str = "train"

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, str] | None) -> ImageColumns:
        return cls(**(doc or {}))


def is_dataset(path: str | Path) -> bool:
    """Whether ``--images`` names a dataset (a folder, or ``hf://datasets/...``)."""
    return str(path).startswith(HF_PREFIX) or Path(path).is_dir()


def local_folder(path: str | Path) -> Path:
    """The dataset's folder on this machine: ``path``, or the Hub dataset's snapshot."""
    text = str(path)
    if not text.startswith(HF_PREFIX):
        return Path(path)
    repo, _, revision = text[len(HF_PREFIX) :].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InputError(f"{text}: expected hf://datasets/ORG/NAME[@REVISION]")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision or None))
    except Exception as exc:  # network, auth, not found, offline without a cache: one line
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(
            f"{text}: cannot fetch the dataset ({type(exc).__name__}: {line})"
        ) from None


def _table(folder: Path, split: str) -> pa.Table:
    if (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file():
        import datasets

        try:
            ds = datasets.load_from_disk(str(folder))
        except Exception as exc:
            raise InputError(f"{folder}: not a readable datasets folder ({exc})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise InputError(
                    f"{folder}: no split {split!r} (splits: {', '.join(ds)}); "
                    "choose one with --split"
                )
            ds = ds[split]
        return ds.with_format("arrow")[:]
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise InputError(
            f"{folder}: a folder given as images must be a datasets save_to_disk "
            "folder or hold Parquet files"
        )
    named = [p for p in files if p.name.startswith(f"{split}-") or p.parent.name == split]
    tables = []
    for p in named or files:
        try:
            tables.append(pq.read_table(p))
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{p}: not a readable Parquet file ({exc})") from None
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowException as exc:
        raise InputError(f"{folder}: its Parquet files do not share a schema ({exc})") from None


def cache_folder() -> Path:
    return Path(os.environ.get("RFENGINE_CACHE") or Path.home() / ".cache" / "rfengine") / "images"


def _extract(data: bytes) -> Path:
    """The cached file holding ``data`` (written once, atomically)."""
    from PIL import Image

    digest = hashlib.sha256(data).hexdigest()
    try:
        import io

        with Image.open(io.BytesIO(data)) as im:
            ext = "." + (im.format or "img").lower()
    except Exception:  # not an image: read_images says so when it opens the file
        ext = ".img"
    path = cache_folder() / digest[:2] / f"{digest}{ext}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _image(cell: Any, folder: Path) -> tuple[Path | None, bool]:
    """(the image's file, whether rfengine wrote it) for one image cell."""
    if cell is None:
        return None, False
    path, data = (cell, None) if isinstance(cell, str) else (cell.get("path"), cell.get("bytes"))
    if path:
        p = Path(path) if Path(path).is_absolute() else folder / path
        if p.is_file() or not data:
            return p.resolve(), False
    if data:
        return _extract(bytes(data)), True
    return None, False


def dataset_records(folder: Path, cols: ImageColumns) -> tuple[list[dict], list[str]]:
    """The dataset's rows as images-table records (``image_id``, ``prompt``, ``width`` and
    ``height`` where the dataset has them, ``_image``: (file, rfengine's)) and their places."""
    table = _table(folder, cols.split)
    for name, option in ((cols.image_id, "--id-column"), (cols.prompt, "--prompt-column")):
        if name not in table.column_names:
            raise InputError(
                f"{folder}: no column {name!r} (columns: "
                f"{', '.join(table.column_names)}); name it with {option}"
            )
    keep = [c for c in (cols.image_id, cols.prompt, "width", "height") if c in table.column_names]
    rows = table.select(keep).to_pylist()
    images = table.column(cols.image).to_pylist() if cols.image in table.column_names else None
    out = []
    for k, row in enumerate(rows):
        rec = {"image_id": row[cols.image_id], "prompt": row[cols.prompt]}
        rec.update({f: row[f] for f in ("width", "height") if f in row})
        if images is not None:
            rec["_image"] = _image(images[k], folder)
        out.append(rec)
    return out, [f"row {k}" for k in range(len(out))]
