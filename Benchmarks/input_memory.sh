#!/usr/bin/env bash
# Peak memory, wall time and success of merge-cli on hostile inputs — many inputs, huge headers,
# many sweep points, many shards — to check that memory is bounded by per-worker budgets and open
# files by the descriptor cache, not by the number of inputs, tensors, points or shards.
#
# Scenarios (generated at run time into --dir, F32, values from numpy; never committed):
#   1. ties --threads 2 with N small inputs against one base (N = --inputs, default "100 500"; each
#      input 4 tensors [256, 256], 1 MiB), written to one .safetensors file.
#   2. analyze --threads 2 on the same inputs, and on N inputs of 256 tensors [16] (16 KiB each),
#      where the work items, not the bytes, are many.
#   3. One safetensors file per model whose header (99 MB of compact JSON; the format allows
#      100 MB) lists 1.4 M tensors "wN" of shape [1]: inspect (text and --json, stdout to a file)
#      and task-arithmetic of two such models against a base of the same layout.
#   4. sweep --method task_arithmetic with P λ points (P = --points, default 1100: --scale
#      0.001:1.1:0.001; a base and two models of 2 tensors [128, 256], so P outputs of 256 KiB)
#      under `ulimit -n 1024`.
#   5. task-arithmetic of a base and two models that each have 600 shards (a directory with
#      model.safetensors.index.json and model-00001-of-00600.safetensors …, one [1024] tensor per
#      shard; 1,800 input files) under `ulimit -n 1024`, written to one .safetensors file.
# Every command runs once, sequentially, under GNU time (`/usr/bin/time -f '%e %M'`), which gives
# wall time and ru_maxrss. Peak RSS is the `peak_memory_bytes` member of the command's --json
# output when it has one (VmHWM of merge-cli's own process), else GNU time's ru_maxrss of the
# child: the same kernel high-water mark (they agreed to the byte when checked; ru_maxrss would
# also count the ~2 MB of the `time` process before exec). inspect and analyze print no
# peak_memory_bytes on success, so their rows are ru_maxrss. A command that exits non-zero shows
# "exit N" instead of its peak, and its first error line below the table. `--before PATH` adds
# columns for an older merge-cli on the same inputs (e.g. a build from before a fix), so the two
# can be compared side by side. Peaks of multi-threaded runs vary from run to run with the
# allocator (glibc's per-thread arenas keep what one phase freed while another thread allocates):
# TIES with 500 inputs and 2 threads peaked at 379–556 MB over five runs, 397–418 MB with
# MALLOC_ARENA_MAX=1. Wall times depend on the load of the (shared) machine.
#
# Usage: Benchmarks/input_memory.sh [--dir DIR] [--inputs "100 500"] [--points "1100"] [--python PY]
#                                   [--cli PATH/TO/merge-cli] [--before PATH/TO/older/merge-cli]
# Writes a Markdown table to stdout (progress on stderr). Needs GNU time (apt-get install time)
# and Python with numpy; about 1 GB of disk in --dir for 500 inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-input-memory; inputs="100 500"; points="1100"; python="$(command -v python3)"; cli=""; before=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --inputs) inputs="$2"; shift 2;;
    --points) points="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    --before) before="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
[ -x /usr/bin/time ] || { echo "GNU time is missing (apt-get install time)" >&2; exit 1; }
if [ -z "$cli" ]; then
  swift build -c release --product merge-cli >/dev/null
  cli="$(swift build -c release --show-bin-path)/merge-cli"
fi
max_inputs=0; for n in $inputs; do [ "$n" -gt "$max_inputs" ] && max_inputs=$n; done
mkdir -p "$dir"

# The inputs of every scenario, each written once (kept across runs: delete --dir to regenerate).
"$python" - "$dir" "$max_inputs" <<'PY'
import json, os, struct, sys
import numpy as np
out, count = sys.argv[1], int(sys.argv[2])

def write(path, tensors, header_bytes=None):
    """tensors: (name, float32 array) in data order; header_bytes: a prebuilt compact header."""
    if header_bytes is None:
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, array in tensors:
            header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
            offset += array.nbytes
        header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes))); f.write(header_bytes)
        for _, array in tensors:
            f.write(array.astype("<f4").tobytes())
    os.replace(path + ".tmp", path)

