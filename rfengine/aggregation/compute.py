"""The aggregation stage: validated responses of a range of images -> scores, words, heatmaps.

Data flow: ``rfengine.ingest`` (tables -> flat arrays) -> here (group images by output
size, chunk by a memory budget, pad points) -> ``rfengine.kernels`` (splat, segment
reductions) -> ``rfengine.aggregation.result`` (plain data) -> ``rfengine.store``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from rfengine.aggregation.regions import aggregate_regions, region_n_eff
from rfengine.aggregation.reliability import (
    annotator_halves,
    pair_counts,
    split_half_reliability,
)
from rfengine.aggregation.result import (
    AggregationResult,
    BlockPool,
    Heatmaps,
    Scores,
    WordScores,
    new_block,
)
from rfengine.ingest import Images, ReadStats, Responses
from rfengine.kernels import (
    Points,
    Preset,
    concat_ranges,
    segment_sum,
    splat_heatmaps,
    weighted_moments,
)
from rfengine.options import AggregateOptions
from rfengine.schema import CRITERIA, POINT_TASKS, REGION_TASKS, Task, size_key, split_size_key


def rapidata_pixels(points: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Points as Rapidata's 2025 script placed them, returned as their pixels' centres.

    The script read each click as ``(x, int(y))`` in percent and snapped it to pixel
    ``min(int(x / 100 * W), W - 1)`` (likewise y) in float64. ``points`` are fractions
    (percent / 100, as ``import-rapidata`` writes them); the percent is recovered to 1e-9,
    so that 0.29 is 29 %, not 28.999... Returns ``(P, 2)`` fractions ``(pixel + 0.5) /
    side``, which the kernel snaps back to the same pixels.

    x = 29 % of 100 px is pixel 28 in float64 (29 / 100 * 100 = 28.999...), as in the
    script; y = 30.7 % is cut to 30 %, pixel 30:

    >>> rapidata_pixels(np.array([[0.29, 0.307]]), np.array([100]), np.array([100]))
    array([[0.285, 0.305]])
    """
    x, y = points[:, 0], points[:, 1]
    y_cut = np.floor(y * 100 + 1e-9) / 100  # int() of the percent value
    col = np.minimum(np.floor(x * width), width - 1)
    row = np.minimum(np.floor(y_cut * height), height - 1)
    return np.stack([(col + 0.5) / width, (row + 0.5) / height], axis=1)


def aggregate_scores(images: Images, r: Responses, device: torch.device) -> dict[str, Scores]:
    """Trust-weighted mean, std, count and weight sum per image and criterion."""
    out = {}
    for name in CRITERIA:
        m = r.task == Task.from_name(name)
        rating = torch.from_numpy(r.rating[m]).to(device)
        weight = torch.from_numpy(r.weight[m]).to(device)
        seg = torch.from_numpy(r.image[m]).to(device)
        count, wsum, mean, std = weighted_moments(rating, weight, seg, len(images))
        wsq = segment_sum(weight * weight, seg, len(images))
        out[name] = Scores(
            mean.cpu().numpy(),
            std.cpu().numpy(),
            count.cpu().numpy(),
            wsum.cpu().numpy(),
            wsq.cpu().numpy(),
        )
    return out


def aggregate_words(images: Images, r: Responses, device: torch.device) -> WordScores:
    """Sum of the weights of the annotators who selected each token (and No_Mistake)."""
    n = len(images)
    m = r.task == Task.WORDS
    offsets = images.word_offsets
    resp = np.flatnonzero(m)
    lens = r.selected_offsets[resp + 1] - r.selected_offsets[resp]
    which = np.repeat(resp, lens)
    sel = r.selected[concat_ranges(r.selected_offsets[resp], lens)]
    slot = torch.from_numpy(offsets[r.image[which]] + sel).to(device)
    values = segment_sum(torch.from_numpy(r.weight[which]).to(device), slot, int(offsets[-1]))
    img = torch.from_numpy(r.image[m]).to(device)
    w = torch.from_numpy(r.weight[m]).to(device)
    total = segment_sum(w, img, n)
    wsq = segment_sum(w * w, img, n)
    count = np.bincount(r.image[m], minlength=n)
    return WordScores(values.cpu().numpy(), offsets, total.cpu().numpy(), count, wsq.cpu().numpy())


