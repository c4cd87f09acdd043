#!/usr/bin/env bash
# Interop check: every case of Fixtures/expected/cases.json is merged with merge-cli, and the
# output is loaded with the Python safetensors package (check_interop.py) and compared with the
# numpy expectation. Also writes a sharded directory output and loads that.
# Usage: Fixtures/interop.sh PYTHON MERGE_CLI
set -euo pipefail
python="$1"; cli="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

"$python" - "$here/expected/cases.json" > "$work/commands" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1])):
    d = c["dtype_dir"]
    if c["kind"] == "task_vector":
        args = ["task-vector", "--base", f"{d}/base", "--finetuned", f"{d}/{c['models'][0]}"]
    else:
        args = ["task-arithmetic", "--base", f"{d}/base"]
        for m in c["models"]:
            args += ["--model", f"{d}/{m}"]
        for w in c["weights"]:
            args += [f"--weight={w}"]
        args += ["--scale", str(c["scale"]), "--dtype", c["out_dtype"]]
    print(c["name"] + "-" + d, c["file"], " ".join(args))
PY

failures=0
while read -r name expected args; do
  out="$work/$name.safetensors"
  (cd "$here" && "$cli" $args -o "$out" 2>/dev/null)
  if "$python" "$here/check_interop.py" "$out" "$here/$expected" >/dev/null; then
    echo "interop ok: $name"
  else
    echo "interop FAILED: $name"; failures=$((failures + 1))
  fi
done < "$work/commands"

# A sharded directory output (tiny shards) must load as one checkpoint too.
(cd "$here" && "$cli" task-arithmetic --base bf16/base --model bf16/ft_a --model bf16/ft_b --model bf16/ft_c \
  --scale 0.5 --max-shard-size 3KB -o "$work/sharded" 2>/dev/null)
if "$python" "$here/check_interop.py" "$work/sharded" "$here/expected/bf16/sum.safetensors" >/dev/null; then
  echo "interop ok: sharded directory ($(ls "$work/sharded" | grep -c '^model-') shards)"
else
  echo "interop FAILED: sharded directory"; failures=$((failures + 1))
fi
[ "$failures" = 0 ]
