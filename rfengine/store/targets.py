"""Training targets as safetensors shards, with a symmetric loader.

One series of shards per heatmap size: ``targets/{H}x{W}-{k:05d}.safetensors``. With a
fixed ``--heatmap-size`` there is one series; at native size, images of different sizes
go to different series (nothing is resized or padded). ``targets/index.json`` lists the
shards. Each shard holds, for its ``N`` images (``row`` gives their dataset rows):

==========================  ==============  =============================================
tensor                      shape, dtype    meaning
==========================  ==============  =============================================
``row``                     (N,) int64      row in the images table / dataset
``coherence_heatmap``       (N, H, W)       heatmap, zeros where absent
``coherence_mask``          (N,) bool       heatmap present
``alignment_heatmap``       (N, H, W)       likewise
``alignment_mask``          (N,) bool
``scores``                  (N, 3) float32  style, coherence, alignment means (0 if null)
``scores_norm``             (N, 3) float32  (score - 1) / 4; min-max for ``rapidata-2025``
``scores_mask``             (N, 3) bool     score present
``scores_n_eff``            (N, 3) float32  Kish's effective sample size (NaN: none)
``scores_se``               (N, 3) float32  standard error of the score (NaN: undefined)
``scores_ci``               (N, 3, 2)       95% confidence interval (NaN where n_eff <= 1)
``word_values``             (T,) float32    per-token weight sums, image after image
``word_offsets``            (N + 1,) int64  image k's tokens: values[off[k]:off[k+1]]
``no_mistake``              (N,) float32    "[No_Mistake]" weight
``word_weight_total``       (N,) float32    total weight of word responses
``word_mask``               (N,) bool       word responses present
``coherence_clicks``        (C, 2) float32  the clicks (x, y), image fractions, image after
                                            image (NSS and AUC-Judd take them as fixations)
``coherence_click_offsets`` (N + 1,) int64  image k's: clicks[off[k]:off[k+1]]
``alignment_clicks``        (C, 2) float32  likewise
``alignment_click_offsets`` (N + 1,) int64
==========================  ==============  =============================================

Where a run has region responses, each shard also holds ``coherence_region_heatmap`` and
``alignment_region_heatmap`` (N, H, W) with their ``*_region_mask`` (N,) bool, and
``*_region_n_eff`` (N,) float32: Kish's effective number of region responses (NaN: none),
so that a pixel's standard error is ``sqrt(p (1 - p) / n_eff)``.

Metadata (strings): ``format`` = ``rfengine-targets/1``, ``image_ids`` (JSON list),
``criteria`` (JSON list), ``height``, ``width``, ``preset``. ``load_targets`` reads a shard or
the whole folder back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rfengine.errors import InputError
from rfengine.schema import CRITERIA, size_key, split_size_key
from rfengine.store.files import link_or_copy

if TYPE_CHECKING:
    from rfengine.aggregation.result import AggregationResult

FORMAT = "rfengine-targets/1"
#: tensors with one row per image (besides the heatmaps and masks)
PER_IMAGE = (
    "row",
    "scores",
    "scores_norm",
    "scores_n_eff",
    "scores_se",
    "scores_ci",
    "no_mistake",
    "word_weight_total",
)
#: offsets (N + 1,) into the tensor of per-token or per-click values they index
OFFSETS = {
    "word_offsets": "word_values",
    "coherence_click_offsets": "coherence_clicks",
    "alignment_click_offsets": "alignment_clicks",
}
SHARD_BYTES = 256 << 20  # heatmap bytes per shard (each is stacked in memory to be saved)


def _shape_groups(result: AggregationResult) -> dict[tuple[int, int], np.ndarray]:
    """Rows by heatmap size (fixed size: one group; native: one per image size)."""
    size = result.options.heatmap_size
    if size is not None:
        return {size: np.arange(len(result.images))}
    keys = size_key(result.images.height, result.images.width)
    return {split_size_key(k): np.flatnonzero(keys == k) for k in np.unique(keys)}


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def shard_tensors(result: AggregationResult, rows: np.ndarray, hw: tuple[int, int]) -> dict:
    """The tensors of one shard (see the module docstring)."""
    h, w = hw
    dt = result.options.dtype
    t: dict[str, torch.Tensor] = {
        "row": torch.from_numpy(rows.astype(np.int64) + result.row_offset)
    }
    for kind, maps in result.heatmaps.items():
        # the rows' maps as they lie in the splat's block (no copy), else gathered, zeros
        # where an image has none
        stack = maps.block(rows)
        if stack is None:
            stack = torch.zeros((len(rows), h, w), dtype=dt).numpy()  # (see aggregate_heatmaps)
            for q, k in enumerate(rows):
                m = maps[k]
                if m is not None:
                    stack[q] = m
        t[f"{kind}_heatmap"] = torch.from_numpy(stack)
        t[f"{kind}_mask"] = torch.from_numpy(maps.present(rows))
    for kind, n_eff in result.region_n_eff.items():
        t[f"{kind}_n_eff"] = _f32(n_eff[rows])
    score = np.stack([result.scores[c].score[rows] for c in CRITERIA], 1)
    norm = np.stack([result.score_norm(c)[rows] for c in CRITERIA], 1)
    mask = ~np.isnan(score)
    t["scores"] = torch.from_numpy(np.where(mask, score, 0).astype(np.float32))
    t["scores_norm"] = torch.from_numpy(
        np.where(mask & ~np.isnan(norm), norm, 0).astype(np.float32)
    )
    t["scores_mask"] = torch.from_numpy(mask)
    t["scores_n_eff"] = _f32(np.stack([result.scores[c].n_eff[rows] for c in CRITERIA], 1))
    t["scores_se"] = _f32(np.stack([result.scores[c].se[rows] for c in CRITERIA], 1))
    t["scores_ci"] = _f32(np.stack([np.stack(result.scores[c].ci(), 1)[rows] for c in CRITERIA], 1))
    words = result.words
    vals = [words.word_values(k) for k in rows]
    t["word_values"] = torch.from_numpy(
        np.concatenate(vals).astype(np.float32) if vals else np.zeros(0, np.float32)
    )
    t["word_offsets"] = torch.from_numpy(
        np.concatenate([[0], np.cumsum([len(v) for v in vals])]).astype(np.int64)
    )
    t["no_mistake"] = torch.from_numpy(words.no_mistake[rows].astype(np.float32))
    t["word_weight_total"] = torch.from_numpy(words.total[rows].astype(np.float32))
    t["word_mask"] = torch.from_numpy(words.count[rows] > 0)
    for kind, (off, points) in result.clicks.items():
        parts = [points[off[k] : off[k + 1]] for k in rows]
        t[f"{kind}_clicks"] = torch.from_numpy(
            np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)
        )
        t[f"{kind}_click_offsets"] = torch.from_numpy(
            np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        )
    return t


def save_shard(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, with the header's metadata keys in sorted order.

    safetensors serialises metadata from a hash map, whose order changes from process to
    process: two identical runs would write different bytes. Sorting the keys leaves the
    header's length unchanged (same JSON, other order), so it is rewritten in place; the
    tensors' bytes are the library's.
    """
    save_file(tensors, str(path), metadata=metadata)
    with path.open("r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= n:  # the usual case: the same JSON, keys in another order
            fh.seek(8)
            fh.write(text + b" " * (n - len(text)))  # safetensors pads its header so
            return
    # escaped differently (exotic characters in an id): a new header, the data after it
    data = path.read_bytes()[8 + n :]
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def write_targets(result: AggregationResult, folder: Path, tag: str = "") -> list[dict]:
    """Write one partition's shards into ``folder``; returns their index entries.

    Shards are named ``{H}x{W}{tag}-{k:05d}.safetensors``; ``finalize_targets`` renumbers
    them into one series per size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    itemsize = result.options.itemsize
    index = []
    for (h, w), rows in sorted(_shape_groups(result).items()):
        per_shard = max(1, SHARD_BYTES // (2 * h * w * itemsize))
        for s, start in enumerate(range(0, len(rows), per_shard)):
            part = rows[start : start + per_shard]
            name = f"{h}x{w}{tag}-{s:05d}.safetensors"
            meta = {
                "format": FORMAT,
                "image_ids": json.dumps([result.images.ids[k] for k in part]),
                "criteria": json.dumps(list(CRITERIA)),
                "height": str(h),
                "width": str(w),
                "preset": result.options.preset,
            }
            save_shard(shard_tensors(result, part, (h, w)), folder / name, meta)
            index.append({"file": name, "height": h, "width": w, "images": len(part)})
    return index


def finalize_targets(entries: list[dict], src: Path, dest: Path) -> list[dict]:
    """Link shards from ``src`` into ``dest`` as ``{H}x{W}-{k:05d}.safetensors`` (in row order
    within each size) and write ``index.json``; returns the final entries."""
    dest.mkdir(parents=True, exist_ok=True)
    seq: dict[tuple[int, int], int] = {}
    final = []
    for e in entries:
        key = (e["height"], e["width"])
        k = seq.get(key, 0)
        seq[key] = k + 1
        name = f"{e['height']}x{e['width']}-{k:05d}.safetensors"
        link_or_copy(src / e["file"], dest / name)
        final.append({**e, "file": name})
    (dest / "index.json").write_text(json.dumps({"format": FORMAT, "shards": final}, indent=2))
    return final


class Shard(NamedTuple):
    """One loaded target shard: its tensors and its metadata (``image_ids`` and
    ``criteria`` decoded from JSON, ``height``/``width`` as strings, ``file``)."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def open_shard(path: Path, device: str = "cpu") -> Any:
    """``safe_open`` on a targets shard; a file that is not safetensors is an InputError."""
    try:
        return safe_open(str(path), framework="pt", device=device)
    except Exception as exc:  # safetensors' own error types, OSError for a missing file
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise InputError(f"{path}: not a readable safetensors shard ({why})") from None


def check_shard(fh: Any, path: Path) -> dict[str, Any]:
    """A shard's metadata, decoded, after checking the shard is one: rfengine's format,
    ``image_ids`` and ``criteria`` JSON lists of strings, one row per image in every
    per-image tensor, offsets that index their values. Reads only headers and offsets."""
    meta = dict(fh.metadata() or {})
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not an rfengine targets shard (format {meta.get('format')!r})")
    for key in ("image_ids", "criteria"):
        try:
            meta[key] = json.loads(meta[key])
        except (KeyError, ValueError, RecursionError):
            raise InputError(f"{path}: metadata '{key}' (a JSON list) is missing") from None
        if not isinstance(meta[key], list) or not all(isinstance(v, str) for v in meta[key]):
            raise InputError(f"{path}: metadata '{key}' is not a JSON list of strings")
    n = len(meta["image_ids"])
    names = set(fh.keys())  # noqa: SIM118 (safe_open API)
    shapes = {name: fh.get_slice(name).get_shape() for name in names}
    for name, shape in shapes.items():
        if (name in PER_IMAGE or name.endswith(("_heatmap", "_mask", "_n_eff"))) and (
            not shape or shape[0] != n
        ):
            raise InputError(f"{path}: '{name}' has {tuple(shape)}, not one row per image ({n})")
    for name, values in OFFSETS.items():
        if name not in names:
            continue
        off = fh.get_tensor(name)
        end = shapes[values][0] if values in shapes and shapes[values] else -1
        if (
            off.dim() != 1
            or len(off) != n + 1
            or off.is_floating_point()
            or int(off[0]) != 0
            or bool((off[1:] < off[:-1]).any())
            or int(off[-1]) != end
        ):
            raise InputError(f"{path}: '{name}' does not index '{values}' for {n} images")
    meta["file"] = path.name
    return meta


def _load_shard(path: Path, device: str) -> Shard:
    try:
        with open_shard(path, device) as fh:
            meta = check_shard(fh, path)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open API)
    except InputError:
        raise
    except Exception as exc:  # a tensor whose bytes the header promised but the file lacks
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise InputError(f"{path}: not a readable safetensors shard ({why})") from None
    return Shard(tensors, meta)


