#!/usr/bin/env bash
# Sweep benchmark: a 21-point λ sweep (0:1:0.05, the task-arithmetic paper's grid) in one pass
# versus 21 separate merge-cli runs, on the benchmark set of Benchmarks/run.sh (built if missing).
# Needs ~50 GB of free disk for 21 outputs (2.2 GB each for the 1.1 B set; each phase deletes its own).
# Also measures the sweep's I/O floor in the same run: reading the inputs once and writing 21
# outputs of the model's size with nothing computed (benchmark-tool iobound --outputs 21).
# Usage: Benchmarks/sweep.sh [--dir DIR] [--method task_arithmetic] [--cli PATH-TO-merge-cli]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/mergekit-bench; method=task_arithmetic; cli=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --method) method="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;   # an already built merge-cli (skips the build)
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
set_dir="$dir/set-x1"
if [ -z "$cli" ]; then
  swift build -c release --product merge-cli >/dev/null
  bin="$(swift build -c release --show-bin-path)"; cli="$bin/merge-cli"
fi
swift build -c release --product benchmark-tool >/dev/null
tool="$(swift build -c release --show-bin-path)/benchmark-tool"
if [ ! -f "$set_dir/ft_3/model.safetensors.index.json" ]; then
  "$tool" synth --out "$set_dir" --models 3 --seed 0
fi
out="$dir/sweep-out"; rm -rf "$out"; mkdir -p "$out"
inputs=(--base "$set_dir/base" --model "$set_dir/ft_1" --model "$set_dir/ft_2" --model "$set_dir/ft_3")
warm() { cat "$set_dir"/*/*.safetensors > /dev/null; }

# 21 separate runs, each keeping its output as the sweep does (all deleted once timed).
# Wall time, and CPU time (user + system, from /usr/bin/time), which is less sensitive to other
# load on the machine.
sync; warm
: > "$out/separate.txt"
separate_start=$(date +%s.%N)
i=0
for lambda in $(seq 0 0.05 1); do
  /usr/bin/time -f "%e %U %S %M" -a -o "$out/separate.txt" \
    "$cli" task-arithmetic "${inputs[@]}" --scale "$lambda" -o "$out/single-$i" --quiet
  i=$((i + 1))
done
separate=$(echo "$(date +%s.%N) - $separate_start" | bc)
rm -rf "$out"/single-*; sync; sleep 5   # let the file system finish discarding the freed blocks
separate_cpu=$(awk '{ s += $2 + $3 } END { print s }' "$out/separate.txt")
separate_rss=$(awk '{ if ($4 > m) m = $4 } END { print m }' "$out/separate.txt")

# The I/O floor of the sweep: read every input once, write 21 model-sized outputs.
sync; warm
floor=$("$tool" iobound --output "$out/floor.bin" --outputs 21 --write-bytes "$(cat "$set_dir"/base/*.safetensors | wc -c)" \
  "$set_dir"/base/*.safetensors "$set_dir"/ft_1/*.safetensors "$set_dir"/ft_2/*.safetensors "$set_dir"/ft_3/*.safetensors)
floor=$(echo "$floor" | sed 's/.*total_seconds=//'); sync; sleep 5

# One sweep writing all 21 points.
sync; warm
/usr/bin/time -f "%e %U %S %M" -o "$out/time.txt" "$cli" sweep --method "$method" "${inputs[@]}" --scale 0:1:0.05 -o "$out/sweep" --quiet
read -r sweep user system rss < "$out/time.txt"
sweep_cpu=$(echo "$user + $system" | bc)
points=$(ls -d "$out"/sweep/point-* | wc -l)
rm -rf "$out"
printf '21 separate runs: %.1f s wall, %.1f s CPU, peak RSS %d MB\n' "$separate" "$separate_cpu" "$((separate_rss / 1024))"
printf 'sweep (%d points, one pass): %.1f s wall, %.1f s CPU, peak RSS %d MB\n' "$points" "$sweep" "$sweep_cpu" "$((rss / 1024))"
printf 'ratio sweep / separate: %.2f wall, %.2f CPU\n' "$(echo "$sweep / $separate" | bc -l)" "$(echo "$sweep_cpu / $separate_cpu" | bc -l)"
printf 'I/O floor of the sweep (read the inputs once, write 21 outputs, no compute): %.1f s; sweep / floor: %.2f\n' "$floor" "$(echo "$sweep / $floor" | bc -l)"
