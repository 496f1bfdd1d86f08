#!/usr/bin/env bash
# Runs `ferrops slurm` under a real single-node Slurm cluster (Debian's slurm-wlm and munge):
#
#   ci/slurm-test.sh PATH/TO/ferrops
#
# Starts munged, slurmctld and slurmd with a minimal slurm.conf in a temporary directory (no
# systemd, no cgroups: proctrack/linuxproc, task/none), then checks:
#   1. `srun -n4 ferrops slurm --servers 1 -- ferrops worker --job check`: scheduler, 1 server,
#      2 workers; exact push/pull sums on both workers;
#   2. a short logistic-regression training under srun: it finishes and its loss falls;
#   3. `scancel` of a long training job started by sbatch (secret from a 0600 file): every task
#      logs that it got SIGTERM and exits 143, the job ends CANCELLED, no process is left;
#   4. the same job with a 1-minute time limit: the same clean stop, the job ends TIMEOUT.
# The daemons are stopped at the end, whatever happened. Needs root (slurmd runs as root);
# installs slurm-wlm, munge and procps with apt when missing. Prints "SKIPPED: why" and exits 0
# only when this machine cannot run slurmd at all (not root, or `slurmd -C` cannot probe it).
set -euo pipefail

exe=$(realpath "$1")
[ -x "$exe" ] || { echo "not an executable: $1"; exit 2; }
say() { printf '[slurm-test] %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: slurmd must run as root and this is uid $(id -u)"
  exit 0
fi
# procps: ps, which a minimal Debian image lacks.
if ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v ps >/dev/null
then
  say "installing slurm-wlm, munge and procps"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurm-wlm munge procps
fi
if ! node_line=$(slurmd -C 2>/dev/null | grep '^NodeName='); then
  echo "SKIPPED: slurmd -C cannot read this machine's hardware, so slurmd cannot run here"
  exit 0
fi

dir=$(mktemp -d /tmp/ferrops-slurm.XXXXXX)
chmod 755 "$dir"
host=$(hostname -s)
export SLURM_CONF=$dir/slurm.conf
cleanup() {
  local status=$?
  say "stopping the daemons"
  # slurmstepd outlives slurmd: end any job still there first (KillWait is 30 s).
  local jobs
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086 # one job id per word
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 45); do
      squeue -h -o %i 2>/dev/null | grep -q . || break
      sleep 1
    done
  fi
  scontrol shutdown >/dev/null 2>&1 || true
  wait_gone 10 slurmd.pid slurmctld.pid
  for pidfile in slurmd.pid slurmctld.pid munged.pid; do
    [ -s "$dir/$pidfile" ] && kill "$(cat "$dir/$pidfile")" 2>/dev/null || true
  done
  wait_gone 10 slurmd.pid slurmctld.pid munged.pid
  if [ "$status" -ne 0 ]; then
    for log in slurmctld.log slurmd.log; do
      say "--- last lines of $log"
      tail -n 40 "$dir/$log" 2>/dev/null || true
    done
  fi
  rm -rf "$dir" || say "could not remove $dir"
}
# True while process $1 runs (a zombie, which nobody may reap in a container, counts as gone).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat"; }
# wait_gone SECONDS PIDFILE...: waits up to SECONDS for the daemons of the pid files to exit.
wait_gone() {
  local seconds=$1 pidfile pid
  shift
  for _ in $(seq 1 $((seconds * 5))); do
    local running=0
    for pidfile in "$@"; do
      pid=$(cat "$dir/$pidfile" 2>/dev/null || true)
      [ -n "$pid" ] && alive "$pid" && running=1
    done
    [ "$running" -eq 0 ] && return 0
    sleep 0.2
  done
  return 0
}
trap cleanup EXIT

# --- daemons ------------------------------------------------------------------
mungekey --create --keyfile "$dir/munge.key" 2>/dev/null
chmod 600 "$dir/munge.key"
munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
  --pid-file="$dir/munged.pid" --seed-file="$dir/munged.seed" --log-file="$dir/munged.log"

mkdir -p "$dir/state" "$dir/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=ferrops-ci
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
KillWait=30
MinJobAge=600
PlugStackConfig=$dir/plugstack.conf
${node_line/NodeName=* CPUs/NodeName=$host CPUs} State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
: > "$dir/plugstack.conf"
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
say "waiting for node $host to become idle"
for _ in $(seq 1 120); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || fail "node $host is '${state:-unknown}', not idle, after 120 s"
say "slurm is up: $(sinfo -h -o '%P %D %c %T')"

# The job's secret, as a user would make it: in the environment srun passes on.
FERROPS_SECRET=$(head -c 32 /dev/urandom | base64)
export FERROPS_SECRET
export FERROPS_LOG=info

# --- 1. exact sums over scheduler, server and two workers ---------------------------------
say "1. srun -n4 ferrops slurm --servers 1 -- ferrops worker --job check"
out=$dir/check.out
timeout 300 srun --ntasks 4 --overcommit --kill-on-bad-exit=1 --time 4 --label \
  "$exe" slurm --servers 1 -- "$exe" worker --job check > "$out" 2>&1 \
  || { cat "$out"; fail "the check job failed"; }
