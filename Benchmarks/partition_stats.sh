#!/usr/bin/env bash
# Partitioned merges with whole-model statistics: builds a synthetic Llama-shaped set (bf16, base
# + 3 fine-tuned; 307 M parameters by default), then for paper TIES (global trim, mass vote) and
# MetaGPT runs every statistics round of every partition (--write-stats), the merge of every
# partition (--stats), assembles, and checks the output against one machine's, byte for byte.
# Prints each step's time and peak memory, each statistics file's size and the combine time of
# each round (`merge-cli stats --json`, which reads and combines the round's files as the next
# round and the merge do).
#
# Usage: Benchmarks/partition_stats.sh [--dir DIR] [--partitions N] [--layers L] [--cli PATH/TO/merge-cli]
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-partition-stats; partitions=4; layers=4; cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --partitions) partitions="$2"; shift 2;;
    --layers) layers="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

[ -n "$cli" ] || swift build -c release --product merge-cli >/dev/null
swift build -c release --product benchmark-tool >/dev/null
bin="$(swift build -c release --show-bin-path)"
cli="${cli:-$bin/merge-cli}"
set_dir="$dir/set-$layers"
if [ ! -f "$set_dir/ft_3/model.safetensors.index.json" ]; then
  "$bin/benchmark-tool" synth --out "$set_dir" --hidden 2048 --layers "$layers" --intermediate 5632 --vocab 32000 \
    --models 3 --shard-size 400000000
fi
inputs=(--base "$set_dir/base" --model "$set_dir/ft_1" --model "$set_dir/ft_2" --model "$set_dir/ft_3")
timed() { /usr/bin/time -f "%e s, %M KB" "$@" 2>&1 >/dev/null | tail -n 1; }

for method in "ties --density 0.2" "metagpt"; do
  name=${method%% *}
  # shellcheck disable=SC2206
  args=($method --max-shard-size 100MB "${inputs[@]}" -o "$dir/$name" --quiet)
  stats="$dir/$name.stats"
  rm -rf "$dir/$name" "$dir/$name.reference" "$stats"
  mkdir -p "$stats"
  echo "## $name, $partitions partitions"
  echo "one machine: $(timed "$cli" "${args[@]}")"
  mv "$dir/$name" "$dir/$name.reference"
  rounds=$("$cli" "${args[@]}" --stats-rounds)
  previous=()
  for round in $(seq 1 "$rounds"); do
    files=()
    for i in $(seq 0 $((partitions - 1))); do
      file="$stats/round-$round-part-$i.json"
      extra=()
      [ ${#previous[@]} -eq 0 ] || extra=(--stats "${previous[@]}")
      echo "round $round, partition $i/$partitions: $(timed "$cli" "${args[@]}" --partition "$i/$partitions" --write-stats "$file" "${extra[@]}")," \
        "file $(stat -c %s "$file") bytes"
      files+=("$file")
    done
    echo "round $round combined in $("$cli" stats --json "${files[@]}" | sed -n 's/.*"seconds": \([0-9.e-]*\).*/\1/p') s"
    previous=("${files[@]}")
  done
  for i in $(seq 0 $((partitions - 1))); do
    extra=()
    [ ${#previous[@]} -eq 0 ] || extra=(--stats "${previous[@]}")
    echo "merge, partition $i/$partitions: $(timed "$cli" "${args[@]}" --partition "$i/$partitions" "${extra[@]}")"
  done
  "$cli" assemble "$dir/$name" --quiet
  if diff -r "$dir/$name" "$dir/$name.reference" >/dev/null; then echo "assembled: identical to one machine"; else echo "assembled: DIFFERENT from one machine"; exit 1; fi
done
