#!/usr/bin/env bash
# Compute-dtype benchmark: the cost of computing as mergekit does in a 16-bit recipe dtype
# (`--compute-dtype float16|bfloat16`, a recipe's default for those dtypes) against float32
# compute, on a synthetic bf16 Llama-shaped set (benchmark-tool synth, fixed seed), and float32
# compute against another merge-cli (e.g. a build from before a change).
#
# Usage: Benchmarks/compute_dtype.sh [--dir DIR] [--runs N] [--layers N] [--cli PATH] [--compare PATH]
#   --dir     where the models and outputs go (default /dev/shm/mergekit-compute: in memory, so
#             the timings are the merges' compute, not the disk's)
#   --runs    best of N per timing (default 5)
#   --layers  decoder layers of the synthetic model (default 4; hidden 2048, vocab 32000:
#             about 310 M parameters, 620 MB per model)
#   --cli     time that binary instead of building this tree's release merge-cli
#   --compare also time this merge-cli on the float32 recipes, interleaved run by run
# Every merge runs `merge-cli run RECIPE -o OUT --threads 2 --quiet` on base + 3 models:
# task_arithmetic (weights 0.5/0.3/0.2, λ 0.8), ties (density 0.5, mergekit's preset) and
# dare_ties (density 0.5), each with `dtype:` float32, bfloat16 and float16.
# Writes a Markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/dev/shm/mergekit-compute; runs=5; layers=4; cli=""; compare=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --layers) layers="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    --compare) compare="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

[ -n "$cli" ] || swift build -c release --product merge-cli >/dev/null
swift build -c release --product benchmark-tool >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="${cli:-$bin/merge-cli}"

set_dir="$dir/set-l$layers"
if [ ! -f "$set_dir/ft_3/model.safetensors" ] && [ ! -f "$set_dir/ft_3/model.safetensors.index.json" ]; then
  mkdir -p "$set_dir"
  "$bin/benchmark-tool" synth --out "$set_dir" --layers "$layers" --models 3 --seed 0 --shard-size 4000000000 >/dev/null
fi
out="$dir/out"; mkdir -p "$out"

recipe() { # METHOD DTYPE → path
  local method="$1" dtype="$2" file="$out/$1-$2.yml"
  local extra=""; [ "$method" = task_arithmetic ] || extra=", density: 0.5"
  {
    echo "merge_method: $method"
    echo "base_model: $set_dir/base"
    echo "models:"
    echo "  - {model: $set_dir/ft_1, parameters: {weight: 0.5$extra}}"
    echo "  - {model: $set_dir/ft_2, parameters: {weight: 0.3$extra}}"
    echo "  - {model: $set_dir/ft_3, parameters: {weight: 0.2$extra}}"
    [ "$method" = task_arithmetic ] && echo "parameters: {lambda: 0.8}"
    echo "dtype: $dtype"
    echo "out_dtype: bfloat16"
  } > "$file"
  echo "$file"
}

best() { # BINARY RECIPE → best wall seconds of $runs
  local b="" t
  for _ in $(seq "$runs"); do
    rm -rf "$out/result.safetensors"
    if ! /usr/bin/time -f "%e" -o "$out/time.txt" "$1" run "$2" -o "$out/result.safetensors" --threads 2 --quiet >/dev/null 2>"$out/stderr.txt"; then
      echo "failed (see $out/stderr.txt)"; return
    fi
    t=$(tail -1 "$out/time.txt")
    if [ -z "$b" ] || awk "BEGIN{exit !($t < $b)}"; then b="$t"; fi
  done
  rm -rf "$out/result.safetensors"
  echo "$b"
}

echo "| method | float32 | bfloat16 (as mergekit) | float16 (as mergekit) |$([ -n "$compare" ] && echo " float32, --compare binary |")"
echo "|---|---|---|---|$([ -n "$compare" ] && echo "---|")"
for method in task_arithmetic ties dare_ties; do
  f32=$(recipe "$method" float32); b16=$(recipe "$method" bfloat16); f16=$(recipe "$method" float16)
  row="| $method | $(best "$cli" "$f32") s | $(best "$cli" "$b16") s | $(best "$cli" "$f16") s |"
  [ -n "$compare" ] && row="$row $(best "$compare" "$f32") s |"
  echo "$row"
done
