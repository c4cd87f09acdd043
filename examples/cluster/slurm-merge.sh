#!/bin/sh
# A partitioned merge on Slurm: one job array per statistics round, one for the merge, then the
# assembly, each depending on the one before (afterok). Every task runs partition-run.sh with its
# array index. Prints the assembly's job id.
#
#   MERGE_ARGS="ties --density 0.2 --base /shared/base --model /shared/a --model /shared/b" \
#   MERGE_OUTPUT=/shared/merged STATS_DIR=/shared/merged.stats.$(date +%s) \
#   MERGE_CLI=/shared/bin/merge-cli slurm-merge.sh COUNT [sbatch options...]
#
# The environment is passed to the jobs (sbatch's default --export=ALL). MERGE_OUTPUT and
# STATS_DIR must be on a file system every node sees. Extra arguments go to every sbatch
# (e.g. --partition=cpu --cpus-per-task=8 --mem=16G).
set -eu
[ $# -ge 1 ] || { echo "usage: slurm-merge.sh COUNT [sbatch options...]" >&2; exit 64; }
COUNT=$1
shift
case $COUNT in ''|*[!0-9]*|0) echo "slurm-merge.sh: COUNT must be a positive number, not $COUNT" >&2; exit 64 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
RUN="$HERE/partition-run.sh"
ROUNDS=$("$RUN" rounds 0 "$COUNT")
LAST=$((COUNT - 1))

dependency=""
round=1
while [ "$round" -le "$ROUNDS" ]; do
    job=$(sbatch --parsable --job-name="merge-stats-$round" --array="0-$LAST" $dependency "$@" \
        --wrap "\"$RUN\" stats-$round \$SLURM_ARRAY_TASK_ID $COUNT")
    dependency="--dependency=afterok:${job%%;*}"
    round=$((round + 1))
done
job=$(sbatch --parsable --job-name=merge --array="0-$LAST" $dependency "$@" \
    --wrap "\"$RUN\" merge \$SLURM_ARRAY_TASK_ID $COUNT")
job=$(sbatch --parsable --job-name=merge-assemble --dependency="afterok:${job%%;*}" "$@" \
    --wrap "\"$RUN\" assemble 0 $COUNT")
echo "${job%%;*}"
