"""Does trust weighting recover the planted truth better? The demo's campaign over seeds.

For each seed: simulate the default demo campaign, aggregate it trust-weighted and
unweighted, and count on how many seeds trust weighting is better on each recovery figure
(lower peak distances, higher rank correlations and top-word accuracy).

    python benchmarks/recovery.py [--seeds 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import datasets

from rfengine import aggregate, load_dataset, save_output
from rfengine.sim.simulate import read_truth, simulate
from rfengine.train.metrics import recovery

KEYS = (
    "coherence_peak_distance",
    "alignment_peak_distance",
    "style_spearman",
    "coherence_spearman",
    "alignment_spearman",
    "top_word_accuracy",
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "recovery.json"
    )
    args = ap.parse_args()
    datasets.disable_progress_bars()
    wins = {k: 0 for k in KEYS}
    ties = {k: 0 for k in KEYS}
    runs = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            camp = simulate(Path(tmp) / "c", 48, seed)
            rec = {}
            for w in ("trust", "uniform"):
                result = aggregate(camp / "images.jsonl", camp / "responses.jsonl", weights=w)
                save_output(result, Path(tmp) / w)
                rec[w] = recovery(load_dataset(Path(tmp) / w), read_truth(camp / "truth.jsonl"))
        for k in KEYS:
            t, u = rec["trust"][k], rec["uniform"][k]
            ties[k] += t == u
            wins[k] += (t < u) if "distance" in k else (t > u)
        runs.append({"seed": seed, **{f"{w}_{k}": rec[w][k] for w in rec for k in KEYS}})
    report = {"seeds": args.seeds, "trust_better": wins, "ties": ties, "runs": runs}
    print(json.dumps({"seeds": args.seeds, "trust_better": wins, "ties": ties}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
