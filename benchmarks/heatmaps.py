"""Heatmap splatting: the engine against the naive CPU path, the published method and the hardware.

Workloads (synthetic, seeded): ``512-60`` (512x512, 20 annotators x 3 clicks: the target
configuration), ``512-spread`` (the same with every click anywhere on the image: the seed's
shape), ``512`` and ``1024`` (20-30 annotators with 0-3 clicks each, clustered on a
few defects), ``mixed`` (512x512, 1024x1024, 1024x768, 768x1344). Methods, timed in one
interleaved run (median of repeats, warm-up excluded, CUDA timed with events after a sync):

* ``engine-default`` / ``engine-rapidata`` -- ``rfengine.kernels.splat_heatmaps`` on a
  batch of equal-size images (float32 out, buffer reused), on cpu and on cuda when present;
* ``naive`` -- per annotator, per click, the Gaussian over the full grid in numpy float64,
  max-normalised, weighted mean (what a researcher writes first);
* ``published`` -- per annotator ``scipy.ndimage.gaussian_filter`` over a point map,
  max-normalised, mean (Rapidata's 2025 script).

Reported per configuration: ms/image, clicks/s, ratios to naive and published, GFLOP/s
against a GEMM rate measured in the same run (the floor is 2*n*H*W FLOP per image), and the
write floor (output bytes at the write bandwidth measured in the same run).

    python benchmarks/heatmaps.py [--quick] [--json PATH] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from types import ModuleType
from typing import Any

import numpy as np
import rfengine.kernels.splat as splat_module
import torch

RESULTS = Path(__file__).parent / "results"
SIZES = {
    "512-60": [(512, 512)],
    "512-spread": [(512, 512)],
    "512": [(512, 512)],
    "1024": [(1024, 1024)],
    "mixed": [(512, 512), (1024, 1024), (1024, 768), (768, 1344)],
}


def make_images(workload: str, n: int, seed: int = 0) -> list[dict]:
    """Images with annotators: ``{"w", "h", "annotators": [(points (k, 2), weight)]}``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        w, h = SIZES[workload][k % len(SIZES[workload])]
        defects = rng.random((int(rng.integers(1, 4)), 2))
        anns = []
        fixed = workload in ("512-60", "512-spread")
        n_ann = 20 if fixed else int(rng.integers(20, 31))
        for _ in range(n_ann):
            n_pts = 3 if fixed else int(rng.integers(0, 4))
            if workload == "512-spread":  # the seed's shape: clicks anywhere on the image
                anns.append((rng.random((n_pts, 2)), float(rng.uniform(0.2, 1.0))))
                continue
            near = defects[rng.integers(0, len(defects), n_pts)] + rng.normal(0, 0.04, (n_pts, 2))
            pts = np.where(rng.random((n_pts, 1)) < 0.8, near, rng.random((n_pts, 2)))
            anns.append((np.clip(pts, 0, 1), float(rng.uniform(0.2, 1.0))))
        out.append({"w": w, "h": h, "annotators": anns})
    return out


