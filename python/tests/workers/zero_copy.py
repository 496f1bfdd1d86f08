"""Arrays are read and written in place. pull_into writes into the caller's memory (a view into
a larger buffer sees the values, its data pointer never changes) and the transport's byte
counters show the pulled values went from the sockets straight into it: the only value bytes
copied are those a reply's first read brought into the 64 KiB staging buffer with its header."""

import numpy as np

import ferrops

STAGING = 64 * 1024
N = 250_000
DIM = 4

with ferrops.Worker.from_env() as w:
    t = w.declare_table("zero_copy", dim=DIM, rule="assign", consistency="sequential")
    # Spread over the whole u64 range, so both servers answer.
    keys = np.arange(1, N + 1, dtype=np.uint64) * np.uint64((2**64 - 1) // (N + 1))
    values = np.random.default_rng(1).standard_normal((N, DIM)).astype(np.float32)

    before = w.metrics()
    w.push(t, keys, values)
    after = w.metrics()
    sent = after["value_bytes_sent"] - before["value_bytes_sent"]
    assert sent == values.nbytes, (sent, values.nbytes)
    print(f"push: {sent} value bytes sent from the array, "
          f"{after['value_bytes_copied'] - before['value_bytes_copied']} queued by the socket")
    w.clock()

    # A view into a larger buffer, reshaped: only writing in place can reach `big`.
    big = np.full(N * DIM + 16, -7.0, dtype=np.float32)
    out = big[8:8 + N * DIM].reshape(N, DIM)
    pointer = out.__array_interface__["data"][0]
    before = w.metrics()
    w.pull_into(t, keys, out)
    after = w.metrics()
    assert out.__array_interface__["data"][0] == pointer
    np.testing.assert_array_equal(big[8:8 + N * DIM].reshape(N, DIM), values)
    assert (big[:8] == -7.0).all() and (big[-8:] == -7.0).all(), "wrote outside out"
    received = after["value_bytes_received"] - before["value_bytes_received"]
    copied = after["value_bytes_copied"] - before["value_bytes_copied"]
    frames = after["frames_received"] - before["frames_received"]
    assert received == values.nbytes, (received, values.nbytes)
    assert frames >= 2, frames
    assert copied <= STAGING * frames, (copied, frames)
    assert copied * 20 < values.nbytes, (copied, values.nbytes)
    print(f"pull_into: {received} value bytes in place; {copied} bytes staged in "
          f"{frames} frames ({100 * copied / received:.2f}%)")

    # pull() reads into the array it returns the same way
    before = w.metrics()
    got = w.pull(t, keys)
    after = w.metrics()
    np.testing.assert_array_equal(got, values)
    copied = after["value_bytes_copied"] - before["value_bytes_copied"]
    frames = after["frames_received"] - before["frames_received"]
    assert copied <= STAGING * frames, (copied, frames)
    print(f"pull: {copied} bytes staged in {frames} frames")
