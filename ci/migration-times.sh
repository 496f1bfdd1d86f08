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
done | tee /dev/stderr | python3 -c '
import re, statistics, sys
join, none, mbs = [], [], []
for line in sys.stdin:
    ms = int(re.search(r"longest_push_ms=(\d+)", line).group(1))
    (join if line.startswith("join") else none).append(ms)
    m = re.search(r"\(([0-9.]+) MB/s", line)
    if m:
        mbs.append(float(m.group(1)))
p50 = lambda x: statistics.median(x) if x else float("nan")
print(f"copy throughput MB/s: p50 {p50(mbs):.1f}, max {max(mbs, default=0):.1f} ({len(mbs)} copies)")
print(f"longest push ms with a join: p50 {p50(join)}, max {max(join, default=0)}; "
      f"without: p50 {p50(none)}, max {max(none, default=0)}")
'
floor=$("$FERROPS" bench push-pull --floor --keys 1000000 --iters 5 --warmup 1 --json 2>/dev/null |
  grep -o '"gb_per_s":[0-9.]*' | head -1 | cut -d: -f2)
echo "raw TCP stream floor: ${floor:-?} GB/s"