def engine_batches(images: list[dict], preset: str, device: str) -> list[tuple]:
    """The kernel's inputs, one batch per image size, built once (not timed)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for im in images:
        groups.setdefault((im["h"], im["w"]), []).append(im)
    batches = []
    for (h, w), ims in groups.items():
        px, py, pi, pa, ai, sc = [], [], [], [], [], []
        for b, im in enumerate(ims):
            total = sum(wt for _, wt in im["annotators"])
            for pts, wt in im["annotators"]:
                if len(pts) == 0:
                    continue
                a = len(ai)
                px += pts[:, 0].tolist()
                py += pts[:, 1].tolist()
                pi += [b] * len(pts)
                pa += [a] * len(pts)
                ai.append(b)
                sc.append(wt / total if preset == "default" else 1 / len(im["annotators"]))

        def t(v, dt=torch.float32):
            return torch.tensor(v, dtype=dt, device=device)

        args = (
            t(px),
            t(py),
            t(pi, torch.long),
            t(pa, torch.long),
            t(ai, torch.long),
            t(sc),
            t([w] * len(ims), torch.long),
            t([h] * len(ims), torch.long),
            (h, w),
        )
        out = torch.empty((len(ims), h, w), device=device)
        batches.append((args, out, {}))  # inputs, output buffer, scratch: as the engine reuses them
    return batches


def splat_call(module: ModuleType, args: tuple, **kw: Any) -> torch.Tensor:
    """``module.splat_heatmaps`` on ``args`` (the 8 point tensors, then the output size),
    whichever its signature: a ``Points`` record (the current kernel) or the tensors given
    loose (revisions before it, for ``compare_kernels.py`` and ``peak_stress.py --rev``)."""
    points = getattr(module, "Points", None)
    if points is None:
        return module.splat_heatmaps(*args, **kw)
    return module.splat_heatmaps(points(*args[:8]), *args[8:], **kw)


def run_engine(batches: list[tuple], preset: str, module: ModuleType = splat_module) -> None:
    """One pass of ``module``'s splat (the engine's kernel, or another version of it) over
    ``batches``, with the buffers the engine would reuse."""
    for args, out, scratch in batches:
        splat_call(module, args, preset=preset, out=out, scratch=scratch, check=False)


#: the kernel module's peak-search functions (``_normalise`` calls the others); a module
#: from an older revision (``compare_kernels.py``) is timed on those it has
SEARCH = ("_normalise", "gaussian_modes", "annotator_peaks", "tile_candidates", "tile_maxima")


def search_breakdown(module: ModuleType, run: Callable[[], None], reps: int = 5) -> dict:
    """ms per ``run()`` (one pass over the batches) spent in ``module``'s peak search, by
    timers put around its functions for ``reps`` passes (removed after), with the whole
    pass (``call``) and the search's share of it. Times are wall clock; on CUDA they are
    host time (no synchronisation inside)."""
    names = [name for name in SEARCH if hasattr(module, name)]
    spent = dict.fromkeys(names, 0.0)
    saved = {name: getattr(module, name) for name in names}

    def timer(name: str, fn: Callable) -> Callable:
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0

        return timed

    for name, fn in saved.items():
        setattr(module, name, timer(name, fn))
    try:
        t0 = time.perf_counter()
        for _ in range(reps):
            run()
        total = time.perf_counter() - t0
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)
    out = {f"{name}_ms": round(v / reps * 1000, 3) for name, v in spent.items()}
    out["call_ms"] = round(total / reps * 1000, 3)
    out["search_share"] = round(spent["_normalise"] / total, 3)
    return out


def naive(im: dict) -> np.ndarray:
    """Per annotator, per click, the full-grid Gaussian in float64; normalise; weighted mean."""
    w, h = im["w"], im["h"]
    sigma = 0.05 * min(w, h)
    ys = (np.arange(h) + 0.5)[:, None]
    xs = (np.arange(w) + 0.5)[None, :]
    acc = np.zeros((h, w))
    total = 0.0
    for pts, wt in im["annotators"]:
        total += wt
        if len(pts) == 0:
            continue
        m = np.zeros((h, w))
        for x, y in pts:
            m += np.exp(-((xs - x * w) ** 2 + (ys - y * h) ** 2) / (2 * sigma**2))
        acc += wt * m / m.max()
    return acc / total


def published(im: dict) -> np.ndarray:
    """Rapidata's 2025 script: per annotator a scipy gaussian_filter of a point map; mean."""
    from scipy.ndimage import gaussian_filter

    w, h = im["w"], im["h"]
    acc = np.zeros((h, w))
    for pts, _ in im["annotators"]:
        if len(pts) == 0:
            continue
        m = np.zeros((h, w))
        for x, y in pts:
            m[min(int(y * h), h - 1), min(int(x * w), w - 1)] += 1
        m = gaussian_filter(m, sigma=min(w, h) / 20, truncate=3)
        acc += m / m.max()
    return acc / len(im["annotators"])


