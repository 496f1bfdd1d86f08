"""A worker whose push raises: the exception propagates out of the `with` block and the
process (hence `ferrops local`) fails."""

import numpy as np

import ferrops

with ferrops.Worker.from_env() as w:
    t = w.declare_table("fails", dim=1)
    w.push(t, np.array([3, 2], dtype=np.uint64), np.ones(2, dtype=np.float32))
