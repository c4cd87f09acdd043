#!/usr/bin/env bash
# LoRA extraction benchmark: rank-r adapters of the 1.1 B benchmark set's fine-tuned model ft_1 (bf16,
# Llama-shaped, sharded; built by benchmark-tool synth as in Benchmarks/run.sh if missing) with
#   merge-cli extract-lora --randomized   (seeded randomized SVD, p = 10, q = 4 by default)
#   merge-cli extract-lora                (exact LAPACK sgesdd)
#   mergekit-extract-lora                 (mergekit 0.1.5: torch.linalg.svd), when installed
# on the same machine, each timed once with /usr/bin/time (wall seconds, peak RSS). All three factorise
# the same 154 matrices (embeddings and lm_head are left out: mergekit gets -e embed_tokens -e lm_head,
# since by default it copies them whole into modules_to_save). Every adapter's relative Frobenius error
# ‖τ − ΔW‖/‖τ‖ is measured the same way by Benchmarks/lora_error.py (torch, float32), which also needs
# a Python with torch and safetensors (--python).
#
# Usage: Benchmarks/extract_lora.sh [--dir DIR] [--rank R] [--threads N] [--python PY] [--q "2 4"]
#                                   [--mergekit PATH/TO/mergekit-extract-lora | --no-mergekit] [--skip-exact]
#                                   [--name NAME]
#   --q: power-iteration counts of the randomized runs (default 4, merge-cli's default).
# Writes a Markdown table to stdout and to DIR/NAME/results.md (NAME defaults to extract-lora).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-bench; rank=64; threads=""; python="$(command -v python3)"
mergekit="$(command -v mergekit-extract-lora || true)"; skip_exact=0; qs="4"; name_dir=extract-lora
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --rank) rank="$2"; shift 2;;
    --threads) threads="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --mergekit) mergekit="$2"; shift 2;;
    --skip-exact) skip_exact=1; shift;;
    --no-mergekit) mergekit=""; shift;;
    --q) qs="$2"; shift 2;;
    --name) name_dir="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

swift build -c release --product merge-cli >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="$bin/merge-cli"
set_dir="$dir/set-x1"
if [ ! -f "$set_dir/ft_1/model.safetensors.index.json" ]; then
  swift build -c release --product benchmark-tool >/dev/null
  mkdir -p "$set_dir"
  "$bin/benchmark-tool" synth --out "$set_dir" --models 3 --seed 0 --shard-size 1000000000
fi
out="$dir/$name_dir"; rm -rf "$out"; mkdir -p "$out"
warm() { cat "$set_dir"/base/*.safetensors "$set_dir"/ft_1/*.safetensors > /dev/null; }
thread_args=(); [ -n "$threads" ] && thread_args=(--threads "$threads")

# run NAME CMD... → times CMD once into $out/NAME.time ("seconds kB"), output adapter in $out/NAME
run() {
  local name="$1"; shift
  sync; warm
  echo "running $name ..." >&2
  if ! /usr/bin/time -f "%e %M" -o "$out/$name.time" "$@" >"$out/$name.stdout" 2>"$out/$name.stderr"; then
    echo "$name failed (see $out/$name.stderr)" >&2; echo "failed 0" > "$out/$name.time"
  fi
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
names=()
for q in $qs; do
  run "randomized_q$q" "$cli" extract-lora --base "$set_dir/base" --model "$set_dir/ft_1" --rank "$rank" --randomized \
    --power-iterations "$q" --json "${thread_args[@]}" -o "$out/randomized_q$q"
  names+=("randomized_q$q")
done
[ "$skip_exact" = 1 ] || names+=(exact)
[ -n "$mergekit" ] && names+=(mergekit)
[ "$skip_exact" = 1 ] || run exact "$cli" extract-lora --base "$set_dir/base" --model "$set_dir/ft_1" --rank "$rank" \
  --json "${thread_args[@]}" -o "$out/exact"
[ -n "$mergekit" ] && run mergekit "$mergekit" --model "$set_dir/ft_1" --base-model "$set_dir/base" --out-path "$out/mergekit" \
  --max-rank "$rank" -e embed_tokens -e lm_head --no-lazy-unpickle

{
  echo "| tool | seconds | peak RSS MB | weights | mean relative error | max relative error | mean captured energy |"
  echo "|---|---|---|---|---|---|---|"
  for name in "${names[@]}"; do
    [ -f "$out/$name.time" ] || continue
    read -r secs kb < <(tail -1 "$out/$name.time")
    if [ "$secs" = failed ] || [ ! -f "$out/$name/adapter_model.safetensors" ]; then echo "| $name | failed | | | | | |"; continue; fi
    "$python" Benchmarks/lora_error.py "$set_dir/base" "$set_dir/ft_1" "$out/$name" --json "$out/$name.errors.json" >/dev/null
    "$python" - "$name" "$secs" "$kb" "$out/$name.errors.json" <<'PY'
import json, sys
name, secs, kb, path = sys.argv[1:5]
e = json.load(open(path))
label = {"exact": "merge-cli extract-lora (exact)", "mergekit": "mergekit-extract-lora"}.get(
    name, f"merge-cli extract-lora --randomized (q = {name.removeprefix('randomized_q')})")
print(f"| {label} | {float(secs):.1f} | {int(kb) // 1024} | {e['weights']} | {e['mean_relative_error']:.6f} | "
      f"{e['max_relative_error']:.6f} | {e['mean_captured_energy']:.6f} |")
PY
  done
  for name in "${names[@]}"; do
    case "$name" in randomized_*) ;; *) continue;; esac
    [ -f "$out/exact.errors.json" ] && [ -f "$out/$name.errors.json" ] || continue
    "$python" - "$name" "$out/$name.errors.json" "$out/exact.errors.json" <<'PY'
import json, sys
r, x = (json.load(open(p))["errors"] for p in sys.argv[2:4])
ratios = [r[k] / x[k] for k in x if x[k] > 0]
print(f"\n{sys.argv[1]} / exact error per weight: mean {sum(ratios) / len(ratios):.6f}, max {max(ratios):.6f} "
      f"({len(ratios)} weights)")
PY
  done
  echo
  echo "rank $rank; $(nproc) cores; load average at the start: $load_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/results.md"
