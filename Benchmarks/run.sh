#!/usr/bin/env bash
# Merge benchmark: builds a synthetic Llama-shaped checkpoint set (default 1.1B parameters, bf16,
# base + 3 fine-tuned, ~1 GB shards) with a fixed seed, measures the machine's I/O bound, times
# merge-cli for task arithmetic, TIES (per tensor, density 0.2), DARE-TIES and global TIES, and —
# when mergekit is installed — the same merges with mergekit-yaml, side by side.
#
# Usage: Benchmarks/run.sh [--dir DIR] [--scale 1|2] [--mergekit PATH/TO/mergekit-yaml] [--runs N] [--mergekit-runs N]
#                         [--cli PATH/TO/merge-cli] [--compare PATH/TO/other/merge-cli] [--cold] [--only NAME,NAME...]
#   --cold evicts the inputs from the page cache (posix_fadvise DONTNEED, `benchmark-tool evict`)
#   before every timed run — the I/O bound's, merge-cli's and mergekit's alike — instead of reading
#   them once to warm it: the I/O bound is then the disk's cold read bound, measured in the same run.
#   --only runs just the named merges (task-arithmetic, ties-tensor, dare-ties, ties-global).
#   --cli times that binary instead of building this tree's; --compare also times a second
#   merge-cli (e.g. a build from before a change) on the same merges, interleaved run by run with
#   the first, and adds its columns and the ratio of the two.
#   Each merge-cli timing (and the I/O bound) is the best of --runs (default 3); mergekit's of
#   --mergekit-runs (default 1: its TIES takes minutes).
#   --scale 2 builds a 2.83 B-parameter model (32 layers, hidden 2816) to check that memory stays flat.
# Writes a Markdown table to stdout and to DIR/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-bench; scale=1; mergekit="$(command -v mergekit-yaml || true)"; runs=3; mkruns=1; cli=""; compare=""; cold=0; only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --scale) scale="$2"; shift 2;;
    --mergekit) mergekit="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --mergekit-runs) mkruns="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    --compare) compare="$2"; shift 2;;
    --cold) cold=1; shift;;
    --only) only=",$2,"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

[ -n "$cli" ] || swift build -c release --product merge-cli >/dev/null
swift build -c release --product benchmark-tool >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="${cli:-$bin/merge-cli}"; tool="$bin/benchmark-tool"

if [ "$scale" = 2 ]; then shape=(--hidden 2816 --layers 32 --intermediate 7680 --heads 32 --kv-heads 4); else shape=(); fi
set_dir="$dir/set-x$scale"
if [ ! -f "$set_dir/ft_3/model.safetensors.index.json" ]; then
  mkdir -p "$set_dir"
  "$tool" synth --out "$set_dir" "${shape[@]}" --models 3 --seed 0 --shard-size 1000000000
