"""``rfengine demo``: simulate -> aggregate (trust-weighted and unweighted) -> report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rfengine.render import render_output, write_report
from rfengine.run.pipeline import aggregate
from rfengine.sim.simulate import read_truth, simulate
from rfengine.store import save_output
from rfengine.store.owned import replace_in_place, write_mark

#: what the demo writes into its folder
FOLDERS = ("campaign", "aggregate", "aggregate-estimated", "aggregate-unweighted", "render")
REPORT = "report.html"
#: how many images get a PNG panel (``rfengine render`` draws any others)
PANELS = 4


def run_demo(
    out: str | Path,
    n_images: int = 48,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Run the whole flow into ``out``: a new folder, or with ``overwrite`` an earlier
    demo's (and nothing else: ``rfengine.store.owned``).

    Layout: ``campaign/`` (simulated inputs and truth, and ``responses-no-trust.jsonl``:
    the same responses without their weights), ``aggregate/`` (trust-weighted),
    ``aggregate-estimated/`` (the no-trust responses, trust estimated from the data),
    ``aggregate-unweighted/`` (the baseline), ``render/`` (PNG panels of the first few images
    of ``aggregate/``), ``report.html`` comparing the three.
    """
    out = replace_in_place(out, "demo", overwrite, [f"{e}/" for e in FOLDERS] + [REPORT])

    def say(msg: str) -> None:
        if progress:
            print(f"rfengine demo: {msg}", file=sys.stderr)

    t0 = time.perf_counter()
    campaign = simulate(out / "campaign", n_images, seed, regions=True)
    say(f"simulated {n_images} images and their responses -> {campaign}")
    no_trust = campaign / "responses-no-trust.jsonl"
    with (campaign / "responses.jsonl").open() as src, no_trust.open("w") as dst:
        for line in src:
            row = json.loads(line)
            row.pop("weight", None)
            dst.write(json.dumps(row) + "\n")
    runs = (
        ("trust", "responses.jsonl", "aggregate"),
        ("estimate", "responses-no-trust.jsonl", "aggregate-estimated"),
        ("uniform", "responses.jsonl", "aggregate-unweighted"),
    )
    for weights, responses, name in runs:
        res = aggregate(
            campaign / "images.jsonl",
            campaign / responses,
            device=device,
            weights=weights,
            prior="uniform",
            progress=False,
        )
        save_output(res, out / name)
        say(f"aggregated ({weights} weights) -> {out / name}")
        if weights == "trust":
            panels = render_output(out / name, out / "render", res.images.ids[:PANELS])
            say(
                f"{len(panels)} image panels (image, overlays, coloured prompt) -> {out / 'render'}"
            )
    report, figures = write_report(
        out / "aggregate",
        out / REPORT,
        truth=read_truth(campaign / "truth.jsonl"),
        baseline={
            "estimate": out / "aggregate-estimated",
            "uniform": out / "aggregate-unweighted",
        },
    )
    write_mark(out, "demo")
    say(f"done in {time.perf_counter() - t0:.1f} s")
    return report, figures
