#!/usr/bin/env bash
# Merges that learn from data, merge-cli against FusionBench on the same CPU threads and the same
# files: a ViT-B/32-shaped CLIP image encoder with random weights and T perturbed copies of it
# ("fine-tunes"), each with N random 224×224 images and a 10-class head (made at run time by
# Benchmarks/datamerge_fusionbench.py generate into --dir, about 360 MB per model; never committed).
#
# Rows: RegMean, RegMean++ and Fisher merging with FusionBench's CLIP settings (all N images per
# task, batch 32, α 0.95; Fisher normalised, ε 1e-6). merge-cli's Fisher runs twice: with
# FusionBench's batch estimator (--estimator fusionbench, the same computation) and with its
# default per-image estimator (--estimator sampled, one backward pass per image). Each command
# runs once, end to end (reading the models and data, merging, writing the merged checkpoint),
# under GNU time (`/usr/bin/time -f '%e %U %S %M'`): wall seconds, CPU seconds (user + system; the
# steadier figure on a shared machine) and peak RSS (ru_maxrss). FusionBench
# runs through Benchmarks/datamerge_fusionbench.py run, which loads the models as FusionBench does
# and saves the merged state dict; its Python and torch start-up is included in its time.
#
# With --check, RegMean's outputs are compared with a float64 solve of the worst-conditioned layer
# (`visual_projection`, `datamerge_fusionbench.py check`). --coretype NAME sets OPENBLAS_CORETYPE
# for merge-cli: OpenBLAS 0.3.21 does not recognise some newer CPUs (it reports "Core: Prescott",
# its SSE3 fallback, on a Sapphire Rapids VM; `OPENBLAS_VERBOSE=2 merge-cli methods` shows the
# choice) and its GEMMs are then several times slower; NAME = SkylakeX or Haswell picks kernels the
# CPU has.
#
# Usage: Benchmarks/datamerge.sh [--threads 2] [--tasks 8] [--images 32] [--dir DIR] [--keep] [--check]
#                                [--coretype NAME] [--methods "regmean regmean_plusplus fisher"] --python PATH
#   PATH: a Python with torch, transformers 4.x and fusion-bench (see Fixtures/datamerge/
#   make_datamerge_fixtures.py for the environment).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2; tasks=8; images=32; dir=""; keep=0; check=0; coretype=""; methods="regmean regmean_plusplus fisher"; python="${PYTHON:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2;;
    --tasks) tasks="$2"; shift 2;;
    --images) images="$2"; shift 2;;
    --dir) dir="$2"; shift 2;;
    --keep) keep=1; shift;;
    --check) check=1; shift;;
    --coretype) coretype="$2"; shift 2;;
    --methods) methods="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
[ -n "$python" ] || { echo "give --python PATH (torch, transformers 4.x, fusion-bench)" >&2; exit 64; }
if [ -z "$dir" ]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/datamerge-bench.XXXXXX")"; fi
[ "$keep" = 1 ] || trap 'rm -rf "$dir"' EXIT

swift build -c release --product merge-cli >/dev/null
cli="$(swift build -c release --show-bin-path)/merge-cli"

if [ ! -f "$dir/head$((tasks - 1)).safetensors" ]; then
  echo "# generating $tasks models with $images images each in $dir" >&2
  OMP_NUM_THREADS="$threads" "$python" Benchmarks/datamerge_fusionbench.py generate "$dir" --tasks "$tasks" --images "$images"
fi
inputs=(); heads=()
for ((t = 0; t < tasks; t++)); do
  inputs+=(--model "$dir/expert$t" --data "$dir/data$t.safetensors")
  heads+=(--model "$dir/expert$t" --data "$dir/data$t.safetensors" --head "$dir/head$t.safetensors")
done

# "wall s (CPU s), peak MB" of one command: its stdout and stderr to $dir/log, GNU time's figures to
# their own file (-o; time's report would otherwise go into the log with the command's stderr).
measure() {
  /usr/bin/time -o "$dir/time" -f '%e %U %S %M' "$@" >"$dir/log" 2>&1 || { echo "failed: $* (see $dir/log)" >&2; cat "$dir/log" >&2; exit 1; }
  tail -1 "$dir/time" | awk '{ printf "%.0f s (%.0f CPU-s), %.0f MB", $1, $2 + $3, $4 / 1024 }'
}
[ -z "$coretype" ] || export OPENBLAS_CORETYPE="$coretype"

imports=$(measure env OMP_NUM_THREADS="$threads" "$python" Benchmarks/datamerge_fusionbench.py imports)
common=(--samples "$images" --batch-size 32 --threads "$threads" --quiet --overwrite)
printf '# %d tasks × %d images, ViT-B/32 shape, %d threads\n' "$tasks" "$images" "$threads"
printf '| %-34s | %-32s | %-32s |\n' "method" "merge-cli" "FusionBench"
printf '|%s|%s|%s|\n' "------------------------------------" "----------------------------------" "----------------------------------"
for method in $methods; do
  case "$method" in
    regmean)
      ours=$(measure "$cli" regmean "${inputs[@]}" "${common[@]}" -o "$dir/out-cli")
      theirs=$(measure env OMP_NUM_THREADS="$threads" "$python" Benchmarks/datamerge_fusionbench.py run regmean "$dir" "$dir/out-fb.safetensors" \
        --samples "$images" --threads "$threads")
      printf '| %-34s | %-32s | %-32s |\n' "RegMean" "$ours" "$theirs"
      if [ "$check" = 1 ]; then
        echo "(visual_projection against a float64 solve: $("$python" Benchmarks/datamerge_fusionbench.py check "$dir" "$dir/out-cli" \
          "$dir/out-fb.safetensors" | tr '\n' ' '))"
      fi;;
    regmean_plusplus)
      ours=$(measure "$cli" regmean --plusplus "${inputs[@]}" "${common[@]}" -o "$dir/out-cli")
      theirs=$(measure env OMP_NUM_THREADS="$threads" "$python" Benchmarks/datamerge_fusionbench.py run regmean_plusplus "$dir" \
        "$dir/out-fb.safetensors" --samples "$images" --threads "$threads")
      printf '| %-34s | %-32s | %-32s |\n' "RegMean++" "$ours" "$theirs";;
    fisher)
      ours=$(measure "$cli" fisher --estimator fusionbench "${heads[@]}" "${common[@]}" -o "$dir/out-cli")
      theirs=$(measure env OMP_NUM_THREADS="$threads" "$python" Benchmarks/datamerge_fusionbench.py run fisher "$dir" "$dir/out-fb.safetensors" \
        --samples "$images" --threads "$threads")
      printf '| %-34s | %-32s | %-32s |\n' "Fisher (FusionBench's estimator)" "$ours" "$theirs"
      ours=$(measure "$cli" fisher "${heads[@]}" "${common[@]}" -o "$dir/out-cli")
      printf '| %-34s | %-32s | %-32s |\n' "Fisher (per-image, sampled labels)" "$ours" "—";;
    *) echo "unknown method $method" >&2; exit 64;;
  esac
done
echo "(FusionBench's imports alone — torch, transformers, lightning, fusion-bench, before any model: $imports)"