def read_index(folder: Path) -> list[Path]:
    """The shard files a ``targets/`` folder's ``index.json`` lists, in order: checked to
    be rfengine's index, each entry a plain file name inside the folder."""
    index = folder / "index.json"
    try:
        record = json.loads(index.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{index}: not an rfengine targets index ({exc})") from None
    got = record.get("format") if isinstance(record, dict) else type(record).__name__
    if got != FORMAT:
        raise InputError(f"{index}: not an rfengine targets index (format {got!r})")
    shards = record.get("shards")
    if not isinstance(shards, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) for e in shards
    ):
        raise InputError(f"{index}: 'shards' is not a list of {{\"file\": name}} entries")
    for e in shards:  # names from a file: plain names inside the folder, never a path out
        if Path(e["file"]).name != e["file"] or e["file"] in ("", ".", ".."):
            raise InputError(f"{index}: shard {e['file']!r} is not a file name in {folder}")
    return [folder / e["file"] for e in shards]


def load_targets(path: str | Path, *, device: str = "cpu") -> list[Shard]:
    """Load target shards: one ``.safetensors`` file, or a ``targets/`` folder (every shard,
    in ``index.json`` order). Returns ``[(tensors, meta), ...]``.

    >>> shards = load_targets("out/targets")  # doctest: +SKIP
    >>> tensors, meta = shards[0]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        return [_load_shard(path, device)]
    return [_load_shard(f, device) for f in read_index(path)]
