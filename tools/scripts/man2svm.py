#!/usr/bin/env python3
"""Builds a real sparse text set in LIBSVM format from the manual pages a system ships.

Each row is one section (`.SH` block) of an English manual page under /usr/share/man/man[1-8];
its label is +1 when the page is in section 1 (user commands) and -1 otherwise (system calls,
library functions, file formats, conventions, administration). Features are hashed word
unigrams and bigrams (CRC-32 into 2^bits buckets, index 1-based), valued log(1 + count) and
scaled to unit L2 norm per row. Deterministic: pages are read in sorted order.

    python3 tools/scripts/man2svm.py --out man.svm [--bits 20] [--max-rows 0]
"""
import argparse
import gzip
import math
import os
import re
import sys
import zlib

WORD = re.compile(rb"[a-z][a-z0-9_]{1,30}")
# troff requests and escapes that are markup, not text
ESCAPE = re.compile(rb"\\f[BIRP]|\\f\(..|\\\(..|\\[*&|^e-]|\\s[-+]?\d")


def sections(text):
    """Yields the text of each .SH block of a troff manual page."""
    block = []
    for line in text.split(b"\n"):
        if line.startswith(b".SH") or line.startswith(b".Sh"):
            if block:
                yield b" ".join(block)
            block = [line[3:]]
        elif line.startswith(b".\\\"") or line.startswith(b"'\\\""):
            continue  # comment
        else:
            if line.startswith(b"."):
                parts = line.split(None, 1)
                line = parts[1] if len(parts) > 1 else b""
            block.append(line)
    if block:
        yield b" ".join(block)


def features(text, bits):
    words = WORD.findall(ESCAPE.sub(b" ", text).lower())
    counts = {}
    mask = (1 << bits) - 1
    prev = None
    for w in words:
        for tok in (w, None if prev is None else prev + b" " + w):
            if tok is not None:
                j = (zlib.crc32(tok) & mask) + 1
                counts[j] = counts.get(j, 0) + 1
        prev = w
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", type=int, default=20)
    ap.add_argument("--max-rows", type=int, default=0, help="stop after this many rows (0: all)")
    ap.add_argument("--root", default="/usr/share/man")
    ap.add_argument("--min-words", type=int, default=5)
    a = ap.parse_args()
    rows = pos = nnz = 0
    with open(a.out, "w") as out:
        for sec in range(1, 9):
            d = os.path.join(a.root, f"man{sec}")
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                try:
                    raw = gzip.open(path).read() if name.endswith(".gz") else open(path, "rb").read()
                except (OSError, EOFError):
                    continue
                if raw.startswith(b".so "):
                    continue  # a link to another page
                label = 1 if sec == 1 else -1
                for block in sections(raw):
                    c = features(block, a.bits)
                    if sum(c.values()) < a.min_words:
                        continue
                    vals = {j: math.log1p(n) for j, n in c.items()}
                    norm = math.sqrt(sum(v * v for v in vals.values()))
                    out.write("%+d %s\n" % (label, " ".join(
                        "%d:%.6g" % (j, vals[j] / norm) for j in sorted(vals))))
                    rows += 1
                    pos += label > 0
                    nnz += len(vals)
                    if a.max_rows and rows >= a.max_rows:
                        break
                if a.max_rows and rows >= a.max_rows:
                    break
    print(f"{a.out}: {rows} rows ({pos} positive), {nnz} nonzeros, 2^{a.bits} features",
          file=sys.stderr)


if __name__ == "__main__":
    main()
