#!/usr/bin/env bash
# Recovery time of failover, measured by the job itself: RUNS runs of
#
#   ferrops local --servers 2 --workers 2 --replication 2 -- ferrops worker --job count
#
# each with server (run mod 2) killed with SIGKILL once the workers are pushing, and RUNS runs
# without a fault, alternating. `count` reports the longest time one of its sequential pushes
# took ("longest push N ms"): with a kill, that push waited for the failover. Prints one line
# per run and the p50 and max of both kinds.
#
#   ci/failover-times.sh [FERROPS_BINARY] [RUNS]
set -euo pipefail

FERROPS=${1:-target/release/ferrops}
RUNS=${2:-20}
PUSHES=${PUSHES:-20000}
export FERROPS_LOG=${FERROPS_LOG:-warn}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The pid of the launcher's child `ferrops server` started with FERROPS_RANK=$2.
server_pid() {
  local k
  for k in $(pgrep -P "$1"); do
    if tr '\0' '\n' <"/proc/$k/cmdline" 2>/dev/null | grep -qx server &&
      tr '\0' '\n' <"/proc/$k/environ" 2>/dev/null | grep -qx "FERROPS_RANK=$2"; then
      echo "$k"
      return
    fi
  done
}

# The longest push of either worker in the log, in ms.
longest() {
  grep -o 'longest push [0-9]* ms' "$log" | awk '{ if ($3 > m) m = $3 } END { print m + 0 }'
}

run() { # $1: kill or none; $2: which server
  "$FERROPS" local --servers 2 --workers 2 --replication 2 -- \
    ferrops worker --job count -- --pushes "$PUSHES" >"$log" 2>&1 &
  local launcher=$!
  # The workers are pushing once one of them reported 500 acknowledged pushes.
  until grep -q 'has 500 pushes acknowledged' "$log"; do
    kill -0 "$launcher" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  if [ "$1" = kill ]; then
    local pid="" tries=0
    while [ -z "$pid" ] && [ $tries -lt 200 ]; do
      pid=$(server_pid "$launcher" "$2")
      tries=$((tries + 1))
      [ -n "$pid" ] || sleep 0.01
    done
    [ -n "$pid" ] || { echo "server $2 not found" >&2; exit 1; }
    kill -9 "$pid"
  fi
  wait "$launcher" || { echo "run failed:" >&2; cat "$log" >&2; exit 1; }
  [ "$(grep -c 'count passed' "$log")" = 2 ] || { cat "$log" >&2; exit 1; }
  if [ "$1" = kill ] && ! grep -q 'replication covers it' "$log"; then
    echo "the job ended before server $2 was killed; use more PUSHES" >&2
    exit 1
  fi
  longest
}

stats() { # p50 and max of the numbers on stdin
  sort -n | awk '{ v[NR] = $1 } END { printf "p50 %d ms, max %d ms (%d runs)\n", v[int((NR + 1) / 2)], v[NR], NR }'
}

killed=() clean=()
for i in $(seq 1 "$RUNS"); do
  k=$(run kill $((i % 2)))
  c=$(run none 0)
  killed+=("$k") clean+=("$c")
  echo "run $i: server $((i % 2)) killed: longest push $k ms; no fault: $c ms"
done
echo "with a kill: $(printf '%s\n' "${killed[@]}" | stats)"
echo "no fault:    $(printf '%s\n' "${clean[@]}" | stats)"