def timer(device: str):
    """A function that times ``fn()`` in seconds (CUDA: events after a synchronisation)."""
    if device == "cuda":

        def t(fn) -> float:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            return a.elapsed_time(b) / 1000

        return t

    def t(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return t


def gemm_gflops(device: str, n: int = 2048, reps: int = 5) -> float:
    """Measured float32 GEMM rate (square n x n x n)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    t = timer(device)
    torch.mm(a, b, out=c)
    secs = median(t(lambda: torch.mm(a, b, out=c)) for _ in range(reps))
    return 2 * n**3 / secs / 1e9


def write_gbs(device: str, mib: int = 256, reps: int = 5) -> float:
    """Measured write bandwidth: filling a reused buffer."""
    buf = torch.empty(mib * 2**20 // 4, device=device)
    t = timer(device)
    buf.fill_(1.0)
    secs = median(t(lambda: buf.fill_(2.0)) for _ in range(reps))
    return buf.numel() * 4 / secs / 1e9


def bench(
    workloads: list[str], devices: list[str], quick: bool, save: Callable[[dict], None]
) -> dict:
    """Time every method on each workload; ``save(report)`` after each, so a cut run keeps some."""
    torch.set_num_threads(os.cpu_count() or 1)
    report: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpus": os.cpu_count(),
        "devices": {},
        "workloads": {},
    }
    for dev in devices:
        name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({os.cpu_count()} cores)"
        report["devices"][dev] = {
            "name": name,
            "gemm_gflops": round(gemm_gflops(dev), 1),
            "write_gbs": round(write_gbs(dev), 2),
        }
    reps = 2 if quick else 7
    for wl in workloads:
        n_img = {"512-60": 32, "512-spread": 32, "512": 32, "1024": 8, "mixed": 16}[wl] * (
            1 if quick else 2
        )
        images = make_images(wl, n_img)
        # the reference paths are slow: time them on a few images, one of each size
        n_ref = max(1 if quick else 2, len(SIZES[wl]))
        clicks = sum(len(p) for im in images for p, _ in im["annotators"])
        flop = sum(
            2 * sum(len(p) for p, _ in im["annotators"]) * im["w"] * im["h"] for im in images
        )
        pixels = sum(im["w"] * im["h"] for im in images)
        methods: dict = {}
        for dev in devices:
            for preset in ("default", "rapidata-2025"):
                if preset == "rapidata-2025" and wl == "mixed":
                    continue  # same per-size kernels; the mixed workload is for the default
                batches = engine_batches(images, preset, dev)
                t = timer(dev)
                methods[f"engine-{preset.split('-')[0]}-{dev}"] = (
                    lambda b=batches, p=preset, t=t: t(lambda: run_engine(b, p)),
                    n_img,
                )
        tcpu = timer("cpu")
        ref = images[:n_ref]
        methods["naive"] = (lambda t=tcpu, r=ref: t(lambda: [naive(im) for im in r]), n_ref)
        methods["published"] = (lambda t=tcpu, r=ref: t(lambda: [published(im) for im in r]), n_ref)
        for fn, _ in methods.values():  # warm-up
            fn()
        samples: dict[str, list[float]] = {k: [] for k in methods}
        for _ in range(reps):  # interleaved
            for key, (fn, _) in methods.items():
                samples[key].append(fn())
        rows = {}
        for key, (_, count) in methods.items():
            ms = 1000 * median(samples[key]) / count
            rows[key] = {"ms_per_image": round(ms, 4)}
        naive_ms, pub_ms = rows["naive"]["ms_per_image"], rows["published"]["ms_per_image"]
        for key, row in rows.items():
            ms = row["ms_per_image"]
            row["clicks_per_s"] = round(clicks / n_img / (ms / 1000))
            row["x_naive"] = round(naive_ms / ms, 1)
            row["x_published"] = round(pub_ms / ms, 1)
            if key.startswith("engine"):
                dev = key.rsplit("-", 1)[1]
                hw = report["devices"][dev]
                row["gflops"] = round(flop / n_img / (ms / 1000) / 1e9, 1)
                floor_ms = flop / n_img / (hw["gemm_gflops"] * 1e9) * 1000
                write_ms = pixels / n_img * 4 / (hw["write_gbs"] * 1e9) * 1000
                row["flop_floor_ms"] = round(floor_ms, 4)
                row["x_flop_floor"] = round(ms / floor_ms, 2)
                row["write_floor_ms_f32"] = round(write_ms, 4)
                row["write_floor_ms_f16"] = round(write_ms / 2, 4)
        report["workloads"][wl] = {
            "images": n_img,
            "clicks_per_image": round(clicks / n_img, 1),
            "methods": rows,
        }
        print(json.dumps({wl: report["workloads"][wl]}), flush=True)
        save(report)
    return report


def markdown(report: dict) -> str:
    lines = [
        f"# Heatmap benchmark — {report['date']}",
        "",
        f"torch {report['torch']}; "
        + "; ".join(
            f"{d}: {v['name']}, GEMM {v['gemm_gflops']} GFLOP/s, write {v['write_gbs']} GB/s"
            for d, v in report["devices"].items()
        ),
        "",
        "| workload | method | ms/image | clicks/s | × naive | × published | GFLOP/s "
        "| × FLOP floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for wl, r in report["workloads"].items():
        for key, row in r["methods"].items():
            lines.append(
                f"| {wl} ({r['clicks_per_image']} clicks) | {key} | {row['ms_per_image']} | "
                f"{row['clicks_per_s']} | {row['x_naive']} | {row['x_published']} | "
                f"{row.get('gflops', '')} | {row.get('x_flop_floor', '')} |"
            )
    return "\n".join(lines) + "\n"


def profile(
    device: str = "cpu", workload: str = "512-60", images: int = 64, preset: str = "default"
) -> None:
    """Where one warm batch's time goes on ``device``: the peak search's share (timers around
    its functions), the final product alone against the FLOP floor (``product_ms`` and a
    GEMM rate measured now), and cProfile's top entries by own time."""
    import cProfile
    import pstats

    torch.set_num_threads(os.cpu_count() or 1)
    batches = engine_batches(make_images(workload, images), preset, device)
    for _ in range(3):
        run_engine(batches, preset)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        run_engine(batches, preset)
    prof.disable()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        run_engine(batches, preset)
    if device == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / 5 / images * 1000
    print(f"{workload}, {images} images, preset {preset}, {device}: 5 batches")
    print(f"without the profiler: {ms:.4f} ms/image")
    parts = search_breakdown(splat_module, lambda: run_engine(batches, preset))
    inner = [name for name in SEARCH[1:] if f"{name}_ms" in parts]
    print(
        f"peak search (timers around {', '.join(['_normalise', *inner])}): "
        f"{parts['_normalise_ms']:.2f} of {parts['call_ms']:.2f} ms per call "
        f"({parts['search_share']:.0%}); "
        + ", ".join(f"{name} {parts[f'{name}_ms']:.2f}" for name in inner)
    )
    gemm = gemm_gflops(device)
    ms_bmm = product_ms(batches, preset, device)
    flop = sum(2 * a[0].numel() * a[8][0] * a[8][1] for a, _, _ in batches) / len(batches)
    floor_ms = flop / (gemm * 1e9) * 1000
    print(
        f"the product alone (torch.bmm on a call's own factors, timed apart): {ms_bmm:.2f} ms "
        f"per call, {ms_bmm / floor_ms:.2f}x the FLOP floor ({floor_ms:.2f} ms at the "
        f"{gemm:.0f} GFLOP/s GEMM rate measured now); the whole call "
        f"{parts['call_ms'] / floor_ms:.2f}x"
    )
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def product_ms(batches: list[tuple], preset: str, device: str, reps: int = 9) -> float:
    """Median ms per pass over ``batches`` of the splat's final product alone: its operands
    captured from one pass, then ``torch.bmm`` on them into the same output buffers."""
    operands = []
    bmm = torch.bmm

    def spy(a, b, *, out=None):
        if out is not None:  # the map's product (the peak search's have no out)
            operands.append((a.clone(), b.clone(), out))
        return bmm(a, b, out=out)

    torch.bmm = spy
    try:
        run_engine(batches, preset)
    finally:
        torch.bmm = bmm
    t = timer(device)

    def run() -> None:
        for a, b, out in operands:
            torch.bmm(a, b, out=out)

    run()
    return median(t(run) for _ in range(reps)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer images and repeats (< 60 s on 2 cores)"
    )
    ap.add_argument("--workloads", nargs="+", default=list(SIZES))
    ap.add_argument(
        "--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    ap.add_argument("--json", type=Path, default=RESULTS / "heatmaps.json")
    ap.add_argument(
        "--profile", action="store_true", help="profile 512-60 batches on the first device, exit"
    )
    ap.add_argument(
        "--profile-images", type=int, default=64, help="images per profiled batch (default 64)"
    )
    ap.add_argument("--profile-workload", default="512-60", choices=list(SIZES))
    args = ap.parse_args()
    if args.profile:
        profile(args.devices[0], args.profile_workload, args.profile_images)
        return

    def save(report: dict) -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(markdown(report))

    bench(args.workloads, args.devices, args.quick, save)
    print(f"written {args.json} and {args.json.with_suffix('.md')}")


if __name__ == "__main__":
    main()
