#!/usr/bin/env bash
# Byte-identity check for merge-cli: runs a fixed corpus of commands (every fixture case, every
# method, recipes, sweeps, LoRA, extraction, inspection, the CLIP engine commands and error cases)
# and compares every output byte, so that a refactor can prove it changed no behaviour.
#
# Usage:
#   Benchmarks/byte_identity.sh                                  build the release merge-cli of this
#                                                                tree, check it against the record
#   Benchmarks/byte_identity.sh --before OLD/merge-cli --after NEW/merge-cli [--dir DIR]
#                                                                run the corpus with both, compare
#   Benchmarks/byte_identity.sh --check FILE [--bin BIN] [--dir DIR]   compare BIN with a record
#   Benchmarks/byte_identity.sh --record FILE [--bin BIN] [--dir DIR]  write BIN's record to FILE
#   Benchmarks/byte_identity.sh --list                           print the corpus (name, expected
#                                                                exit status, command)
# BIN defaults to the release merge-cli of this tree (built first). The committed record is
# Benchmarks/byte_identity.sha256, made with the release build on the project's CI-class VM. A
# record holds for one machine type and OpenBLAS build (kernels are chosen at run time): on another
# machine, compare two binaries instead.
# Runs go to DIR/before and DIR/after (or DIR/run). Without --dir, DIR is a temporary directory
# removed at the end (--keep keeps it); with --dir it is kept for inspection. Each run holds fx/
# (a copy of Fixtures/), in/ (inputs made by this script), c/CASE/ (each case's outputs) and
# s/CASE.{out,err,exit} (its streams and exit status).
#
# Exit status: 0 every case identical; 1 a case differs (or is missing/new against a record);
# 3 no before/after difference, but a determinism pair differs (below); 64 usage errors.
#
# What is compared, per case (the record holds one line per item: CASE<TAB>ITEM<TAB>VALUE):
#   cmd      the command line (a record made with another corpus is reported as such)
#   exit     the exit status
#   stdout   SHA-256 of the normalised stdout
#   stderr   SHA-256 of the normalised stderr
#   file:P   SHA-256 of every file the case wrote, P relative to its output directory c/CASE/
#            (hidden files, temporaries, companions, model cards, manifests included), also
#            link:P (a symbolic link's target) and dir:P (every directory, empty ones included)
#
# Normalisation (only what legitimately differs between two runs; nothing else is touched):
#   - In every stream and every file: the run directory's absolute path (as given and with
#     symbolic links resolved) is replaced by <RUN>. Commands run inside the run directory with
#     relative paths (fx/..., c/...), so no path differs between runs and the binary is run as
#     `merge-cli` (argv[0] is in model cards); the absolute path only appears where merge-cli
#     resolves paths itself (a missing config.json next to a model, stale temporaries removed).
#     Each run checks that no safetensors file contains it.
#   - In stdout, stderr and sweep manifest.json files: the values of the JSON members "seconds",
#     "peak_memory_bytes" and "images_per_second" are replaced by <T>.
#   - In stdout and stderr: the timings of the summary lines, "in 0.13 s" (merges, extract-lora,
#     wemoe), ", 0.32 s (106.2 ms/step)" (wemoe-train) and "; 0.10 s, 166.6 images/s" (eval text),
#     are replaced by <T>; the disk space of stale temporaries in the notes and warnings about
#     them ("….mergekit-tmp-4242-beef (24.58 KB)", and "bytes" in verify --json) by <SIZE>: it
#     counts allocated blocks, which depend on the file system (a directory takes 4 KiB on ext4
#     and nothing on tmpfs).
# Nothing else varies: every command that takes --threads gets it (1 or 2), the engine commands
# get --batch-size (their default depends on the memory available) except two cases that test the
# default, and every command runs in a fixed environment: only PATH, HOME, COLUMNS=80 (--help wraps
# to it), LC_ALL=C, LD_LIBRARY_PATH when set, and MERGEKIT_MEMORY_BUDGET=8GiB (the SVD plans and
# --dry-run print the memory available); nothing of the caller's (OPENBLAS_*, SWIFT_*, ...).
# stdin is /dev/null and stderr is not a terminal (no progress bars).
#
# Determinism pairs: cases that must write the same files, or print the same stdout (the same
# command with --threads 1 and --threads 2), are compared within each run, leaving out model
# cards (README.md, which hold the command line) and sweep manifests (manifest.json, which hold
# the output paths).
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
record_default="$repo/Benchmarks/byte_identity.sha256"
budget=8GiB
case_timeout=300

