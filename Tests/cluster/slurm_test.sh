#!/usr/bin/env bash
# Runs every merge in cases.txt partitioned through examples/cluster/slurm-merge.sh (statistics
# rounds, merge and assembly as job arrays with dependencies) and compares the assembled bytes
# with a one-machine merge of each.
#
#   Tests/cluster/slurm_test.sh MERGE_CLI [auto|slurm|local] [COUNT]
#
# slurm: a single-node Slurm started here, in a temporary directory (munged, slurmctld and
#        slurmd with their own key, sockets, ports and state; stopped at the end). As root,
#        Debian's slurm-wlm and munge are installed first when missing. Fails when it cannot start.
# local: the same script with a stand-in sbatch that runs each array's tasks as local processes
#        (at once) and returns when they are done, so dependencies hold.
# auto:  slurm when it starts, else local (the default).
# Prints "cluster test (MODE): N of N cases identical" and exits 0 when every case is identical.
# Waits at most SLURM_TEST_WAIT seconds (default 900) for the jobs. KEEP=1 keeps the work directory.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: slurm_test.sh MERGE_CLI [auto|slurm|local] [COUNT]" >&2; exit 64; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MERGE_CLI=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
MODE=${2:-auto}
COUNT=${3:-3}
WAIT=${SLURM_TEST_WAIT:-900}
WORK=$(mktemp -d /tmp/mergekit-cluster.XXXXXX)
STARTED=()

cleanup() {
    # Only the daemons started here, by their process ids: TERM, then KILL after 5 s (a parent
    # that blocks signals, as a test runner may, passes the blocked TERM on to them).
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap "exit 143" TERM
trap "exit 130" INT

# --- A single-node Slurm in $WORK/slurm ------------------------------------------------------
start_slurm() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
        echo "installing slurm-wlm and munge" >&2
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 || return 1
    fi
    local s=$WORK/slurm host
    host=$(hostname -s)
    mkdir -p "$s/state" "$s/spool" "$s/munge"
    chmod 700 "$s/munge"
    head -c 1024 /dev/urandom > "$s/munge/munge.key"
    chmod 400 "$s/munge/munge.key"
    munged --force --foreground --key-file="$s/munge/munge.key" --socket="$s/munge/munge.socket" \
        --pid-file="$s/munge/munged.pid" --log-file="$s/munge/munged.log" --seed-file="$s/munge/munged.seed" \
        >"$s/munge/munged.out" 2>&1 &
    STARTED+=($!)
    for _ in $(seq 50); do [ -S "$s/munge/munge.socket" ] && break; sleep 0.1; done
    [ -S "$s/munge/munge.socket" ] || { echo "munged did not start" >&2; return 1; }
    # Ports above the usual ones, picked from this process's id.
    local port=$((20000 + ($$ % 20000)))
    cat > "$s/slurm.conf" <<CONF
ClusterName=mergekit-test
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$s/munge/munge.socket
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/slurmctld.log
SlurmdLogFile=$s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MaxArraySize=100001
# The merges are tiny: 8 tasks at once whatever the cores (config_overrides lets the node say so).
SlurmdParameters=config_overrides
SchedulerParameters=sched_min_interval=0
NodeName=$host CPUs=8 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$s/slurm.conf
    slurmctld -D -i -f "$SLURM_CONF" >"$s/slurmctld.out" 2>&1 &
    STARTED+=($!)
    slurmd -D -f "$SLURM_CONF" >"$s/slurmd.out" 2>&1 &
    STARTED+=($!)
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then return 0; fi
        sleep 0.5
    done
    echo "slurm did not come up; its logs:" >&2
    tail -n 5 "$s"/slurmctld.log "$s"/slurmd.log "$s"/slurmctld.out "$s"/slurmd.out >&2 2>/dev/null || true
    return 1
}

# --- A stand-in sbatch: each array's tasks as local processes -------------------------------
make_local_sbatch() {
    mkdir -p "$WORK/bin"
    cat > "$WORK/bin/sbatch" <<'SBATCH'
#!/usr/bin/env bash
# Runs `--wrap CMD` once per index of --array=A-B (SLURM_ARRAY_TASK_ID set), all at once, and
# returns when they are done (a later submission therefore follows its dependency). Prints a job id.
set -u
array="0-0" wrap="" output=/dev/null
while [ $# -gt 0 ]; do
    case $1 in
        --array=*) array=${1#--array=} ;;
        --wrap) wrap=$2; shift ;;
        --output=*) output=${1#--output=} ;;
        *) ;;
    esac
    shift
