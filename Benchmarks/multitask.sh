#!/usr/bin/env bash
# Multi-task merging benchmark on real data, built and run by merge-cli alone (and benchmark-tool for
# the datasets): scikit-learn's handwritten digits (Fixtures/multitask/digits.safetensors) turned into
# 8 tasks (benchmark-tool multitask-data: an image transformation and colours per task, some with
# other label maps), a small CLIP-shaped ViT initialised at random (`merge-cli init encoder`) and
# pretrained on a self-supervised pretext task (`merge-cli finetune`: which task's style, which of
# the 8 symmetries of the square), class-mean heads from the pretrained model (`merge-cli init head
# --data`, CLIP's zero-shot heads stand-in), every task fine-tuned ordinarily and linearized, then
# every method evaluated on every task's test images.
#
# λ (α for TSV-M and Iso-C) is chosen on the validation images (the best average accuracy over the
# tasks), never on the test images; AdaMerging and WEMoE adapt on the validation images without their
# labels, aTLAS learns from 16 labelled validation images per class, RegMean and Fisher read the
# training images. The test images are read only to report the final numbers.
#
# Usage: Benchmarks/multitask.sh [--quick] [--seed 0] [--threads 2] [--work DIR] [--keep] [--out DIR]
#                                [--methods LIST] [--bin DIR] [--scratch-path .build]
#   --quick    the reduced pipeline `swift test` runs (MultitaskEndToEndTests): 4 tasks (digits,
#              rotate, parity, loops), 400/100/200 images, a 2-layer encoder, fewer steps (see the
#              profile below); about 20 s in release, 90 s in debug on 2 threads
#   --seed     one seed for everything (split, initialisation, batch orders, routers)
#   --work     where the data and models go (default: a new directory under /tmp, removed at the end
#              unless --keep)
#   --out      where results.md (the table), results.csv, results.json, validation.tsv (every λ
#              tried), adaptation.tsv and times.tsv go (default: a new directory under /tmp)
#   --methods  comma list of methods (default: all):
#              pretrained individual task_arithmetic ties tsv_m iso_c magmax metagpt adamerging
#              atlas regmean fisher tangent wemoe wemoe_routed (the last: WEMoE's experts routed by the
#              task instead of a router, an upper bound for WEMoE)
#   --bin      a directory holding merge-cli and benchmark-tool (default: build them in release)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

quick=0; seed=0; threads=2; work=""; out=""; methods="all"; bin=""; scratch=.build; keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift;;
    --seed) seed="$2"; shift 2;;
    --threads) threads="$2"; shift 2;;
    --work) work="$2"; shift 2;;
    --out) out="$2"; shift 2;;
    --methods) methods="$2"; shift 2;;
    --bin) bin="$2"; shift 2;;
    --scratch-path) scratch="$2"; shift 2;;
    --keep) keep=1; shift;;
    *) echo "unknown option $1" >&2; exit 64;;
  esac
done

# --- the profile -------------------------------------------------------------------------------------
if [ "$quick" = 1 ]; then
  tasks_list=digits,rotate,parity,loops; tasks_n=4; train=400; val=100; test=200
  hidden=64; layers=2; heads=4; inter=128; proj=32
  pre_steps=400; pre_batch=64; ft_steps=150; ft_batch=32
  ada_steps=200; wemoe_steps=200; atlas_steps=200; shots=8; samples=64
  grid="0.1 0.2 0.3 0.5 0.7 1.0"
else
  tasks_list=8; tasks_n=8; train=1000; val=200; test=597
  hidden=64; layers=4; heads=4; inter=256; proj=64
  pre_steps=1500; pre_batch=64; ft_steps=300; ft_batch=32
  ada_steps=1000; wemoe_steps=1000; atlas_steps=1000; shots=16; samples=256
  grid="0.1 0.2 0.3 0.4 0.5 0.7 1.0 1.3 1.6 2.0 2.5 3.0"
fi
pre_lr=1e-3; pre_scale=20; ft_lr=1e-4; head_scale=100

all_methods="pretrained individual task_arithmetic ties tsv_m iso_c magmax metagpt adamerging atlas regmean fisher tangent wemoe wemoe_routed"
[ "$methods" = all ] && methods="$all_methods"
methods="${methods//,/ }"
for m in $methods; do
  case " $all_methods " in *" $m "*) ;; *) echo "unknown method $m (one of: $all_methods)" >&2; exit 64;; esac
