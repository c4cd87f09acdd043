#!/usr/bin/env bash
# AdaMerging benchmark: layer-wise AdaMerging of --tasks random ViT-B/32-shaped CLIP fine-tunes
# (generated at run time into a temporary directory, removed at the end), merge-cli against
# FusionBench's LayerWiseMergedModel in PyTorch, the same threads, batches of 16 images per task.
# Reports the seconds per step (after loading), the peak resident memory and the CPU seconds of each
# whole process (user + system, loading included: the fairer measure when the machine is shared).
#
# Usage: Benchmarks/datamerging.sh [--threads 2] [--tasks 8] [--steps 3] [--task-wise] [--python PATH] [--dir DIR]
#                                  [--scratch-path .build-release]
#   DIR: keep the generated models there (reused when present) instead of a temporary directory.
#   PATH: a Python with torch, transformers, safetensors and fusion-bench (`pip install --no-deps fusion-bench omegaconf`).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2; tasks=8; steps=3; granularity=layer-wise; python="${PYTHON:-$(command -v python3 || true)}"; dir=""; scratch=.build
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2;;
    --tasks) tasks="$2"; shift 2;;
    --steps) steps="$2"; shift 2;;
    --task-wise) granularity=task-wise; shift;;
    --python) python="$2"; shift 2;;
    --dir) dir="$2"; shift 2;;
    --scratch-path) scratch="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

swift build -c release --scratch-path "$scratch" --product merge-cli >/dev/null
cli="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/merge-cli"
if [ -z "$dir" ]; then dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT; fi
if [ ! -d "$dir/base" ]; then
  "$python" Benchmarks/datamerging_torch.py generate "$dir" --tasks "$tasks"
fi

args=(--base "$dir/base")
for ((t = 0; t < tasks; t++)); do args+=(--model "$dir/model$t" --data "$dir/data$t.safetensors" --head "$dir/head$t.safetensors"); done

echo "# MergeKit (OpenBLAS, $threads threads), adamerging --granularity $granularity; load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$dir/out" "$dir/out.coefficients.json"
OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "peak_rss_mb=%M wall_seconds=%e cpu_seconds=%U+%S" "$cli" adamerging "${args[@]}" --granularity "$granularity" \
  --steps "$steps" --threads "$threads" --json --quiet -o "$dir/out" 2>"$dir/time.txt" \
  | "$python" -c 'import json,sys; d=json.load(sys.stdin); print("mean_step_seconds=%.2f" % (d["seconds"] / d["steps"]))'
awk '{ split($1, a, "="); split($3, c, "[=+]"); printf "peak_rss_mb=%.0f %s cpu_seconds=%.1f\n", a[2] / 1000, $2, c[2] + c[3] }' "$dir/time.txt"

echo "# PyTorch + FusionBench ($threads threads); load: $(cut -d' ' -f1-3 /proc/loadavg)"
extra=(); [ "$granularity" = task-wise ] && extra=(--task-wise)
OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$python" Benchmarks/datamerging_torch.py fusionbench "$dir" \
  --tasks "$tasks" --steps "$steps" --threads "$threads" "${extra[@]}"
