#!/usr/bin/env bash
# The SLERP family (slerp, nuslerp, multislerp, karcher) on the benchmark set of run.sh (a 1.1 B bf16
# Llama-shaped base + 3 fine-tunes, generated when missing): merge-cli's time and peak RSS (best
# of --runs, after a warm read of the inputs) and, when mergekit is installed, mergekit-yaml's on
# the same merge as a recipe (`dtype: bfloat16`; one run: each takes minutes).
#
#   slerp       base and ft_1, t = 0.5
#   nuslerp     ft_1 and ft_2 (weights 1, 1) relative to the base, flattened
#   multislerp  ft_1, ft_2, ft_3 (weights 1) relative to the base
#   karcher     ft_1, ft_2, ft_3 and the base (mergekit's base takes part), 10 iterations
#
# Usage: Benchmarks/slerp_family.sh [--dir DIR] [--mergekit PATH/TO/mergekit-yaml] [--runs N] [--cli PATH/TO/merge-cli]
# Writes a Markdown table to stdout and to DIR/results-slerp.md. Outputs go to DIR/out-slerp.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-bench; mergekit="$(command -v mergekit-yaml || true)"; runs=3; cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --mergekit) mergekit="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

[ -n "$cli" ] || swift build -c release --product merge-cli >/dev/null
swift build -c release --product benchmark-tool >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="${cli:-$bin/merge-cli}"; tool="$bin/benchmark-tool"
set_dir="$dir/set-x1"
if [ ! -f "$set_dir/ft_3/model.safetensors.index.json" ]; then
  mkdir -p "$set_dir"
  "$tool" synth --out "$set_dir" --models 3 --seed 0 --shard-size 1000000000
fi
out="$dir/out-slerp"; rm -rf "$out"; mkdir -p "$out"

# time_cmd NAME RUNS CMD... → "NAME seconds rss_mb" (best of RUNS), or "NAME failed"
time_cmd() {
  local name="$1" n="$2"; shift 2
  local best="" rss=""
  for _ in $(seq "$n"); do
    rm -rf "$out/result"; sync; cat "$set_dir"/*/*.safetensors > /dev/null
    if ! /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr-$name.txt"; then
      echo "$name failed (see $out/stderr-$name.txt)" >&2; echo "$name failed"; return
    fi
    local t; t=$(tail -1 "$out/time.txt")
    local secs="${t% *}" kb="${t#* }"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best="$secs"; rss="$kb"; fi
  done
  echo "$name $best $((rss / 1024))"
}

s="$set_dir"
merges=(
  "slerp|slerp --t 0.5 --model $s/ft_1|  - model: $s/base\n  - model: $s/ft_1\nparameters: {t: 0.5}"
  "nuslerp|nuslerp --model $s/ft_1 --model $s/ft_2|  - model: $s/ft_1\n    parameters: {weight: 1.0}\n  - model: $s/ft_2\n    parameters: {weight: 1.0}"
  "multislerp|multislerp --model $s/ft_1 --model $s/ft_2 --model $s/ft_3|  - model: $s/ft_1\n    parameters: {weight: 1.0}\n  - model: $s/ft_2\n    parameters: {weight: 1.0}\n  - model: $s/ft_3\n    parameters: {weight: 1.0}"
  "karcher|karcher --model $s/ft_1 --model $s/ft_2 --model $s/ft_3|  - model: $s/ft_1\n  - model: $s/ft_2\n  - model: $s/ft_3"
)
rows=()
for m in "${merges[@]}"; do
  IFS='|' read -r name args models <<< "$m"
  read -r -a argv <<< "$args"
  ours=$(time_cmd "$name" "$runs" "$cli" "${argv[@]}" --base "$s/base" -o "$out/result")
  theirs="$name – –"
  if [ -n "$mergekit" ] && [ -x "$mergekit" ]; then
    printf "merge_method: %s\nbase_model: %s\nmodels:\n$models\ndtype: bfloat16\n" "$name" "$s/base" > "$out/$name.yml"
    theirs=$(time_cmd "$name" 1 "$mergekit" "$out/$name.yml" "$out/result" --no-cuda --random-seed 0 --no-copy-tokenizer \
             --no-write-model-card --quiet)
  fi
  rows+=("$ours|$theirs")
done
rm -rf "$out/result"

{
  echo "Set: $set_dir (bf16, base + 3 fine-tuned); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)"
  echo "merge-cli ($cli): best of $runs runs; mergekit (${mergekit:-not installed}): 1 run"
  echo
  echo "| merge | merge-cli s | peak RSS MB | mergekit s | mergekit RSS MB | speed-up |"
  echo "|---|---|---|---|---|---|"
  for r in "${rows[@]}"; do
    read -r name secs rss <<< "${r%%|*}"; read -r _ msecs mrss <<< "${r#*|}"
    speed="–"
    if [ "$secs" != failed ] && [ "$msecs" != failed ] && [ "$msecs" != "–" ]; then speed=$(awk "BEGIN{printf \"%.1f×\", $msecs/$secs}"); fi
    echo "| $name | $secs | $rss | $msecs | $mrss | $speed |"
  done
} | tee "$dir/results-slerp.md"
