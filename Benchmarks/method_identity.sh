#!/usr/bin/env bash
# The method surface, before and after: runs every method subcommand (F32, F16, BF16 fixtures), every
# recipe name with its presets and their edge parameters (normalize, merge, drop_rate/density,
# rescale, fixed combine), sweeps, dry runs, help texts and argument errors with two merge-cli
# binaries, and compares exit status, stdout, stderr and every output file's SHA-256 (timings and
# peak memory masked). Each binary is copied to one path and writes to one path, so the command
# lines recorded in outputs agree.
#
# Usage: Benchmarks/method_identity.sh BEFORE/merge-cli AFTER/merge-cli [WORKDIR]
# Prints the cases that differ (nothing but the count when all agree); exit 1 on a difference.
set -u
cd "$(dirname "$0")/.."
FX="$PWD/Fixtures"; BEFORE="$(realpath "$1")"; AFTER="$(realpath "$2")"; W="${3:-/tmp/merge-cli-method-identity}"
M="--base $FX/f32/base --model $FX/f32/ft_a --model $FX/f32/ft_b --model $FX/f32/ft_c"
cases() {
n=0
run() { # name, args... (one side: the binary at $W/bin/merge-cli, outputs at one path for both sides)
  local name=$1; shift; n=$((n+1))
  local d=$W/cur/$name; rm -rf $d; mkdir -p $d; cd $d
  $W/bin/merge-cli "${@//OUT/$d/out}" > $d/stdout 2> $d/stderr; echo $? > $d/status
  sed -i -E "s#[0-9]+(\.[0-9]+)? ?(ms|s|MB/s|GB/s|MiB|GiB|MB|GB)\b#T#g" $d/stdout $d/stderr
  sed -i -E 's/"(seconds|peak_memory_bytes)": [0-9.e+-]+/"\1": T/' $d/stdout
  if [ -e $d/out ]; then
    [ -f $d/out/manifest.json ] && sed -i -E 's/"(seconds|peak_memory_bytes)": [0-9.e+-]+/"\1": T/' $d/out/manifest.json
    if [ -d $d/out ]; then (cd $d/out && find . -type f | sort | xargs sha256sum) > $d/sums; else sha256sum < $d/out > $d/sums; fi
    rm -rf $d/out
  fi
  mkdir -p $W/$SIDE; mv $d $W/$SIDE/$name
}
for dt in f32 f16 bf16; do
  MM="--base $FX/$dt/base --model $FX/$dt/ft_a --model $FX/$dt/ft_b --model $FX/$dt/ft_c"
  run ta-$dt task-arithmetic $MM --scale 0.5 -o OUT
  run ties-$dt ties $MM --density 0.5 -o OUT
  run tiesmk-$dt ties $MM --trim-scope tensor --vote weighted --merge normalized --density 0.5 -o OUT
  run dare-$dt dare $MM --drop-rate 0.3 -o OUT
  run daret-$dt dare $MM --combine ties --vote weighted --merge sum --rescale l1 --drop-rate 0.3 --seed 7 -o OUT
  run linear-$dt linear $MM -o OUT
  run linearnn-$dt linear $MM --no-normalize --weight 1 --weight 2 --weight -0.5 -o OUT
  run bc-$dt breadcrumbs $MM --density 0.5 --gamma 0.1 -o OUT
  run ms-$dt model-stock $MM -o OUT
  run mg-$dt metagpt $MM -o OUT
  run mm-$dt magmax $MM --scale -0.5 -o OUT
  run tsvm-$dt tsv-m $MM -o OUT
  run isoc-$dt iso-c $MM --scale 1.5 --null-space keep -o OUT
done
run ta-json task-arithmetic $M --scale 0.5 --json -o OUT/m.safetensors
run dry-ties ties $M --dry-run
run dry-ties-json ties $M --dry-run --json
run dry-dare dare $M --dry-run --merge normalized
run dry-tsvm tsv-m $M --dry-run
run dare-ta-norm dare $M --merge normalized --drop-rate 0.2 -o OUT
run emit-tv ties $M --emit task-vector -o OUT
# errors
run e-density ties $M --density 1.5 -o OUT
run e-scale magmax $M --scale nan -o OUT
run e-vote ties $M --vote nope -o OUT
run e-vote-none ties $M --vote none -o OUT
run e-drop dare $M --drop-rate 1 -o OUT
run e-seed dare $M --seed -1 -o OUT
run e-weight magmax $M --weight 2 --weight 1 --weight 1 -o OUT
run e-svdweight tsv-m $M --weight 1 -o OUT
run e-unknown ties $M --frobnicate -o OUT
run e-missing ties $M --density -o OUT
run e-ms1 model-stock --base $FX/f32/base --model $FX/f32/ft_a -o OUT
run e-linear0 linear $M --weight 1 --weight -1 --weight 0 -o OUT
run e-gamma breadcrumbs $M --gamma 1 -o OUT
for c in "" ties dare linear breadcrumbs model-stock metagpt magmax tsv-m iso-c task-arithmetic negate sweep run methods; do run help-$c $c --help; done
run methods methods
run methods-json methods --json
# sweeps
run sw-ta sweep --method task_arithmetic $M --scale 0.5,1 -o OUT
run sw-ties sweep --method ties $M --scale 0.5,1 --density 0.5 -o OUT
run sw-dare sweep --method dare_ties $M --density 0.5,0.9 --seed 3 -o OUT
run sw-darel sweep --method dare_linear $M --grid drop_rate=0.1,0.2 --param normalize=true -o OUT
run sw-dare2 sweep --method dare $M --grid lambda=0.5,1 --param combine=ties -o OUT
run sw-bc sweep --method breadcrumbs_ties $M --density 0.3,0.5 --param gamma=0.05 -o OUT
run sw-iso sweep --method iso_c $M --grid lambda=0.5,1,2 -o OUT
run sw-ms sweep --method model_stock $M --grid lambda=1 -o OUT
run sw-e1 sweep --method tie $M --scale 1 -o OUT
run sw-e2 sweep --method ties $M --grid nope=1 -o OUT
run sw-e3 sweep --method ties $M --density 0,0.5 -o OUT
run sw-e4 sweep --method ties $M --scale 1 --param vote=x -o OUT
run sw-e5 sweep --method ties $M --scale 1 --param density=abc -o OUT
run sw-e6 sweep --method magmax $M --grid density=0.5 -o OUT
# recipes
mkdir -p $W/recipes; R=$W/recipes
mk() { printf '%s\n' "$2" > $R/$1.yml; run rc-$1 run $R/$1.yml -o OUT; }
B="base_model: $FX/f32/base"
MODS="models:
  - model: $FX/f32/ft_a
    parameters: {weight: 1, density: 0.5}
  - model: $FX/f32/ft_b
    parameters: {weight: 0.5, density: 0.7}
  - model: $FX/f32/ft_c"
for m in ties dare_ties dare_linear dare breadcrumbs breadcrumbs_ties task_arithmetic task-arithmetic linear; do
  mk $m "merge_method: $m
$B
$MODS"
  mk $m-norm "merge_method: $m
$B
$MODS
parameters: {normalize: true}"
  mk $m-nonorm "merge_method: $m
$B
$MODS
parameters: {normalize: false, lambda: [0.5, 1.5]}"
done
for m in ties dare_ties dare breadcrumbs_ties; do
  mk $m-merge "merge_method: $m
$B
$MODS
parameters: {merge: mean, vote: mass, normalize: false}"
done
mk dare-drop "merge_method: dare
$B
models:
  - model: $FX/f32/ft_a
    parameters: {drop_rate: 0.5}
  - model: $FX/f32/ft_b
  - model: $FX/f32/ft_c
parameters: {seed: 5, rescale: true, combine: ties}"
mk dare-rescale "merge_method: dare_ties
$B
$MODS
parameters: {rescale: false, combine: task-arithmetic}"
mk dare-ta-norm "merge_method: dare
$B
$MODS
parameters: {merge: normalized}"
mk ties-global "merge_method: ties
$B
models:
  - model: $FX/f32/ft_a
  - model: $FX/f32/ft_b
parameters: {trim_scope: global, density: 0.3}"
for m in model_stock model-stock metagpt magmax tsv_m tsv-m iso_c iso-c; do
  mk $m "merge_method: $m
$B
models:
  - model: $FX/f32/ft_a
  - model: $FX/f32/ft_b
  - model: $FX/f32/ft_c"
done
mk linear-nobase "merge_method: linear
models:
  - model: $FX/f32/ft_a
  - model: $FX/f32/ft_b"
mk sweep-ties "merge_method: ties
$B
$MODS
sweep:
  lambda: [0.5, 1]
  density: [0.3, 0.6]"
# recipe errors
mk e-unknown "merge_method: tiez
$B
models:
  - model: $FX/f32/ft_a
    parameters: {foo: 1, density: 2}"
mk e-param "merge_method: ties
$B
$MODS
parameters:
  normalise: true
  lambda: abc
  vote: nope
  filter_wise: true"
mk e-param2 "merge_method: dare_ties
$B
$MODS
parameters: {rescale: maybe, gamma: 0.1}"
mk e-fw "merge_method: model_stock
$B
models:
  - model: $FX/f32/ft_a
  - model: $FX/f32/ft_b
parameters: {filter_wise: true}"
mk e-nobase "merge_method: ties
models:
  - model: $FX/f32/ft_a"
mk e-sweep "merge_method: ties
$B
$MODS
sweep:
  gamma: [0.1]
  density: [0.5, 0.5]"
mk e-merge "merge_method: breadcrumbs
$B
$MODS
parameters: {merge: 3, vote: weighted_x}"
}

rm -rf "$W"; mkdir -p "$W/bin" "$W/recipes"
for SIDE in before after; do
  if [ $SIDE = before ]; then cp "$BEFORE" "$W/bin/merge-cli"; else cp "$AFTER" "$W/bin/merge-cli"; fi
  cases
done
echo "cases: $n per binary"
if diff -r "$W/before" "$W/after"; then echo "all identical"; else exit 1; fi
