#!/usr/bin/env python3
"""The L1-LR objective  sum_i log(1 + exp(-y_i w.x_i)) + lam * ||w||_1  of a liblinear model
file (trained with -B -1) on a LIBSVM data file, so liblinear's solution can be compared with
ferrops' traces on the same scale.

    python3 tools/scripts/svm_objective.py --model m.model --data d.svm --lam 1
"""
import argparse
import math


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--lam", type=float, required=True)
    a = ap.parse_args()
    w, sign = [], 1.0
    with open(a.model) as f:
        for line in f:
            if line.startswith("label"):
                # liblinear's weights are for its first label; ours are for +1.
                sign = 1.0 if line.split()[1] in ("1", "+1") else -1.0
            if line.strip() == "w":
                break
        w = [sign * float(x) for x in f]
    loss = 0.0
    with open(a.data) as f:
        for line in f:
            tok = line.split()
            if not tok:
                continue
            y = 1.0 if float(tok[0]) > 0 else -1.0
            m = 0.0
            for t in tok[1:]:
                j, v = t.split(":")
                j = int(j)
                if j <= len(w):
                    m += w[j - 1] * float(v)
            z = -y * m
            loss += z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))
    l1 = sum(abs(x) for x in w)
    print(f"objective {loss + a.lam * l1:.6f} loss {loss:.6f} l1 {l1:.6f} nnz {sum(x != 0 for x in w)}")


if __name__ == "__main__":
    main()
