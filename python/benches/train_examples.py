"""The training examples in one sitting: runs each example under `ferrops local --servers 2
--workers W` for W = 1 and 2, interleaved, `--rounds` times. Every run prints the distributed
result and the one-process baseline it trained right after (same run, same machine state);
this prints, per example and W, the range of the test accuracies, of the job's samples/s and
of the baseline's, of the ratio job / baseline of each run, and of the ratio of samples per
CPU-second of worker 0's process (not counting the servers) to the baseline's. On a machine
other processes load, a process that often waits on the network is scheduled ahead of a
CPU-bound one, which favours the workers' wall-clock rates; the CPU-second rates are immune.

    python python/benches/train_examples.py --ferrops target/release/ferrops
    python python/benches/train_examples.py --ferrops target/release/ferrops --examples numpy

Examples: `numpy` (mlp_numpy.py), `torch-cnn` and `torch-mlp` (torch_digits.py); the torch
ones need torch importable by this interpreter, which also runs the workers.
"""

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COMMANDS = {
    "numpy": [str(EXAMPLES / "mlp_numpy.py")],
    "torch-cnn": [str(EXAMPLES / "torch_digits.py"), "--model", "cnn"],
    "torch-mlp": [str(EXAMPLES / "torch_digits.py"), "--model", "mlp"],
}
JOB = re.compile(r"test accuracy ([0-9.]+); worker 0 trained [0-9]+ samples/s "
                 r"\(([0-9]+) per CPU-second of its process\), the job about ([0-9]+)")
BASE = re.compile(r"one process, [^:]+: test accuracy ([0-9.]+) at ([0-9]+) samples/s "
                  r"\(([0-9]+) per CPU-second\)")


def run(ferrops: str, servers: int, workers: int, example: list, extra: list) -> dict:
    cmd = [ferrops, "local", "--servers", str(servers), "--workers", str(workers), "--",
           sys.executable, *example, *extra]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)
    job, base = JOB.search(done.stdout), BASE.search(done.stdout)
    if done.returncode != 0 or not job or not base:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}")
    return {"acc": float(job[1]), "rate": float(job[3]), "cpu_rate": float(job[2]),
            "base_acc": float(base[1]), "base_rate": float(base[2]),
            "base_cpu_rate": float(base[3])}


def span(values: list, fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else \
        f"{format(lo, fmt)}–{format(hi, fmt)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferrops", required=True, help="the ferrops binary (a release build)")
    p.add_argument("--examples", nargs="+", choices=sorted(COMMANDS),
                   default=["numpy", "torch-cnn"])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    a = p.parse_args()
    extra = ["--epochs", str(a.epochs)]
    got = {(e, w): [] for e in a.examples for w in a.workers}
    for r in range(a.rounds):
        for key in got:
            got[key].append(run(a.ferrops, a.servers, key[1], COMMANDS[key[0]], extra))
            print(f"round {r + 1}, {key[0]}, {key[1]} worker(s): {got[key][-1]}",
                  file=sys.stderr)
    print(f"{a.rounds} interleaved rounds, {a.epochs} epochs, {a.servers} servers "
          "(ranges over the rounds; the baseline is one process, trained in the same run)")
    print("| example | workers | test accuracy | baseline accuracy | job samples/s "
          "| baseline samples/s | job / baseline | worker 0 per CPU-s / baseline per CPU-s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (example, workers), runs in got.items():
        ratios = [x["rate"] / x["base_rate"] for x in runs]
        cpu = [x["cpu_rate"] / x["base_cpu_rate"] for x in runs]
        print(f"| {example} | {workers} | {span([x['acc'] for x in runs], '.3f')} "
              f"| {span([x['base_acc'] for x in runs], '.3f')} "
              f"| {span([x['rate'] for x in runs], '.0f')} "
              f"| {span([x['base_rate'] for x in runs], '.0f')} "
              f"| {span(ratios, '.2f')} (median {statistics.median(ratios):.2f}) "
              f"| {span(cpu, '.2f')} (median {statistics.median(cpu):.2f}) |")


if __name__ == "__main__":
    main()
