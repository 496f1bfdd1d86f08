"""Python against Rust in one sitting: alternately runs `ferrops bench push-pull` (the Rust
worker) and `push_pull.py` (the same loop through the Python binding), each as the one worker
of its own `ferrops local --servers 1 --workers 1` job, `--rounds` times, and prints the range
of each side's p50 and the ratio of the medians.

    python python/benches/compare.py --ferrops target/release/ferrops --keys 1 --iters 3000
    python python/benches/compare.py --ferrops target/release/ferrops --keys 10000000 --iters 10
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def last_json(text: str) -> dict:
    """The last JSON object printed (`ferrops local` may prefix lines with `[worker 0] `)."""
    for line in reversed(text.splitlines()):
        at = line.find("{")
        if at >= 0 and line.rstrip().endswith("}"):
            return json.loads(line[at:])
    raise SystemExit(f"no JSON line in:\n{text}")


def run(cmd: list) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferrops", required=True, help="the ferrops binary (a release build)")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    local = [a.ferrops, "local", "--servers", "1", "--workers", "1", "--"]
    sizes = ["--keys", str(a.keys), "--iters", str(a.iters), "--warmup", str(a.warmup)]
    rust_cmd = local + [a.ferrops, "bench", "push-pull", "--json"] + sizes
    python_cmd = local + [sys.executable, str(HERE / "push_pull.py")] + sizes
    got = {"rust": {"push": [], "pull": []}, "python": {"push": [], "pull": []}}
    for _ in range(a.rounds):
        r = last_json(run(rust_cmd))
        got["rust"]["push"].append(r["push"]["p50_us"])
        got["rust"]["pull"].append(r["pull"]["p50_us"])
        py = last_json(run(python_cmd))
        got["python"]["push"].append(py["push_p50_us"])
        got["python"]["pull"].append(py["pull_p50_us"])
    print(f"{a.keys} keys, {a.iters} iterations, {a.rounds} interleaved rounds (p50, µs):")
    for op in ("push", "pull"):
        rs, ps = got["rust"][op], got["python"][op]
        ratio = statistics.median(ps) / statistics.median(rs)
        print(f"  {op}: rust {min(rs):.1f}–{max(rs):.1f}, python {min(ps):.1f}–{max(ps):.1f}, "
              f"python/rust {ratio:.2f}× (medians)")
    print(json.dumps(got))


if __name__ == "__main__":
    main()
