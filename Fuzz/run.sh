#!/usr/bin/env bash
# Builds the safetensors header fuzzer (libFuzzer + AddressSanitizer) and runs it on one core.
#
#   Fuzz/run.sh [SECONDS] [extra libFuzzer flags...]      (default: 600 s)
#   Fuzz/run.sh 0 path/to/crash-file                       (replay one input and exit)
#   FUZZ_TARGET=recipe Fuzz/run.sh [SECONDS] ...           (the recipe reader instead, seeded from
#                                                          Fuzz/recipe-seeds; work in .build/fuzz-recipe)
#   FUZZ_TARGET=pickle Fuzz/run.sh [SECONDS] ...           (the PyTorch checkpoint reader: zip, restricted
#                                                          unpickler, storages; seeded from Fuzz/pickle-seeds;
#                                                          work in .build/fuzz-pickle)
#
# The build goes to its own scratch directory (.build/fuzz), so it never disturbs the normal
# debug/release builds. The working corpus grows in .build/fuzz/corpus and is reused by the next
# run; it is seeded from Fuzz/seeds (small hand-made files) and a few Fixtures checkpoints.
# A crash is written to .build/fuzz/artifacts/ (the path is printed); replay it with
#   .build/debug/header-fuzz FILE        (plain build, same checks, readable trap message)
# and add it as a regression test in Tests/MergeKitTests/Faults/FuzzRegressionTests.swift.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
[ $# -gt 0 ] && shift

if [ "${FUZZ_TARGET:-header}" = recipe ]; then
  product=recipe-fuzz scratch=.build/fuzz-recipe
elif [ "${FUZZ_TARGET:-header}" = pickle ]; then
  product=pickle-fuzz scratch=.build/fuzz-pickle
else
  product=header-fuzz scratch=.build/fuzz
fi
swift build -c release --product "$product" --scratch-path "$scratch" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc FUZZING
binary="$scratch/release/$product"

if [ "$seconds" = 0 ]; then
  exec "$binary" "$@"
fi

corpus="$scratch/corpus"
seeds="$scratch/seeds"
artifacts="$scratch/artifacts"
mkdir -p "$corpus" "$seeds" "$artifacts"

if [ "$product" = recipe-fuzz ]; then
  cp Fuzz/recipe-seeds/* "$seeds/"
  exec "$binary" "$corpus" "$seeds" -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 "$@"
fi
if [ "$product" = pickle-fuzz ]; then
  cp Fuzz/pickle-seeds/* "$seeds/"
  exec "$binary" "$corpus" "$seeds" -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 "$@"
fi
cp Fuzz/seeds/*.safetensors Fuzz/seeds/*.json "$seeds/"
cp Fixtures/f32/base/model.safetensors "$seeds/fixture-f32-base.safetensors"
cp Fixtures/expected/f16/tv_a.safetensors "$seeds/fixture-f16-task-vector.safetensors"
cp Fixtures/bf16/base/model-00001-of-00003.safetensors "$seeds/fixture-bf16-shard.safetensors"
cp Fixtures/svd_lora/lora_b/adapter_config.json "$seeds/fixture-lora-b-config.json"
cp Fixtures/svd_lora/peft_rules/layers_pattern_list_and_exact_name/adapter_config.json "$seeds/fixture-lora-layers-config.json"

# One process, one core (no -jobs/-workers). -rss_limit_mb guards against a header that makes the
# parser allocate without bound; -timeout flags any single input taking over 10 s.
exec "$binary" "$corpus" "$seeds" \
  -dict=Fuzz/header.dict \
  -max_total_time="$seconds" \
  -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" \
  -print_final_stats=1 \
  "$@"
