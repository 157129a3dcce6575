"""Vectorised segment reductions: weighted rating moments and weighted selection sums, and
the index ranges of segments (numpy, for gathering a segment's entries)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def weighted_moments(
    values: Tensor, weights: Tensor, segment: Tensor, n_segments: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Count, weight sum, weighted mean and weighted standard deviation per segment.

    ``mean = sum(w r) / sum(w)`` and ``std = sqrt(sum(w (r - mean)^2) / sum(w))``, computed
    in two passes for accuracy. Segments with no values or zero total weight get NaN mean
    and std (callers turn those into nulls).

    Args:
        values: ``(N,)`` ratings; weights: ``(N,)`` non-negative weights;
        segment: ``(N,)`` segment index in ``[0, n_segments)``.

    Returns:
        ``(count, weight, mean, std)``, each ``(n_segments,)``; count is int64, the others
        take ``values``' dtype.

    Example:
        >>> c, w, m, s = weighted_moments(torch.tensor([1., 5.]), torch.tensor([1., 3.]),
        ...                               torch.tensor([0, 0]), 1)
        >>> m, s
        (tensor([4.]), tensor([1.7321]))
    """
    dt = values.dtype
    count = torch.bincount(segment, minlength=n_segments)
    wsum = torch.zeros(n_segments, dtype=dt, device=values.device).index_add_(0, segment, weights)
    wr = torch.zeros_like(wsum).index_add_(0, segment, weights * values)
    mean = torch.where(wsum > 0, wr / wsum, torch.nan)
    dev2 = (values - mean[segment]).square_().mul_(weights)
    var = torch.zeros_like(wsum).index_add_(0, segment, dev2) / wsum
    return count, wsum, mean, torch.where(wsum > 0, var.sqrt(), torch.nan)


def segment_sum(weights: Tensor, index: Tensor, n: int) -> Tensor:
    """Sum of ``weights`` per ``index`` in ``[0, n)``: ``(N,), (N,) -> (n,)``."""
    return torch.zeros(n, dtype=weights.dtype, device=weights.device).index_add_(0, index, weights)


def concat_ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` over pairs ``(s, n)``, without a Python loop."""
    lens = np.asarray(lens, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(int(lens.sum()), dtype=np.int64)
