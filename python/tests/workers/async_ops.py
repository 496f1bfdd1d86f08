"""push_async/pull_async with tickets, several in flight at once, and the context manager."""

import numpy as np

import ferrops

N = 5_000

with ferrops.Worker.from_env() as w:
    t = w.declare_table("async", dim=2, rule="sum", consistency="sequential")
    keys = np.arange(N, dtype=np.uint64) * np.uint64(3_000_000_000_000_000)
    values = np.ones((N, 2), dtype=np.float32)
    tickets = [w.push_async(t, keys, values) for _ in range(3)]
    assert all(tk.kind == "push" for tk in tickets)
    values[:] = 99.0  # the arrays may be reused once push_async returned
    for tk in tickets:
        assert w.wait(tk) is None
    w.clock()
    pulls = [w.pull_async(t, keys) for _ in range(2)]
    assert pulls[0].kind == "pull"
    for tk in pulls:
        got = w.wait(tk)
        assert got.shape == (N, 2) and got.dtype == np.float32
        np.testing.assert_array_equal(got, np.full((N, 2), 3.0 * w.num_workers, np.float32))
    tk = w.pull_async(t, keys)
    while not w.is_done(tk):
        pass
    assert w.is_done(tk)
    np.testing.assert_array_equal(w.wait(tk), np.full((N, 2), 3.0 * w.num_workers, np.float32))
    w.barrier()
    rank = w.rank

assert w.finished, "the with block finishes the worker"
try:
    w.clock()
except ferrops.ClosedError:
    pass
else:
    raise AssertionError("a finished worker accepted clock()")
print(f"worker {rank}: async push/pull ok")
