#!/usr/bin/env bash
# On a machine with a CUDA GPU: the CUDA tests and the CUDA parts of both benchmarks, in
# under 9 minutes, with every result in one folder: $OUT if set (the device tool's), else
# benchmarks/results/gpu/. Needs python3 with torch (CUDA), pyarrow, safetensors, scipy,
# pytest and hypothesis; `datasets` is installed from wheels in .whl/ when missing (no
# network there: prepare them here with `pip download -d .whl datasets ...`, README).
set -uo pipefail
cd "$(dirname "$0")/.."
dest=${OUT:-benchmarks/results/gpu}
mkdir -p "$dest"
export PYTHONUNBUFFERED=1
py=python3

if ! $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: torch sees no CUDA device here; run it on a machine with a GPU" >&2
    exit 2
fi
if ! $py -c "import datasets" 2>/dev/null; then
    $py -m pip install -q --no-index --find-links .whl datasets || echo "datasets not installed"
fi
$py -m pip install -q --no-deps --no-build-isolation -e . || exit 1
{ nvidia-smi; $py -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } \
    > "$dest/device.txt" 2>&1

status=0
timeout 150 $py -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee "$dest/cuda-tests.txt"
status=$((status | PIPESTATUS[0]))
# the JSON is rewritten after each workload: a cut run keeps what it measured
# --quick: the references (naive, published) are single-threaded and take minutes in full
timeout 240 $py benchmarks/heatmaps.py --quick --devices cpu cuda \
    --json "$dest/heatmaps-cuda.json" 2>&1 | tail -3
status=$((status | PIPESTATUS[0]))
timeout 60 $py benchmarks/heatmaps.py --profile --devices cuda > "$dest/profile-cuda.txt" 2>&1
status=$((status | $?))
# the same at 512 images per batch: the GPU path pays per call, so larger batches amortise it
timeout 90 $py benchmarks/heatmaps.py --profile --profile-images 512 --devices cuda \
    > "$dest/profile-cuda-512.txt" 2>&1
status=$((status | $?))
timeout 150 $py benchmarks/end_to_end.py --device cuda --json "$dest/end_to_end-cuda.json" \
    2>&1 | tail -20
status=$((status | PIPESTATUS[0]))
ls -la "$dest"
exit $status