usage() { awk 'NR > 1 && /^# What is compared/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit "${1:-64}"; }

# ---------------------------------------------------------------------------------------------
# Inputs made by this script (in/): deterministic edits of the fixtures for the error cases.
# ---------------------------------------------------------------------------------------------

# st_edit IN OUT OP TENSOR [ARG]: a copy of a safetensors file with one tensor dropped (drop),
# its shape replaced (shape "16,32"), its dtype name replaced (dtype I32) or its element ARG set
# to NaN (nan, F32 only). The header is re-encoded with sorted keys and padded to 8 bytes.
st_edit() {
  perl -MJSON::PP -e '
    my ($in, $out, $op, $name, $arg) = @ARGV;
    open(my $f, "<:raw", $in) or die "$in: $!"; local $/; my $b = <$f>; close $f;
    my $n = unpack("Q<", substr($b, 0, 8));
    my $h = JSON::PP->new->decode(substr($b, 8, $n));
    my $data = substr($b, 8 + $n);
    die "$in has no tensor $name\n" unless $h->{$name};
    if ($op eq "drop") {
      my $t = delete $h->{$name};
      my ($s, $e) = @{$t->{data_offsets}};
      my $new = substr($data, 0, $s) . substr($data, $e);
      for my $k (keys %$h) {
        next if $k eq "__metadata__";
        my $o = $h->{$k}{data_offsets};
        if ($o->[0] >= $e) { $o->[0] -= $e - $s; $o->[1] -= $e - $s; }
      }
      $data = $new;
    } elsif ($op eq "shape") {
      $h->{$name}{shape} = [map { $_ + 0 } split /,/, $arg];
    } elsif ($op eq "dtype") {
      $h->{$name}{dtype} = $arg;
    } elsif ($op eq "nan") {
      my $at = $h->{$name}{data_offsets}[0] + 4 * $arg;
      substr($data, $at, 4) = pack("V", 0x7FC00000);
    } else { die "unknown op $op\n" }
    my $json = JSON::PP->new->canonical->encode($h);
    $json .= " " x ((8 - length($json) % 8) % 8);
    open(my $o, ">:raw", $out) or die "$out: $!";
    print $o pack("Q<", length $json), $json, $data; close $o;
  ' "$@"
}

# A copy of a model directory with model.safetensors edited by st_edit.
edited_model() { # SRC DST OP TENSOR [ARG]
  local src=$1 dst=$2; shift 2
  mkdir -p "$dst" && cp "$src"/*.json "$dst"/ && st_edit "$src/model.safetensors" "$dst/model.safetensors" "$@"
}

# simple_recipe NAME METHOD DTYPE "a b ..." [PARAMETERS]: in/recipes/NAME.yml merging
# fx/DTYPE/ft_a, ... onto fx/DTYPE/base with METHOD and the recipe's parameters (a flow mapping).
simple_recipe() {
  local name=$1 method=$2 dtype=$3 models=$4 parameters=${5:-} m
  {
    printf 'merge_method: %s\nbase_model: fx/%s/base\nmodels:\n' "$method" "$dtype"
    for m in $models; do printf '  - model: fx/%s/ft_%s\n' "$dtype" "$m"; done
    [ -z "$parameters" ] || printf 'parameters: %s\n' "$parameters"
  } > "in/recipes/$name.yml"
}

make_inputs() {
  mkdir -p in/recipes || return 1
  edited_model fx/f32/ft_a in/ft_a_missing drop model.layers.1.mlp.up_proj.weight || return 1
  edited_model fx/f32/base in/base_missing drop model.layers.0.self_attn.k_proj.weight || return 1
  edited_model fx/f32/ft_b in/ft_b_shape shape model.embed_tokens.weight 16,32 || return 1
  edited_model fx/f32/ft_b in/ft_b_dtype dtype model.norm.weight I32 || return 1
  edited_model fx/f32/ft_c in/ft_c_nan nan model.layers.0.self_attn.q_proj.weight 37 || return 1
  # A sharded directory whose index names a shard that is not there, for one tensor only: when
  # several tensors name the missing shard, which one the error names varies from run to run
  # (it is picked in Swift's per-process hash order), and the case would not be reproducible.
  mkdir -p in/bf16_base_lost_shard && cp fx/bf16/base/* in/bf16_base_lost_shard/ && perl -MJSON::PP -e '
    my $p = shift; open(my $f, "<", $p) or die; local $/; my $j = JSON::PP->new->decode(<$f>); close $f;
    $j->{weight_map}{"model.norm.weight"} = "model-00004-of-00004.safetensors";
    open($f, ">", $p) or die; print $f JSON::PP->new->canonical->pretty->encode($j); close $f;
  ' in/bf16_base_lost_shard/model.safetensors.index.json || return 1
  head -c 5000 fx/f32/ft_a/model.safetensors > in/truncated.safetensors || return 1
  # Temporaries left by a killed run (no process holds their lock): verify lists them, the next
  # merge to the same output removes them. An output directory holding a foreign file.
  mkdir -p in/stale_model && cp fx/f32/ft_a/* in/stale_model/ \
    && printf 'partial' > in/stale_model/.model.safetensors.mergekit-tmp-4242-beef || return 1
  mkdir -p c/stale_merge/.out.mergekit-tmp-4242-beef && cp fx/f32/ft_b/model.safetensors c/stale_merge/.out.mergekit-tmp-4242-beef/ \
    && printf 'partial' > c/stale_merge/.out.safetensors.mergekit-tmp-4243-cafe || return 1
  mkdir -p c/ow_foreign/out && cp fx/f32/ft_a/* c/ow_foreign/out/ && printf 'my notes\n' > c/ow_foreign/out/notes.txt || return 1

  # Recipes (paths relative to the run directory, where merge-cli runs).
  cat > in/recipes/ties_mergekit.yml <<'EOF'
merge_method: ties                  # mergekit's ties: per-tensor trim, weighted vote, normalised
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
    parameters: {weight: 1.0, density: 0.5}
  - model: fx/f32/ft_b
    parameters:
      weight: [{filter: self_attn, value: 0.5}, {value: 1.0}]
      density: [0.3, 0.7]
  - task_vector: c/tv_c_f32/out
    parameters: {weight: 0.5, density: 0.5}
parameters: {normalize: true, lambda: 1.0}
dtype: float32
out_dtype: bfloat16
EOF
  simple_recipe ties_paper ties bf16 'a b c' '{density: 0.2, trim_scope: global, vote: mass, merge: mean, lambda: 1.0}'
  cat > in/recipes/task_arithmetic.yml <<'EOF'
merge_method: task_arithmetic
base_model: fx/f16/base
models:
  - model: fx/f16/ft_a
    parameters: {weight: 0.7}
  - model: fx/f16/ft_c
    parameters: {weight: [0.2, 0.9]}
parameters: {lambda: 0.8}
EOF
  cat > in/recipes/task_arithmetic_lora.yml <<'EOF'
merge_method: task_arithmetic
base_model: fx/f32/base
models:
  - lora: fx/svd_lora/lora_a
    parameters: {weight: 1.0}
  - lora: fx/svd_lora/lora_b
    parameters: {weight: -0.5}
  - model: fx/f32/ft_c
    parameters: {weight: 0.25}
parameters: {lambda: 1.0}
EOF
  cat > in/recipes/dare_ties.yml <<'EOF'
merge_method: dare_ties
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
    parameters: {weight: 1.0, density: 0.5}
  - model: fx/f32/ft_b
    parameters: {weight: 0.8, density: 0.7}
parameters: {lambda: 1.0, seed: 3}
EOF
  cat > in/recipes/dare_linear.yml <<'EOF'
merge_method: dare_linear
base_model: fx/bf16/base
models:
  - model: fx/bf16/ft_a
    parameters: {weight: 0.6, density: 0.4}
  - model: fx/bf16/ft_c
    parameters: {weight: 0.4, density: 0.4}
parameters: {normalize: true, seed: 11}
EOF
  simple_recipe dare dare f32 'a b c' '{drop_rate: 0.5, combine: ties, seed: 7}'
  cat > in/recipes/breadcrumbs.yml <<'EOF'
merge_method: breadcrumbs
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
    parameters: {weight: 1.0, density: 0.3, gamma: 0.05}
  - model: fx/f32/ft_b
    parameters: {weight: 1.0, density: 0.3, gamma: 0.05}
EOF
  cat > in/recipes/breadcrumbs_ties.yml <<'EOF'
merge_method: breadcrumbs_ties
base_model: fx/f16/base
models:
  - model: fx/f16/ft_a
    parameters: {weight: 1.0, density: 0.4, gamma: 0.02}
  - model: fx/f16/ft_b
    parameters: {weight: 0.5, density: 0.4, gamma: 0.02}
  - model: fx/f16/ft_c
    parameters: {weight: 0.5, density: 0.4, gamma: 0.02}
parameters: {normalize: true}
EOF
  cat > in/recipes/linear.yml <<'EOF'
merge_method: linear
models:
  - model: fx/f32/ft_a
    parameters: {weight: 0.5}
  - model: fx/f32/ft_b
    parameters: {weight: 0.3}
  - model: fx/f32/ft_c
    parameters: {weight: 0.2}
dtype: float16
EOF
  simple_recipe model_stock model_stock bf16 'a b c'
  simple_recipe metagpt metagpt f32 'a b c'
  simple_recipe magmax magmax f16 'a b' '{lambda: 0.9}'
  simple_recipe tsv_m tsv_m f32 'a b c' '{lambda: 1.0}'
  simple_recipe iso_c iso-c bf16 'a b' '{lambda: 1.5, null_space: keep}'
  simple_recipe della della f32 'a b c' '{density: 0.5, epsilon: 0.1}'
  simple_recipe della_linear della_linear bf16 'a b' '{density: 0.7, epsilon: 0.2, lambda: 0.8}'
  simple_recipe sce sce f32 'a b c' '{select_topk: 0.5}'
  simple_recipe nearswap nearswap f16 'a' '{t: 0.001}'
  simple_recipe passthrough passthrough f32 'b' '{scale: [{filter: mlp, value: 0.5}, {value: 1.0}]}'
  simple_recipe arcee_fusion arcee_fusion f32 'a'
  simple_recipe slerp slerp f32 'a' '{t: [0, 0.5, 1]}'
  simple_recipe nuslerp nuslerp bf16 'a b'
  simple_recipe multislerp multislerp f32 'a b c'
  simple_recipe karcher karcher f32 'a b c' '{max_iter: 5}'
  cat > in/recipes/merge_keys.yml <<'EOF'
merge_method: ties
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
    parameters: &common
      density: 0.5
      weight: 1
  - model: fx/f32/ft_b
    parameters:
      <<: *common
      weight: 2
  - model: fx/f32/ft_c
    parameters: {<<: [{weight: 3}, *common]}
parameters: {lambda: 1}
EOF
  cat > in/recipes/sweep.yml <<'EOF'
merge_method: ties
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
  - model: fx/f32/ft_b
parameters: {trim_scope: global, vote: mass, merge: mean}
sweep:
  lambda: [0.5, 1.0]
  density: [0.2, 0.4]
EOF
  cat > in/recipes/recipe.json <<'EOF'
{"merge_method": "task_arithmetic", "base_model": "fx/f32/base",
 "models": [{"model": "fx/f32/ft_a", "parameters": {"weight": 1.0}},
            {"task_vector": "c/tv_c_f32/out", "parameters": {"weight": -1.0}}],
 "parameters": {"lambda": 0.5}, "out_dtype": "float16"}
EOF
  # Recipes that must fail, all problems reported together.
  cat > in/recipes/bad_keys.yml <<'EOF'
merge_method: ties
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
    parameters: {wieght: 1.0, density: 1.5}
  - model: fx/f32/no_such_model
parameters: {lamda: 1.0}
slices: []
EOF
  cat > in/recipes/bad_method.yml <<'EOF'
merge_method: tie
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
EOF
  cat > in/recipes/bad_shape.yml <<'EOF'
merge_method: task_arithmetic
base_model: fx/f32/base
models:
  - model: fx/f32/ft_a
  - model: in/ft_b_shape
EOF
}

# ---------------------------------------------------------------------------------------------
# The corpus. `c NAME EXIT [VAR=value ...] ARGS...` runs `merge-cli ARGS` in the run directory
# (after the environment assignments), expecting exit status EXIT; "@/" in an argument stands for
# the case's own output directory c/NAME/. Cases run in this order; later cases may read earlier
# outputs. `same A B` declares that cases A and B must write identical files, `same_stdout A B`
# that they must print the same (normalised) stdout.
# ---------------------------------------------------------------------------------------------
corpus() {
  local T="--threads 2" D m d

  # --- help and listings (stdout is the product) ---
  c methods 0 methods
  c methods_json 0 methods --json
  c help 0 --help
  for sub in task-arithmetic negate ties dare linear breadcrumbs model-stock metagpt magmax tsv-m iso-c \
             della sce nearswap passthrough arcee-fusion slerp nuslerp multislerp karcher \
             run sweep analyze task-vector extract-lora inspect verify eval linearize finetune \
             disentanglement wemoe wemoe-train methods; do
    c "help_$sub" 0 "$sub" --help
  done

  # --- Fixtures/expected/cases.json, as CLI calls (single-file outputs) ---
  for d in f32 f16 bf16; do
    D=fx/$d
    c "fx_tv_a_$d" 0 task-vector --base $D/base --finetuned $D/ft_a -o @/out.safetensors $T
    c "fx_sum_$d" 0 task-arithmetic --base $D/base --model $D/ft_a --model $D/ft_b --model $D/ft_c \
      --weight 1 --weight 1 --weight 1 --scale 0.5 -o @/out.safetensors $T
    c "fx_negate_a_$d" 0 task-arithmetic --base $D/base --model $D/ft_a --weight -1 --scale 1 -o @/out.safetensors $T
    c "fx_analogy_$d" 0 task-arithmetic --base $D/base --model $D/ft_a --model $D/ft_b --model $D/ft_c \
      --weight -1 --weight 1 --weight 1 --scale 1 -o @/out.safetensors $T
  done
  c fx_weighted_f32 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --model fx/f32/ft_c \
    --weight 0.3 --weight 0.5 --weight -0.2 --scale 0.8 -o @/out.safetensors $T
  c fx_sum_f32out_bf16 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b --model fx/bf16/ft_c \
    --scale 0.5 --dtype F32 -o @/out.safetensors $T

  # --- Fixtures/method_goldens/cases.json (f32, three models) ---
  local G="--base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --model fx/f32/ft_c"
  c mg_ties_paper_mean 0 ties $G --density 0.2 --trim-scope global --vote mass --merge mean --scale 1 -o @/out.safetensors $T
  c mg_ties_paper_sum 0 ties $G --density 0.2 --trim-scope global --vote mass --merge sum --scale 0.3 -o @/out.safetensors $T
  c mg_ties_paper_max 0 ties $G --density 0.2 --trim-scope global --vote mass --merge max --scale 1 -o @/out.safetensors $T
  c mg_dare_ta 0 dare $G --drop-rate 0.5 --seed 7 --rescale inverse --combine task-arithmetic --scale 1 -o @/out.safetensors $T
  c mg_dare_ties 0 dare $G --drop-rate 0.5 --seed 7 --rescale inverse --combine ties --vote mass --merge mean --scale 1 -o @/out.safetensors $T
  c mg_dare_l1 0 dare $G --drop-rate 0.5 --seed 7 --rescale l1 --combine task-arithmetic --scale 1 -o @/out.safetensors $T
  c mg_metagpt 0 metagpt $G -o @/out.safetensors $T
  c mg_magmax 0 magmax $G --scale 1 -o @/out.safetensors $T
  c mg_breadcrumbs_np 0 breadcrumbs $G --density 0.3 --gamma 0.05 --scale 1 -o @/out.safetensors $T
  c mg_model_stock_np 0 model-stock $G -o @/out.safetensors $T
  c mg_linear_np 0 linear $G --weight 0.5 --weight 0.3 --weight 0.2 -o @/out.safetensors $T
  c mg_linear_np_raw 0 linear $G --weight 0.5 --weight 0.3 --weight 0.4 --no-normalize -o @/out.safetensors $T
  c mg_ties_mergekit 0 ties $G --density 0.3 --trim-scope tensor --vote weighted --merge normalized --scale 1 -o @/out.safetensors $T
  c mg_ties_mergekit_weighted 0 ties $G --density 0.5 --trim-scope tensor --vote weighted --merge normalized \
    --weight 0.5 --weight 0.3 --weight 0.2 --scale 0.8 -o @/out.safetensors $T
  c mg_breadcrumbs_mergekit 0 breadcrumbs $G --density 0.3 --gamma 0.05 --scale 1 -o @/out.safetensors $T
  c mg_model_stock_mergekit 0 model-stock $G -o @/out.safetensors $T
  c mg_linear_mergekit 0 linear $G --weight 0.5 --weight 0.3 --weight 0.2 -o @/out.safetensors $T
  c mg_task_arithmetic_mergekit 0 task-arithmetic $G --scale 0.5 -o @/out.safetensors $T
  # Thread-count independence of the methods with whole-model or per-tensor statistics.
  c mg_ties_paper_mean_t1 0 ties $G --density 0.2 --trim-scope global --vote mass --merge mean --scale 1 -o @/out.safetensors --threads 1
  c mg_dare_ties_t1 0 dare $G --drop-rate 0.5 --seed 7 --rescale inverse --combine ties --vote mass --merge mean --scale 1 -o @/out.safetensors --threads 1
  c mg_model_stock_np_t1 0 model-stock $G -o @/out.safetensors --threads 1
  same mg_ties_paper_mean mg_ties_paper_mean_t1
  same mg_dare_ties mg_dare_ties_t1
  same mg_model_stock_np mg_model_stock_np_t1

  # --- Fixtures/svd_lora/cases.json ---
  c sl_tsvm 0 tsv-m $G --scale 1 -o @/out.safetensors $T
  c sl_tsvm_2tasks 0 tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --scale 1 -o @/out.safetensors $T
  c sl_isoc 0 iso-c $G --scale 1 -o @/out.safetensors $T
  c sl_isoc_scale0.5 0 iso-c $G --scale 0.5 -o @/out.safetensors $T
  c sl_merged_lora_a 0 task-arithmetic --base fx/f32/base --lora fx/svd_lora/lora_a --scale 1 -o @/out.safetensors $T
  c sl_merged_lora_b 0 task-arithmetic --base fx/f32/base --lora fx/svd_lora/lora_b --scale 1 -o @/out.safetensors $T
  c sl_merged_both 0 task-arithmetic --base fx/f32/base --lora fx/svd_lora/lora_a --lora fx/svd_lora/lora_b \
    --weight 1 --weight 1 --scale 1 -o @/out.safetensors $T
  c sl_merged_lora_gpt2_fifo 0 task-arithmetic --base fx/svd_lora/gpt2_base --lora fx/svd_lora/lora_gpt2_fifo --scale 1 -o @/out.safetensors $T
  c sl_tsvm_t1 0 tsv-m $G --scale 1 -o @/out.safetensors --threads 1
  c sl_isoc_t1 0 iso-c $G --scale 1 -o @/out.safetensors --threads 1
  same sl_tsvm sl_tsvm_t1
  same sl_isoc sl_isoc_t1
  # Fixtures/svd_lora/peft_rules/cases.json: the merges, then the configs PEFT refuses.
  for m in target_regex target_suffix_list exclude_list exclude_regex layers_pattern layers_default_pattern \
           layers_pattern_list_and_exact_name fan_in_fan_out_on_linear fan_in_fan_out_on_square_linear pattern_regex_keys all_linear; do
    c "rules_$m" 0 task-arithmetic --base fx/f32/base --lora fx/svd_lora/peft_rules/$m --scale 1 -o @/out.safetensors $T
  done
  for m in no_fan_in_fan_out_on_conv1d no_fan_in_fan_out_on_square_conv1d; do
    c "rules_$m" 0 task-arithmetic --base fx/svd_lora/gpt2_base --lora fx/svd_lora/peft_rules/$m --scale 1 -o @/out.safetensors $T
  done
  for m in target_string_suffix target_empty exclude_everything target_container target_norm string_with_layers \
           layers_pattern_alone layers_pattern_unmatched; do
    c "refused_$m" 1 task-arithmetic --base fx/f32/base --lora fx/svd_lora/peft_rules/refused_$m -o @/out.safetensors $T
  done
  # Fixtures/svd_lora/extracted/cases.json: extract-lora, and the PEFT-made rsLoRA adapter merged.
  c ex_llama_ft_a_r4 0 extract-lora --base fx/f32/base --model fx/f32/ft_a --rank 4 -o @/adapter $T
  c ex_llama_ft_b_r6_randomized 0 extract-lora --base fx/f32/base --model fx/f32/ft_b --rank 6 --randomized --oversampling 2 --seed 7 -o @/adapter $T
  c ex_llama_ft_c_r8_embeddings 0 extract-lora --base fx/f32/base --model fx/f32/ft_c --rank 8 --embeddings -o @/adapter $T
  c ex_gpt2_fifo_r4 0 extract-lora --base fx/svd_lora/gpt2_base --model fx/svd_lora/gpt2_ft --rank 4 --fan-in-fan-out -o @/adapter $T
  c ex_peft_rslora_embed 0 task-arithmetic --base fx/f32/base --lora fx/svd_lora/extracted/peft_rslora_embed -o @/out.safetensors $T

  # --- every method on every dtype, directory outputs (model card, companions, shards) ---
  for d in f32 f16 bf16; do
    D=fx/$d
    local M="--base $D/base --model $D/ft_a --model $D/ft_b --model $D/ft_c"
    c "ta_$d" 0 task-arithmetic $M --scale 0.4 -o @/out $T
    c "ta_weighted_$d" 0 task-arithmetic $M --weight 0.7 --weight 0.3 --weight 0.5 -o @/out $T
    c "ta_negscale_$d" 0 task-arithmetic --base $D/base --model $D/ft_b --scale -0.5 -o @/out $T
    c "negate_$d" 0 negate --base $D/base --model $D/ft_a --scale 0.5 -o @/out $T
    c "analogy_$d" 0 task-arithmetic --base $D/base --model $D/ft_c --model $D/ft_b --model $D/ft_a \
      --weight 1 --weight 1 --weight=-1 -o @/out $T
    c "ties_$d" 0 ties $M -o @/out $T
    c "ties_mergekit_$d" 0 ties $M --trim-scope tensor --vote weighted --merge normalized --density 1 -o @/out $T
    c "ties_tensor_sum_$d" 0 ties $M --trim-scope tensor --merge sum --density 0.4 --weight 1 --weight -0.5 --weight 0.75 -o @/out $T
    c "ties_max_$d" 0 ties $M --merge max --density 0.3 --scale 0.7 -o @/out $T
    c "dare_$d" 0 dare $M -o @/out $T
    c "dare_seed_$d" 0 dare $M --drop-rate 0.3 --seed 12345 -o @/out $T
    c "dare_ties_$d" 0 dare $M --drop-rate 0.6 --seed 1 --combine ties -o @/out $T
    c "dare_mergekit_ties_$d" 0 dare $M --drop-rate 0.8 --seed 2 --combine ties --vote weighted --merge sum --rescale l1 -o @/out $T
    c "linear_$d" 0 linear $M -o @/out $T
    c "linear_raw_$d" 0 linear $M --weight 0.2 --weight 0.3 --weight 0.4 --no-normalize -o @/out $T
    c "breadcrumbs_$d" 0 breadcrumbs $M -o @/out $T
    c "model_stock_$d" 0 model-stock $M -o @/out $T
    c "metagpt_$d" 0 metagpt $M -o @/out $T
    c "magmax_$d" 0 magmax $M --scale 0.8 -o @/out $T
    c "tsvm_$d" 0 tsv-m $M -o @/out $T
    c "tsvm_keep_$d" 0 tsv-m $M --null-space keep --scale 0.7 -o @/out $T
    c "isoc_$d" 0 iso-c $M --scale 1.3 -o @/out $T
    c "isoc_keep_$d" 0 iso-c $M --null-space keep -o @/out $T
    c "tv_ties_emit_$d" 0 ties $M --emit task-vector -o @/out.safetensors $T
    c "tv_dare_emit_$d" 0 dare $M --seed 4 --emit task-vector -o @/out $T
    c "tv_isoc_emit_$d" 0 iso-c $M --emit task-vector -o @/out.safetensors $T
  done
  # DARE's mask does not depend on --threads.
  c dare_seed_bf16_t1 0 dare --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b --model fx/bf16/ft_c \
    --drop-rate 0.3 --seed 12345 -o @/out --threads 1
  same dare_seed_bf16 dare_seed_bf16_t1

  # --- dtype changes, shards, mixed dtypes, single files ---
  c dtype_f32_to_bf16 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --dtype BF16 $T
  c dtype_f32_to_f16 0 ties --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out.safetensors --dtype f16 $T
  c dtype_bf16_to_f64 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_c -o @/out --dtype F64 $T
  c dtype_f16_to_f32 0 magmax --base fx/f16/base --model fx/f16/ft_a --model fx/f16/ft_c -o @/out --dtype F32 $T
  c dtype_tsvm_f64 0 tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out.safetensors --dtype F64 $T
  c dtype_tv_bf16 0 task-vector --base fx/f32/base --finetuned fx/f32/ft_b -o @/out.safetensors --dtype BF16 $T
  c mixed_dtypes 0 task-arithmetic --base fx/f32/base --model fx/bf16/ft_a --model fx/f16/ft_b --scale 0.5 -o @/out $T
  c shards_8K 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b -o @/out --max-shard-size 8K $T
  c shards_10KiB_f32 0 dare --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_c --seed 9 -o @/out --max-shard-size 10KiB $T
  c shards_1B 0 metagpt --base fx/f16/base --model fx/f16/ft_a --model fx/f16/ft_c -o @/out --max-shard-size 1 $T
  c shards_tsvm 0 tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --max-shard-size 6KB $T
  c shards_8K_t1 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b -o @/out --max-shard-size 8K --threads 1
  same shards_8K shards_8K_t1
  c shards_tsvm_t1 0 tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --max-shard-size 6KB --threads 1
  same shards_tsvm shards_tsvm_t1
  c file_upper_ext 0 linear --base fx/f16/base --model fx/f16/ft_b --model fx/f16/ft_c -o @/OUT.SAFETENSORS $T
  c json_summary 0 ties --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b -o @/out --json $T
  c json_summary_file 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o @/out.safetensors --json --quiet $T
  c quiet 0 breadcrumbs --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --quiet $T
  c check_finite_ok 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --check-finite $T

  # --- task vectors as inputs ---
  for d in f32 f16 bf16; do
    c "tv_b_$d" 0 task-vector --base fx/$d/base --finetuned fx/$d/ft_b -o @/out.safetensors $T
    c "tv_c_$d" 0 task-vector --base fx/$d/base --finetuned fx/$d/ft_c -o @/out $T
    c "tvin_ta_$d" 0 task-arithmetic --base fx/$d/base --task-vector c/fx_tv_a_$d/out.safetensors --model fx/$d/ft_b \
      --task-vector c/tv_c_$d/out --weight 0.5 --weight -1 --weight 0.25 -o @/out $T
    c "tvin_ties_$d" 0 ties --base fx/$d/base --task-vector c/fx_tv_a_$d/out.safetensors --task-vector c/tv_b_$d/out.safetensors \
      --task-vector c/tv_c_$d/out -o @/out.safetensors $T
    c "tvin_negate_$d" 0 negate --base fx/$d/base --task-vector c/tv_b_$d/out.safetensors -o @/out $T
  done
  c tvin_tsvm 0 tsv-m --base fx/f32/base --task-vector c/fx_tv_a_f32/out.safetensors --model fx/f32/ft_b --task-vector c/tv_c_f32/out -o @/out.safetensors $T
  c tvin_emit_tv 0 task-arithmetic --base fx/f32/base --task-vector c/tv_b_f32/out.safetensors --model fx/f32/ft_c \
    --emit task-vector -o @/out.safetensors $T
  c tv_of_merge 0 task-vector --base fx/bf16/base --finetuned c/ta_bf16/out -o @/out.safetensors $T

  # --- LoRA inputs ---
  local L="--base fx/f32/base --lora fx/svd_lora/lora_a --lora fx/svd_lora/lora_b"
  c lora_ties 0 ties $L --model fx/f32/ft_c --weight 0.5 --weight 1 --weight 0.5 -o @/out $T
  c lora_dare 0 dare $L --drop-rate 0.5 --seed 3 -o @/out.safetensors $T
  c lora_breadcrumbs 0 breadcrumbs $L --density 0.5 -o @/out.safetensors $T
  c lora_magmax 0 magmax $L -o @/out.safetensors $T
  c lora_tsvm 0 tsv-m $L -o @/out.safetensors $T
  c lora_isoc 0 iso-c $L -o @/out.safetensors $T
  c lora_negate 0 negate --base fx/f32/base --lora fx/svd_lora/lora_b --scale 2 -o @/out $T
  c lora_tv 0 task-vector --base fx/f32/base --lora fx/svd_lora/lora_a -o @/out.safetensors $T
  c lora_to_bf16 0 task-arithmetic $L -o @/out --dtype BF16 $T
  c lora_roundtrip 0 task-arithmetic --base fx/f32/base --lora c/ex_llama_ft_a_r4/adapter --lora c/ex_llama_ft_c_r8_embeddings/adapter -o @/out.safetensors $T
  c lora_ties_t1 0 ties $L --model fx/f32/ft_c --weight 0.5 --weight 1 --weight 0.5 -o @/out --threads 1
  same lora_ties lora_ties_t1

  # --- extract-lora ---
  c exl_exact_json 0 extract-lora --base fx/f32/base --model fx/f32/ft_b --rank 3 -o @/adapter --json $T
  c exl_randomized 0 extract-lora --base fx/f32/base --model fx/f32/ft_c --rank 5 --randomized --seed 3 -o @/adapter $T
  c exl_randomized_t1 0 extract-lora --base fx/f32/base --model fx/f32/ft_c --rank 5 --randomized --seed 3 -o @/adapter --threads 1
  same exl_randomized exl_randomized_t1
  c exl_randomized_q2 0 extract-lora --base fx/f32/base --model fx/f32/ft_a --rank 4 --randomized --power-iterations 2 --oversampling 4 --seed 1 -o @/adapter --quiet $T
  c exl_bf16 0 extract-lora --base fx/bf16/base --model fx/bf16/ft_a --rank 4 --embeddings -o @/adapter $T
  c exl_dtype 0 extract-lora --base fx/f16/base --model fx/f16/ft_c --rank 2 --dtype BF16 -o @/adapter $T
  c exl_big_rank 0 extract-lora --base fx/f32/base --model fx/f32/ft_a --rank 64 -o @/adapter $T

  # --- run (recipes) ---
  for r in ties_mergekit ties_paper task_arithmetic task_arithmetic_lora dare_ties dare_linear dare breadcrumbs \
           breadcrumbs_ties linear model_stock metagpt magmax tsv_m iso_c merge_keys \
           della della_linear sce nearswap passthrough arcee_fusion slerp nuslerp multislerp karcher; do
    c "run_$r" 0 run in/recipes/$r.yml -o @/out $T
  done
  # Layer-wise recipes (slices:, modules:), as the mergekit goldens give them.
  for r in franken_linear franken_passthrough gradient_slerp merged_linear merged_task_arithmetic modules_franken \
           modules_models modules_task_arithmetic source_filters; do
    c "run_slices_$r" 0 run fx/mergekit_goldens/slices/$r.yml -o @/out $T
  done
  c run_json_recipe 0 run in/recipes/recipe.json -o @/out.safetensors $T
  c run_file_output 0 run in/recipes/ties_paper.yml -o @/out.safetensors --dtype F32 $T
  c run_seed 0 run in/recipes/dare_ties.yml --seed 99 -o @/out $T
  c run_emit_tv 0 run in/recipes/task_arithmetic.yml --emit task-vector -o @/out.safetensors $T
  c run_shards 0 run in/recipes/model_stock.yml -o @/out --max-shard-size 7KB $T
  c run_sweep_section 0 run in/recipes/sweep.yml -o @/sweep $T
  c run_dry 0 run in/recipes/ties_mergekit.yml -o @/out --dry-run $T
  c run_dry_json 0 run in/recipes/tsv_m.yml -o @/out --dry-run --json $T
  c run_json 0 run in/recipes/dare.yml -o @/out --json $T
  c run_bad_keys 1 run in/recipes/bad_keys.yml -o @/out $T
  c run_bad_method 1 run in/recipes/bad_method.yml -o @/out $T
  c run_bad_shape 1 run in/recipes/bad_shape.yml -o @/out $T
  c run_bad_keys_json 1 run in/recipes/bad_keys.yml -o @/out --json $T
  # Fixtures/recipes: YAML merge-key cases; none is a merge recipe, so each must fail with its
  # parser or recipe error.
  for r in error-list-of-scalar error-scalar error-sequence-value inline-mapping list-earlier-wins list-then-explicit \
           merge-into-sequence-element nested-merge order-merged-first quoted-key-is-plain recipe-models single \
           two-merge-keys-later-wins; do
    c "run_mk_$r" 1 run fx/recipes/merge_keys/$r.yml -o @/out $T
  done

  # --- sweep ---
  local S="--base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b"
  c sweep_lambda 0 sweep --method task_arithmetic $S --scale 0:1:0.25 -o @/sweep $T
  c sweep_lambda_tv 0 sweep --method task_arithmetic $S --scale 0:1:0.5 --emit task-vector --checksums -o @/sweep $T
  c sweep_ties_paper 0 sweep --method ties $S --model fx/f32/ft_c --scale 0.5:1.5:0.5 --density 0.2,0.4 \
    --param trim_scope=global --param vote=mass --param merge=mean -o @/sweep $T
  c sweep_ties_mergekit 0 sweep --method ties --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b --density 0.3,0.6,0.9 -o @/sweep $T
  c sweep_dare_ties 0 sweep --method dare_ties $S --density 0.3,0.6 --seed 5 --weight 1 --weight 0.5 -o @/sweep $T
  c sweep_isoc 0 sweep --method iso-c $S --model fx/f32/ft_c --scale 0.5:2:0.5 -o @/sweep $T
  c sweep_grid 0 sweep --method breadcrumbs --base fx/f16/base --model fx/f16/ft_a --model fx/f16/ft_c \
    --grid gamma=0,0.05 --grid density=0.2,0.5 -o @/sweep $T
  c sweep_lora 0 sweep --method task_arithmetic --base fx/f32/base --lora fx/svd_lora/lora_a --model fx/f32/ft_b --scale 0.5,1 -o @/sweep $T
  c sweep_json 0 sweep --method magmax $S --scale 0.5,1 -o @/sweep --json $T
  c sweep_shards 0 sweep --method linear --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_b --grid weight=0.5,1 \
    -o @/sweep --max-shard-size 9K --dtype F16 $T
  c sweep_dry 0 sweep --method ties $S --density 0.2,0.5 -o @/sweep --dry-run $T
  c sweep_dry_json 0 sweep --method task_arithmetic $S --scale 0,1 -o @/sweep --dry-run --json $T
  c sweep_lambda_t1 0 sweep --method task_arithmetic $S --scale 0:1:0.25 -o @/sweep --threads 1
  same sweep_lambda sweep_lambda_t1

  # --- dry runs ---
  c dry_ta 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a --model fx/f16/ft_c -o @/out --dry-run $T
  c dry_ta_json 0 task-arithmetic --base fx/bf16/base --model fx/bf16/ft_a -o @/out --max-shard-size 5K --dry-run --json $T
  c dry_ties_global 0 ties --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out.safetensors --dry-run $T
  c dry_tsvm 0 tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out --dry-run $T
  c dry_isoc_json 0 iso-c --base fx/f16/base --model fx/f16/ft_a --model fx/f16/ft_b -o @/out --dry-run --json $T
  c dry_lora 0 dare --base fx/f32/base --lora fx/svd_lora/lora_a -o @/out --dry-run $T
  c dry_emit_tv 0 metagpt --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --emit task-vector -o @/out --dry-run --json $T

  # --- overwrite ---
  c ow_dir 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o @/out $T
  c ow_dir_again 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_b -o c/ow_dir/out --overwrite $T
  c ow_file 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o @/out.safetensors $T
  c ow_file_again 0 magmax --base fx/f32/base --model fx/f32/ft_b --model fx/f32/ft_c -o c/ow_file/out.safetensors --overwrite --json $T
  c ow_foreign 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o @/out --overwrite $T
  c verify_stale 0 verify in/stale_model --json
  c stale_merge 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o @/out $T
  c stale_merge_file 0 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o c/stale_merge/out.safetensors --json $T

  # --- analyze, inspect, verify ---
  c analyze_f32 0 analyze --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --model fx/f32/ft_c $T
  c analyze_f32_json 0 analyze --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --model fx/f32/ft_c --json $T
  c analyze_bf16_density 0 analyze --base fx/bf16/base --model fx/bf16/ft_a --model fx/bf16/ft_c --density 0.5 $T
  c analyze_tv_lora_json 0 analyze --base fx/f32/base --task-vector c/tv_b_f32/out.safetensors --lora fx/svd_lora/lora_a --model fx/f32/ft_c --json $T
  c analyze_nan 0 analyze --base fx/f32/base --model fx/f32/ft_a --model in/ft_c_nan --json $T
  c analyze_t1 0 analyze --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b --model fx/f32/ft_c --json --threads 1
  same_stdout analyze_f32_json analyze_t1
  for p in fx/f32/base fx/bf16/base fx/f16/ft_c c/fx_tv_a_f32/out.safetensors c/shards_8K/out c/ex_llama_ft_a_r4/adapter/adapter_model.safetensors \
           fx/clip/quick/base c/tv_dare_emit_bf16/out; do
    local n=${p//[\/.]/_}
    c "inspect_$n" 0 inspect $p
    c "inspect_json_$n" 0 inspect $p --json
  done
  c inspect_check_finite_nan 0 inspect in/ft_c_nan --check-finite
  c inspect_check_finite_json 0 inspect fx/bf16/base --check-finite --json
  for p in c/ta_bf16/out c/fx_sum_f16/out.safetensors c/shards_1B/out c/run_sweep_section/sweep/point-000 fx/f16/ft_c; do
    local n=${p//[\/.]/_}
    c "verify_$n" 0 verify $p --check-finite
  done
  c verify_json 0 verify c/shards_10KiB_f32/out --json
  c verify_adapter 0 verify c/exl_exact_json/adapter
  c verify_nan 1 verify in/ft_c_nan --check-finite
  c verify_nan_json 1 verify in/ft_c_nan --check-finite --json
  c verify_truncated 1 verify in/truncated.safetensors
  c verify_lost_shard_json 1 verify in/bf16_base_lost_shard --json

  # --- CLIP engine: eval, linearize, finetune, disentanglement, wemoe, wemoe-train ---
  local Q=fx/clip/quick W=fx/wemoe t
  local QD="--head $Q/head.safetensors --data $Q/data.safetensors"
  c linearize_base 0 linearize --base $Q/base -o @/out $T
  c linearize_ft 0 linearize --base $Q/base --model $Q/finetuned -o @/out.safetensors $T
  c linearize_ft_t1 0 linearize --base $Q/base --model $Q/finetuned -o @/out.safetensors --threads 1
  same linearize_ft linearize_ft_t1
  c wemoe_d2 0 wemoe --base $Q/base --model $W/experts/task0 --model $W/experts/task1 --model $W/experts/task2 -o @/out
  for t in 1 2; do
    c "eval_finetuned_t$t" 0 eval --model $Q/finetuned $QD --batch-size 4 --json --threads $t
    c "eval_base_text_t$t" 0 eval --model $Q/base $QD --batch-size 3 --threads $t
    c "eval_linearized_t$t" 0 eval --model $Q/finetuned --linearized --base $Q/base $QD --batch-size 8 --json --threads $t
    c "finetune_t$t" 0 finetune --base $Q/base $QD --steps 4 --batch-size 8 --lr 1e-3 --warmup-steps 2 --clip-norm 0.5 -o @/out --json --threads $t
    c "finetune_lin_t$t" 0 finetune --linearized --base $Q/base $QD --steps 3 --batch-size 4 --lr 1e-3 --warmup-steps 1 --seed 5 -o @/out.safetensors --threads $t
    c "wemoe_train_t$t" 0 wemoe-train --model c/wemoe_d2/out --data $W/task0/data.safetensors --head $W/task0/head.safetensors \
      --data $W/task1/data.safetensors --head $W/task1/head.safetensors --data $W/task2/data.safetensors --head $W/task2/head.safetensors \
      --steps 3 --batch-size 4 --lr 1e-3 -o @/out.safetensors --json --threads $t
  done
  for t in 1 2; do
    c "disent_t$t" 0 disentanglement --base $Q/base --task-vector $Q/tau.safetensors --model c/finetune_t2/out \
      --head $Q/head.safetensors --head $Q/head.safetensors --data $Q/data.safetensors --data $Q/data.safetensors \
      --alphas=-1,0,0.5,1 --batch-size 4 --threads $t
    c "disent_lin_json_t$t" 0 disentanglement --base c/linearize_base/out --task-vector c/finetune_lin_t2/out.safetensors \
      --model $Q/finetuned --head $Q/head.safetensors --head $Q/head.safetensors --data $Q/data.safetensors --data $Q/data.safetensors \
      --alphas=-1,1 --batch-size 8 --json --threads $t
  done
  same finetune_t1 finetune_t2
  same finetune_lin_t1 finetune_lin_t2
  same wemoe_train_t1 wemoe_train_t2
  for m in eval_finetuned eval_base_text eval_linearized disent disent_lin_json; do same_stdout ${m}_t1 ${m}_t2; done
  # The default batch depends on the memory available: 8GiB (every run), and a budget that
  # forces batches of 1 (with a note; the accuracy is the same, the mean loss differs in its last
  # bits, so the two are not a determinism pair).
  c eval_default_batch 0 eval --model $Q/finetuned $QD --json $T
  c eval_budget_batch 0 MERGEKIT_MEMORY_BUDGET=200KB eval --model $Q/finetuned $QD --json $T
  c disent_linflag 0 disentanglement --base $Q/base --task-vector $Q/tau.safetensors --model c/finetune_t2/out --linearized \
    --head $Q/head.safetensors --head $Q/head.safetensors --data $Q/data.safetensors --data $Q/data.safetensors \
    --alphas=0,1 --batch-size 8 --json $T
  c eval_gelu 0 eval --model fx/clip/gelu/model --head fx/clip/gelu/head.safetensors --data fx/clip/gelu/data.safetensors --batch-size 5 --json $T
  c eval_linearize_ft 0 eval --model c/linearize_ft/out.safetensors $QD --batch-size 8 --json $T
  c eval_finetune_lin 0 eval --model c/finetune_lin_t2/out.safetensors $QD --batch-size 8 --json $T
  c lin_merge 0 task-arithmetic --base c/linearize_base/out --model c/finetune_lin_t2/out.safetensors --model $Q/finetuned \
    --task-vector $Q/tau.safetensors --scale 0.5 -o @/out $T
  c lin_merge_ties 0 ties --base c/linearize_base/out --model c/linearize_ft/out.safetensors --model c/finetune_lin_t2/out.safetensors -o @/out.safetensors $T
  c lin_tv 0 task-vector --base c/linearize_base/out --finetuned c/finetune_lin_t2/out.safetensors -o @/out.safetensors $T
  c eval_lin_merge 0 eval --model c/lin_merge/out $QD --batch-size 8 --json $T
  c clip_merge 0 task-arithmetic --base $Q/base --model $Q/finetuned --model c/finetune_t2/out --scale 0.6 -o @/out $T
  c eval_clip_merge 0 eval --model c/clip_merge/out $QD --batch-size 8 --threads 1
  c clip_tv 0 task-vector --base $Q/base --finetuned $Q/finetuned -o @/out $T
  c wemoe_d1 0 wemoe --base $Q/base --model $W/experts/task0 --model $W/experts/task1 --router-depth 1 --scale 0.4 --seed 3 -o @/out.safetensors
  c wemoe_d0_exact 0 wemoe --base $Q/base --model $W/experts/task0 --model $W/experts/task1 --model $W/experts/task2 \
    --router-depth 0 --exact-start -o @/out.safetensors --quiet
  c wemoe_train_d1 0 wemoe-train --model c/wemoe_d1/out.safetensors --data $W/task0/data.safetensors --head $W/task0/head.safetensors \
    --data $W/task1/data.safetensors --head $W/task1/head.safetensors --steps 2 --batch-size 8 --seed 4 -o @/out $T
  for m in c/wemoe_d2/out c/wemoe_train_t2/out.safetensors c/wemoe_d0_exact/out.safetensors c/wemoe_train_d1/out; do
    for t in 0 1 2; do
      c "eval_wemoe_${m//[\/.]/_}_task$t" 0 eval --model $m --head $W/task$t/head.safetensors --data $W/task$t/data.safetensors --batch-size 8 --json $T
    done
  done
  c eval_wemoe_t1 0 eval --model c/wemoe_train_t2/out.safetensors --head $W/task1/head.safetensors --data $W/task1/data.safetensors --batch-size 5 --json --threads 1
  c eval_fusionbench 0 eval --model $W/fusionbench/depth2.safetensors --head $W/task0/head.safetensors --data $W/task0/data.safetensors --batch-size 16 --json $T
  c inspect_wemoe 0 inspect c/wemoe_train_t2/out.safetensors
  c inspect_linearized_json 0 inspect c/linearize_ft/out.safetensors --json

  # --- errors: exit 1 (inputs that cannot be merged) ---
  c err_missing_tensor 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_b --model in/ft_a_missing -o @/out $T
  c err_base_lacks_tensor 1 ties --base in/base_missing --model fx/f32/ft_a -o @/out $T
  c err_shape 1 task-arithmetic --base fx/f32/base --model in/ft_b_shape -o @/out $T
  c err_shape_json 1 dare --base fx/f32/base --model fx/f32/ft_a --model in/ft_b_shape -o @/out --json $T
  c err_dtype 1 task-arithmetic --base fx/f32/base --model in/ft_b_dtype -o @/out $T
  c err_several 1 magmax --base fx/f32/base --model in/ft_a_missing --model in/ft_b_shape --model in/ft_b_dtype -o @/out $T
  c err_nan 1 task-arithmetic --base fx/f32/base --model in/ft_c_nan -o @/out $T
  c err_nan_check_finite 1 ties --base fx/f32/base --model fx/f32/ft_a --model in/ft_c_nan -o @/out --check-finite $T
  c err_nan_tsvm 1 tsv-m --base fx/f32/base --model fx/f32/ft_a --model in/ft_c_nan -o @/out $T
  c err_output_exists 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o c/ta_f32/out $T
  c err_output_exists_file 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o c/fx_sum_f32/out.safetensors $T
  c err_output_is_input 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o fx/f32/ft_a --overwrite $T
  c err_output_inside_input 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_a -o fx/f32/ft_a/sub $T
  c err_tv_other_base 1 task-arithmetic --base fx/bf16/base --task-vector c/fx_tv_a_f32/out.safetensors -o @/out $T
  c err_tv_as_model 1 task-arithmetic --base fx/f32/base --model c/fx_tv_a_f32/out.safetensors -o @/out $T
  c err_model_as_tv 1 task-arithmetic --base fx/f32/base --task-vector fx/f32/ft_a -o @/out $T
  c err_lost_shard 1 task-arithmetic --base in/bf16_base_lost_shard --model fx/bf16/ft_a -o @/out $T
  c err_truncated 1 task-arithmetic --base fx/f32/base --model in/truncated.safetensors -o @/out $T
  c err_no_such_path 1 task-arithmetic --base fx/f32/base --model fx/f32/ft_z -o @/out $T
  c err_other_architecture 1 task-arithmetic --base fx/f32/base --model fx/svd_lora/gpt2_ft -o @/out $T
  c err_memory_budget 1 MERGEKIT_MEMORY_BUDGET=1K tsv-m --base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b -o @/out $T
  c err_lora_wrong_base 1 task-arithmetic --base fx/svd_lora/gpt2_base --lora fx/svd_lora/lora_a -o @/out $T
  c err_eval_task_vector 1 eval --model c/clip_tv/out $QD --batch-size 4 $T
  c err_eval_no_config 1 eval --model $Q/tau.safetensors $QD --batch-size 4 $T
  c err_eval_budget 1 MERGEKIT_MEMORY_BUDGET=50KB eval --model $Q/finetuned $QD $T
  c err_wemoe_train_plain 1 wemoe-train --model $Q/base --data $W/task0/data.safetensors --head $W/task0/head.safetensors --steps 1 -o @/out $T
  c err_json_nan 1 task-arithmetic --base fx/f32/base --model in/ft_c_nan -o @/out --json $T
  c err_extract_linearized 1 extract-lora --base c/linearize_base/out --model c/linearize_ft/out.safetensors --rank 2 -o @/adapter $T
  c err_sweep_exists 1 sweep --method task_arithmetic $S --scale 0,1 -o c/sweep_lambda/sweep $T

  # --- errors: exit 64 (malformed or out-of-range arguments) ---
  local A="--base fx/f32/base --model fx/f32/ft_a --model fx/f32/ft_b"
  c bad_weight_count 64 task-arithmetic $A --weight 1 -o @/out $T
  c bad_scale_nan 64 task-arithmetic $A --scale nan -o @/out $T
  c bad_density 64 ties $A --density 1.5 -o @/out $T
  c bad_drop_rate 64 dare $A --drop-rate 1 -o @/out $T
  c bad_gamma 64 breadcrumbs $A --gamma 1 -o @/out $T
  c bad_shard_size 64 task-arithmetic $A --max-shard-size 0.4 -o @/out $T
  c bad_shard_size_file 64 task-arithmetic $A --max-shard-size 1M -o @/out.safetensors $T
  c bad_empty_output 64 task-arithmetic $A -o "" $T
  c bad_threads 64 task-arithmetic $A -o @/out --threads 0
  c bad_threads_json 64 ties $A -o @/out --threads 0 --json
  c bad_vote_none 64 ties $A --vote none -o @/out $T
  c bad_magmax_weight 64 magmax $A --weight 1 --weight 2 -o @/out $T
  c bad_linear_zero_sum 64 linear $A --weight 1 --weight -1 -o @/out $T
  c bad_unknown_flag 64 task-arithmetic $A --scael 1 -o @/out $T
  c bad_no_inputs 64 ties --base fx/f32/base -o @/out $T
  c bad_dtype 64 task-arithmetic $A --dtype F8 -o @/out $T
  c bad_memory_budget 64 MERGEKIT_MEMORY_BUDGET=lots task-arithmetic $A -o @/out $T
  c bad_subcommand 64 mergify $A
  c bad_negate_two 64 negate --base fx/f32/base --model fx/f32/ft_a --lora fx/svd_lora/lora_a -o @/out $T
  c bad_sweep_step 64 sweep --method task_arithmetic $A --scale 0:1:0 -o @/sweep $T
  c bad_sweep_points 64 sweep --method task_arithmetic $A --scale 0:1:0.0001 --density 0.1:1:0.1 -o @/sweep $T
  c bad_sweep_param 64 sweep --method ties $A --scale 0,1 --param vote=x -o @/sweep $T
  c bad_sweep_method 64 sweep --method slerp $A --scale 0,1 -o @/sweep $T
  c bad_sweep_repeat 64 sweep --method ties $A --density 0.2 --grid density=0.3 -o @/sweep --json $T
  c bad_extract_rank 64 extract-lora --base fx/f32/base --model fx/f32/ft_a --rank 0 -o @/adapter $T
  c bad_finetune_steps 64 finetune --base $Q/base $QD --steps 0 -o @/out $T
  c bad_wemoe_depth 64 wemoe --base $Q/base --model $W/experts/task0 --router-depth 3 -o @/out
  c bad_wemoe_train_pairs 64 wemoe-train --model c/wemoe_d2/out --data $W/task0/data.safetensors -o @/out $T
  c bad_eval_base 64 eval --model $Q/finetuned $QD --base $Q/base $T
  c bad_disent_alphas 64 disentanglement --base $Q/base --task-vector $Q/tau.safetensors --model $Q/finetuned \
    --head $Q/head.safetensors --head $Q/head.safetensors --data $Q/data.safetensors --data $Q/data.safetensors --alphas 1,x $T
  c bad_linearize_dtype 64 linearize --base $Q/base -o @/out --dtype F16 $T
}

# ---------------------------------------------------------------------------------------------
# Running the corpus
# ---------------------------------------------------------------------------------------------

# run_corpus BIN RUNDIR: runs every case with BIN in RUNDIR and writes RUNDIR/record.tsv.
run_corpus() {
  local bin=$1 run=$2
  rm -rf "$run" && mkdir -p "$run"/{bin,c,s} || return 1
  ln -s "$bin" "$run/bin/merge-cli"
  cp -R "$repo/Fixtures" "$run/fx"
  (
    cd "$run" || exit 1
    make_inputs || { echo "making the inputs failed" >&2; exit 1; }
    : > cases.tsv; : > same.tsv
    local fixed_env=(PATH="$run/bin:$PATH" HOME="${HOME:-/}" COLUMNS=80 LC_ALL=C)
    [ -z "${LD_LIBRARY_PATH:-}" ] || fixed_env+=(LD_LIBRARY_PATH="$LD_LIBRARY_PATH")
    c() {
      local name=$1 expect=$2; shift 2
      local envs=("MERGEKIT_MEMORY_BUDGET=$budget")
      while [ $# -gt 0 ] && [[ $1 =~ ^[A-Z_]+= ]]; do envs+=("$1"); shift; done
      local args=("${@//@\//c/$name/}")
      if [ -e "s/$name.exit" ]; then echo "corpus error: case $name defined twice" >&2; exit 1; fi
      mkdir -p "c/$name"
      printf '%s\t%s\t%s\n' "$name" "$expect" "${envs[*]:1}${envs[1]:+ }merge-cli ${args[*]}" >> cases.tsv
      # A fixed environment: nothing of the caller's (OPENBLAS_*, COLUMNS for --help, ...).
      env -i "${fixed_env[@]}" "${envs[@]}" timeout "$case_timeout" merge-cli "${args[@]}" \
        < /dev/null > "s/$name.out" 2> "s/$name.err"
      echo $? > "s/$name.exit"
    }
    same() { printf '%s\t%s\tfiles\n' "$1" "$2" >> same.tsv; }
    same_stdout() { printf '%s\t%s\tstdout\n' "$1" "$2" >> same.tsv; }
    corpus
  ) || return 1
  digest "$run" > "$run/record.tsv"
}

# digest RUNDIR: the record of a run (cases in corpus order), normalised as described above.
digest() {
  local run=$1
  RUN="$run" RUNREAL="$(cd "$run" && pwd -P)" perl -MDigest::SHA=sha256_hex -e '
    use strict; use warnings;
    my $run = $ENV{RUN};
    my @roots = sort { length($b) <=> length($a) } grep { length } ($ENV{RUN}, $ENV{RUNREAL});
    sub slurp { my $p = shift; open(my $f, "<:raw", $p) or die "$p: $!"; local $/; my $s = <$f>; close $f; defined $s ? $s : "" }
    sub paths { my $s = shift; for my $r (@roots) { $s =~ s/\Q$r\E/<RUN>/g } $s }
    my $num = qr/(?:-?[0-9][0-9.eE+-]*|inf|nan)/;
    sub json_times { my $s = shift; $s =~ s/("(?:seconds|peak_memory_bytes|images_per_second)"\s*:\s*)$num/$1<T>/g; $s }
    sub stream {
      my $s = json_times(paths(shift));
      $s =~ s/ in $num s\b/ in <T> s/g;
      $s =~ s/, $num s \($num ms\/step\)/, <T> s (<T> ms\/step)/g;
      $s =~ s/; $num s, $num images\/s/; <T> s, <T> images\/s/g;
      # The disk space of a stale temporary (allocated blocks: a directory takes 4 KiB on ext4
      # and none on tmpfs).
      $s =~ s/(\.mergekit-(?:tmp|old)-[0-9]+-[0-9a-f]+) \([0-9.]+ (?:[KMGT]B|bytes)\)/$1 (<SIZE>)/g;
      $s =~ s/("path": "[^"\n]*\.mergekit-(?:tmp|old)-[0-9]+-[0-9a-f]+",\s*"bytes": )[0-9]+/$1<SIZE>/g;
      $s
    }
    my @lines;
    sub walk {
      my ($case, $dir, $rel) = @_;
      opendir(my $d, $dir) or die "$dir: $!";
      my @names = sort grep { $_ ne "." && $_ ne ".." } readdir $d; closedir $d;
      for my $n (@names) {
        my $p = "$dir/$n"; my $r = $rel eq "" ? $n : "$rel/$n";
        if (-l $p) { push @lines, "$case\tlink:$r\t" . paths(readlink $p) }
        elsif (-d $p) { push @lines, "$case\tdir:$r\t-"; walk($case, $p, $r) }
        else {
          my $s = paths(slurp($p));
          $s = json_times($s) if $n eq "manifest.json";
          push @lines, "$case\tfile:$r\t" . sha256_hex($s);
        }
      }
    }
    open(my $cases, "<", "$run/cases.tsv") or die;
    while (my $l = <$cases>) {
      chomp $l; my ($case, $expect, $cmd) = split /\t/, $l, 3;
      push @lines, "$case\tcmd\t$cmd";
      my $exit = slurp("$run/s/$case.exit"); chomp $exit;
      push @lines, "$case\texit\t$exit";
      push @lines, "$case\tstdout\t" . sha256_hex(stream(slurp("$run/s/$case.out")));
      push @lines, "$case\tstderr\t" . sha256_hex(stream(slurp("$run/s/$case.err")));
      walk($case, "$run/c/$case", "");
    }
    print "$_\n" for @lines;
  '
}

# check_run RUNDIR: the corpus expectations (exit statuses), determinism pairs, and that no
# safetensors file holds the run directory's path. Prints problems; returns 3 on a pair mismatch.
check_run() {
  local run=$1 status=0 name expect cmd got a b
  while IFS=$'\t' read -r name expect cmd; do
    got=$(cat "$run/s/$name.exit")
    [ "$got" = "$expect" ] || echo "  corpus: $name exited $got, expected $expect (stderr: $(head -c 300 "$run/s/$name.err" | tr '\n' ' '))"
  done < "$run/cases.tsv"
  items_of() { # the files (or stdout) of case $1 in the record, model cards and sweep manifests left out
    awk -F'\t' -v c="$1" -v what="$2" '$1 == c && (what == "stdout" ? $2 == "stdout" : $2 ~ /^(file|dir|link):/ &&
      $2 !~ /(^file:|\/)(README\.md|manifest\.json)$/) { print $2 "\t" $3 }' "$run/record.tsv"
  }
  local pairs=0 what
  while IFS=$'\t' read -r a b what; do
    pairs=$((pairs + 1))
    if ! diff <(items_of "$a" "$what") <(items_of "$b" "$what") > /dev/null; then
      echo "  NONDETERMINISM: $a and $b should write the same $what and do not"
      status=3
    fi
  done < "$run/same.tsv"
  echo "  $pairs determinism pairs checked"
  if grep -rlF --include='*.safetensors' "$(cd "$run" && pwd -P)" "$run/c" > /dev/null 2>&1; then
    echo "  note: the run directory's path appears in safetensors outputs (digests then depend on it):"
    grep -rlF --include='*.safetensors' "$(cd "$run" && pwd -P)" "$run/c" | sed 's/^/    /'
  fi
  return $status
}

# compare OLD NEW [RUN_OLD RUN_NEW]: prints the table from two records; returns 1 on a difference.
compare() {
  local old=$1 new=$2 rold=${3:-} rnew=${4:-}
  OLD="$old" NEW="$new" ROLD="$rold" RNEW="$rnew" perl -MJSON::PP -e '
    use strict; use warnings;
    sub load {
      my ($path, $order) = @_; my %r;
      open(my $f, "<", $path) or die "$path: $!";
      while (my $l = <$f>) {
        next if $l =~ /^#/ || $l =~ /^\s*$/; chomp $l;
        my ($case, $item, $value) = split /\t/, $l, 3;
        push @$order, $case unless exists $r{$case};
        $r{$case}{$item} = $value;
      }
      \%r
    }
    # Which part of a safetensors file byte $at lies in: the header or a tensor.
    sub locate {
      my ($path, $at) = @_;
      open(my $f, "<:raw", $path) or return "unreadable";
      read($f, my $len, 8) == 8 or return "no header";
      my $n = unpack("Q<", $len);
      return "header length" if $at < 8;
      return "header" if $at < 8 + $n;
      read($f, my $json, $n) == $n or return "truncated header";
      my $h = eval { JSON::PP->new->decode($json) } or return "unparsable header";
      my $d = $at - 8 - $n;
      for my $name (sort keys %$h) {
        next if $name eq "__metadata__";
        my ($s, $e) = @{$h->{$name}{data_offsets}};
        return "tensor $name, element byte " . ($d - $s) if $d >= $s && $d < $e;
      }
      "past the tensors"
    }
    my (@order, @order2);
    my $old = load($ENV{OLD}, \@order); my $new = load($ENV{NEW}, \@order2);
    my %seen = map { $_ => 1 } @order;
    push @order, grep { !$seen{$_} } @order2;
    my ($width) = sort { $b <=> $a } map { length } @order;
    my ($identical, $failed, $different, $files) = (0, 0, 0, 0);
    printf "%-*s  %-9s  %5s  %s\n", $width, "case", "exit", "files", "status";
    for my $case (@order) {
      my ($o, $n) = ($old->{$case}, $new->{$case});
      my ($status, @why);
      if (!$o) { $status = "DIFFERENT (not in the old record)" }
      elsif (!$n) { $status = "DIFFERENT (missing from the new run)" }
      else {
        my %items = map { $_ => 1 } (keys %$o, keys %$n);
        for my $i (sort keys %items) {
          next if defined $o->{$i} && defined $n->{$i} && $o->{$i} eq $n->{$i};
          push @why, !defined $o->{$i} ? "+$i" : !defined $n->{$i} ? "-$i" : $i;
        }
        if (grep { $_ eq "cmd" } @why) { $status = "DIFFERENT (the command changed: records of different corpora)" }
        elsif (@why) { $status = "DIFFERENT: " . join(", ", @why) }
        elsif ($o->{exit} eq "0") { $status = "identical" }
        else { $status = "both failed identically" }
      }
      my $exit = !$o ? "-/$n->{exit}" : !$n ? "$o->{exit}/-" : $o->{exit} eq $n->{exit} ? $o->{exit} : "$o->{exit}/$n->{exit}";
      my $nfiles = scalar grep { /^file:/ } keys %{$n || $o};
      $files += $nfiles;
      printf "%-*s  %-9s  %5d  %s\n", $width, $case, $exit, $nfiles, $status;
      if ($status =~ /^DIFFERENT/) { $different++ } elsif ($status eq "identical") { $identical++ } else { $failed++ }
      if ($status =~ /^DIFFERENT: / && $ENV{ROLD} ne "") {
        for my $s ("stdout", "stderr") {
          next unless grep { $_ eq $s } @why;
          my $ext = $s eq "stdout" ? "out" : "err";
          my @d = grep { /^[-+]/ && !/^(---|\+\+\+)/ } `diff -u "$ENV{ROLD}/s/$case.$ext" "$ENV{RNEW}/s/$case.$ext"`;
          $#d = 19 if @d > 20;
          print "    --- $s (raw; - before, + after):\n", map { "    $_" } @d;
        }
        for my $i (grep { /^file:/ } @why) {
          (my $p = $i) =~ s/^file://;
          my ($a, $b) = ("$ENV{ROLD}/c/$case/$p", "$ENV{RNEW}/c/$case/$p");
          my @cmp = `cmp -l "$a" "$b" 2>/dev/null`;
          my $where = "";
          if (@cmp && $cmp[0] =~ /^\s*(\d+)/) {
            my $at = $1 - 1;
            $where = " from byte $at" . ($p =~ /\.safetensors$/i ? " (" . locate($a, $at) . ")" : "");
          }
          my ($sa, $sb) = (-s $a, -s $b);
          print "    $p: ", scalar(@cmp), " bytes differ$where", ($sa == $sb ? "" : "; sizes $sa and $sb"), "\n";
        }
      }
    }
    printf "\n%d cases: %d identical, %d both failed identically, %d DIFFERENT; %d output files compared\n",
      scalar @order, $identical, $failed, $different, $files;
    exit($different ? 1 : 0);
  '
}

header() { # the record's header
  cat <<EOF
# Byte-identity record of merge-cli over the corpus of Benchmarks/byte_identity.sh.
# Made with $(case "$1" in "$repo"/*) echo "${1#"$repo"/} built from Sources/ and Package.swift as of commit $(git -C "$repo" log -1 --format=%H -- Sources Package.swift 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' (with uncommitted changes)')";; *) echo "$1";; esac)
# on $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), OpenBLAS $(pkg-config --modversion openblas 2>/dev/null || echo '?').
# The kernels pick AVX2/F16C code at run time and BLAS/LAPACK round as their build does, so a record
# holds for one machine type and OpenBLAS build; elsewhere compare two binaries with --before/--after.
# One line per item: CASE<TAB>ITEM<TAB>VALUE; ITEM is cmd (the command line), exit (the exit status),
# stdout/stderr (SHA-256 of the normalised stream), file:PATH (SHA-256 of each file the case wrote,
# PATH relative to its output directory), dir:PATH and link:PATH. Normalised: the run directory's
# absolute path (-> <RUN>) everywhere; the values of "seconds", "peak_memory_bytes" and
# "images_per_second" in stdout, stderr and manifest.json; the timings of the summary lines
# ("in 0.13 s", "0.32 s (106.2 ms/step)", "0.10 s, 166.6 images/s") and the disk space of stale
# temporaries (allocated blocks: file-system dependent) in stdout and stderr.
# Check a binary against it: Benchmarks/byte_identity.sh --check Benchmarks/byte_identity.sha256 --bin BIN
EOF
}

build_release() {
  echo "building the release merge-cli of $repo ..." >&2
  (cd "$repo" && swift build -c release --product merge-cli > /dev/null) || { echo "build failed" >&2; exit 1; }
  echo "$(cd "$repo" && swift build -c release --show-bin-path)/merge-cli"
}

timed_run() { # BIN RUNDIR LABEL
  local start end
  start=$(date +%s%N)
  echo "running the corpus with $1 ($3) in $2 ..." >&2
  run_corpus "$1" "$2" || { echo "the corpus could not run" >&2; exit 1; }
  end=$(date +%s%N)
  local ms=$(( (end - start) / 1000000 ))
  printf '%s: %d cases in %d.%d s\n' "$3" "$(wc -l < "$2/cases.tsv")" $((ms / 1000)) $((ms % 1000 / 100)) >&2
}

# ---------------------------------------------------------------------------------------------
before="" after="" bin="" record="" check="" dir="" keep=0 list=0
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before=$2; shift 2;;
    --after) after=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --record) record=$2; shift 2;;
    --check) check=$2; shift 2;;
    --dir) dir=$2; shift 2;;
    --keep) keep=1; shift;;
    --list) list=1; shift;;
    -h|--help) usage 0;;
    *) echo "unknown option $1" >&2; usage;;
  esac
done
for x in perl timeout; do command -v $x > /dev/null || { echo "byte_identity.sh needs $x" >&2; exit 64; }; done

if [ $list = 1 ]; then
  c() {
    local n=$1 e=$2 envs=""; shift 2
    while [ $# -gt 0 ] && [[ $1 =~ ^[A-Z_]+= ]]; do envs+="$1 "; shift; done
    printf '%s\t%s\t%smerge-cli %s\n' "$n" "$e" "$envs" "${*//@\//c/$n/}"
  }
  same() { :; }
  same_stdout() { :; }
  corpus
  exit 0
fi

abs() { [ -x "$1" ] || { echo "$1 is not an executable" >&2; exit 64; }; echo "$(cd "$(dirname "$1")" && pwd -P)/$(basename "$1")"; }

if [ -n "$before$after" ]; then
  [ -n "$before" ] && [ -n "$after" ] || { echo "--before and --after go together" >&2; exit 64; }
  [ -z "$record$check$bin" ] || { echo "--before/--after take no --record, --check or --bin" >&2; exit 64; }
  before=$(abs "$before"); after=$(abs "$after")
elif [ -n "$record" ] && [ -n "$check" ]; then
  echo "give --record or --check, not both" >&2; exit 64
else
  [ -z "$record$check" ] && check=$record_default
  if [ -n "$bin" ]; then bin=$(abs "$bin"); else bin=$(build_release) || exit 1; fi
fi

if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/byte-identity.XXXXXX"); tmp_dir=$dir
  [ $keep = 1 ] || trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)

