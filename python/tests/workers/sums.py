"""Every worker pushes rank-dependent integers for a few rounds under sequential consistency;
after each round's clock, a pull must see exactly the sum over every worker and every round so
far (integers well inside float32's exact range, so sums are exact)."""

import numpy as np

import ferrops

ROUNDS = 4
N = 20_000  # spread over the whole u64 range, so every server holds some
DIM = 3

with ferrops.Worker.from_env() as w:
    assert 0 <= w.rank < w.num_workers
    t = w.declare_table("sums", dim=DIM, rule="sum", consistency="sequential")
    keys = np.arange(N, dtype=np.uint64) * np.uint64((2**64 - 1) // N)
    n = keys.size
    rows = np.arange(n, dtype=np.float32)[:, None]
    cols = np.arange(DIM, dtype=np.float32)[None, :]

    def contribution(rank: int, rnd: int) -> np.ndarray:
        return ((rows % 97) + cols + 10 * rank + 100 * rnd).astype(np.float32)

    out = np.full((n, DIM), -1.0, dtype=np.float32)
    for rnd in range(ROUNDS):
        w.push(t, keys, contribution(w.rank, rnd))
        w.clock()
        expected = sum(contribution(r, q) for r in range(w.num_workers) for q in range(rnd + 1))
        got = w.pull(t, keys)
        assert got.shape == (n, DIM) and got.dtype == np.float32, (got.shape, got.dtype)
        np.testing.assert_array_equal(got, expected)
        w.pull_into(t, keys, out)
        np.testing.assert_array_equal(out, expected)
        w.barrier()  # nobody pushes round rnd+1 before everyone checked round rnd
    print(f"worker {w.rank}: {ROUNDS} rounds of {n} keys summed exactly")