def _size_groups(
    images: Images, select: np.ndarray, size: tuple[int, int] | None
) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """The ``select``-ed images grouped by output size: ``((H, W), image indices)``."""
    oh = images.height if size is None else np.full(len(images), size[0])
    ow = images.width if size is None else np.full(len(images), size[1])
    idx = np.flatnonzero(select)
    keys = size_key(oh[idx], ow[idx])
    for key in np.unique(keys):
        yield split_size_key(key), idx[keys == key]


def aggregate_heatmaps(
    images: Images,
    r: Responses,
    task: Task,
    *,
    preset: Preset,
    size: tuple[int, int] | None,
    device: torch.device,
    dtype: torch.dtype,
    budget: int,
    progress: bool = False,
    pool: BlockPool | None = None,
) -> Heatmaps:
    """One heatmap kind for every image: ``(H, W)`` arrays, or None where not collected; each
    output size's maps in one block (from ``pool`` when given), cast into it chunk by chunk
    (see ``Heatmaps``).

    ``rapidata-2025`` as published: an image where an annotator of this kind clicked nothing
    is all NaN (the script's 0/0), and points are snapped to native pixels in float64 with
    y cut to a whole percent first (``rapidata_pixels``).
    """
    n = len(images)
    m = r.task == task
    resp_img = r.image[m]
    if preset == "default":
        denom = np.bincount(resp_img, weights=r.weight[m], minlength=n)
    else:
        denom = np.bincount(resp_img, minlength=n).astype(np.float64)
    present = denom > 0
    out = Heatmaps(n)

    # responses with points; Responses are sorted by image, so each image's are contiguous
    resp = np.flatnonzero(m)
    lens = r.point_offsets[resp + 1] - r.point_offsets[resp]
    nan_maps = np.zeros(n, dtype=bool)
    if preset == "rapidata-2025":
        nan_maps[r.image[resp[lens == 0]]] = True
        present &= ~nan_maps
    resp, lens = resp[lens > 0], lens[lens > 0]
    bounds = np.searchsorted(r.image[resp], np.arange(n + 1))
    # one output buffer, reused across the chunks of a size (sizes come one after another,
    # so memory does not grow with the number of distinct sizes), and the kernel's work
    # buffers
    buf: torch.Tensor | None = None
    scratch: dict[str, torch.Tensor] = {}

    def t(a: np.ndarray, dt: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)

    def splat_chunk(dest: np.ndarray, members: np.ndarray, hw: tuple[int, int]) -> None:
        """Splat ``members`` (images of one output size) and cast their maps into ``dest``."""
        nonlocal buf
        h, w = hw
        sel = concat_ranges(bounds[members], bounds[members + 1] - bounds[members])
        c_resp, c_lens = resp[sel], lens[sel]
        pts = r.points[concat_ranges(r.point_offsets[c_resp], c_lens)]
        ann_img = np.searchsorted(members, r.image[c_resp])  # position in the chunk
        if preset == "rapidata-2025":
            pts = rapidata_pixels(pts, np.repeat(w, len(pts)), np.repeat(h, len(pts)))
        weight = r.weight[c_resp] if preset == "default" else np.ones(len(c_resp))
        scale = weight / denom[r.image[c_resp]]
        direct = device.type == "cpu"  # into the block: float32 as is, float16 cast in cache
        if not direct and (buf is None or buf.shape[1:] != (h, w) or buf.shape[0] < len(members)):
            buf = None  # release the previous one first
            buf = torch.empty((len(members), h, w), device=device)
        points = Points(
            px=t(pts[:, 0]),
            py=t(pts[:, 1]),
            point_image=t(np.repeat(ann_img, c_lens), torch.long),
            point_annotator=t(np.repeat(np.arange(len(c_resp)), c_lens), torch.long),
            annotator_image=t(ann_img, torch.long),
            annotator_scale=t(scale),
            width=t(images.width[members], torch.long),
            height=t(images.height[members], torch.long),
        )
        maps = splat_heatmaps(
            points,
            (h, w),
            preset,
            # on the CPU the kernel writes the output block itself: no separate cast pass
            out=torch.from_numpy(dest) if direct else buf[: len(members)],
            scratch=scratch,
            check=False,  # the ingest stage guarantees the kernel's preconditions
            into=torch.from_numpy(dest) if direct and dest.dtype != np.float32 else None,
        )
        if not direct:
            torch.from_numpy(dest).copy_(maps)  # to the host and the output dtype, in place

    bar = tqdm(
        total=int(present.sum()),
        desc=f"{task.heatmap_kind} heatmaps",
        unit="img",
        disable=not progress,
    )
    for (h, w), group in _size_groups(images, present, size):
        block = new_block((len(group), h, w), dtype, pool)
        # one chunk's float32 output fits the budget (its cast goes straight into the block)
        step = max(1, budget // (h * w * 4))
        for s in range(0, len(group), step):
            splat_chunk(block[s : s + step], group[s : s + step], (h, w))
            bar.update(len(group[s : s + step]))
        out.add(group, block)
    bar.close()
    for (h, w), group in _size_groups(images, nan_maps, size):
        out.add(group, torch.full((len(group), h, w), torch.nan, dtype=dtype).numpy())
    return out


def splat_budget(options: AggregateOptions) -> int:
    """Bytes for one splat call's float32 output. On the CPU a quarter of the memory budget
    (it lives in host memory beside the partition's maps, into which each call's maps are
    cast). On CUDA it lives on the GPU: a quarter of its free memory, so that a batch holds
    as many images as fit (fewer, larger calls: the GPU path pays per call, not per image);
    the host copy is the partition's maps, which the budget already counts."""
    if options.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(options.device)
        return max(options.memory_budget // 4, free // 4)
    return options.memory_budget // 4


def all_heatmaps(
    images: Images,
    resp: Responses,
    options: AggregateOptions,
    dtype: torch.dtype,
    progress: bool = False,
    *,
    regions: bool = False,
    pool: BlockPool | None = None,
) -> dict[str, Heatmaps]:
    """Every heatmap kind of ``images`` as ``options`` define them, in ``dtype``: the point
    kinds, and the region kinds too when ``regions``."""
    region_maps = {
        task.heatmap_kind: aggregate_regions(
            images,
            resp,
            task,
            size=options.heatmap_size,
            device=options.device,
            dtype=dtype,
            budget=splat_budget(options),
            sigma=options.region_sigma,
            progress=progress,
            pool=pool,
        )
        for task in (REGION_TASKS if regions else ())
    }
    return {
        task.heatmap_kind: aggregate_heatmaps(
            images,
            resp,
            task,
            preset=options.preset,
            size=options.heatmap_size,
            device=options.device,
            dtype=dtype,
            budget=splat_budget(options),
            progress=progress,
            pool=pool,
        )
        for task in POINT_TASKS
    } | region_maps


def has_regions(resp: Responses) -> bool:
    """Whether ``resp`` hold any response of a regions task."""
    return bool(np.isin(resp.task, REGION_TASKS).any())


def compute(
    images: Images,
    resp: Responses,
    options: AggregateOptions,
    stats: ReadStats,
    *,
    row_offset: int = 0,
    norm_bounds: dict[str, tuple[float, float]] | None = None,
    progress: bool = False,
    regions: bool | None = None,
    pool: BlockPool | None = None,
) -> AggregationResult:
    """Scores, word scores and heatmaps of ``images`` from ``resp`` (indices into ``images``).

    ``row_offset`` is the row of ``images[0]`` in the whole images table (a partition's
    start); ``stats`` are the read counts that go with the result; ``norm_bounds`` the
    result's (see ``AggregationResult``). ``regions``: whether the run has region
    responses, so that every partition writes the region kinds (None: whether ``resp``
    has). ``pool``: where the output blocks come from (a run's, reused across partitions).
    """
    if regions is None:
        regions = has_regions(resp)
    dev = options.device
    resp = _weighted(resp, options)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scores = aggregate_scores(images, resp, dev)
    words = aggregate_words(images, resp, dev)
    timings["reduce"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    heatmaps = all_heatmaps(
        images, resp, options, options.dtype, progress, regions=regions, pool=pool
    )
    timings["splat"] = time.perf_counter() - t0
    split_half = {}
    if options.reliability:
        t0 = time.perf_counter()
        split_half = heatmap_split_half(images, resp, options, regions)
        timings["split_half"] = time.perf_counter() - t0
    clicks = {task.heatmap_kind: image_clicks(len(images), resp, task) for task in POINT_TASKS}
    pairs = {}
    for c in CRITERIA:
        m = resp.task == Task.from_name(c)
        pairs[c] = pair_counts(resp.image[m], resp.rating[m], len(images))
    return AggregationResult(
        *(images, scores, words, heatmaps, options, stats),
        timings=timings,
        row_offset=row_offset,
        norm_bounds=norm_bounds or {},
        clicks=clicks,
        rating_pairs=pairs,
        heatmap_reliability=split_half,
        heatmap_annotators={
            t.heatmap_kind: np.bincount(resp.image[resp.task == t], minlength=len(images))
            for t in (POINT_TASKS + (REGION_TASKS if regions else ()))
            if options.reliability
        },
        region_n_eff={
            t.heatmap_kind: region_n_eff(len(images), resp, t) for t in REGION_TASKS if regions
        },
    )


def heatmap_split_half(
    images: Images, resp: Responses, options: AggregateOptions, regions: bool = False
) -> dict[str, np.ndarray]:
    """Per heatmap kind, each image's split-half reliability (``split_half_reliability``
    of the maps of the two halves of the annotators, ``annotator_halves``)."""
    half = annotator_halves(resp.annotator_ids)[resp.annotator]
    maps = [
        all_heatmaps(images, resp.take(half == h), options, torch.float32, regions=regions)
        for h in (0, 1)
    ]
    return split_half_reliability(maps[0], maps[1], len(images))


def image_clicks(n: int, r: Responses, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Every click of ``task`` grouped by image: ``(offsets (n + 1,), points (P, 2))``
    (Responses are sorted by image, so each image's clicks are contiguous)."""
    resp = np.flatnonzero(r.task == task)
    lens = r.point_offsets[resp + 1] - r.point_offsets[resp]
    points = r.points[concat_ranges(r.point_offsets[resp], lens)]
    per_image = np.bincount(np.repeat(r.image[resp], lens), minlength=n)
    return np.concatenate([[0], np.cumsum(per_image)]).astype(np.int64), points


def _weighted(resp: Responses, options: AggregateOptions) -> Responses:
    """The responses with the weights ``options.weights`` asks for."""
    if options.weights == "uniform":
        return replace(resp, weight=np.ones_like(resp.weight))
    return resp


def score_ranges(
    images: Images, resp: Responses, options: AggregateOptions
) -> dict[str, tuple[float, float]]:
    """Per criterion, ``(min, max)`` of the scores of ``images`` (for min-max norms)."""
    scores = aggregate_scores(images, _weighted(resp, options), options.device)
    return {c: s.range() for c, s in scores.items()}


__all__ = [
    "aggregate_heatmaps",
    "all_heatmaps",
    "aggregate_scores",
    "aggregate_words",
    "compute",
    "image_clicks",
    "rapidata_pixels",
    "score_ranges",
]