cat "$out"
passed=$(grep -c 'check passed' "$out" || true)
[ "$passed" -eq 2 ] || fail "expected 2 workers to pass the check, saw $passed"
grep -q '^0: .*task 0 (scheduler)' "$out" || fail "task 0 did not run the scheduler"
grep -q '^1: .*task 1 (server 0)' "$out" || fail "task 1 did not run server 0"

# --- 2. a short training job --------------------------------------------------------------
say "2. srun -n4: logistic regression, 3 epochs"
out=$dir/train.out
timeout 300 srun --ntasks 4 --overcommit --kill-on-bad-exit=1 --time 4 \
  "$exe" slurm --servers 1 -- "$exe" worker --job logreg -- \
  --examples 20000 --features 5000 --epochs 3 --batch 500 > "$out" 2>&1 \
  || { cat "$out"; fail "the training job failed"; }
cat "$out"
grep -q '^RESULT ' "$out" || fail "the training job printed no RESULT"
first=$(sed -n 's/^epoch *1 *loss \([0-9.]*\).*/\1/p' "$out")
last=$(sed -n 's/^epoch *3 *loss \([0-9.]*\).*/\1/p' "$out")
[ -n "$first" ] && [ -n "$last" ] || fail "no epoch 1 and epoch 3 losses in the output"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' \
  || fail "the loss did not fall: epoch 1 $first, epoch 3 $last"
say "loss fell from $first to $last"

# --- 3. and 4. a long job stopped by scancel and by its time limit ------------------------
secret_file=$dir/secret
(umask 077 && head -c 32 /dev/urandom | base64 > "$secret_file")

# long_job NAME MINUTES: submits a 4-task training job far longer than MINUTES (secret from a
# 0600 file, each task's output in $dir/NAME-taskN.out) and prints its id.
long_job() {
  local name=$1 minutes=$2
  cat > "$dir/$name.sbatch" <<JOB
#!/bin/bash
#SBATCH --ntasks=4
#SBATCH --overcommit
#SBATCH --time=$minutes
#SBATCH --output=$dir/$name-batch.out
unset FERROPS_SECRET
srun --output=$dir/$name-task%t.out "$exe" slurm --servers 1 --secret-file $secret_file -- \
  "$exe" worker --job logreg -- --examples 20000 --features 5000 --epochs 100000 --batch 500
JOB
  sbatch --parsable "$dir/$name.sbatch"
}

# wait_training NAME JOB: waits for the job's second epoch (worker ranks come from the
# scheduler, so either worker task may be the one printing epochs).
wait_training() {
  local name=$1 job=$2
  for _ in $(seq 1 180); do
    grep -qs '^epoch *2 ' "$dir/$name"-task*.out && return 0
    sleep 1
  done
  cat "$dir/$name"-*.out 2>/dev/null || true
  fail "job $job trained no second epoch within 180 s"
}

# check_stopped NAME JOB STATE SECONDS: the job leaves the queue within SECONDS, ends in STATE,
# every task logged the SIGTERM and its exit status 143, and no ferrops process is left.
check_stopped() {
  local name=$1 job=$2 want=$3 seconds=$4 task state leftovers
  for _ in $(seq 1 "$seconds"); do
    squeue -h -j "$job" 2>/dev/null | grep -q . || break
    sleep 1
  done
  squeue -h -j "$job" 2>/dev/null | grep -q . && fail "job $job still queued after $seconds s"
  for task in 0 1 2 3; do
    say "--- task $task"
    grep -v '^epoch' "$dir/$name-task$task.out" || true
    grep -q "task $task (.*): received SIGTERM" "$dir/$name-task$task.out" \
      || fail "task $task did not log the SIGTERM it got"
    grep -q "task $task (.*): stopped by SIGTERM (signal 15); exit status 143" \
      "$dir/$name-task$task.out" || fail "task $task did not log its clean stop"
  done
  state=$(scontrol -o show job "$job" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  [ "$state" = "$want" ] || fail "job $job ended $state, not $want"
  leftovers=$(ps -eo pid=,args= | awk -v exe="$exe" '$2 == exe')
  [ -z "$leftovers" ] || fail "processes left after job $job: $leftovers"
  say "job $job: every task stopped on SIGTERM with status 143, state $state, nothing left"
}

say "3. sbatch a long training job, scancel it mid-run"
job=$(long_job cancel 10)
wait_training cancel "$job"
say "scancel $job"
scancel "$job"
check_stopped cancel "$job" CANCELLED 120

# Slurm checks time limits about every 30 s, so a 1-minute job ends within about 2 minutes.
say "4. sbatch a long training job with a 1-minute limit and let it run out"
job=$(long_job limit 1)
wait_training limit "$job"
check_stopped limit "$job" TIMEOUT 240
grep -q 'CANCELLED .* DUE TO TIME LIMIT' "$dir/limit-task0.out" "$dir/limit-batch.out" \
  || fail "Slurm did not say job $job hit its time limit"
say "all Slurm checks passed"
