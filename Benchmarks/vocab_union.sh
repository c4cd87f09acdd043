#!/usr/bin/env bash
# Merged vocabularies at scale: a `tokenizer_source: union` recipe run by merge-cli (`merge-cli
# run`) and mergekit-yaml side by side on Llama-3-shaped bfloat16 models (128,256-token byte-level
# BPE tokenizers, hidden 2048, 2 layers: the vocabulary tensors are 85 % of each model; made by
# Benchmarks/vocab_union_models.py when missing), and the same merge of models of one vocabulary
# (no tokenizer_source) as the reference for time and memory. Time and peak RSS: best of --runs
# for merge-cli after a warm read of the inputs, one run of mergekit.
#
#   union    task_arithmetic: base + ft_1 (+2 chat tokens) 0.5, ft_2 (+<|im_start|> and 30 tool
#            tokens) 0.3, ft_3 (the base's vocabulary) 0.2; tokenizer_source: union (128,287 tokens)
#   plain    the same weights on plain_1, plain_2, ft_3 (every model of the base's vocabulary)
#
# Then the two union outputs are compared token by token (mergekit orders the added tokens by hash
# order): the largest absolute difference in the vocabulary rows and in the other tensors.
#
# Usage: Benchmarks/vocab_union.sh [--dir DIR] [--mergekit PATH/TO/mergekit-yaml] [--python PYTHON]
#                                  [--runs N] [--cli PATH/TO/merge-cli] [--vocab N]
#   --python runs the generator and the comparison (it needs torch, safetensors, tokenizers and
#   transformers: the mergekit environment has them).
# Writes a Markdown table to stdout and to DIR/results-vocab.md. Outputs go to DIR/out-vocab.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=/tmp/mergekit-bench; mergekit="$(command -v mergekit-yaml || true)"; python=/work/venvs/mergekit/bin/python
runs=3; cli=""; vocab=128256
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2;;
    --mergekit) mergekit="$2"; shift 2;;
    --python) python="$2"; shift 2;;
    --runs) runs="$2"; shift 2;;
    --cli) cli="$2"; shift 2;;
    --vocab) vocab="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

[ -n "$cli" ] || { swift build -c release --product merge-cli >/dev/null; cli="$(swift build -c release --show-bin-path)/merge-cli"; }
s="$dir/vocab-set-$vocab"
if [ ! -f "$s/plain_2/model.safetensors" ]; then
  "$python" Benchmarks/vocab_union_models.py --out "$s" --vocab "$vocab" >&2
fi
out="$dir/out-vocab"; rm -rf "$out"; mkdir -p "$out"

# time_cmd NAME RUNS CMD... → "NAME seconds rss_mb" (best of RUNS), or "NAME failed"
time_cmd() {
  local name="$1" n="$2"; shift 2
  local best="" rss=""
  for _ in $(seq "$n"); do
    rm -rf "$out/result"; sync; cat "$s"/*/model.safetensors > /dev/null
    if ! /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" >/dev/null 2>"$out/stderr-$name.txt"; then
      echo "$name failed (see $out/stderr-$name.txt)" >&2; echo "$name failed"; return
    fi
    local t; t=$(tail -1 "$out/time.txt")
    local secs="${t% *}" kb="${t#* }"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best="$secs"; rss="$kb"; fi
  done
  echo "$name $best $((rss / 1024))"
}

recipe() {  # recipe M1 M2 TOKENIZER_LINE
  printf "merge_method: task_arithmetic\nbase_model: %s/base\nmodels:\n  - model: %s/%s\n    parameters: {weight: 0.5}\n  - model: %s/%s\n    parameters: {weight: 0.3}\n  - model: %s/ft_3\n    parameters: {weight: 0.2}\ndtype: bfloat16\n%s" \
    "$s" "$s" "$1" "$s" "$2" "$s" "$3"
}
recipe ft_1 ft_2 "tokenizer_source: union
" > "$out/union.yml"
recipe plain_1 plain_2 "" > "$out/plain.yml"

rows=()
for name in union plain; do
  ours=$(time_cmd "$name" "$runs" "$cli" run "$out/$name.yml" -o "$out/result")
  [ "$name" != union ] || cp -r "$out/result" "$out/ours-union"
  theirs="$name – –"
  if [ -n "$mergekit" ] && [ -x "$mergekit" ]; then
    theirs=$(time_cmd "$name" 1 "$mergekit" "$out/$name.yml" "$out/result" --no-cuda --random-seed 0 --no-write-model-card --quiet)
    [ "$name" != union ] || [ ! -d "$out/result" ] || cp -r "$out/result" "$out/mergekit-union"
  fi
  rows+=("$ours|$theirs")
done
rm -rf "$out/result"

agreement="–"
if [ -d "$out/mergekit-union" ]; then
  agreement=$("$python" - "$out/ours-union" "$out/mergekit-union" <<'EOF'
import json, sys
import torch
from safetensors.torch import load_file

def vocab(d):
    t = json.load(open(d + "/tokenizer.json"))
    v = dict(t["model"]["vocab"])
    for a in t["added_tokens"]:
        v[a["content"]] = a["id"]
    return v

ours, theirs = sys.argv[1], sys.argv[2]
vo, vt = vocab(ours), vocab(theirs)
assert set(vo) == set(vt), "vocabularies differ"
a, b = load_file(ours + "/model.safetensors"), load_file(theirs + "/model.safetensors")
assert set(a) == set(b), "tensor names differ"
largest = {"vocabulary rows": 0.0, "other tensors": 0.0}
tokens = sorted(vo, key=vo.get)
for name in a:
    x, y = a[name].float(), b[name].float()
    if x.shape != y.shape:
        raise SystemExit(f"{name}: {tuple(x.shape)} vs {tuple(y.shape)}")
    kind = "other tensors"
    if name in ("model.embed_tokens.weight", "lm_head.weight"):
        x = x[torch.tensor([vo[t] for t in tokens])]
        y = y[torch.tensor([vt[t] for t in tokens])]
        kind = "vocabulary rows"
    largest[kind] = max(largest[kind], (x - y).abs().max().item())
print(f"the same {len(vo)} tokens; largest |difference| " + ", ".join(f"{v:.2g} in the {k}" for k, v in largest.items())
      + " (mergekit computes in bfloat16: 4.9e-4 is one bfloat16 step at 0.0625–0.125)")
EOF
)
fi

{
  echo "Set: $s (bfloat16, vocabulary $vocab); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)"
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
  echo
  echo "union, merge-cli against mergekit: $agreement"
} | tee "$dir/results-vocab.md"
