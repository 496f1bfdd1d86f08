"""Checkpoints from Python. `save DIR`: three Adam steps, a checkpoint into DIR, then a fourth
step; `resume DIR` (a job started with `--restore DIR`): the fourth step alone. Both print the
bits of the values after the fourth step, which must agree: the checkpoint kept the values and
Adam's moments and step count."""

import hashlib
import sys

import numpy as np

import ferrops

MODE, DIR = sys.argv[1], sys.argv[2]
N = 4000  # spread over the whole u64 range, so every server holds some

with ferrops.Worker.from_env() as w:
    t = w.declare_table("adam", dim=2, rule="adam", lr=0.01)
    keys = np.arange(N, dtype=np.uint64) * np.uint64((2**64 - 1) // N)

    def step(k: int) -> None:
        grad = ((np.arange(N * 2, dtype=np.float32).reshape(N, 2) * 7 + k) % 11) - 5.0
        w.push(t, keys, grad.astype(np.float32))

    if MODE == "save":
        for k in range(3):
            step(k)
        w.checkpoint(DIR)
    step(3)
    digest = hashlib.sha256(w.pull(t, keys).tobytes()).hexdigest()
    print(f"{MODE}: values after the fourth step {digest}")