done
pids=()
for i in $(seq "${array%-*}" "${array#*-}"); do
    SLURM_ARRAY_TASK_ID=$i sh -c "$wrap" >>"${output//%a/$i}" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status -eq 0 ] || { echo "a task of '$wrap' failed (see $output)" >&2; exit 1; }
echo $RANDOM
SBATCH
    chmod +x "$WORK/bin/sbatch"
}

case $MODE in
    slurm) start_slurm || { echo "slurm could not be started" >&2; exit 1; } ;;
    auto) if ! start_slurm; then echo "slurm could not be started: running the partitions as local processes" >&2; MODE=local; else MODE=slurm; fi ;;
    local) ;;
    *) echo "usage: slurm_test.sh MERGE_CLI [auto|slurm|local] [COUNT]" >&2; exit 64 ;;
esac
if [ "$MODE" = local ]; then make_local_sbatch; export PATH="$WORK/bin:$PATH"; fi

mkdir -p "$WORK/out" "$WORK/ref" "$WORK/stats" "$WORK/logs"
cd "$ROOT/Fixtures"
names=()
jobs=()
while read -r name args; do
    case $name in ''|'#'*) continue ;; esac
    names+=("$name")
    # One machine, into the output path the partitions use (a sweep's manifest names it; the model
    # card records the command, less the partition flags), moved aside.
    # shellcheck disable=SC2086
    "$MERGE_CLI" $args -o "$WORK/out/$name" 2>/dev/null
    mv "$WORK/out/$name" "$WORK/ref/$name"
    job=$(MERGE_ARGS="$args" MERGE_OUTPUT="$WORK/out/$name" STATS_DIR="$WORK/stats/$name" MERGE_CLI="$MERGE_CLI" \
        "$ROOT/examples/cluster/slurm-merge.sh" "$COUNT" --output="$WORK/logs/$name-%x-%A_%a.out")
    jobs+=("$job")
done < "$HERE/cases.txt"

if [ "$MODE" = slurm ]; then
    # Every assembly job (the last of each case's chain) finished, within the bound.
    waited=0
    while :; do
        left=$(squeue -h -o '%i %T %r' 2>/dev/null || true)
        [ -z "$left" ] && break
        if grep -q DependencyNeverSatisfied <<<"$left"; then
            echo "a job failed, so the jobs depending on it never run:" >&2
            echo "$left" >&2
            tail -n 20 "$WORK"/logs/*.out >&2 2>/dev/null || true
            exit 1
        fi
        if [ "$waited" -ge "$WAIT" ]; then echo "jobs still queued after $WAIT s:" >&2; echo "$left" >&2; exit 1; fi
        sleep 1
        waited=$((waited + 1))
    done
fi

identical=0
for name in "${names[@]}"; do
    same=1
    if [ ! -d "$WORK/out/$name" ]; then
        echo "$name: not assembled" >&2
        tail -n 20 "$WORK"/logs/"$name"-*.out >&2 2>/dev/null || true
        continue
    fi
    # Every file, byte for byte (a sweep's manifest.json without its timings).
    if [ "$(cd "$WORK/ref/$name" && find . -type f | sort)" != "$(cd "$WORK/out/$name" && find . -type f | sort)" ]; then
        echo "$name: other files than one machine's" >&2
        same=0
    fi
    while read -r file; do
        if [ "$(basename "$file")" = manifest.json ]; then
            strip='s/"seconds": [0-9.e+-]*/"seconds": 0/'
            cmp -s <(sed -E "$strip" "$WORK/ref/$name/$file") <(sed -E "$strip" "$WORK/out/$name/$file") || { echo "$name: $file differs" >&2; same=0; }
        else
            cmp -s "$WORK/ref/$name/$file" "$WORK/out/$name/$file" || { echo "$name: $file differs" >&2; same=0; }
        fi
    done < <(cd "$WORK/ref/$name" && find . -type f | sort)
    identical=$((identical + same))
done
echo "cluster test ($MODE, $COUNT partitions): $identical of ${#names[@]} cases identical"
[ "$identical" -eq "${#names[@]}" ]
