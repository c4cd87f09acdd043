#!/usr/bin/env bash
# Choosing λ by evaluation: task arithmetic of --tasks random ViT-B/32-shaped CLIP fine-tunes
# (generated at run time by Benchmarks/datamerging_torch.py, as for datamerging.sh) over the λ grid
# --grid, every point scored on every task's images, the best kept. Side by side, the same threads:
#   1. merge-cli sweep --eval … --keep best: one merge pass, the points built in memory, one written;
#   2. the same with merge-cli alone but point by point, as a script would without --eval: a plain
#      sweep writing every point, then merge-cli eval of every point on every task;
#   3. PyTorch (Benchmarks/sweep_eval_torch.py): θ₀ + λ·Σ τ in place per point, transformers'
#      CLIPVisionModelWithProjection forward, the best saved with save_pretrained.
# Reports wall seconds, CPU seconds, peak RSS, bytes written, and each side's choice of λ.
#
# Usage: Benchmarks/sweep_eval.sh [--threads 2] [--tasks 3] [--images 64] [--grid 0:1:0.1] [--python PATH] [--dir DIR]
#   DIR keeps the generated models (reused when present); PATH: a Python with torch, transformers and safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2; tasks=3; images=64; grid=0:1:0.1; python="${PYTHON:-$(command -v python3 || true)}"; dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2;;
    --tasks) tasks="$2"; shift 2;;
    --images) images="$2"; shift 2;;
    --grid) grid="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --dir) dir="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

swift build -c release --product merge-cli >/dev/null
cli="$(swift build -c release --show-bin-path)/merge-cli"
if [ -z "$dir" ]; then dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT; fi
if [ ! -d "$dir/base" ]; then
  "$python" Benchmarks/datamerging_torch.py generate "$dir" --tasks "$tasks" --images "$images"
fi
models=(); evals=()
for ((t = 0; t < tasks; t++)); do models+=(--model "$dir/model$t"); evals+=(--eval "$dir/head$t.safetensors=$dir/data$t.safetensors"); done
timed() {  # timed NAME OUT COMMAND…: runs it under /usr/bin/time (stdout to OUT), prints wall, CPU, peak RSS
  local name="$1" out="$2"; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time-$name.txt" "$@" > "$out"
  read -r wall user sys rss < "$dir/time-$name.txt"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" 'BEGIN { printf "%-28s wall %7.2f s  cpu %7.2f s  peak %6.0f MB", n, w, u + s, r / 1024 }'
}
written() { du -sb "$1" | cut -f1 | awk '{ printf "  written %.2f GB\n", $1 / 1e9 }'; }

echo "# $tasks tasks × $images images, λ grid $grid, $threads threads; load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$dir/scored"
timed "merge-cli sweep --eval" "$dir/scored.json" env OPENBLAS_NUM_THREADS=1 "$cli" sweep --method task_arithmetic --base "$dir/base" \
  "${models[@]}" --scale "$grid" "${evals[@]}" --threads "$threads" --json --quiet -o "$dir/scored"
written "$dir/scored"

rm -rf "$dir/plain"
cat > "$dir/pointwise.sh" <<SCRIPT
set -euo pipefail
OPENBLAS_NUM_THREADS=1 "$cli" sweep --method task_arithmetic --base "$dir/base" ${models[*]} --scale "$grid" --threads $threads --quiet -o "$dir/plain"
for point in "$dir"/plain/point-*; do
  for ((t = 0; t < $tasks; t++)); do
    OPENBLAS_NUM_THREADS=1 "$cli" eval --model "\$point" --head "$dir/head\$t.safetensors" --data "$dir/data\$t.safetensors" --threads $threads --quiet --json \
      | grep '"accuracy"' | tr -d ' ,' | sed "s|^|\$(basename \$point) task\$t |" >> "$dir/pointwise.txt"
  done
done
SCRIPT
rm -f "$dir/pointwise.txt"
timed "merge-cli sweep + eval each" /dev/null bash "$dir/pointwise.sh"
written "$dir/plain"

if [ -n "$python" ] && "$python" -c "import torch, transformers" 2>/dev/null; then
  rm -rf "$dir/torch-best"
  timed "PyTorch (transformers)" "$dir/torch.json" env OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" "$python" \
    Benchmarks/sweep_eval_torch.py "$dir" --tasks "$tasks" --grid "$grid" --threads "$threads" --output "$dir/torch-best"
  written "$dir/torch-best"
else
  echo "# PyTorch: skipped (give --python PATH to a Python with torch and transformers)"
fi

"${python:-python3}" - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
s = json.load(open(f"{d}/scored.json"))
chosen = s["evaluation"]["selected"]
print("merge-cli --eval chose", chosen["sweep"], "average %.4f" % chosen["scores"]["average_accuracy"],
      "| points in memory:", s["evaluation"]["points_in_memory"])
try:
    t = json.load(open(f"{d}/torch.json"))
    print("PyTorch chose lambda", t["selected_lambda"], "average %.4f" % max(p["average"] for p in t["points"]))
    ours = {p["sweep"]["lambda"]: [x["accuracy"] for x in p["scores"]["tasks"]] for p in s["outputs"]}
    differ = sum(1 for p in t["points"] for a, b in zip(p["accuracies"], ours[p["lambda"]]) if abs(a - b) > 1e-9)
    print("per-task accuracies differing between merge-cli and PyTorch:", differ, "of", sum(len(p["accuracies"]) for p in t["points"]))
except FileNotFoundError:
    pass
PY
