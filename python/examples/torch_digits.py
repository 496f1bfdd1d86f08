"""Data-parallel training of a PyTorch network by asynchronous SGD through ferrops.

Every worker holds a shard of the training set and a PyTorch model (a small CNN, or the MLP of
mlp_numpy.py with --model mlp). The model's parameter tensors are views (torch.from_numpy) of
one flat numpy buffer, and the worker pulls the parameters with pull_into straight into that
buffer: no copy between the network and the model. Its gradient tensors are views of a second
flat buffer that autograd accumulates into, and that buffer is what the worker pushes
(push_async). The servers apply Adam or AdaGrad with their SIMD kernels; bounded delay τ keeps
the workers within τ clocks of each other. At the end rank 0 reports the test accuracy next to
the same model trained in one process by plain PyTorch (torch.optim.Adam or Adagrad, the same
hyper-parameters, initial weights and batches).

Data: scikit-learn's bundled handwritten digits (8×8 images, 1797 samples), loaded exactly as
mlp_numpy.py loads them (a synthetic 10-class set when scikit-learn is missing).

    cargo build --release -p ferrops && pip install ./python torch scikit-learn
    target/release/ferrops local --servers 2 --workers 2 -- python python/examples/torch_digits.py

Initialisation: a server's table starts at zero, which cannot break the symmetry between
hidden units. So the parameters are w = w0 + d, where w0 is PyTorch's default initialisation
from the same seed on every worker (and in the baseline), and the table holds d. After each
pull the worker adds w0 to the buffer in place; the gradient with respect to d is the gradient
with respect to w.
"""

import argparse
import time

import numpy as np
import torch
from torch import nn

import ferrops
from mlp_numpy import compare_with_baseline, load, push_after


def make_model(kind: str) -> nn.Module:
    if kind == "mlp":  # the network of mlp_numpy.py
        return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    return nn.Sequential(  # 1×8×8 → 16×4×4 → 32×2×2 → 10
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 10),
    )


def initial_model(args) -> nn.Module:
    torch.manual_seed(args.seed)
    return make_model(args.model)


def bind_to_buffers(model: nn.Module):
    """Makes every parameter of `model` a view of one flat float32 numpy buffer and every
    gradient a view of a second one; returns (weights, grads). Writing into `weights` (e.g.
    by pull_into) changes the parameters; backward() accumulates into `grads`."""
    params = list(model.parameters())
    size = sum(p.numel() for p in params)
    weights = np.empty(size, dtype=np.float32)
    grads = np.zeros(size, dtype=np.float32)
    at = 0
    for p in params:
        n = p.numel()
        weights[at:at + n] = p.detach().numpy().ravel()
        p.data = torch.from_numpy(weights[at:at + n]).view_as(p)
        p.grad = torch.from_numpy(grads[at:at + n]).view_as(p)
        at += n
    return weights, grads


def check_views(model: nn.Module, weights: np.ndarray, grads: np.ndarray):
    """Raises unless every parameter and gradient still lies in the flat buffers (autograd
    accumulated in place rather than replacing a gradient tensor)."""
    at = 0
    for p in model.parameters():
        if p.data_ptr() != weights.ctypes.data + 4 * at:
            raise RuntimeError("a parameter tensor no longer lies in the pulled buffer")
        if p.grad is None or p.grad.data_ptr() != grads.ctypes.data + 4 * at:
            raise RuntimeError("a gradient tensor no longer lies in the pushed buffer")
        at += p.numel()


def optimizer(args, params):
    if args.rule == "adam":
        return torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.999), eps=args.eps)
    return torch.optim.Adagrad(params, lr=args.lr, eps=args.eps)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train_in_one_process(args, x, y):
    """The same model, initial weights, batches and optimiser in one process, plain PyTorch.
    Returns the model, its samples/s and its samples per CPU-second."""
    # torch.optim's first step imports more of torch (seconds): take it on a throwaway
    # parameter, so that the rate measures training.
    scratch = nn.Parameter(torch.zeros(1))
    scratch.grad = torch.ones(1)
    optimizer(args, [scratch]).step()
    model = initial_model(args)
    opt = optimizer(args, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed + 1)
    steps = y.shape[0] // args.batch
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.epochs):
        order = torch.from_numpy(rng.permutation(y.shape[0]))
        for s in range(steps):
            batch = order[s * args.batch:(s + 1) * args.batch]
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
    samples = args.epochs * steps * args.batch
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return model, samples / seconds, samples / cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    parser.add_argument("--rule", choices=["adam", "adagrad"], default="adam",
                        help="what the servers (and the one-process baseline) apply")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--tau", type=int, default=1, help="bounded delay in clocks")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads in every worker and the baseline")
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="exit 1 when the distributed test accuracy is lower")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    (x_train, y_train), (x_test, y_test), name = load(args.seed)
    x_train, x_test = torch.from_numpy(x_train), torch.from_numpy(x_test)
    y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)

    model = initial_model(args)
    weights, grads = bind_to_buffers(model)
    w0 = weights.copy()  # the table holds weights − w0
    loss_fn = nn.CrossEntropyLoss()
    hyper = {"lr": args.lr, "eps": args.eps}

    with ferrops.Worker.from_env() as w:
        table = w.declare_table("torch", dim=1, rule=args.rule, consistency=args.tau,
                                dense_keys=weights.size, **hyper)
        keys = np.arange(weights.size, dtype=np.uint64)
        x, y = x_train[w.rank::w.num_workers], y_train[w.rank::w.num_workers]
        rng = np.random.default_rng(args.seed + 100 + w.rank)
        steps = y.shape[0] // args.batch
        w.barrier()
        start, cpu, pending = time.perf_counter(), time.process_time(), None
        for _ in range(args.epochs):
            order = torch.from_numpy(rng.permutation(y.shape[0]))
            for s in range(steps):
                batch = order[s * args.batch:(s + 1) * args.batch]
                w.pull_into(table, keys, weights)  # into the parameter tensors
                weights += w0
                grads.fill(0.0)
                loss_fn(model(x[batch]), y[batch]).backward()  # into `grads`
                pending = push_after(w, pending, table, keys, grads)
                w.clock()
        w.wait(pending)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        check_views(model, weights, grads)
        samples = args.epochs * steps * args.batch
        w.barrier()
        if w.rank == 0:
            w.pull_into(table, keys, weights)
            weights += w0
            acc = accuracy(model, x_test, y_test)
            print(f"data: {name}; {y_train.shape[0]} train, {y_test.shape[0]} test samples; "
                  f"{args.model}, {weights.size} parameters; torch {torch.__version__}, "
                  f"{torch.get_num_threads()} thread(s)")
            rate = samples / seconds
            workers = f"{w.num_workers} worker" + ("s" if w.num_workers > 1 else "")
            print(f"ferrops, {workers} (τ={args.tau}, server-side {args.rule}): "
                  f"test accuracy {acc:.4f}; worker 0 trained {rate:.0f} samples/s "
                  f"({samples / cpu:.0f} per CPU-second of its process), the job about {w.num_workers * rate:.0f}")
            print("parameters and gradients stayed views of the pulled and pushed buffers")
            baseline, base_rate, base_cpu_rate = train_in_one_process(args, x_train, y_train)
            base_acc = accuracy(baseline, x_test, y_test)
            optimizer = "torch.optim." + ("Adam" if args.rule == "adam" else "Adagrad")
            compare_with_baseline(optimizer, base_acc, base_rate, base_cpu_rate, acc,
                                  args.min_accuracy)


if __name__ == "__main__":
    main()
