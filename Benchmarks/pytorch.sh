#!/usr/bin/env bash
# PyTorch checkpoints: merges of pytorch_model.bin inputs against the same merges of the same
# models as safetensors, `merge-cli convert` against the I/O bound, and, as the peer, what
# converting takes in Python (torch.load, then safetensors' save_file) — at two model sizes, to
# show that memory stays flat (does not grow with the model).
#
# For each --layers value L, a Llama-shaped bf16 set (base + 2 fine-tuned; benchmark-tool synth,
# hidden 2048, vocabulary 32000, fixed seed: L = 6 is 0.40 B parameters, 0.8 GB per model; L = 22
# is 1.10 B, 2.2 GB) is generated into DIR/L<L>/st as sharded safetensors, and re-saved by
# torch.save into DIR/L<L>/bin/<model>/pytorch_model.bin (one file, as transformers'
# save_pretrained(safe_serialization=False) writes a model under its 5 GB shard size), with the
# config. The sets are kept across runs (delete DIR to regenerate).
#
# Rows (each merge-cli row: the best of --runs, the .bin and safetensors runs interleaved so
# that drift in a shared machine's speed hits both; page cache warmed first; GNU time's wall
# seconds and peak RSS):
#   task-arithmetic, ties (density 0.2, global trim) — base + 2 models into a directory output;
#   convert — the base's pytorch_model.bin into a sharded directory (5 GB shards: one file), and
#     the same model's safetensors shards for comparison; GB/s of the model's bytes;
#   I/O bound — benchmark-tool iobound: read the base's .bin and write as many bytes (fsync);
#   torch.load + save_file — Python, once per --runs: torch.load(weights_only=True) (every
#     tensor in memory), and torch.load(mmap=True, weights_only=True) (storages mapped), then
#     safetensors.torch.save_file (which copies each tensor into one buffer before writing).
#
# Usage: Benchmarks/pytorch.sh [--dir DIR] [--layers "6 22"] [--runs N] [--python PY] [--cli PATH]
#   --python: a Python with torch and safetensors (default: /work/venvs/mergekit/bin/python, else python3).
# Writes a Markdown table to stdout and to DIR/results.md. Disk: about 2 × 3 × the model size
# per set (13 GB for L = 22, 5 GB for L = 6) plus one output.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-pytorch-bench; layers="6 22"; runs=3; cli=""
python=/work/venvs/mergekit/bin/python; [ -x "$python" ] || python="$(command -v python3)"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --layers) layers="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
[ -x /usr/bin/time ] || { echo "GNU time is missing (apt-get install time)" >&2; exit 1; }
[ -n "$cli" ] || swift build -c release --product merge-cli >/dev/null
swift build -c release --product benchmark-tool >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="${cli:-$bin/merge-cli}"; tool="$bin/benchmark-tool"
out="$dir/out"; mkdir -p "$out"

# make_set L: the safetensors set, then its torch.save copy.
make_set() {
  local set="$dir/L$1"
  if [ ! -f "$set/st/ft_2/model.safetensors.index.json" ]; then
    rm -rf "$set/st"; mkdir -p "$set/st"
    "$tool" synth --out "$set/st" --layers "$1" --models 2 --seed 0 --shard-size 1000000000 >&2
  fi
  if [ ! -f "$set/bin/ft_2/pytorch_model.bin" ]; then
    "$python" - "$set" >&2 <<'EOF'
import glob, os, shutil, sys
import torch
from safetensors.torch import load_file
root = sys.argv[1]
for model in ("base", "ft_1", "ft_2"):
    source, target = os.path.join(root, "st", model), os.path.join(root, "bin", model)
    os.makedirs(target, exist_ok=True)
    state = {}
    for shard in sorted(glob.glob(os.path.join(source, "*.safetensors"))):
        state.update(load_file(shard))
    # The order transformers saves a model in (the index's order is by name).
    torch.save({k: state[k] for k in sorted(state)}, os.path.join(target, "pytorch_model.bin.tmp"))
    os.replace(os.path.join(target, "pytorch_model.bin.tmp"), os.path.join(target, "pytorch_model.bin"))
    shutil.copy(os.path.join(source, "config.json"), target)
    print("wrote", target, file=sys.stderr)
EOF
  fi
}

# measure NAME CMD... → "seconds rss_mb" of one run (page cache warmed by the caller), or "failed"
measure() {
  local name="$1"; shift
  rm -rf "$out/result" "$out/result.safetensors"; sync
  if ! /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr-$name.txt"; then
    echo "$name failed (see $out/stderr-$name.txt)" >&2; echo "failed"; return
  fi
  local t; t=$(tail -1 "$out/time.txt"); echo "${t% *} $(( ${t#* } / 1024 ))"
}

