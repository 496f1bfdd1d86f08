"""Data-parallel training of a small neural network by asynchronous SGD through ferrops.

Every worker holds a shard of the training set and a numpy MLP (64 → 32 tanh → 10 softmax);
each step it pulls the parameters, computes the gradient of its mini-batch and pushes it
asynchronously; the servers apply Adam with their SIMD kernels. Bounded delay τ keeps the
workers within τ clocks of each other. At the end rank 0 reports the test accuracy next to the
same model trained by the same Adam in one process.

Data: scikit-learn's bundled handwritten digits (8×8 images, 1797 samples) when scikit-learn
is installed, else a synthetic 10-class problem of the same shape.

    cargo build --release -p ferrops && pip install ./python scikit-learn
    target/release/ferrops local --servers 2 --workers 2 -- python python/examples/mlp_numpy.py

Initialisation: a server's table starts at zero, and an all-zero MLP cannot break the symmetry
between its hidden units. So the parameters are w = w0 + d, where w0 is a random draw every
worker (and the one-process baseline) makes from the same seed, and the table holds d. The
gradient with respect to d is the gradient with respect to w.
"""

import argparse
import time

import numpy as np

import ferrops

HIDDEN = 32
CLASSES = 10


def load(seed: int):
    """Train and test sets (features scaled to [0, 1]) and the data's name."""
    try:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y, name = digits.data / 16.0, digits.target, "scikit-learn digits"
    except ImportError:
        rng = np.random.default_rng(1234)
        centres = rng.uniform(0, 1, (CLASSES, 64))
        y = rng.integers(0, CLASSES, 1797)
        x = np.clip(centres[y] + rng.normal(0, 0.25, (y.size, 64)), 0, 1)
        name = "synthetic 10-class data (scikit-learn is not installed)"
    order = np.random.default_rng(seed).permutation(y.size)
    x, y = x[order].astype(np.float32), y[order]
    cut = int(0.8 * y.size)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:]), name


class Mlp:
    """64 → HIDDEN tanh → CLASSES softmax, its parameters one flat float32 vector."""

    def __init__(self, inputs: int):
        self.shapes = [(inputs, HIDDEN), (HIDDEN,), (HIDDEN, CLASSES), (CLASSES,)]
        self.size = sum(int(np.prod(s)) for s in self.shapes)

    def initial(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        parts = []
        for shape in self.shapes:
            scale = 1.0 / np.sqrt(shape[0]) if len(shape) == 2 else 0.0
            parts.append(rng.normal(0, scale, shape).ravel() if scale else np.zeros(shape))
        return np.concatenate(parts).astype(np.float32)

    def unpack(self, flat: np.ndarray):
        out, at = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(flat[at:at + n].reshape(shape))
            at += n
        return out

    def gradient(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The mean cross-entropy gradient over (x, y), as a flat float32 vector."""
        w1, b1, w2, b2 = self.unpack(flat)
        h = np.tanh(x @ w1 + b1)
        logits = h @ w2 + b2
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(y.size), y] -= 1.0
        p /= y.size
        dh = (p @ w2.T) * (1.0 - h * h)
        grads = [x.T @ dh, dh.sum(axis=0), h.T @ p, p.sum(axis=0)]
        return np.concatenate([g.ravel() for g in grads]).astype(np.float32)

    def accuracy(self, flat: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        w1, b1, w2, b2 = self.unpack(flat)
        return float(((np.tanh(x @ w1 + b1) @ w2 + b2).argmax(axis=1) == y).mean())


def adam_in_one_process(model, w0, x, y, args) -> np.ndarray:
    """The same model, batches and Adam (as the server applies it), in one process."""
    d = np.zeros_like(w0)
    m, v, step = np.zeros_like(d), np.zeros_like(d), 0
    rng = np.random.default_rng(args.seed + 1)
    for _ in range(args.epochs):
        order = rng.permutation(y.size)
        for at in range(0, y.size - args.batch + 1, args.batch):
            batch = order[at:at + args.batch]
            g = model.gradient(w0 + d, x[batch], y[batch])
            step += 1
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            lr_t = args.lr * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            d -= (lr_t * m / (np.sqrt(v) + 1e-8)).astype(np.float32)
    return w0 + d


def push_after(w, pending, table, keys, values):
    """Waits for the push still in flight (`pending`, a ticket or None), then sends this step's
    push asynchronously and returns its ticket: one push in flight at a time, overlapping the
    next step's pull and gradient."""
    if pending is not None:
        w.wait(pending)
    return w.push_async(table, keys, values)


def compare_with_baseline(what, base_acc, rate, cpu_rate, acc, min_accuracy):
    """Prints the one-process baseline's test accuracy and speed, and ends the run with an
    error when the job's own test accuracy `acc` is below `min_accuracy`."""
    print(f"one process, {what}: test accuracy {base_acc:.4f} at {rate:.0f} samples/s "
          f"({cpu_rate:.0f} per CPU-second)")
    if acc < min_accuracy:
        raise SystemExit(f"test accuracy {acc:.4f} < {min_accuracy}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--tau", type=int, default=1, help="bounded delay in clocks")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="exit 1 when the distributed test accuracy is lower")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test), name = load(args.seed)
    model = Mlp(x_train.shape[1])
    w0 = model.initial(args.seed)

    with ferrops.Worker.from_env() as w:
        table = w.declare_table("mlp", dim=1, rule="adam", lr=args.lr, consistency=args.tau,
                                dense_keys=model.size)
        keys = np.arange(model.size, dtype=np.uint64)
        d = np.zeros(model.size, dtype=np.float32)
        x, y = x_train[w.rank::w.num_workers], y_train[w.rank::w.num_workers]
        rng = np.random.default_rng(args.seed + 100 + w.rank)
        steps = y.size // args.batch
        w.barrier()
        start, cpu, pending = time.perf_counter(), time.process_time(), None
        for _ in range(args.epochs):
            order = rng.permutation(y.size)
            for s in range(steps):
                batch = order[s * args.batch:(s + 1) * args.batch]
                w.pull_into(table, keys, d)  # straight into d: no copy
                g = model.gradient(w0 + d, x[batch], y[batch])
                pending = push_after(w, pending, table, keys, g)
                w.clock()
        w.wait(pending)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        samples = args.epochs * steps * args.batch
        w.barrier()
        if w.rank == 0:
            w.pull_into(table, keys, d)
            acc = model.accuracy(w0 + d, x_test, y_test)
            print(f"data: {name}; {y_train.size} train, {y_test.size} test samples; "
                  f"{model.size} parameters")
            rate = samples / seconds
            workers = f"{w.num_workers} worker" + ("s" if w.num_workers > 1 else "")
            print(f"ferrops, {workers} (τ={args.tau}, server-side Adam): "
                  f"test accuracy {acc:.4f}; worker 0 trained {rate:.0f} samples/s "
                  f"({samples / cpu:.0f} per CPU-second of its process), "
                  f"the job about {w.num_workers * rate:.0f}")
            start, cpu = time.perf_counter(), time.process_time()
            baseline = adam_in_one_process(model, w0, x_train, y_train, args)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            base_acc = model.accuracy(baseline, x_test, y_test)
            base_samples = args.epochs * (y_train.size // args.batch) * args.batch
            compare_with_baseline("same model and Adam", base_acc, base_samples / seconds,
                                  base_samples / cpu, acc, args.min_accuracy)


if __name__ == "__main__":
    main()
