#!/usr/bin/env bash
# What moving a range costs while the job serves: RUNS runs of
#
#   ferrops local --servers 2 --workers 2 --replication 2 -- ferrops worker --job count \
#     -- --keys KEYS --pushes PUSHES
#
# each with a spare `ferrops server` started once the workers push, which takes server 0's
# place as head of range 0 (a copy of KEYS/2 rows while both workers keep pushing all KEYS
# keys, then one routing switch), and RUNS runs without, alternating. Prints per run the copy's
# throughput (the learner's log: bytes of keys and rows over the time from its first to its
# last step) and `count`'s longest push (with a join, the push that waited out the switch),
# then the p50 and max of both kinds, and the raw TCP stream floor of the same machine
# (`ferrops bench push-pull --floor`'s one-way stream of a million-key push's bytes).
#
#   ci/migration-times.sh [FERROPS_BINARY] [RUNS]
set -euo pipefail

FERROPS=${1:-target/release/ferrops}
RUNS=${2:-5}
KEYS=${KEYS:-2000000}
PUSHES=${PUSHES:-60}
export FERROPS_LOG=${FERROPS_LOG:-info}
export FERROPS_SECRET=${FERROPS_SECRET:-$(head -c 32 /dev/urandom | base64)}
log=$(mktemp)
spare_log=$(mktemp)
trap 'rm -f "$log" "$spare_log"' EXIT

longest() {
  grep -o 'longest push [0-9]* ms' "$log" | awk '{ if ($3 > m) m = $3 } END { print m + 0 }'
}

run() { # $1: join or none
  : >"$spare_log"
  "$FERROPS" local --servers 2 --workers 2 --replication 2 -- \
    ferrops worker --job count -- --keys "$KEYS" --pushes "$PUSHES" >"$log" 2>&1 &
  local launcher=$! spare=
  if [ "$1" = join ]; then
    until grep -q 'starts pushing' "$log"; do sleep 0.1; done
    sleep 1
    local addr
    addr=$(grep -o 'ferrops::launch: scheduler listening on [0-9.:]*' "$log" | awk '{print $5}')
    "$FERROPS" server --scheduler "$addr" >"$spare_log" 2>&1 &
    spare=$!
  fi
  wait "$launcher"
  [ -n "$spare" ] && wait "$spare" || true
  local copy
  copy=$(grep -o 'holds a whole copy of range [0-9]*: .*' "$spare_log" | head -1 || true)
  echo "$1 longest_push_ms=$(longest) ${copy:-no copy}"
}

for i in $(seq 1 "$RUNS"); do
  run join
  run none
done | tee /dev/stderr | awk '
  /^join/ { split($2, a, "="); j[nj++] = a[2]; if (match($0, /\(([0-9.]+) MB\/s/, m)) t[nt++] = m[1] }
  /^none/ { split($2, a, "="); n[nn++] = a[2] }
  function p50(x, k,   s, i) { asort(x, s); return s[int((k + 1) / 2)] }
  function mx(x, k,   i, m) { m = 0; for (i = 0; i < k; i++) if (x[i] + 0 > m) m = x[i] + 0; return m }
  END {
    printf "copy throughput MB/s: p50 %s, max %s (%d joins)\n", p50(t, nt), mx(t, nt), nt
    printf "longest push ms with a join: p50 %s, max %s; without: p50 %s, max %s\n", \
      p50(j, nj), mx(j, nj), p50(n, nn), mx(n, nn)
  }'
floor=$("$FERROPS" bench push-pull --floor --keys 1000000 --iters 5 --warmup 1 --json 2>/dev/null |
  grep -o '"gb_per_s":[0-9.]*' | head -1 | cut -d: -f2)
echo "raw TCP stream floor: ${floor:-?} GB/s"