# better "s rss" "s rss" → the one with fewer seconds (a failure never wins)
better() {
  if [ "$1" = failed ]; then echo "$2"; elif [ "$2" = failed ]; then echo "$1";
  elif awk "BEGIN{exit !(${2% *} < ${1% *})}"; then echo "$2"; else echo "$1"; fi
}

rows=()
for L in $layers; do
  make_set "$L"
  set="$dir/L$L"
  model_bytes=$(cat "$set"/st/base/*.safetensors | wc -c)
  gb=$(awk "BEGIN{printf \"%.2f\", $model_bytes/1e9}")
  params=$(awk "BEGIN{printf \"%.2f\", $model_bytes/2/1e9}")
  warm() { cat "$set"/st/*/*.safetensors "$set"/bin/*/pytorch_model.bin > /dev/null; }
  warm

  io=""
  for _ in $(seq "$runs"); do
    t=$("$tool" iobound --output "$out/iobound.bin" --write-bytes "$model_bytes" "$set/bin/base/pytorch_model.bin" | sed 's/.*total_seconds=//')
    if [ -z "$io" ] || awk "BEGIN{exit !($t < $io)}"; then io="$t"; fi
  done
  rm -f "$out/iobound.bin"
  rows+=("$L|$params|$gb|I/O bound (read the .bin, write as many bytes)|$io|–|–|–")

  merges=("task-arithmetic|task-arithmetic" "ties|ties --density 0.2")
  for m in "${merges[@]}"; do
    name="${m%%|*}"; read -r -a args <<< "${m#*|}"
    best_bin=failed; best_st=failed
    for _ in $(seq "$runs"); do
      warm
      best_bin=$(better "$best_bin" "$(measure "$name-bin" "$cli" "${args[@]}" --base "$set/bin/base" --model "$set/bin/ft_1" --model "$set/bin/ft_2" -o "$out/result" --quiet)")
      best_st=$(better "$best_st" "$(measure "$name-st" "$cli" "${args[@]}" --base "$set/st/base" --model "$set/st/ft_1" --model "$set/st/ft_2" -o "$out/result" --quiet)")
    done
    read -r sb rb <<< "$best_bin"; read -r ss rs <<< "$best_st"
    rows+=("$L|$params|$gb|$name, base + 2 models|$sb|$rb|$ss|$rs")
  done

  best_bin=failed; best_st=failed
  for _ in $(seq "$runs"); do
    warm
    best_bin=$(better "$best_bin" "$(measure convert-bin "$cli" convert "$set/bin/base" -o "$out/result" --quiet)")
    best_st=$(better "$best_st" "$(measure convert-st "$cli" convert "$set/st/base" -o "$out/result" --quiet)")
  done
  read -r sb rb <<< "$best_bin"; read -r ss rs <<< "$best_st"
  rate="–"; [ "$sb" = failed ] || rate=$(awk "BEGIN{printf \"%.2f\", $model_bytes/1e9/$sb}")
  rows+=("$L|$params|$gb|convert to a directory ($rate GB/s from .bin)|$sb|$rb|$ss|$rs")

  for mode in load mmap; do
    best=failed
    for _ in $(seq "$runs"); do
      warm
      best=$(better "$best" "$(measure "torch-$mode" "$python" -c '
import sys, torch
from safetensors.torch import save_file
state = torch.load(sys.argv[1], weights_only=True, mmap=sys.argv[3] == "mmap")
save_file(state, sys.argv[2], metadata={"format": "pt"})
' "$set/bin/base/pytorch_model.bin" "$out/result.safetensors" "$mode")")
    done
    read -r s r <<< "$best"
    label="torch.load + save_file"; [ "$mode" = mmap ] && label="torch.load(mmap=True) + save_file"
    rows+=("$L|$params|$gb|$label (Python peer of convert)|$s|$r|–|–")
  done
done
rm -rf "$out/result" "$out/result.safetensors"

{
  echo "PyTorch checkpoints: $(nproc) cores, $(date -u +%Y-%m-%d); merge-cli $cli; best of $runs runs (bf16 models, warm page cache)"
  echo
  echo "| layers | parameters (B) | model GB | what | from .bin s | from .bin peak RSS MB | from safetensors s | from safetensors peak RSS MB |"
  echo "|---|---|---|---|---|---|---|---|"
  for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
} | tee "$dir/results.md"