fi
inputs=("$set_dir"/base/*.safetensors "$set_dir"/ft_1/*.safetensors "$set_dir"/ft_2/*.safetensors "$set_dir"/ft_3/*.safetensors)
input_bytes=$(cat "${inputs[@]}" | wc -c)
model_bytes=$(cat "$set_dir"/base/*.safetensors | wc -c)
out="$dir/out"; rm -rf "$out"; mkdir -p "$out"

# Before each timed run: the inputs in the page cache (read once), or out of it (--cold).
warm() {
  if [ "$cold" = 1 ]; then
    local left; left=$("$tool" evict "${inputs[@]}")
    case "$left" in resident_bytes=0\ *) ;; *) echo "evict left pages resident: $left" >&2;; esac
  else
    cat "${inputs[@]}" > /dev/null
  fi
}

# time_cmd NAME CMD... → prints "NAME seconds rss_mb" (best of --runs), or "NAME failed"
time_cmd() {
  local name="$1"; shift
  local best="" rss=""
  for _ in $(seq "$runs"); do
    rm -rf "$out/result"; sync; warm
    if ! /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr-$name.txt"; then
      echo "$name failed (see $out/stderr-$name.txt)" >&2; echo "$name failed"; return
    fi
    local t; t=$(tail -1 "$out/time.txt")
    local secs="${t% *}" kb="${t#* }"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best="$secs"; rss="$kb"; fi
  done
  echo "$name $best $((rss / 1024))"
}

results=()
# The I/O bound: best of the runs, measured like a merge (after sync and a warm read).
io_total=""
for _ in $(seq "$runs"); do
  sync; warm
  io=$("$tool" iobound --output "$out/iobound.bin" --write-bytes "$model_bytes" "${inputs[@]}")
  echo "I/O bound run: $io" >&2
  t=$(echo "$io" | sed 's/.*total_seconds=//')
  if [ -z "$io_total" ] || awk "BEGIN{exit !($t < $io_total)}"; then io_total="$t"; fi
done

base=(--base "$set_dir/base" --model "$set_dir/ft_1" --model "$set_dir/ft_2" --model "$set_dir/ft_3" -o "$out/result")
merges=(
  "task-arithmetic|task-arithmetic"
  "ties-tensor|ties --trim-scope tensor --vote weighted --merge normalized --density 0.2"
  "dare-ties|dare --combine ties --vote weighted --merge sum --rescale l1 --drop-rate 0.8 --seed 0"
  "ties-global|ties --density 0.2"
)
other=()
for m in "${merges[@]}"; do
  name="${m%%|*}"; read -r -a args <<< "${m#*|}"
  if [ -n "$only" ] && [[ "$only" != *",$name,"* ]]; then continue; fi
  if [ -n "$compare" ]; then
    # Interleaved: one run of each binary at a time, so drift in the machine's speed hits both.
    best="$name failed"; best2="$name failed"; total=$runs; runs=1
    # keep_best CURRENT NEW → the one with fewer seconds (a failure never wins)
    keep_best() {
      local _n a b; read -r _n a _ <<< "$1"; read -r _n b _ <<< "$2"
      if [ "$b" != failed ] && { [ "$a" = failed ] || awk "BEGIN{exit !($b < $a)}"; }; then echo "$2"; else echo "$1"; fi
    }
    for _ in $(seq "$total"); do
      best=$(keep_best "$best" "$(time_cmd "$name" "$cli" "${args[@]}" "${base[@]}")")
      best2=$(keep_best "$best2" "$(time_cmd "$name" "$compare" "${args[@]}" "${base[@]}")")
    done
    runs=$total
    results+=("$best"); other+=("$best2")
  else
    results+=("$(time_cmd "$name" "$cli" "${args[@]}" "${base[@]}")")
  fi
done

mk=()
if [ -n "$mergekit" ] && [ -x "$mergekit" ]; then
  yaml() {  # METHOD EXTRA_MODEL_PARAMS EXTRA_PARAMS
    printf 'merge_method: %s\nbase_model: %s\nmodels:\n' "$1" "$set_dir/base"
    for m in ft_1 ft_2 ft_3; do printf '  - model: %s\n    parameters: {weight: 1.0%s}\n' "$set_dir/$m" "$2"; done
    printf 'parameters: {%s}\ndtype: bfloat16\n' "$3"
  }
  yaml task_arithmetic "" "lambda: 1.0" > "$out/ta.yml"
  yaml ties ", density: 0.2" "normalize: true, lambda: 1.0" > "$out/ties.yml"
  yaml dare_ties ", density: 0.2" "lambda: 1.0" > "$out/dare.yml"
  mkflags=(--no-cuda --random-seed 0 --no-copy-tokenizer --no-write-model-card --quiet)
  ours=$runs; runs=$mkruns
  for m in task-arithmetic:ta ties-tensor:ties dare-ties:dare; do
    if [ -n "$only" ] && [[ "$only" != *",${m%%:*},"* ]]; then continue; fi
    mk+=("$(time_cmd "${m%%:*}" "$mergekit" "$out/${m#*:}.yml" "$out/result" "${mkflags[@]}")")
  done
  runs=$ours
fi
rm -rf "$out/result"

{
  params=$(awk "BEGIN{printf \"%.2f\", $model_bytes / 2 / 1e9}")
  echo "Set: $params B parameters (bf16), base + 3 fine-tuned, $(awk "BEGIN{printf \"%.1f\", $input_bytes/1e9}") GB of inputs; $(nproc) cores; $(date -u +%Y-%m-%d)"
  if [ "$cold" = 1 ]; then
    echo "Cold cache: inputs evicted from the page cache before every run (posix_fadvise DONTNEED), merge-cli and mergekit alike"
    echo "I/O bound (read all inputs from the disk, cold + write one output of the same size, fsync; best of $runs): ${io_total} s"
  else
    echo "I/O bound (read all inputs from page cache + write one output of the same size, fsync; best of $runs): ${io_total} s"
  fi
  echo "merge-cli ($cli): best of $runs runs; mergekit (${mergekit:-not installed}): best of $mkruns"
  [ -z "$compare" ] || echo "compared merge-cli ($compare): best of $runs runs, interleaved with the first"
  echo
  echo "| merge | merge-cli s | GB/s of input | × I/O bound | peak RSS MB | mergekit s | mergekit RSS MB | speed-up |"
  echo "|---|---|---|---|---|---|---|---|"
  for r in "${results[@]}"; do
    read -r name secs rss <<< "$r"
    if [ "$secs" = failed ]; then echo "| $name | failed | | | | | | |"; continue; fi
    gbs=$(awk "BEGIN{printf \"%.2f\", $input_bytes/1e9/$secs}")
    ratio=$(awk "BEGIN{printf \"%.2f\", $secs/$io_total}")
    mks="–"; mkrss="–"; speed="–"
    for m in "${mk[@]}"; do
      read -r mname msecs mrss <<< "$m"
      if [ "$mname" = "$name" ] && [ "$msecs" != failed ]; then mks="$msecs"; mkrss="$mrss"; speed=$(awk "BEGIN{printf \"%.1f×\", $msecs/$secs}"); fi
    done
    echo "| $name | $secs | $gbs | $ratio | $rss | $mks | $mkrss | $speed |"
  done
  if [ -n "$compare" ]; then
    echo
    echo "| merge | merge-cli s | peak RSS MB | compared s | compared RSS MB | merge-cli / compared |"
    echo "|---|---|---|---|---|---|"
    for i in "${!results[@]}"; do
      read -r name secs rss <<< "${results[$i]}"; read -r _ secs2 rss2 <<< "${other[$i]}"
      r="–"; if [ "$secs" != failed ] && [ "$secs2" != failed ]; then r=$(awk "BEGIN{printf \"%.3f\", $secs/$secs2}"); fi
      echo "| $name | $secs | $rss | $secs2 | $rss2 | $r |"
    done
  fi
} | tee "$dir/results-x$scale$([ "$cold" = 1 ] && echo -cold).md"
