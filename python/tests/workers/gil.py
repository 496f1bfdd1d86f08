"""The GIL is released while a call waits on the network: worker 0's pull waits for slow
worker 1 to finish its clock, and meanwhile a Python thread on worker 0 keeps counting."""

import threading
import time

import numpy as np

import ferrops

with ferrops.Worker.from_env() as w:
    t = w.declare_table("gil", dim=1, rule="sum", consistency="sequential")
    keys = np.array([42], dtype=np.uint64)
    w.push(t, keys, np.ones(1, dtype=np.float32))
    if w.rank == 1:
        time.sleep(1.0)  # worker 0's pull cannot be answered before this clock
        w.clock()
    else:
        w.clock()
        ticks = 0
        stop = threading.Event()

        def count():
            global ticks
            while not stop.is_set():
                ticks += 1

        counter = threading.Thread(target=count)
        counter.start()
        time.sleep(0.05)
        start_ticks, start = ticks, time.monotonic()
        got = w.pull(t, keys)
        waited, counted = time.monotonic() - start, ticks - start_ticks
        stop.set()
        counter.join()
        assert got[0, 0] == w.num_workers, got
        assert waited > 0.5, waited
        assert counted > 1000, counted
        print(f"pull waited {waited:.2f} s while another thread counted to {counted}")