def model(rng, shapes, scale):
    return [(f"layers.{i}.weight", (rng.normal(0, scale, shape)).astype(np.float32)) for i, shape in enumerate(shapes)]

# 1, 2: N small models (4 × [256, 256] F32 = 1 MiB each) and their base.
small = f"{out}/small"; os.makedirs(small, exist_ok=True)
shapes = [(256, 256)] * 4
if not os.path.exists(f"{small}/base.safetensors"):
    write(f"{small}/base.safetensors", model(np.random.default_rng(0), shapes, 0.02))
for i in range(count):
    path = f"{small}/m{i:04d}.safetensors"
    if not os.path.exists(path):
        base = model(np.random.default_rng(0), shapes, 0.02)
        delta = model(np.random.default_rng(1 + i), shapes, 0.001)
        write(path, [(n, b + d) for (n, b), (_, d) in zip(base, delta)])

# 2: N models of 256 tensors [16] (16 KiB each) and their base: many work items.
items = f"{out}/items"; os.makedirs(items, exist_ok=True)
if not os.path.exists(f"{items}/base.safetensors"):
    write(f"{items}/base.safetensors", model(np.random.default_rng(0), [(16,)] * 256, 0.02))
for i in range(count):
    path = f"{items}/m{i:04d}.safetensors"
    if not os.path.exists(path):
        write(path, model(np.random.default_rng(1 + i), [(16,)] * 256, 0.02))

# 4: a tiny model (2 × [128, 256] = 256 KiB) for the sweep.
tiny = f"{out}/tiny"; os.makedirs(tiny, exist_ok=True)
for i, name in enumerate(("base", "a", "b")):
    if not os.path.exists(f"{tiny}/{name}.safetensors"):
        write(f"{tiny}/{name}.safetensors", model(np.random.default_rng(100 + i), [(128, 256)] * 2, 0.02))

# 3: 1.4 M tensors "wN" of shape [1] in one file: a 99 MB header (the format allows 100 MB).
header = f"{out}/header"; os.makedirs(header, exist_ok=True)
tensors = 1_400_000
if not all(os.path.exists(f"{header}/{n}.safetensors") for n in ("base", "a", "b")):
    text = '{"__metadata__":{"format":"pt"},' + ",".join(
        f'"w{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}' for i in range(tensors)) + "}"
    for i, name in enumerate(("base", "a", "b")):
        values = np.random.default_rng(200 + i).normal(0, 0.02, tensors).astype(np.float32)
        write(f"{header}/{name}.safetensors", [("all", values)], header_bytes=text.encode())

