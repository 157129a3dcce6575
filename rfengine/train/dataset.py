"""A torch Dataset over an rfengine output: what a reward model trains on.

``RichFeedbackDataset(OUT)`` joins the dataset rows (image, prompt) and the target shards
(maps, scores, word values, clicks) by row, lazily: shards are opened with
``safetensors.safe_open`` when first needed, in the process that reads them, so the
dataset works with ``DataLoader(num_workers > 0)``.

Example:
    >>> from torch.utils.data import DataLoader
    >>> ds = RichFeedbackDataset("out/", image_size=(224, 224))  # doctest: +SKIP
    >>> batch = next(iter(DataLoader(ds, batch_size=8, collate_fn=collate)))  # doctest: +SKIP
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rfengine.errors import InputError
from rfengine.schema import HEATMAP_KINDS
from rfengine.store.load import load_dataset, load_manifest
from rfengine.store.targets import check_shard, open_shard, read_index

#: padding of ``token_labels`` in a collated batch (PyTorch's usual ignore index)
IGNORE_INDEX = -100


class RichFeedbackDataset(torch.utils.data.Dataset):
    """One item per image of an rfengine output, in dataset (images-table) order.

    An item is a dict:

    ====================  ====================  ======================================
    key                   shape, dtype          meaning
    ====================  ====================  ======================================
    ``image``             (3, H, W) float32     in [0, 1]; only when images are embedded
    ``{kind}_heatmap``    (h, w) float32        coherence / alignment map (0 if absent)
    ``{kind}_mask``       () bool               False = not collected (never just zero)
    ``scores``            (3,) float32          style, coherence, alignment (0 if null)
    ``scores_norm``       (3,) float32          the dataset's ``*_score_norm``
    ``scores_mask``       (3,) bool             score present
    ``token_scores``      (T,) float32          each word's weight / ``word_weight_total``
    ``token_labels``      (T,) int64            1 = misaligned (``token_scores`` >= the
                                                threshold), 0 = not
    ``words_mask``        () bool               word responses present
    ``image_id``, ``prompt``  str
    ====================  ====================  ======================================

    Tokens are ``prompt.split()`` (the engine's word tokens).

    Args:
        out: an rfengine output folder.
        image_size: ``(H, W)`` to resize images to (bilinear, antialiased); None keeps
            each image's size (then batches need equal sizes).
        heatmap_size: ``(h, w)`` to resize maps to; None keeps the targets' size. Maps are
            resampled by area averaging (bilinear when enlarging), which keeps their mean,
            not their maximum: a peak of 1 can come out lower. NaN maps (the
            ``rapidata-2025`` preset's) stay NaN.
        transform: called on each item (a dict) before it is returned.
        threshold: ``token_labels`` threshold on ``token_scores`` (default 0.5: a word
            that half the word-task weight called misaligned).
    """

    def __init__(
        self,
        out: str | Path,
        *,
        image_size: tuple[int, int] | None = None,
        heatmap_size: tuple[int, int] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        threshold: float = 0.5,
    ):
        self.out = Path(out)
        index_path = self.out / "targets" / "index.json"
        if not index_path.is_file() or not (self.out / "dataset").is_dir():
            raise InputError(f"{out}: not an rfengine output (no targets/index.json, dataset/)")
        self.image_size, self.heatmap_size = image_size, heatmap_size
        self.transform, self.threshold = transform, threshold
        load_manifest(self.out)  # checked to be rfengine's, as every reader does
        self.dataset = load_dataset(self.out).with_format(None)
        self.with_image = "image" in self.dataset.column_names
        # row -> (shard file, position in it), from each shard's ``row`` tensor only
        self.files = read_index(self.out / "targets")
        where = np.full((self.dataset.num_rows, 2), -1, dtype=np.int64)
        for f, path in enumerate(self.files):
            with open_shard(path) as fh:
                check_shard(fh, path)
                rows = fh.get_tensor("row").numpy()
            if rows.size and (rows.min() < 0 or rows.max() >= len(where)):
                raise InputError(f"{path}: 'row' names rows outside the dataset")
            where[rows, 0], where[rows, 1] = f, np.arange(len(rows))
        if (where[:, 0] < 0).any():
            raise InputError(f"{out}: rows without targets: {np.flatnonzero(where[:, 0] < 0)[:5]}")
        self.where = where
        cols = ["image_id", "prompt"] + (["image"] if self.with_image else [])
        self._rows = self.dataset.select_columns(cols).with_format(None)  # made once
        self._open: dict[int, Any] = {}  # shard handles of this process

    def __len__(self) -> int:
        return int(self.dataset.num_rows)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}  # handles do not cross processes: each worker opens its own
        return state

    def _shard(self, f: int) -> Any:
        if f not in self._open:
            self._open[f] = open_shard(self.files[f])
        return self._open[f]

    def targets(self, k: int) -> dict[str, torch.Tensor]:
        """Row ``k``'s target tensors as stored (the targets' map size, no resizing, no
        labels): heatmaps and masks, scores, ``token_scores``, ``words_mask``."""
        f, q = (int(v) for v in self.where[k])
        fh = self._shard(f)
        get = fh.get_slice
        out = {name: get(name)[q : q + 1][0] for name in ("scores", "scores_norm", "scores_mask")}
        for kind in HEATMAP_KINDS:
            out[f"{kind}_heatmap"] = get(f"{kind}_heatmap")[q : q + 1][0].float()
            out[f"{kind}_mask"] = get(f"{kind}_mask")[q : q + 1][0]
        off = get("word_offsets")[q : q + 2]
        values = get("word_values")[int(off[0]) : int(off[1])]
        total = get("word_weight_total")[q : q + 1][0]
        out["token_scores"] = values / total if total > 0 else torch.zeros_like(values)
        out["words_mask"] = get("word_mask")[q : q + 1][0]
        return out

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        item = self.targets(k)
        item["token_labels"] = (item["token_scores"] >= self.threshold).long()
        if self.heatmap_size is not None:
            for kind in HEATMAP_KINDS:
                item[f"{kind}_heatmap"] = resize_map(item[f"{kind}_heatmap"], self.heatmap_size)
        row = self._rows[k]
        item["image_id"], item["prompt"] = row["image_id"], row["prompt"]
        if self.with_image:
            item["image"] = _image_tensor(row["image"], self.image_size)
        return self.transform(item) if self.transform else item


def resize_map(heat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An ``(h, w)`` map at ``size``: area averaging when shrinking, bilinear otherwise."""
    if tuple(heat.shape) == tuple(size):
        return heat
    shrink = size[0] <= heat.shape[0] and size[1] <= heat.shape[1]
    mode = "area" if shrink else "bilinear"
    extra = {} if shrink else {"align_corners": False}
    return F.interpolate(heat[None, None], size=size, mode=mode, **extra)[0, 0]


def _image_tensor(cell: Any, size: tuple[int, int] | None) -> torch.Tensor:
    if isinstance(cell, dict):  # datasets' Image storage: {"bytes", "path"}
        cell = Image.open(io.BytesIO(cell["bytes"]))
    img = np.asarray(cell.convert("RGB"), dtype=np.float32) / 255.0
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    if size is not None and tuple(t.shape[1:]) != tuple(size):
        t = F.interpolate(t[None], size=size, mode="bilinear", antialias=True)[0].clamp_(0, 1)
    return t


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of items into a batch: tensors stacked, token fields padded to the
    longest prompt (``token_scores`` with 0, ``token_labels`` with ``IGNORE_INDEX``, and a
    ``token_mask``), strings as lists."""
    out: dict[str, Any] = {}
    n_tok = max(len(item["token_scores"]) for item in batch)
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key in ("token_scores", "token_labels"):
            fill = 0.0 if key == "token_scores" else IGNORE_INDEX
            padded = torch.full((len(batch), n_tok), fill, dtype=values[0].dtype)
            for i, v in enumerate(values):
                padded[i, : len(v)] = v
            out[key] = padded
        elif isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"'{key}' has shapes {sorted(shapes)} in one batch; pass image_size= "
                    "(or heatmap_size=) to RichFeedbackDataset"
                )
            out[key] = torch.stack(values)
        else:
            out[key] = values
    mask = torch.zeros((len(batch), n_tok), dtype=torch.bool)
    for i, item in enumerate(batch):
        mask[i, : len(item["token_scores"])] = True
    out["token_mask"] = mask
    return out


__all__ = ["IGNORE_INDEX", "RichFeedbackDataset", "collate", "resize_map"]
