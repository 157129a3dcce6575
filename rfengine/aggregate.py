"""Batch validated responses into tensors, run the kernels, and hold the results.

Data flow: ``ingest`` (tables -> flat arrays) -> here (group images by output size, chunk
by a memory budget, pad points) -> ``rfengine.kernels`` (splat, segment reductions) ->
``AggregationResult.save`` (``rfengine.write``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from rfengine.errors import Rejection
from rfengine.ingest import (
    CRITERIA,
    POINT_TASKS,
    TASKS,
    Images,
    ReadStats,
    Responses,
    read_images,
    read_responses,
)
from rfengine.kernels import Preset, splat_heatmaps, weighted_moments
from rfengine.kernels.segment import segment_sum

HEATMAP_KINDS = ("coherence", "alignment")  # from tasks coherence_points, alignment_points
DType = Literal["float16", "float32"]
_DTYPES = {"float16": np.float16, "float32": np.float32}
_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}
DEFAULT_BUDGET = 512 * 2**20


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` over pairs ``(s, n)``, without a Python loop."""
    lens = np.asarray(lens, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(int(lens.sum()), dtype=np.int64)


def parse_heatmap_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"native"`` -> None; ``"HxW"`` (e.g. ``"512x512"``) or ``(H, W)`` -> ``(H, W)``."""
    if text is None or text == "native":
        return None
    if isinstance(text, tuple):
        h, w = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not m:
            raise ValueError(f"heatmap size must be 'native' or HxW such as 512x512, got {text!r}")
        h, w = int(m[1]), int(m[2])
    if h <= 0 or w <= 0 or h * w > 2**28:
        raise ValueError(f"heatmap size must be positive and at most 2^28 pixels, got {h}x{w}")
    return int(h), int(w)


def parse_bytes(text: str | int) -> int:
    """``"512MB"``, ``"2GiB"``, ``"1e9"`` or an int -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([\d.eE+]+)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*", text)
    if not m:
        raise ValueError(f"expected a size such as 512MB or 2GiB, got {text!r}")
    scale = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    return int(float(m[1]) * scale[(m[2] or "").lower()[:1]])


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    return dev


@dataclass
class Scores:
    """Per-image statistics of one rating criterion; NaN marks null (no usable rating)."""

    score: np.ndarray  # weighted mean, 1..5
    std: np.ndarray  # weighted standard deviation
    count: np.ndarray  # number of ratings (int64)
    weight: np.ndarray  # sum of weights

    @property
    def norm(self) -> np.ndarray:
        """``(score - 1) / 4`` in [0, 1]."""
        return (self.score - 1.0) / 4.0


@dataclass
class WordScores:
    """Per-token weight sums; image k's slots are ``values[offsets[k]:offsets[k+1]]``.

    The last slot of each image is "[No_Mistake]"; ``count`` is the number of word
    responses (0 means the image's word scores are null).
    """

    values: np.ndarray  # float64
    offsets: np.ndarray  # int64, (N + 1,)
    total: np.ndarray  # (N,) total weight of the image's word responses
    count: np.ndarray  # (N,) number of word responses

    def tokens(self, k: int) -> np.ndarray:
        return self.values[self.offsets[k] : self.offsets[k + 1] - 1]

    @property
    def no_mistake(self) -> np.ndarray:
        return self.values[self.offsets[1:] - 1]


@dataclass
class AggregationResult:
    """Everything one aggregation produced; ``save(out)`` writes it atomically.

    ``heatmaps[kind][k]`` is image k's ``(H, W)`` array (``dtype``) or None where the image
    has no responses (or only zero weights) for that kind.
    """

    images: Images
    scores: dict[str, Scores]
    words: WordScores
    heatmaps: dict[str, list[np.ndarray | None]]
    config: dict[str, Any]
    stats: ReadStats
    rejected: list[Rejection] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)
    row_offset: int = 0  # row of images[0] in the whole images table (a partition's start)

    def save(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``dataset/``, ``targets/``, ``manifest.json`` (and ``rejected.jsonl``)."""
        from rfengine.write import save_result

        return save_result(self, Path(out), overwrite=overwrite)


def aggregate_scores(images: Images, r: Responses, device: torch.device) -> dict[str, Scores]:
    """Trust-weighted mean, std, count and weight sum per image and criterion."""
    out = {}
    for code, name in enumerate(CRITERIA):
        m = r.task == code
        rating = torch.from_numpy(r.rating[m]).to(device)
        weight = torch.from_numpy(r.weight[m]).to(device)
        seg = torch.from_numpy(r.image[m]).to(device)
        count, wsum, mean, std = weighted_moments(rating, weight, seg, len(images))
        out[name] = Scores(
            mean.cpu().numpy(), std.cpu().numpy(), count.cpu().numpy(), wsum.cpu().numpy()
        )
    return out


def aggregate_words(images: Images, r: Responses, device: torch.device) -> WordScores:
    """Sum of the weights of the annotators who selected each token (and No_Mistake)."""
    n = len(images)
    m = r.task == TASKS.index("words")
    offsets = np.concatenate([[0], np.cumsum(images.n_tokens + 1)]).astype(np.int64)
    resp = np.flatnonzero(m)
    lens = r.selected_offsets[resp + 1] - r.selected_offsets[resp]
    which = np.repeat(resp, lens)
    sel = r.selected[_ranges(r.selected_offsets[resp], lens)]
    slot = torch.from_numpy(offsets[r.image[which]] + sel).to(device)
    values = segment_sum(torch.from_numpy(r.weight[which]).to(device), slot, int(offsets[-1]))
    img = torch.from_numpy(r.image[m]).to(device)
    total = segment_sum(torch.from_numpy(r.weight[m]).to(device), img, n)
    count = np.bincount(r.image[m], minlength=n)
    return WordScores(values.cpu().numpy(), offsets, total.cpu().numpy(), count)


def _chunks(
    images: Images, present: np.ndarray, size: tuple[int, int] | None, budget: int
) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Images to splat, grouped by output size and split so one chunk's maps fit ``budget``."""
    oh = images.height if size is None else np.full(len(images), size[0])
    ow = images.width if size is None else np.full(len(images), size[1])
    idx = np.flatnonzero(present)
    keys = oh[idx] * (1 << 32) + ow[idx]
    for key in np.unique(keys):
        members = idx[keys == key]
        h, w = int(key >> 32), int(key & 0xFFFFFFFF)
        per_image = h * w * 4 * 2  # the float32 output and its cast copy
        step = max(1, budget // per_image)
        for s in range(0, len(members), step):
            yield (h, w), members[s : s + step]


def aggregate_heatmaps(
    images: Images,
    r: Responses,
    task: str,
    *,
    preset: Preset,
    size: tuple[int, int] | None,
    device: torch.device,
    dtype: DType,
    budget: int = DEFAULT_BUDGET,
    progress: bool = False,
) -> list[np.ndarray | None]:
    """One heatmap kind for every image: ``(H, W)`` arrays, or None where not collected."""
    n = len(images)
    m = r.task == TASKS.index(task)
    resp_img = r.image[m]
    if preset == "default":
        denom = np.bincount(resp_img, weights=r.weight[m], minlength=n)
    else:
        denom = np.bincount(resp_img, minlength=n).astype(np.float64)
    present = denom > 0
    out: list[np.ndarray | None] = [None] * n

    # responses with points; Responses are sorted by image, so each image's are contiguous
    resp = np.flatnonzero(m)
    lens = r.point_offsets[resp + 1] - r.point_offsets[resp]
    resp, lens = resp[lens > 0], lens[lens > 0]
    bounds = np.searchsorted(r.image[resp], np.arange(n + 1))
    # one output buffer, reused across the chunks of a size (chunks come grouped by size, so
    # memory does not grow with the number of distinct sizes), and the kernel's work buffers
    buf: torch.Tensor | None = None
    scratch: dict[str, torch.Tensor] = {}
    bar = tqdm(total=int(present.sum()), desc=f"{task} heatmaps", unit="img", disable=not progress)
    for (h, w), members in _chunks(images, present, size, budget):
        sel = _ranges(bounds[members], bounds[members + 1] - bounds[members])
        c_resp, c_lens = resp[sel], lens[sel]
        pts = r.points[_ranges(r.point_offsets[c_resp], c_lens)]
        ann_img = np.searchsorted(members, r.image[c_resp])  # position in the chunk
        weight = r.weight[c_resp] if preset == "default" else np.ones(len(c_resp))
        scale = weight / denom[r.image[c_resp]]

        def t(a: np.ndarray, dt: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)

        if buf is None or buf.shape[1:] != (h, w) or buf.shape[0] < len(members):
            buf = None  # release the previous one first
            buf = torch.empty((len(members), h, w), device=device)
        maps = splat_heatmaps(
            t(pts[:, 0]),
            t(pts[:, 1]),
            t(np.repeat(ann_img, c_lens), torch.long),
            t(np.repeat(np.arange(len(c_resp)), c_lens), torch.long),
            t(ann_img, torch.long),
            t(scale),
            t(images.width[members], torch.long),
            t(images.height[members], torch.long),
            (h, w),
            preset,
            out=buf[: len(members)],
            scratch=scratch,
        )
        # copy=True: on the CPU in float32 a plain .to() would return a view of the buffer
        host = maps.to("cpu", _TORCH_DTYPES[dtype], copy=True).numpy()
        for q, k in enumerate(members):
            out[k] = host[q]
        bar.update(len(members))
    bar.close()
    return out


def make_config(
    preset: Preset,
    heatmap_size: str | tuple[int, int] | None,
    device: str,
    dtype: DType,
    on_error: str,
    weights: str,
    memory_budget: str | int,
) -> dict[str, Any]:
    """Check the options once and return the run's config (as recorded in the manifest)."""
    if preset not in ("default", "rapidata-2025"):
        raise ValueError(f"preset must be 'default' or 'rapidata-2025', got {preset!r}")
    if weights not in ("trust", "uniform"):
        raise ValueError(f"weights must be 'trust' or 'uniform', got {weights!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    size = parse_heatmap_size(heatmap_size)
    if preset == "rapidata-2025" and size is not None:
        raise ValueError(
            "preset 'rapidata-2025' is defined at native resolution; use --heatmap-size native"
        )
    return {
        "preset": preset,
        "heatmap_size": "native" if size is None else f"{size[0]}x{size[1]}",
        "device": str(resolve_device(device)),
        "dtype": dtype,
        "on_error": on_error,
        "weights": weights,
        "memory_budget": parse_bytes(memory_budget),
    }


def compute(
    images: Images, resp: Responses, config: dict[str, Any], progress: bool = False
) -> tuple[dict[str, Scores], WordScores, dict[str, list[np.ndarray | None]], dict[str, float]]:
    """Scores, word scores and heatmaps of ``images`` from ``resp`` (indices into ``images``)."""
    dev = torch.device(config["device"])
    if config["weights"] == "uniform":
        resp = replace(resp, weight=np.ones_like(resp.weight))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scores = aggregate_scores(images, resp, dev)
    words = aggregate_words(images, resp, dev)
    timings["reduce"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    size = parse_heatmap_size(config["heatmap_size"])
    heatmaps = {
        kind: aggregate_heatmaps(
            images,
            resp,
            task,
            preset=config["preset"],
            size=size,
            device=dev,
            dtype=config["dtype"],
            budget=config["memory_budget"] // 4,  # splat buffers; the maps themselves too
            progress=progress,
        )
        for kind, task in zip(HEATMAP_KINDS, POINT_TASKS, strict=True)
    }
    timings["splat"] = time.perf_counter() - t0
    return scores, words, heatmaps, timings


def aggregate(
    images: str | Path | Images,
    responses: str | Path | Sequence[str | Path],
    *,
    preset: Preset = "default",
    heatmap_size: str | tuple[int, int] | None = "native",
    device: str = "auto",
    dtype: DType = "float16",
    on_error: Literal["fail", "skip"] = "fail",
    weights: Literal["trust", "uniform"] = "trust",
    memory_budget: str | int = DEFAULT_BUDGET,
    progress: bool = False,
) -> AggregationResult:
    """Aggregate responses into scores, word scores and heatmaps, in memory.

    For inputs larger than memory, ``rfengine.aggregate_to_disk`` (the CLI's path) streams
    the same computation partition by partition.

    Args:
        images: images table path (JSONL, CSV, Parquet) or a loaded ``Images``.
        responses: one or more responses files in the interchange format.
        preset: ``"default"`` (trust-weighted, any size) or ``"rapidata-2025"`` (the
            published method: unweighted, discrete filter, native size).
        heatmap_size: ``"native"`` or ``"HxW"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; dtype: heatmap dtype.
        on_error: ``"fail"`` raises on the first bad row; ``"skip"`` reports and goes on.
        weights: ``"trust"`` uses each response's weight; ``"uniform"`` sets every weight
            to 1 (the unweighted baseline, for comparisons).
        memory_budget: memory for the heatmap work (``"512MB"``); a quarter goes to splat
            buffers, which sets how many images are batched together.

    Returns:
        An ``AggregationResult``; call ``.save(out)`` to write the dataset and targets.
    """
    config = make_config(preset, heatmap_size, device, dtype, on_error, weights, memory_budget)
    t0 = time.perf_counter()
    imgs = images if isinstance(images, Images) else read_images(images)
    paths = (
        [Path(responses)] if isinstance(responses, (str, Path)) else [Path(p) for p in responses]
    )
    resp, rejected, stats = read_responses(paths, imgs, on_error)
    read_s = time.perf_counter() - t0
    scores, words, heatmaps, timings = compute(imgs, resp, config, progress)
    inputs = ([imgs.source] if imgs.source else []) + paths
    return AggregationResult(
        imgs, scores, words, heatmaps, config, stats, rejected, {"read": read_s, **timings}, inputs
    )
