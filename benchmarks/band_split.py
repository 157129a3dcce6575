"""Skipping the Gaussians' unreachable rows: the splat's product by bands, against one product.

    python benchmarks/band_split.py [--images 64] [--repeats 9] [--json PATH]

Issue 15 asks whether the product's inner dimension can shrink on spread clicks: split the
output rows into bands and give each band only the clicks that reach it. A click is left
out of a band when its coefficient times its column profile's largest value in the band is
below ``2^-12 / n`` (``n`` clicks in the image), so every pixel moves by less than
``2^-12``, half of float16's spacing just below 1: the bound is checked against the full
product in the same run. On the ``512-spread`` workload of ``heatmaps.py`` (the seed's
shape), one batch of column and row profiles is built once; then, alternating, timed:

* ``full`` -- one ``bmm`` of ``(B, H, n)`` by ``(B, n, W)`` into the output (the engine);
* ``bands-copy-h`` -- per band of ``h`` rows, the reaching clicks gathered (padded to the
  most in any image), a ``bmm`` into a cache-sized buffer, copied into the output;
* ``bands-batched-h`` -- every band in one ``bmm`` over ``B * H / h`` matrices with the
  most reaching clicks of any band as the inner size, written in place.

Each band's selection (which clicks reach it) is inside the timing, as the engine would pay
it. Reported: median ms per batch, the ratio to ``full``, the mean inner size, and the
largest difference from ``full``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import numpy as np
import torch
from heatmaps import make_images
from rfengine.kernels import gaussian_profiles, sigma_px


def factors(images: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gy (B, H, n), gx (B, n, W))`` float32 for images of one size: each click's column
    profile times its annotator's share, and its row profile (both peak 1 on the grid), as
    the engine's product takes them."""
    H, W = images[0]["h"], images[0]["w"]
    n = max(sum(len(p) for p, _ in im["annotators"]) for im in images)
    cx = torch.full((len(images), n), 0.5, dtype=torch.float64)
    cy, coeff = cx.clone(), torch.zeros_like(cx)
    for b, im in enumerate(images):
        total = sum(w for _, w in im["annotators"])
        k = 0
        for pts, w in im["annotators"]:
            for x, y in pts:
                cx[b, k], cy[b, k], coeff[b, k] = x, y, w / total
                k += 1
    width = torch.full((len(images),), float(W), dtype=torch.float64)
    height = torch.full_like(width, float(H))
    sigma = sigma_px(width, height)
    gy = gaussian_profiles(cy, height, H, sigma, transposed=True)[0] * coeff[:, None, :]
    gx = gaussian_profiles(cx, width, W, sigma)[0]
    # as the engine does: factors below sqrt(float32 tiny) zeroed, no subnormal products
    tiny = torch.finfo(torch.float32).tiny ** 0.5
    return (
        torch.nn.functional.threshold(gy.float(), tiny, 0.0).contiguous(),
        torch.nn.functional.threshold(gx.float(), tiny, 0.0).contiguous(),
    )


def reaching(gy: torch.Tensor, h: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per band of ``h`` rows: which clicks reach it (``(B, nb, n)``: the largest value of
    their column profile in the band at least ``tol``) and a column order putting them first
    in each image."""
    B, H, n = gy.shape
    reach = gy.view(B, H // h, h, n).amax(2) >= tol
    return reach, torch.argsort((~reach).to(torch.int8), dim=2, stable=True)


def bands_copy(gy: torch.Tensor, gx: torch.Tensor, out: torch.Tensor, h: int, tol: float) -> float:
    """Per band: the reaching clicks' profiles, one ``bmm`` into a buffer, copied out.
    Returns the mean inner size."""
    B = gy.shape[0]
    W = gx.shape[2]
    reach, order = reaching(gy, h, tol)
    counts = reach.sum(2).amax(0).tolist()
    buf = torch.empty((B, h, W))
    for k, kb in enumerate(counts):
        idx = order[:, k, :kb]
        a = gy[:, k * h : (k + 1) * h, :].gather(2, idx[:, None, :].expand(B, h, kb))
        c = gx.gather(1, idx[:, :, None].expand(B, kb, W))
        torch.bmm(a, c, out=buf)
        out[:, k * h : (k + 1) * h].copy_(buf)
    return float(np.mean(counts))


def bands_batched(
    gy: torch.Tensor, gx: torch.Tensor, out: torch.Tensor, h: int, tol: float
) -> float:
    """Every band in one ``bmm`` over ``B * H / h`` matrices, one inner size for all.
    Returns that size."""
    B, H, n = gy.shape
    W = gx.shape[2]
    nb = H // h
    reach, order = reaching(gy, h, tol)
    K = int(reach.sum(2).max())
    order = order[:, :, :K]
    keep = reach.gather(2, order).to(gy.dtype)
    rows = (torch.arange(B)[:, None, None] * n + order).reshape(-1)
    c = gx.reshape(B * n, W).index_select(0, rows).view(B * nb, K, W)
    a = gy.view(B, nb, h, n).gather(3, order[:, :, None, :].expand(B, nb, h, K))
    a = a * keep[:, :, None, :]
    torch.bmm(a.view(B * nb, h, K), c, out=out.view(B * nb, h, W))
    return float(K)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    gy, gx = factors(make_images("512-spread", args.images))
    B, H, n = gy.shape
    tol = 2.0**-12 / n
    ref = torch.bmm(gy, gx)
    out = torch.empty_like(ref)

    def full() -> float:
        torch.bmm(gy, gx, out=out)
        return float(n)

    methods: dict[str, Callable[[], float]] = {"full": full}
    for h in (64, 128):
        methods[f"bands-copy-{h}"] = lambda h=h: bands_copy(gy, gx, out, h, tol)
    for h in (64, 128, 256):
        methods[f"bands-batched-{h}"] = lambda h=h: bands_batched(gy, gx, out, h, tol)
    times: dict[str, list[float]] = {k: [] for k in methods}
    inner: dict[str, float] = {}
    error: dict[str, float] = {}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name, fn in methods.items():
            t0 = time.perf_counter()
            inner[name] = float(fn())
            if rep:
                times[name].append(time.perf_counter() - t0)
            error[name] = float((out - ref).abs().max())
    full = median(times["full"])
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "workload": f"512-spread, {B} images, {n} clicks per image",
        "error_bound": 2.0**-12,
        "methods": {
            name: {
                "ms_per_batch": round(median(t) * 1000, 2),
                "x_full": round(median(t) / full, 2),
                "mean_inner_size": round(inner[name], 1),
                "max_abs_error": error[name],
            }
            for name, t in times.items()
        },
    }
    for name, row in report["methods"].items():
        print(f"{name:18s} {row}")
        assert row["max_abs_error"] <= 2.0**-12, f"{name} exceeds the error bound"
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
