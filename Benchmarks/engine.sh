#!/usr/bin/env bash
# Engine benchmark: a ViT-B/32-shaped CLIP image encoder (random weights generated at run time,
# nothing read from or written to disk), batch 32, 224×224, the same thread count for both sides.
# Times MergeKit's forward pass, JVP (primal + tangent) and one training step (forward keeping
# activations + backward), and the same passes in PyTorch (transformers' CLIPVisionModelWithProjection)
# when a Python with torch and transformers is given or found.
#
# Usage: Benchmarks/engine.sh [--threads 2] [--batch 32] [--runs 5] [--python PATH] [--parallelism images|blas]
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2; batch=32; runs=5; python="${PYTHON:-$(command -v python3 || true)}"; parallelism=images
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2;;
    --batch) batch="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --parallelism) parallelism="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

swift build -c release --product benchmark-tool >/dev/null
tool="$(swift build -c release --show-bin-path)/benchmark-tool"

echo "# MergeKit (OpenBLAS, $threads threads, parallelism $parallelism)"
OPENBLAS_NUM_THREADS="$threads" "$tool" engine --batch "$batch" --threads "$threads" --runs "$runs" --parallelism "$parallelism"

if [ -n "$python" ] && "$python" -c "import torch, transformers" 2>/dev/null; then
  echo "# PyTorch ($threads threads)"
  OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$python" Benchmarks/engine_torch.py \
    --batch "$batch" --threads "$threads" --runs "$runs"
else
  echo "# PyTorch: skipped (give --python PATH to a Python with torch and transformers)"
fi