status=0
if [ -n "$before" ]; then
  timed_run "$before" "$dir/before" before
  timed_run "$after" "$dir/after" after
  echo "before: $before"; echo "after:  $after"
  for r in before after; do
    echo "corpus checks ($r run):"; check_run "$dir/$r" || status=3
  done
  echo
  compare "$dir/before/record.tsv" "$dir/after/record.tsv" "$dir/before" "$dir/after" || status=1
elif [ -n "$record" ]; then
  timed_run "$bin" "$dir/run" run
  echo "corpus checks:"; check_run "$dir/run" || status=3
  { header "$bin"; cat "$dir/run/record.tsv"; } > "$record"
  echo "wrote $record: $(grep -c $'\tcmd\t' "$record") cases, $(grep -c $'\tfile:' "$record") files"
else
  [ -f "$check" ] || { echo "no record $check (make one with --record)" >&2; exit 64; }
  timed_run "$bin" "$dir/run" run
  echo "checking $bin against $check"
  echo "corpus checks:"; check_run "$dir/run" || status=3
  echo
  compare "$check" "$dir/run/record.tsv" || {
    status=1
    echo "(the streams and files of this run are in $dir/run with --dir or --keep; for a diff of the"
    echo " differing outputs, run --before with the binary the record was made with and --after with this one)"
  }
fi
[ $keep = 1 ] || [ -z "${tmp_dir:-}" ] && echo "runs kept in $dir"
exit $status
