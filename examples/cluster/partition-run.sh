#!/bin/sh
# One step of a partitioned merge, for any scheduler: the Slurm array script, the Kubernetes
# Indexed Job and the GitHub Actions matrix in this folder all call this, and so do the tests.
#
#   partition-run.sh STEP INDEX COUNT
#
# STEP:
#   rounds     print how many statistics rounds the merge needs (0 for most methods; paper TIES
#              with its global trim and mass vote 3, MetaGPT 1, DARE-TIES's mass vote 1)
#   stats-R    statistics round R of partition INDEX/COUNT (R from 1), given every partition's
#              file of round R-1; nothing to do when the merge has fewer rounds than R
#   merge      partition INDEX/COUNT's part of the output, with the last round's statistics
#   assemble   put the parts together into the output (once every partition has merged)
#   all        every step above for partition INDEX, waiting for the other partitions' files
#              of each round (all partitions must run at once: a Kubernetes Indexed Job with
#              parallelism = completions); partition 0 assembles once every partition merged
#
# Configuration (environment):
#   MERGE_ARGS    the merge command and its arguments, without -o (split on spaces), e.g.
#                 "ties --density 0.2 --base /data/base --model /data/a --model /data/b"
#   MERGE_OUTPUT  the output directory, on a file system every partition shares
#   STATS_DIR     where the statistics files go (shared too; default: MERGE_OUTPUT.stats);
#                 give each run its own
#   MERGE_CLI     the merge-cli executable (default: merge-cli on the PATH)
#   WAIT_SECONDS  how long `all` waits for the other partitions at each step (default 86400)
set -eu

usage() {
    echo "usage: partition-run.sh rounds|stats-R|merge|assemble|all INDEX COUNT" >&2
    exit 64
}
[ $# -eq 3 ] || usage
STEP=$1 INDEX=$2 COUNT=$3
: "${MERGE_ARGS:?set MERGE_ARGS to the merge command and its arguments (without -o)}"
: "${MERGE_OUTPUT:?set MERGE_OUTPUT to the output directory}"
MERGE_CLI=${MERGE_CLI:-merge-cli}
STATS_DIR=${STATS_DIR:-$MERGE_OUTPUT.stats}
WAIT_SECONDS=${WAIT_SECONDS:-86400}
case $INDEX in ''|*[!0-9]*) usage ;; esac
case $COUNT in ''|*[!0-9]*) usage ;; esac

# (MERGE_ARGS is split on spaces on purpose.)
# shellcheck disable=SC2086
merge_cli() { "$MERGE_CLI" $MERGE_ARGS -o "$MERGE_OUTPUT" "$@"; }
rounds() { merge_cli --stats-rounds; }
# Every partition's file of round $1.
round_files() {
    i=0
    while [ "$i" -lt "$COUNT" ]; do
        printf '%s\n' "$STATS_DIR/round-$1-part-$i-of-$COUNT.json"
        i=$((i + 1))
    done
}
# Waits until every file of round $1 (or every partition's merge mark, with "merged") exists.
wait_for() {
    waited=0
    while :; do
        missing=0
        if [ "$1" = merged ]; then
            i=0
            while [ "$i" -lt "$COUNT" ]; do
                [ -e "$STATS_DIR/merged-$i-of-$COUNT" ] || missing=1
                i=$((i + 1))
            done
        else
            for f in $(round_files "$1"); do [ -e "$f" ] || missing=1; done
        fi
        [ "$missing" -eq 0 ] && return 0
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            echo "partition-run.sh: partition $INDEX/$COUNT waited $WAIT_SECONDS s for the other partitions ($1); giving up" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}
stats() {
    round=$1
    total=$(rounds)
    if [ "$round" -gt "$total" ]; then
        echo "partition-run.sh: the merge has $total statistics round(s); nothing to do for round $round" >&2
        return 0
    fi
    mkdir -p "$STATS_DIR"
    if [ "$round" -eq 1 ]; then
        merge_cli --partition "$INDEX/$COUNT" --write-stats "$STATS_DIR/round-1-part-$INDEX-of-$COUNT.json"
    else
        # shellcheck disable=SC2046
        merge_cli --partition "$INDEX/$COUNT" --write-stats "$STATS_DIR/round-$round-part-$INDEX-of-$COUNT.json" \
            --stats $(round_files $((round - 1)))
    fi
}
merge() {
    total=$(rounds)
    if [ "$total" -eq 0 ]; then
        merge_cli --partition "$INDEX/$COUNT"
    else
        # shellcheck disable=SC2046
        merge_cli --partition "$INDEX/$COUNT" --stats $(round_files "$total")
    fi
}

case $STEP in
    rounds) rounds ;;
    stats-*)
        round=${STEP#stats-}
        case $round in ''|*[!0-9]*|0) usage ;; esac
        stats "$round" ;;
    merge) merge ;;
    assemble) "$MERGE_CLI" assemble "$MERGE_OUTPUT" ;;
    all)
        total=$(rounds)
        round=1
        while [ "$round" -le "$total" ]; do
            [ "$round" -gt 1 ] && wait_for $((round - 1))
            stats "$round"
            round=$((round + 1))
        done
        [ "$total" -gt 0 ] && wait_for "$total"
        merge
        mkdir -p "$STATS_DIR"
        : > "$STATS_DIR/merged-$INDEX-of-$COUNT"
        if [ "$INDEX" -eq 0 ]; then
            wait_for merged
            "$MERGE_CLI" assemble "$MERGE_OUTPUT"
        fi ;;
    *) usage ;;
esac
