"""Bounded delay τ: a pull issued after a worker's c-th clock must see every worker's pushes
of its first c − τ clocks (and no more pushes than were made). Worker 1 is slow, so worker 0's
pulls have to wait for it."""

import sys
import time

import numpy as np

import ferrops

TAU = int(sys.argv[1])
CLOCKS = 6

with ferrops.Worker.from_env() as w:
    t = w.declare_table("delay", dim=1, rule="sum", consistency=TAU)
    assert t.consistency == TAU
    keys = np.array([7], dtype=np.uint64)
    one = np.ones(1, dtype=np.float32)
    for c in range(1, CLOCKS + 1):
        if w.rank == 1:
            time.sleep(0.2)
        w.push(t, keys, one)
        assert w.clock() == c
        seen = float(w.pull(t, keys)[0, 0])
        at_least = w.num_workers * max(c - TAU, 0)
        at_most = w.num_workers * CLOCKS
        assert at_least <= seen <= at_most, (c, seen, at_least)
        print(f"worker {w.rank} clock {c}: saw {seen:.0f} (at least {at_least})")
    w.barrier()
    assert float(w.pull(t, keys)[0, 0]) == w.num_workers * CLOCKS
