#!/usr/bin/env bash
# Peak memory of the SVD-based commands relative to the matrix they decompose: one F32 weight
# "layer.weight" of each size (base = 0, two models with N(0, 0.01²) task vectors, from numpy),
# merged by tsv-m and iso-c (2 tasks) and factorised by extract-lora (rank 64, exact and
# --randomized), each with --threads 1 --json. The factor is (peak RSS − the same command's peak on
# an 8×8 weight) / the matrix's bytes in Float; "estimate" is MergeKit's own working-set estimate
# for the matrix (--dry-run's memory line; extract-lora's largest_weight_memory_estimate_bytes),
# in the same units, so the two columns can be compared. Neither includes what every worker holds
# anyway (staging buffers, and the 32 MiB MemoryBudget.workerSlack), which the memory check adds.
#
# Usage: Benchmarks/svd_memory.sh [--dir DIR] [--sizes "1000x1000 2000x2000 3000x3000 1024x4096"]
#                                 [--python PY] [--cli PATH/TO/merge-cli]
# Writes a Markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-svd-memory; sizes="1000x1000 2000x2000 3000x3000 1024x4096"; python="$(command -v python3)"; cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --sizes) sizes="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
if [ -z "$cli" ]; then
  swift build -c release --product merge-cli >/dev/null
  cli="$(swift build -c release --show-bin-path)/merge-cli"
fi
mkdir -p "$dir"

# base.safetensors, a.safetensors, b.safetensors with one F32 [rows, columns] weight.
generate() {
  "$python" - "$1" "$2" "$3" <<'PY'
import json, struct, sys
import numpy as np
out, rows, columns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def write(path, array):
    data = array.astype("<f4").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "layer.weight": {"dtype": "F32", "shape": [rows, columns], "data_offsets": [0, len(data)]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text))); f.write(text); f.write(data)
rng = np.random.default_rng(rows * 100003 + columns)
write(f"{out}/base.safetensors", np.zeros((rows, columns), np.float32))
for name in ("a", "b"):
    write(f"{out}/{name}.safetensors", rng.normal(0, 0.01, (rows, columns)).astype(np.float32))
PY
}

peak() {  # peak RSS of a --json run
  "$cli" "$@" --threads 1 --json --overwrite | "$python" -c 'import json, sys; print(json.load(sys.stdin)["peak_memory_bytes"])'
}

commands=("tsv-m" "iso-c" "extract-lora" "extract-lora --randomized")
run() {  # $1 = data directory, $2 = command index
  local d="$1"
  case "$2" in
    0) peak tsv-m --base "$d/base.safetensors" --model "$d/a.safetensors" --model "$d/b.safetensors" -o "$d/out.safetensors";;
    1) peak iso-c --base "$d/base.safetensors" --model "$d/a.safetensors" --model "$d/b.safetensors" -o "$d/out.safetensors";;
    2) peak extract-lora --base "$d/base.safetensors" --model "$d/a.safetensors" --rank 64 -o "$d/adapter";;
    3) peak extract-lora --base "$d/base.safetensors" --model "$d/a.safetensors" --rank 64 --randomized -o "$d/adapter";;
  esac
}
estimate() {
  local d="$1"
  case "$2" in
    0|1) "$cli" "${commands[$2]}" --base "$d/base.safetensors" --model "$d/a.safetensors" --model "$d/b.safetensors" \
           -o "$d/out.safetensors" --overwrite --dry-run | sed -n 's/^memory: matrices merged whole need up to about \([0-9.]* [kMGT]*B\).*/\1/p';;
    *) local flags=""; [ "$2" = 3 ] && flags="--randomized"
       "$cli" extract-lora --base "$d/base.safetensors" --model "$d/a.safetensors" --rank 64 $flags -o "$d/adapter" --threads 1 --json --overwrite \
         | "$python" -c 'import json, sys; print(json.load(sys.stdin)["largest_weight_memory_estimate_bytes"] - (32 << 20))';;
  esac
}

mkdir -p "$dir/8x8"; generate "$dir/8x8" 8 8
echo "| matrix | command | peak RSS | baseline | factor (measured) | estimate |"
echo "|---|---|---|---|---|---|"
for size in $sizes; do
  rows="${size%x*}"; columns="${size#*x}"
  mkdir -p "$dir/$size"; generate "$dir/$size" "$rows" "$columns"
  bytes=$((rows * columns * 4))
  for i in 0 1 2 3; do
    base=$(run "$dir/8x8" "$i"); p=$(run "$dir/$size" "$i"); e=$(estimate "$dir/$size" "$i")
    "$python" - "$size" "${commands[$i]}" "$p" "$base" "$bytes" "$e" <<'PY'
import sys
size, command, peak, base, size_bytes, estimate = sys.argv[1:7]
peak, base, size_bytes = int(peak), int(base), int(size_bytes)
units = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
if " " in estimate:
    number, unit = estimate.split(); estimate_bytes = float(number) * units[unit]
else:
    estimate_bytes = float(estimate)
print(f"| {size} ({size_bytes / 1e6:.1f} MB) | {command} | {peak / 1e6:.0f} MB | {base / 1e6:.0f} MB | "
      f"{(peak - base) / size_bytes:.2f}× | {estimate_bytes / size_bytes:.2f}× |")
PY
  done
done
