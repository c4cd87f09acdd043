#!/usr/bin/env bash
# WEMoE benchmark: a ViT-B/32-shaped WEMoE model with 8 experts (random weights generated at run
# time, nothing on disk), MergeKit vs FusionBench's WeightEnsemblingMoE in PyTorch, same threads.
# Times evaluation with per-image routing (seconds per image) and one test-time-adaptation step on a
# batch of 16 images of one task (batch-averaged routing, forward + backward to the routers).
#
# Usage: Benchmarks/wemoe.sh [--threads 2] [--experts 8] [--batch 16] [--eval-batch 32] [--runs 3] [--python PATH]
#                            [--scratch-path .build-release]
#   PATH: a Python with torch, transformers and fusion-bench (`pip install --no-deps fusion-bench` suffices).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2; experts=8; batch=16; eval_batch=32; runs=3; python="${PYTHON:-$(command -v python3 || true)}"; scratch=.build
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2;;
    --experts) experts="$2"; shift 2;;
    --batch) batch="$2"; shift 2;;
    --eval-batch) eval_batch="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --scratch-path) scratch="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

swift build -c release --scratch-path "$scratch" --product benchmark-tool >/dev/null
tool="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/benchmark-tool"

echo "# MergeKit (OpenBLAS, $threads threads)"
OPENBLAS_NUM_THREADS="$threads" "$tool" wemoe --experts "$experts" --batch "$batch" --eval-batch "$eval_batch" \
  --threads "$threads" --runs "$runs"

if [ -n "$python" ] && "$python" -c "import torch, transformers, fusion_bench.models.we_moe" 2>/dev/null; then
  echo "# PyTorch + FusionBench ($threads threads)"
  OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$python" Benchmarks/wemoe_torch.py --experts "$experts" \
    --batch "$batch" --eval-batch "$eval_batch" --threads "$threads" --runs "$runs"
else
  echo "# PyTorch: skipped (give --python PATH to a Python with torch, transformers and fusion-bench)"
fi
