#!/usr/bin/env bash
# The methods and recipe forms added for mergekit's published recipes, run as the same recipe by
# merge-cli (`merge-cli run`) and mergekit-yaml, side by side, on the benchmark set of run.sh (a
# 1.1 B bf16 Llama-shaped base + 3 fine-tunes, generated when missing): time and peak RSS (best of
# --runs for merge-cli, after a warm read of the inputs; best of --mergekit-runs, default 1, for mergekit).
# merge-cli runs each recipe twice: as `run` does by default for a bfloat16 recipe (computing in
# bfloat16 where mergekit does, `--compute-dtype bfloat16`) and with `--compute-dtype float32`.
# The I/O floor of each row is `benchmark-tool iobound`: read every weights file of the models the
# recipe names (warm, as the merges read them) and write as many bytes as merge-cli's output holds
# (fsync), nothing computed — no merge of these inputs can finish faster on this disk. A row whose
# merge-cli time is near its floor is bound by the disk, not by the merge.
#
#   slerp         base and ft_1, t = 0.5
#   nuslerp       ft_1 and ft_2 (weights 1, 1) relative to the base, flattened
#   multislerp    ft_1, ft_2, ft_3 (weights 1) relative to the base
#   karcher       ft_1, ft_2, ft_3 and the base (mergekit's base takes part), 10 iterations
#   della         ft_1..3, density 0.5, epsilon 0.1 (TIES-style sign election)
#   della_linear  ft_1..3, density 0.5, epsilon 0.1, weights 1/3
#   sce           ft_1..3, select_topk 0.5
#   breadcrumbs_ties  ft_1..3, density 0.8, gamma 0.01
#   nearswap      ft_1, t = 0.001
#   passthrough   ft_1 scaled by 0.5 on the MLP, 1 elsewhere
#   arcee_fusion  ft_1
#   frankenmerge  slices: layers 0–15 of ft_1 then 6–21 of ft_2 (32 output layers; passthrough)
#   slices_ta     task_arithmetic over two slices (0–11 and 11–22) of ft_1..3
#
# Usage: Benchmarks/mergekit_methods.sh [--dir DIR] [--mergekit PATH/TO/mergekit-yaml] [--runs N] [--cli PATH/TO/merge-cli]
#                                       [--mergekit-runs N] [--only NAME,NAME...]
# mergekit's own time moves by up to 2× from one run to the next on a shared machine: give
# --mergekit-runs 3 (best of three) before reading a ratio near a target.
# Writes a Markdown table to stdout and to DIR/results-methods.md. Outputs go to DIR/out-methods.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-bench; mergekit="$(command -v mergekit-yaml || true)"; runs=3; cli=""; only=""; mergekit_runs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --mergekit) mergekit="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --mergekit-runs) mergekit_runs="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    --only) only=",$2,"; shift 2;;
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
out="$dir/out-methods"; rm -rf "$out"; mkdir -p "$out"

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
three="  - model: $s/ft_1\n    parameters: {weight: 1.0}\n  - model: $s/ft_2\n    parameters: {weight: 1.0}\n  - model: $s/ft_3\n    parameters: {weight: 1.0}"
third="  - model: $s/ft_1\n    parameters: {weight: 0.333}\n  - model: $s/ft_2\n    parameters: {weight: 0.333}\n  - model: $s/ft_3\n    parameters: {weight: 0.333}"
# NAME|RECIPE (printf format; every recipe computes in and writes bfloat16)
merges=(
  "slerp|merge_method: slerp\nbase_model: $s/base\nmodels:\n  - model: $s/base\n  - model: $s/ft_1\nparameters: {t: 0.5}"
  "nuslerp|merge_method: nuslerp\nbase_model: $s/base\nmodels:\n  - model: $s/ft_1\n    parameters: {weight: 1.0}\n  - model: $s/ft_2\n    parameters: {weight: 1.0}"
  "multislerp|merge_method: multislerp\nbase_model: $s/base\nmodels:\n$three"
  "karcher|merge_method: karcher\nbase_model: $s/base\nmodels:\n  - model: $s/ft_1\n  - model: $s/ft_2\n  - model: $s/ft_3"
  "della|merge_method: della\nbase_model: $s/base\nmodels:\n$three\nparameters: {density: 0.5, epsilon: 0.1}"
  "della_linear|merge_method: della_linear\nbase_model: $s/base\nmodels:\n$third\nparameters: {density: 0.5, epsilon: 0.1}"
  "sce|merge_method: sce\nbase_model: $s/base\nmodels:\n  - model: $s/ft_1\n  - model: $s/ft_2\n  - model: $s/ft_3\nparameters: {select_topk: 0.5}"
  "breadcrumbs_ties|merge_method: breadcrumbs_ties\nbase_model: $s/base\nmodels:\n$three\nparameters: {density: 0.8, gamma: 0.01}"
  "nearswap|merge_method: nearswap\nbase_model: $s/base\nmodels:\n  - model: $s/ft_1\nparameters: {t: 0.001}"
  "passthrough|merge_method: passthrough\nmodels:\n  - model: $s/ft_1\n    parameters:\n      scale: [{filter: mlp, value: 0.5}, {value: 1.0}]"
  "arcee_fusion|merge_method: arcee_fusion\nbase_model: $s/base\nmodels:\n  - model: $s/ft_1"
  "frankenmerge|merge_method: passthrough\nslices:\n  - sources:\n      - model: $s/ft_1\n        layer_range: [0, 16]\n  - sources:\n      - model: $s/ft_2\n        layer_range: [6, 22]"
  "slices_ta|merge_method: task_arithmetic\nbase_model: $s/base\nslices:\n  - sources:\n      - model: $s/base\n        layer_range: [0, 11]\n      - model: $s/ft_1\n        layer_range: [0, 11]\n      - model: $s/ft_2\n        layer_range: [0, 11]\n  - sources:\n      - model: $s/base\n        layer_range: [11, 22]\n      - model: $s/ft_2\n        layer_range: [11, 22]\n      - model: $s/ft_3\n        layer_range: [11, 22]\nparameters: {weight: 0.5}"
)
# Rows are printed as each merge finishes (a run over every method takes a while).
speedup() { # THEIRS OURS
  if [ "$1" != failed ] && [ "$2" != failed ] && [ "$1" != "–" ]; then awk "BEGIN{printf \"%.1f×\", $1/$2}"; else echo "–"; fi
}
row() { # "NAME secs rss" "NAME secs32 rss32" "NAME msecs mrss" FLOOR
  local name secs rss secs32 rss32 msecs mrss
  read -r name secs rss <<< "$1"; read -r _ secs32 rss32 <<< "$2"; read -r _ msecs mrss <<< "$3"
  echo "| $name | $secs | $rss | $secs32 | $rss32 | $msecs | $mrss | $(speedup "$msecs" "$secs") | $(speedup "$msecs" "$secs32") | $4 | $(speedup "$secs" "$4") |"
}
# floor RECIPE → seconds to read the recipe's models' weights and write merge-cli's output size
floor() {
  local bytes; bytes=$(cat "$out"/result/*.safetensors | wc -c)
  local inputs=(); mapfile -t inputs < <(grep -o "$s/[A-Za-z0-9_]*" "$1" | sort -u | sed 's|$|/|')
  local files=(); for d in "${inputs[@]}"; do files+=("$d"*.safetensors); done
  cat "${files[@]}" > /dev/null
  local best=""
  for _ in 1 2; do
    local t; t=$("$tool" iobound --output "$out/iobound.bin" --write-bytes "$bytes" "${files[@]}" | sed 's/.*total_seconds=//')
    rm -f "$out/iobound.bin"
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best="$t"; fi
  done
  awk "BEGIN{printf \"%.2f\", $best}"
}
{
  echo "Set: $set_dir (bf16, base + 3 fine-tuned); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)"
  echo "merge-cli ($cli run): best of $runs runs; mergekit (${mergekit:-not installed}): best of $mergekit_runs run(s)"
  echo
  echo "| merge | merge-cli s | peak RSS MB | merge-cli float32 s | peak RSS MB | mergekit s | mergekit RSS MB | speed-up | speed-up float32 | I/O floor s | merge-cli ÷ floor |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} | tee "$dir/results-methods.md"
for m in "${merges[@]}"; do
  name="${m%%|*}"; recipe="${m#*|}"
  [ -z "$only" ] || [[ "$only" == *",$name,"* ]] || continue
  printf "$recipe\ndtype: bfloat16\n" > "$out/$name.yml"
  ours=$(time_cmd "$name" "$runs" "$cli" run "$out/$name.yml" -o "$out/result")
  ours32=$(time_cmd "$name" "$runs" "$cli" run "$out/$name.yml" -o "$out/result" --compute-dtype float32)
  io=$(floor "$out/$name.yml")
  theirs="$name – –"
  if [ -n "$mergekit" ] && [ -x "$mergekit" ]; then
    theirs=$(time_cmd "$name" "$mergekit_runs" "$mergekit" "$out/$name.yml" "$out/result" --no-cuda --random-seed 0 --no-copy-tokenizer \
             --no-write-model-card --quiet)
  fi
  row "$ours" "$ours32" "$theirs" "$io" | tee -a "$dir/results-methods.md"
done
rm -rf "$out/result"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$dir/results-methods.md"
