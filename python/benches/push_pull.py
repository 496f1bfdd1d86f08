"""The Python twin of `ferrops bench push-pull`'s worker loop: as one worker of a job started
by `ferrops local`, push then `pull_into` the same keys repeatedly (keys spread over the u64
range, a `sum` table of `--val-len` floats per key), check the server really summed, and print
the push and pull p50 as one JSON line. `compare.py` runs it beside the Rust benchmark."""

import argparse
import json
import time

import numpy as np

import ferrops


def spread_keys(n: int) -> np.ndarray:
    step = (2**64 - 1) // max(n, 1)
    return np.arange(n, dtype=np.uint64) * np.uint64(step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--val-len", type=int, default=1)
    a = p.parse_args()
    if a.keys <= 0 or a.iters <= 0 or a.val_len <= 0 or a.warmup < 0:
        p.error("--keys, --iters and --val-len must be positive, --warmup not negative")

    with ferrops.Worker.from_env() as w:
        t = w.declare_table("bench", dim=a.val_len)
        keys = spread_keys(a.keys)
        values = np.ones((a.keys, a.val_len), dtype=np.float32)
        out = np.zeros_like(values)
        push_us, pull_us = [], []
        clock = time.perf_counter
        for i in range(a.warmup + a.iters):
            t0 = clock()
            w.push(t, keys, values)
            t1 = clock()
            w.pull_into(t, keys, out)
            t2 = clock()
            if out.min() < i + 1:
                raise SystemExit(f"pulled {out.min()} after {i + 1} pushes of 1.0")
            if i >= a.warmup:
                push_us.append((t1 - t0) * 1e6)
                pull_us.append((t2 - t1) * 1e6)
        print(json.dumps({
            "keys": a.keys,
            "iters": a.iters,
            "push_p50_us": float(np.percentile(push_us, 50)),
            "pull_p50_us": float(np.percentile(pull_us, 50)),
        }))


if __name__ == "__main__":
    main()
