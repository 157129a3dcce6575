"""SHA-256 of every output file for fixed inputs and options: proof that a refactor kept
the outputs byte-identical.

Runs ``rfengine aggregate`` (in a subprocess, as a user would) on the demo's simulated
campaign (48 images, seed 0) under several option sets and on a bulk synthetic fixture
split into many partitions, then hashes every file of each output. ``manifest.json`` is
hashed without its ``run`` field (when it ran, how long each stage took), and the
temporary folder's path is taken out of the JSON files (the manifest's and the
rejections' input paths). Compare two runs with ``--check``::

    python benchmarks/output_digest.py --json before.json            # on the old code
    python benchmarks/output_digest.py --check before.json           # on the new code
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from synthetic import make_images, make_responses

#: option sets run on the simulated campaign
CASES = {
    "default": [],
    "estimate-reliability": ["--weights", "estimate", "--prior", "uniform", "--reliability"],
    "uniform-512-float32": ["--weights", "uniform", "--heatmap-size", "512x512"]
    + ["--dtype", "float32"],
    "rapidata-2025": ["--preset", "rapidata-2025"],
    "skip-no-heatmaps": ["--on-error", "skip", "--dataset-heatmaps", "no"],
}


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "rfengine.cli", *args], check=True)


def digest(out: Path, root: Path) -> dict[str, str]:
    """File -> SHA-256 of its bytes (the manifest normalised as said above)."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            doc = json.loads(data)
            doc.pop("run", None)
            data = json.dumps(doc, sort_keys=True).encode()
        if path.suffix in (".json", ".jsonl"):  # input paths, in the manifest and rejections
            data = data.replace(str(root).encode(), b"ROOT")
        found[path.relative_to(out).as_posix()] = hashlib.sha256(data).hexdigest()
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the digests here")
    ap.add_argument("--check", type=Path, help="compare with digests written earlier")
    args = ap.parse_args()
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        camp = root / "camp"
        run(["simulate", "--images", "48", "--seed", "0", "--out", str(camp)])
        resp = camp / "responses.jsonl"
        bad = camp / "with-bad-rows.jsonl"
        bad.write_text(resp.read_text() + '{"image_id": "nope", "task": "style"}\n')
        for name, extra in CASES.items():
            out = root / name
            responses = bad if "skip" in extra else resp
            run(["aggregate", "--images", str(camp / "images.jsonl"), "--responses", str(responses)]
                + ["--out", str(out), "--quiet", *extra])  # fmt: skip
            result[name] = digest(out, root)
        images = make_images(600, [(64, 64), (96, 48), (48, 80)], seed=3)
        (root / "bulk").mkdir()
        (root / "bulk" / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in images))
        pq.write_table(make_responses(images, 6, seed=3), root / "bulk" / "responses.parquet")
        out = root / "bulk-out"
        run(["aggregate", "--images", str(root / "bulk" / "images.jsonl"), "--responses",
             str(root / "bulk" / "responses.parquet"), "--out", str(out), "--quiet",
             "--memory-budget", "2MB"])  # fmt: skip
        result["bulk-2MB"] = digest(out, root)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.check:
        before = json.loads(args.check.read_text())
        diff = [
            f"{case}/{f}"
            for case in sorted(set(before) | set(result))
            for f in sorted(set(before.get(case, {})) | set(result.get(case, {})))
            if before.get(case, {}).get(f) != result.get(case, {}).get(f)
        ]
        files = sum(len(v) for v in result.values())
        if diff:
            print(f"{len(diff)} of {files} files differ: {', '.join(diff[:10])}")
            return 1
        print(f"all {files} files of {len(result)} outputs identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