done
wants() { case " $methods " in *" $1 "*) return 0;; *) return 1;; esac; }

if [ -z "$bin" ]; then
  swift build -c release --scratch-path "$scratch" --product merge-cli >/dev/null
  swift build -c release --scratch-path "$scratch" --product benchmark-tool >/dev/null
  bin="$(swift build -c release --scratch-path "$scratch" --show-bin-path)"
fi
cli="$bin/merge-cli"; tool="$bin/benchmark-tool"
if [ -n "$work" ] && [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then
  echo "$work is not empty: give a new --work directory" >&2; exit 64
fi
if [ -z "$work" ]; then
  work="$(mktemp -d /tmp/mergekit-multitask.XXXXXX)"
  [ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
out="${out:-$(mktemp -d /tmp/mergekit-multitask-results.XXXXXX)}"; mkdir -p "$out"
data="$work/data"; models="$work/models"; mkdir -p "$models"

# --- helpers -----------------------------------------------------------------------------------------
now() { date +%s.%N; }
start_all=$(now)
: > "$out/times.tsv"
phase_start=$(now)
phase() {  # records the seconds since the previous phase under $1
  local t; t=$(now)
  awk -v name="$1" -v a="$t" -v b="$phase_start" 'BEGIN {printf "%s\t%.1f\n", name, a - b}' >> "$out/times.tsv"
  phase_start=$t
}
# accuracy (%) of model $1 with head $2 on data $3
accuracy() {
  "$cli" eval --model "$1" --head "$2" --data "$3" --json --quiet --threads "$threads" \
    | awk -F': ' '/"correct"/ {gsub(",", "", $2); c = $2} /"images"/ {gsub(",", "", $2); n = $2} END {printf "%.2f", 100 * c / n}'
}
# the average accuracy (%) of model $1 over the tasks' split $2 (per-task values in $per_task)
average() {
  local sum=0 t a
  per_task=""
  for t in $tasks; do
    a=$(accuracy "$1" "$models/heads/$t.safetensors" "$data/$t/$2.safetensors")
    per_task="$per_task $a"; sum=$(awk -v a="$sum" -v b="$a" 'BEGIN {printf "%.4f", a + b}')
  done
  echo "$sum" | awk -v n="$(echo $tasks | wc -w)" '{printf "%.2f", $1 / n}'
}
: > "$out/results.tsv"
# record METHOD LAMBDA MODEL: the model's test accuracy on every task
record() {
  local t a
  for t in $tasks; do
    a=$(accuracy "$3" "$models/heads/$t.safetensors" "$data/$t/test.safetensors")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$t" "$a" >> "$out/results.tsv"
  done
}
# sweep METHOD SUBCOMMAND BASE MODELS... -- EXTRA...: tries every λ of $grid with `merge-cli SUBCOMMAND`,
# keeps the model with the best average validation accuracy in $models/NAME, and records its test
# accuracy. Task arithmetic (ordinary and in the tangent space) is one command, a sweep that scores
# its points (`merge-cli sweep --eval … --keep best`), which also draws the validation accuracy of
# every task against λ ($out/NAME-scores-lambda.svg, .png with rsvg-convert); the other methods,
# whose commands follow the papers' presets where a sweep follows mergekit's, loop over λ.
sweep() {
  local name="$1" command="$2" base="$3"; shift 3
  local inputs=() extra=() seen=0
  for a in "$@"; do
    if [ "$a" = "--" ]; then seen=1; continue; fi
    if [ "$seen" = 0 ]; then inputs+=(--model "$a"); else extra+=("$a"); fi
  done
  local best="" best_score=-1 lambda score
  if [ "$command" = task-arithmetic ] && [ ${#extra[@]} = 0 ]; then
    local evals=() png=() t
    for t in $tasks; do evals+=(--eval "$models/heads/$t.safetensors=$data/$t/val.safetensors"); done
    command -v rsvg-convert >/dev/null 2>&1 && png=(--png)
    rm -rf "$models/$name.sweep"
    "$cli" sweep --method task_arithmetic --base "$base" "${inputs[@]}" --scale "${grid// /,}" "${evals[@]}" "${png[@]}" \
      --keep best --json --quiet --threads "$threads" -o "$models/$name.sweep" > "$out/$name-sweep.json"
    # validation.tsv: every point's λ and average validation accuracy (%); the chosen point.
    awk -v name="$name" '
      /"lambda":/ { gsub(/[ ,]/, "", $2); l = $2 }
      /"average_accuracy":/ && l != "" { gsub(/[ ,]/, "", $2); printf "%s\t%s\t%.6f\n", name, l, 100 * $2; l = "" }
      /"evaluation":/ { exit }' FS=': ' "$out/$name-sweep.json" >> "$out/validation.tsv"
    best=$(awk -F': ' '/"selected": \{/ { s = 1 } s && /"lambda":/ { gsub(/[ ,]/, "", $2); print $2; exit }' "$out/$name-sweep.json")
    rm -rf "$models/$name"; mv "$models/$name.sweep"/point-* "$models/$name"
    for f in "$models/$name.sweep"/scores-lambda.*; do cp "$f" "$out/$name-$(basename "$f")"; done
    rm -rf "$models/$name.sweep"
    echo "$name: λ = $best chosen on validation (merge-cli sweep --eval)" >&2
  else
    for lambda in $grid; do
      "$cli" "$command" --base "$base" "${inputs[@]}" "${extra[@]}" --scale "$lambda" -o "$models/$name.try" \
        --overwrite --quiet --threads "$threads"
      score=$(average "$models/$name.try" val)
      printf '%s\t%s\t%s\n' "$name" "$lambda" "$score" >> "$out/validation.tsv"
      if awk -v a="$score" -v b="$best_score" 'BEGIN {exit !(a > b)}'; then
        best="$lambda"; best_score="$score"; rm -rf "$models/$name"; mv "$models/$name.try" "$models/$name"
      fi
    done
    rm -rf "$models/$name.try"
    echo "$name: λ = $best chosen on validation (average $best_score %)" >&2
  fi
  record "$name" "$best" "$models/$name"
}

# --- data, pretrained model, heads, experts ----------------------------------------------------------
"$tool" multitask-data --digits "$root/Fixtures/multitask/digits.safetensors" --out "$data" --seed "$seed" \
  --tasks "$tasks_list" --train "$train" --val "$val" --test "$test" 2>/dev/null
tasks=$(awk -F'\t' '!/^#/ {print $1}' "$data/tasks.tsv")
phase data

"$cli" init encoder --hidden-size "$hidden" --num-hidden-layers "$layers" --num-attention-heads "$heads" \
  --intermediate-size "$inter" --image-size 8 --patch-size 2 --projection-dim "$proj" --seed "$seed" \
  -o "$models/init" --quiet
"$cli" init head --model "$models/init" --classes $((8 * tasks_n)) --scale "$pre_scale" --seed "$seed" \
  -o "$models/pretext-head.safetensors" --quiet
"$cli" finetune --base "$models/init" --head "$models/pretext-head.safetensors" --data "$data/pretext/train.safetensors" \
  --steps "$pre_steps" --batch-size "$pre_batch" --lr "$pre_lr" --warmup-steps $((pre_steps / 15)) --seed "$seed" \
  -o "$models/pretrained" --quiet --threads "$threads"
pre="$models/pretrained"
phase pretraining

mkdir -p "$models/heads"
for t in $tasks; do
  "$cli" init head --model "$pre" --data "$data/$t/train.safetensors" --scale "$head_scale" \
    -o "$models/heads/$t.safetensors" --quiet --threads "$threads"
done
phase heads

mkdir -p "$models/ft" "$models/lin"
for t in $tasks; do
  "$cli" finetune --base "$pre" --head "$models/heads/$t.safetensors" --data "$data/$t/train.safetensors" \
    --steps "$ft_steps" --batch-size "$ft_batch" --lr "$ft_lr" --warmup-steps $((ft_steps / 10)) --seed "$seed" \
    -o "$models/ft/$t" --quiet --threads "$threads"
done
phase fine-tuning
if wants tangent; then
  "$cli" linearize --base "$pre" -o "$models/lin-base" --quiet
  for t in $tasks; do
    "$cli" finetune --linearized --base "$pre" --head "$models/heads/$t.safetensors" --data "$data/$t/train.safetensors" \
      --steps "$ft_steps" --batch-size "$ft_batch" --lr "$ft_lr" --warmup-steps $((ft_steps / 10)) --seed "$seed" \
      -o "$models/lin/$t" --quiet --threads "$threads"
  done
  phase linear-fine-tuning
fi
experts=(); linear=(); for t in $tasks; do experts+=("$models/ft/$t"); linear+=("$models/lin/$t"); done
# task_args SPLIT [heads]: --model EXPERT --data SPLIT [--head HEAD] for every task, in $args
task_args() {
  args=()
  for t in $tasks; do
    args+=(--model "$models/ft/$t" --data "$data/$t/$1.safetensors")
    [ "${2:-}" = heads ] && args+=(--head "$models/heads/$t.safetensors")
  done
  return 0
}

# --- methods -----------------------------------------------------------------------------------------
: > "$out/validation.tsv"
if wants pretrained; then record pretrained - "$pre"; phase pretrained; fi
if wants individual; then
  for t in $tasks; do
    a=$(accuracy "$models/ft/$t" "$models/heads/$t.safetensors" "$data/$t/test.safetensors")
    printf '%s\t-\t%s\t%s\n' individual "$t" "$a" >> "$out/results.tsv"
  done
  if wants tangent; then
    for t in $tasks; do
      a=$(accuracy "$models/lin/$t" "$models/heads/$t.safetensors" "$data/$t/test.safetensors")
      printf '%s\t-\t%s\t%s\n' individual_linearized "$t" "$a" >> "$out/results.tsv"
    done
  fi
  phase individual
fi
if wants task_arithmetic; then sweep task_arithmetic task-arithmetic "$pre" "${experts[@]}"; phase task_arithmetic; fi
if wants ties; then sweep ties ties "$pre" "${experts[@]}"; phase ties; fi
if wants tsv_m; then sweep tsv_m tsv-m "$pre" "${experts[@]}"; phase tsv_m; fi
if wants iso_c; then sweep iso_c iso-c "$pre" "${experts[@]}"; phase iso_c; fi
if wants magmax; then sweep magmax magmax "$pre" "${experts[@]}"; phase magmax; fi
if wants metagpt; then
  args=(); for e in "${experts[@]}"; do args+=(--model "$e"); done
  "$cli" metagpt --base "$pre" "${args[@]}" -o "$models/metagpt" --quiet --threads "$threads"
  record metagpt - "$models/metagpt"; phase metagpt
fi
# first_last: the mean of the first and of the last tenth of the "losses" of a --json run on stdin
# (the objective at the start and at the end of the adaptation).
first_last() {
  awk '/"losses"/ {on = 1; next} on && /\]/ {on = 0} on {gsub(",", ""); v[++n] = $1}
       END {k = int(n / 10); if (k < 1) k = 1; for (i = 1; i <= k; i++) {a += v[i]; b += v[n - k + i]}
            printf "%.4f\t%.4f", a / k, b / k}'
}
printf 'method\tobjective\tstart\tend\n' > "$out/adaptation.tsv"
if wants adamerging; then
  task_args val heads
  "$cli" adamerging --base "$pre" "${args[@]}" --steps "$ada_steps" --seed "$seed" -o "$models/adamerging" --quiet \
    --threads "$threads" --json | first_last | sed 's/^/adamerging\tentropy\t/' >> "$out/adaptation.tsv"
  echo >> "$out/adaptation.tsv"
  record adamerging - "$models/adamerging"; phase adamerging
fi
if wants atlas; then
  task_args val heads
  "$cli" atlas --base "$pre" "${args[@]}" --shots "$shots" --steps "$atlas_steps" --seed "$seed" -o "$models/atlas" --quiet --threads "$threads"
  record atlas - "$models/atlas"; phase atlas
fi
if wants regmean; then
  task_args train
  "$cli" regmean "${args[@]}" --samples "$samples" --seed "$seed" -o "$models/regmean" --quiet --threads "$threads"
  record regmean - "$models/regmean"; phase regmean
fi
if wants fisher; then
  task_args train heads
  "$cli" fisher "${args[@]}" --samples "$samples" --seed "$seed" -o "$models/fisher" --quiet --threads "$threads"
  record fisher - "$models/fisher"; phase fisher
fi
if wants tangent; then sweep tangent task-arithmetic "$models/lin-base" "${linear[@]}"; phase tangent; fi
if wants wemoe; then
  args=(); for e in "${experts[@]}"; do args+=(--model "$e"); done
  "$cli" wemoe --base "$pre" "${args[@]}" --seed "$seed" -o "$models/wemoe-untrained" --quiet
  args=(); for t in $tasks; do args+=(--data "$data/$t/val.safetensors" --head "$models/heads/$t.safetensors"); done
  "$cli" wemoe-train --model "$models/wemoe-untrained" "${args[@]}" --steps "$wemoe_steps" --seed "$seed" -o "$models/wemoe" \
    --quiet --threads "$threads" --json | first_last | sed 's/^/wemoe\tentropy\t/' >> "$out/adaptation.tsv"
  echo >> "$out/adaptation.tsv"
  record wemoe - "$models/wemoe"; phase wemoe
fi
if wants wemoe_routed; then
  # What WEMoE's routers could reach: every task's images through task arithmetic (λ 0.3, WEMoE's
  # starting point) outside the MLPs and the task's own fine-tuned MLPs (θ₀ + τₜ), as if routed by
  # the task (a task-arithmetic recipe with per-tensor weights). An upper bound, not a method.
  mkdir -p "$models/routed"
  for t in $tasks; do
    {
      echo "merge_method: task_arithmetic"
      echo "base_model: \"$pre\""
      echo "parameters: {lambda: 1.0}"
      echo "models:"
      for s in $tasks; do
        echo "  - model: \"$models/ft/$s\""
        echo "    parameters: {weight: [{filter: \".mlp.\", value: $([ "$s" = "$t" ] && echo 1.0 || echo 0.0)}, {value: 0.3}]}"
      done
    } > "$models/routed/$t.yml"
    "$cli" run "$models/routed/$t.yml" -o "$models/routed/$t" --quiet --threads "$threads"
    a=$(accuracy "$models/routed/$t" "$models/heads/$t.safetensors" "$data/$t/test.safetensors")
    printf '%s\t-\t%s\t%s\n' wemoe_routed "$t" "$a" >> "$out/results.tsv"
  done
  phase wemoe_routed
fi
total=$(awk -v a="$(now)" -v b="$start_all" 'BEGIN {printf "%.1f", a - b}')

# --- the report --------------------------------------------------------------------------------------
# results.tsv: method, λ, task, test accuracy (%); every other file is made from it.
awk -F'\t' -v tasks="$(echo $tasks)" -v seed="$seed" -v quick="$quick" -v total="$total" -v md="$out/results.md" \
    -v csv="$out/results.csv" -v json="$out/results.json" '
  BEGIN { n = split(tasks, task, " ") }
  { if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 }; lambda[$1] = $2; acc[$1, $3] = $4 }
  END {
    header = "| method | λ |"; rule = "|---|---|"
    for (i = 1; i <= n; i++) { header = header " " task[i] " |"; rule = rule "---|" }
    print header " average |" > md; print rule "---|" > md
    print "method,lambda,task,accuracy" > csv
    printf "{\n  \"seed\": %d,\n  \"quick\": %s,\n  \"seconds\": %.1f,\n  \"tasks\": [", seed, (quick ? "true" : "false"), total > json
    for (i = 1; i <= n; i++) printf "%s\"%s\"", (i > 1 ? ", " : ""), task[i] > json
    printf "],\n  \"methods\": [\n" > json
    for (k = 1; k <= m; k++) {
      name = order[k]; sum = 0; row = "| " name " | " lambda[name] " |"
      printf "    {\"name\": \"%s\", \"lambda\": %s, \"test\": {", name, (lambda[name] == "-" ? "null" : lambda[name]) > json
      for (i = 1; i <= n; i++) {
        a = acc[name, task[i]]; sum += a; row = row sprintf(" %.1f |", a)
        print name "," lambda[name] "," task[i] "," a > csv
        printf "%s\"%s\": %s", (i > 1 ? ", " : ""), task[i], a > json
      }
      printf "}, \"average\": %.2f}%s\n", sum / n, (k < m ? "," : "") > json
      print row sprintf(" **%.1f** |", sum / n) > md
    }
    print "  ]\n}" > json
  }' "$out/results.tsv"
cat "$out/results.md"
echo
echo "# the adaptation objective (mean of the first and last tenth of the steps)"
cat "$out/adaptation.tsv"
printf 'total\t%.1f\n' "$total" >> "$out/times.tsv"
echo
echo "# seconds per phase ($threads threads)"
cat "$out/times.tsv"
echo "(results in $out)"
