"""Int8 rows: one scale per row or one per dimension? Measures both on a bench split.

Usage: python int8_scale_choice.py WORK_DIR [WORK_DIR ...]

Each WORK_DIR holds data.npy, queries.npy and truth.npy (angular, as `cargo xtask bench-glove
--compare ...` writes under target/bench-glove/work-<dataset>). Every unit row is quantized to
i8 with (a) its own scale max|x|/127 (what copse stores), (b) a scale per dimension over all rows,
(c) a per-dimension scale at the 99.9th percentile, clipped. Prints recall@10 of an exact search
over each set of stored values against the f32 truth (the best a re-rank from them can do), and
the mean distance between a unit row and its stored value.
"""

import sys

import numpy as np


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def recall(queries, stored, truth, k=10):
    stored = unit(stored)
    hits = 0
    for i in range(0, len(queries), 250):
        s = queries[i : i + 250] @ stored.T
        found = np.argpartition(-s, k, axis=1)[:, :k]
        hits += sum(len(set(a) & set(b)) for a, b in zip(found, truth[i : i + 250, :k]))
    return hits / (len(queries) * k)


def main(work_dirs):
    for work in work_dirs:
        rows = unit(np.load(f"{work}/data.npy").astype(np.float32))
        queries = unit(np.load(f"{work}/queries.npy").astype(np.float32)[:1000])
        truth = np.load(f"{work}/truth.npy")[:1000]
        per_row = np.abs(rows).max(axis=1, keepdims=True) / 127
        per_dim = np.abs(rows).max(axis=0, keepdims=True) / 127
        clipped = np.quantile(np.abs(rows), 0.999, axis=0, keepdims=True) / 127
        choices = {
            "per row": np.round(rows / per_row) * per_row,
            "per dimension": np.round(rows / per_dim) * per_dim,
            "per dimension, clipped": np.clip(np.round(rows / clipped), -127, 127) * clipped,
        }
        print(f"{work}: {rows.shape[0]} x {rows.shape[1]}, 1000 queries")
        for name, stored in choices.items():
            error = np.linalg.norm(stored - rows, axis=1).mean()
            print(
                f"  {name:24} recall@10 {recall(queries, stored, truth):.4f}"
                f"  mean |unit row - stored| {error:.5f}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
