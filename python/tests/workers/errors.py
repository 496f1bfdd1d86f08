"""Every wrong argument raises a ferrops.Error subclass with a clear message, sends nothing,
and leaves the worker usable."""

import numpy as np

import ferrops


def raises(exc_type, needle, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        assert needle in str(e), f"{exc_type.__name__} message {str(e)!r} lacks {needle!r}"
        print(f"ok {exc_type.__name__}: {e}")
        return
    raise AssertionError(f"{fn.__name__}{args} did not raise {exc_type.__name__}")


assert issubclass(ferrops.ArgumentError, ferrops.Error)
assert issubclass(ferrops.KeysError, ferrops.ArgumentError)
for cls in (ferrops.ConfigError, ferrops.ClusterError, ferrops.ClosedError):
    assert issubclass(cls, ferrops.Error)
assert issubclass(ferrops.Error, Exception)

w = ferrops.Worker.from_env()
t = w.declare_table("errors", dim=2)
keys = np.array([1, 5, 9], dtype=np.uint64)
values = np.ones((3, 2), dtype=np.float32)

# dtypes
raises(ferrops.ArgumentError, "keys must have dtype uint64, got int64", w.push, t,
       keys.astype(np.int64), values)
raises(ferrops.ArgumentError, "values must have dtype float32, got float64", w.push, t, keys,
       values.astype(np.float64))
raises(ferrops.ArgumentError, "out must have dtype float32, got float64", w.pull_into, t, keys,
       np.zeros((3, 2)))
raises(ferrops.ArgumentError, "keys must be a numpy.ndarray of uint64, got list", w.pull, t,
       [1, 5, 9])
raises(ferrops.ArgumentError, "must have dtype float32, got >f4",
       w.push, t, keys, values.astype(">f4"))
# memory order
raises(ferrops.ArgumentError, "values must be C-contiguous (row-major, no gaps), got shape (3, 2) with strides (4, 12)", w.push, t, keys,
       np.asfortranarray(np.ones((3, 2), dtype=np.float32)))
raises(ferrops.ArgumentError, "keys must be C-contiguous", w.push, t,
       np.arange(0, 12, 2, dtype=np.uint64)[::2], values)
raises(ferrops.ArgumentError, "out must be C-contiguous", w.pull_into, t, keys,
       np.zeros((2, 3), dtype=np.float32).T)
# shapes and sizes
raises(ferrops.ArgumentError, "keys must be 1-D, got shape (3, 1)", w.pull, t,
       keys.reshape(3, 1))
raises(ferrops.ArgumentError, "values has 4 floats (shape (4,)) but 3 keys × 2 floats per key",
       w.push, t, keys, np.ones(4, dtype=np.float32))
raises(ferrops.ArgumentError, "out has 7 floats", w.pull_into, t, keys,
       np.zeros(7, dtype=np.float32))
readonly = np.zeros((3, 2), dtype=np.float32)
readonly.flags.writeable = False
raises(ferrops.ArgumentError, "out cannot be written", w.pull_into, t, keys, readonly)
# key order
raises(ferrops.KeysError, "keys must be sorted and unique: key[2] = 3 follows 5", w.push, t,
       np.array([1, 5, 3], dtype=np.uint64), values)
raises(ferrops.KeysError, "sorted and unique", w.pull, t, np.array([1, 5, 5], dtype=np.uint64))
raises(ferrops.KeysError, "sorted and unique", w.push_async, t,
       np.array([9, 5, 1], dtype=np.uint64), values)
# declarations
raises(ferrops.ArgumentError, "unknown rule `adamw`", w.declare_table, "x", 1, rule="adamw")
raises(ferrops.ArgumentError, "rule `sgd` has no hyper-parameter `momentum`", w.declare_table,
       "x", 1, rule="sgd", momentum=0.9)
raises(ferrops.ArgumentError, "consistency must be", w.declare_table, "x", 1,
       consistency="strong")
raises(ferrops.ArgumentError, "got -1", w.declare_table, "x", 1, consistency=-1)
raises(ferrops.ArgumentError, "dim must be a positive int", w.declare_table, "x", 0)
raises(ferrops.ArgumentError, "unknown value codec", w.declare_table, "x", 1, codec="fp8")
raises(TypeError, "", w.push, "not a table", keys, values)

# still usable, and nothing of the refused pushes arrived
w.push(t, keys, values)
np.testing.assert_array_equal(w.pull(t, keys), values)

# tickets are waited on once
tk = w.push_async(t, keys, values)
assert w.wait(tk) is None and tk.waited
raises(ferrops.ArgumentError, "already waited on", w.wait, tk)

w.finish()
w.finish()  # a second finish does nothing
raises(ferrops.ClosedError, "has finished", w.pull, t, keys)
assert w.finished
print("errors: all raised as expected")
