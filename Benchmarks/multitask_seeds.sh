#!/usr/bin/env bash
# The seed-to-seed spread of the multi-task benchmark: runs Benchmarks/multitask.sh (--quick by
# default, the pipeline MultitaskEndToEndTests runs) once per seed and prints every method's average
# test accuracy per seed, then for each difference the end-to-end test asserts on (and the others
# worth watching) its mean, minimum, maximum, max − min and standard deviation over the seeds. The
# margins asserted by the test must exceed these spreads.
#
# Usage: Benchmarks/multitask_seeds.sh [--seeds "0 1 2 3 4 5 6 7"] [--full] [--bin DIR] [--methods LIST] [--out DIR]
#   --full    the full benchmark instead of --quick (minutes per seed)
#   --bin     merge-cli and benchmark-tool to use (default: multitask.sh builds them in release;
#             `--bin .build/debug` gives exactly the numbers `swift test` sees)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="0 1 2 3 4 5 6 7"; profile=--quick; bin=""; out=""
methods="pretrained,individual,task_arithmetic,adamerging,atlas,wemoe"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2;;
    --full) profile=""; methods=all; shift;;
    --bin) bin="$2"; shift 2;;
    --methods) methods="$2"; shift 2;;
    --out) out="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done
out="${out:-$(mktemp -d /tmp/mergekit-multitask-seeds.XXXXXX)}"
mkdir -p "$out"
: > "$out/averages.tsv"
for seed in $seeds; do
  Benchmarks/multitask.sh $profile --seed "$seed" --methods "$methods" ${bin:+--bin "$bin"} --out "$out/seed-$seed" >/dev/null
  # results.json: one method a line, {"name": "…", …, "average": 12.34}
  awk -v seed="$seed" -F'"' '/"name"/ {name = $4; avg = $0; sub(/.*"average": /, "", avg); sub(/}.*/, "", avg); print seed "\t" name "\t" avg}' \
    "$out/seed-$seed/results.json" >> "$out/averages.tsv"
  echo "seed $seed: $(awk -F'\t' -v s="$seed" '$1 == s {printf "%s %s  ", $2, $3}' "$out/averages.tsv")"
done

echo
echo "# average test accuracy (%) per seed"
awk -F'\t' '{ if (!($2 in seen)) {seen[$2] = 1; order[++m] = $2}; if (!($1 in ss)) {ss[$1] = 1; seeds[++n] = $1}; v[$1, $2] = $3 }
  END {
    printf "%-24s", "method"; for (i = 1; i <= n; i++) printf " %7s", "seed " seeds[i]; print ""
    for (k = 1; k <= m; k++) { printf "%-24s", order[k]; for (i = 1; i <= n; i++) printf " %7.2f", v[seeds[i], order[k]]; print "" }
  }' "$out/averages.tsv"

echo
echo "# differences of averages (percentage points) over the seeds"
printf '%-34s %7s %7s %7s %8s %6s\n' difference mean min max max-min std
for pair in task_arithmetic:pretrained wemoe:task_arithmetic adamerging:task_arithmetic atlas:task_arithmetic \
            individual:task_arithmetic individual:atlas; do
  a="${pair%%:*}"; b="${pair##*:}"
  awk -F'\t' -v a="$a" -v b="$b" '
    $2 == a {x[$1] = $3; hx[$1] = 1} $2 == b {y[$1] = $3; hy[$1] = 1}
    END {
      for (s in hx) if (s in hy) { d = x[s] - y[s]; n++; sum += d; sq += d * d; if (n == 1 || d < lo) lo = d; if (n == 1 || d > hi) hi = d }
      if (n == 0) exit
      mean = sum / n; var = n > 1 ? (sq - n * mean * mean) / (n - 1) : 0; if (var < 0) var = 0
      printf "%-34s %7.2f %7.2f %7.2f %8.2f %6.2f\n", a " − " b, mean, lo, hi, hi - lo, sqrt(var)
    }' "$out/averages.tsv"
done
echo
echo "(per-seed results in $out)"
