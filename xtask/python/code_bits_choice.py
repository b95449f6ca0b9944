"""Scoring codes of fewer bits: do the true nearest survive the approximate pass?

Usage: python code_bits_choice.py WORK_DIR [WORK_DIR ...]

Each WORK_DIR holds data.npy and queries.npy (angular, as `cargo xtask bench-glove --compare ...`
writes under target/bench-glove/work-<dataset>). For each query, the candidates are its
C = 1280 nearest rows by exact cosine (the hardest candidate set a search can hand the
approximate pass: all of them close). Every unit row is quantized to b-bit codes with one scale
per row, max|x| / (2^(b-1) - 1) (what copse's 8-bit item codes do), the query to 8 bits, and the
candidates are ranked by the code dot products. Prints, for each b, the share of the true 10
nearest within the approximate top s, for s = 10, 15, 20 and 40 (40 = the shortlist copse
re-ranks for k = 10: 2k + 20). Single-threaded, a few hundred queries: a minute or two.
"""

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

CANDIDATES = 1280
SHORTLISTS = (10, 15, 20, 40)


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def quantize(v, bits):
    levels = 2 ** (bits - 1) - 1
    scale = np.abs(v).max(axis=1, keepdims=True) / levels
    scale[scale == 0] = 1
    return np.clip(np.round(v / scale), -levels, levels) * scale


def quantize_least_squares(v, bits):
    """Per-row scale max|x| / levels x f, f = 1, 0.95, ..., 0.5, the one with the least squared
    error (copse's 4-bit item codes)."""
    levels = 2 ** (bits - 1) - 1
    top = np.abs(v).max(axis=1, keepdims=True) / levels
    top[top == 0] = 1
    best, best_err = None, None
    for step in range(11):
        scale = top * (1.0 - 0.05 * step)
        q = np.clip(np.round(v / scale), -levels, levels) * scale
        err = ((q - v) ** 2).sum(axis=1, keepdims=True)
        if best is None:
            best, best_err = q, err
        else:
            better = err < best_err
            best = np.where(better, q, best)
            best_err = np.where(better, err, best_err)
    return best


def main(work_dirs, n_queries=300):
    for work in work_dirs:
        rows = unit(np.load(f"{work}/data.npy").astype(np.float32))
        queries = unit(np.load(f"{work}/queries.npy").astype(np.float32)[:n_queries])
        coded_queries = quantize(queries, 8)
        codes = {f"{bits}-bit": quantize(rows, bits) for bits in (8, 6, 5, 4)}
        codes["4-bit least-squares scale"] = quantize_least_squares(rows, 4)
        kept = {bits: {s: 0 for s in SHORTLISTS} for bits in codes}
        for q, cq in zip(queries, coded_queries):
            sims = rows @ q
            cand = np.argpartition(-sims, CANDIDATES)[:CANDIDATES]
            top = set(cand[np.argsort(-sims[cand])[:10]])
            for bits, coded in codes.items():
                order = cand[np.argsort(-(coded[cand] @ cq))]
                for s in SHORTLISTS:
                    kept[bits][s] += len(top & set(order[:s]))
        print(f"{work}: {len(queries)} queries, {CANDIDATES} nearest as candidates")
        for bits in codes:
            shares = ", ".join(
                f"top {s}: {kept[bits][s] / (10 * len(queries)):.4f}" for s in SHORTLISTS
            )
            error = float(((codes[bits] - rows) ** 2).sum(axis=1).mean())
            print(f"  {bits} codes: true 10 nearest within {shares}; mean squared error {error:.5f}")


if __name__ == "__main__":
    main(sys.argv[1:])