# 5: three 600-shard directories, one [1024] tensor per shard.
shards = 600
for i, name in enumerate(("base", "a", "b")):
    d = f"{out}/sharded/{name}"
    if os.path.exists(f"{d}/model.safetensors.index.json"):
        continue
    os.makedirs(d, exist_ok=True)
    rng, weight_map = np.random.default_rng(300 + i), {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write(f"{d}/{file}", [(f"layers.{s}.weight", rng.normal(0, 0.02, 1024).astype(np.float32))])
        weight_map[f"layers.{s}.weight"] = file
    index = {"metadata": {"total_size": shards * 4096}, "weight_map": weight_map}
    with open(f"{d}/model.safetensors.index.json", "w") as f:
        json.dump(index, f, indent=2)
PY

# measure BINARY LIMIT ARGS...: runs `BINARY ARGS...` (under `ulimit -n LIMIT` unless LIMIT is -)
# and prints "status seconds peak_bytes first-error-line".
measure() {
  local binary="$1" limit="$2"; shift 2
  local out="$dir/stdout" err="$dir/stderr" times="$dir/times" status=0
  rm -rf "$dir/out" "$dir/out.safetensors"
  ( [ "$limit" = - ] || ulimit -n "$limit"
    exec /usr/bin/time -f '%e %M' -o "$times" "$binary" "$@" ) >"$out" 2>"$err" || status=$?
  local seconds kilobytes peak
  read -r seconds kilobytes < <(tail -n 1 "$times")
  peak=$(tail -c 1000000 "$out" | grep -o '"peak_memory_bytes" *: *[0-9]*' | tail -n 1 | grep -o '[0-9]*$' || true)
  [ -n "$peak" ] || peak=$((kilobytes * 1024))
  local error=""
  if [ "$status" != 0 ]; then
    error=$( (grep -h -m 1 -i 'error' "$err" "$out" || head -n 1 "$err") | head -n 1 | cut -c 1-200)
  fi
  echo "$status $seconds $peak $error"
}

rows=()      # "scenario|command|limit|args (one string, word-split)"
for n in $inputs; do
  models=""; for ((i = 0; i < n; i++)); do models+=" --model $dir/small/m$(printf %04d $i).safetensors"; done
  rows+=("$n inputs of 1 MiB|ties --threads 2|-|ties --base $dir/small/base.safetensors$models -o $dir/out.safetensors --threads 2 --json")
  rows+=("$n inputs of 1 MiB|analyze --threads 2|-|analyze --base $dir/small/base.safetensors$models --threads 2 --json")
done
for n in $inputs; do
  models=""; for ((i = 0; i < n; i++)); do models+=" --model $dir/items/m$(printf %04d $i).safetensors"; done
  rows+=("$n inputs of 256 tensors [16]|analyze --threads 2|-|analyze --base $dir/items/base.safetensors$models --threads 2 --json")
done
h="$dir/header"
rows+=("1.4 M tensors, 99 MB header|inspect|-|inspect $h/a.safetensors")
rows+=("1.4 M tensors, 99 MB header|inspect --json|-|inspect $h/a.safetensors --json")
rows+=("1.4 M tensors, 99 MB header|task-arithmetic, 2 models|-|task-arithmetic --base $h/base.safetensors --model $h/a.safetensors --model $h/b.safetensors -o $dir/out.safetensors --json")
t="$dir/tiny"
for p in $points; do
  grid="0.001:$(awk -v p="$p" 'BEGIN { printf "%g", p / 1000 }'):0.001"
  rows+=("$p sweep points, ulimit -n 1024|sweep --method task_arithmetic --scale $grid|1024|sweep --method task_arithmetic --base $t/base.safetensors --model $t/a.safetensors --model $t/b.safetensors --scale $grid -o $dir/out --json")
done
s="$dir/sharded"
rows+=("3 × 600 shards, ulimit -n 1024|task-arithmetic, 2 models|1024|task-arithmetic --base $s/base --model $s/a --model $s/b -o $dir/out.safetensors --json")

cell() {  # status seconds peak -> "peak | time | exit"
  if [ "$1" = 0 ]; then
    "$python" -c 'import sys; print(f"{int(sys.argv[2]) / 1e6:.0f} MB | {float(sys.argv[1]):.2f} s | 0")' "$2" "$3"
  else
    "$python" -c 'import sys; print(f"exit {sys.argv[1]} | {float(sys.argv[2]):.2f} s | {sys.argv[1]}")' "$1" "$2"
  fi
}

if [ -n "$before" ]; then
  echo "| scenario | command | peak RSS | wall time | exit | peak RSS (before) | wall time (before) | exit (before) |"
  echo "|---|---|---|---|---|---|---|---|"
else
  echo "| scenario | command | peak RSS | wall time | exit |"
  echo "|---|---|---|---|---|"
fi
notes=()
for row in "${rows[@]}"; do
  IFS='|' read -r scenario command limit args <<<"$row"
  echo "running: $scenario: $command" >&2
  # shellcheck disable=SC2086  # args is a list of words without spaces inside
  read -r status seconds peak error < <(measure "$cli" "$limit" $args)
  line="| $scenario | $command | $(cell "$status" "$seconds" "$peak")"
  [ "$status" = 0 ] || notes+=("$scenario, $command: $error")
  if [ -n "$before" ]; then
    # shellcheck disable=SC2086
    read -r status seconds peak error < <(measure "$before" "$limit" $args)
    line+=" | $(cell "$status" "$seconds" "$peak")"
    [ "$status" = 0 ] || notes+=("$scenario, $command (before): $error")
  fi
  echo "$line |"
done
[ ${#notes[@]} = 0 ] || echo
for note in "${notes[@]}"; do echo "- $note"; done
rm -rf "$dir/out" "$dir/out.safetensors" "$dir/stdout" "$dir/stderr" "$dir/times"
