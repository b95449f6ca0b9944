#!/usr/bin/env python3
"""copse.AnnoyIndex against annoy.AnnoyIndex on GloVe 6B 50d (angular), through Python.

Command line (an interpreter with numpy, annoy 1.17.3 and copse importable):

    python crates/copse-py/bench/bench_glove.py \\
        [--data datasets/cache/glove-6b-50d/vectors.npy] \\
        [--queries 10000] [--trees 100] [--seed 42] \\
        [--search-k 1000,2000,3000,5000,7000,10000,20000] [--index-dir DIR]

`--data` is a glob matching one .npy file of shape (400000, 50), float32 (any order); the
default is where `cargo xtask bench-glove` (or `cargo xtask accuracy`) puts GloVe, run from the
repository root.
`--index-dir` keeps both built indexes there and reuses them on the next run (same seed,
same split), so a second run measures queries only.

What it does, in one process:
1. Holds out `--queries` rows chosen with `--seed`; the rest are the items (ids 0..n-1).
2. Builds `--trees` trees with copse and with annoy (n_jobs=-1, seeded), timing each.
3. Exact top-10 neighbours by cosine with numpy (the ground truth).
4. For each search_k: every query once through `get_nns_by_vector(q, 10, search_k)`, one
   Python thread, for each library in turn (after one warm-up pass); recall@10 and queries/s.
5. QPS at recall@10 = 0.95, linear between the two sweep points that bracket it, and the
   copse/annoy ratio (target: >= 3).
6. copse's `get_nns_by_vectors(..., n_threads=-1)` against its own one-thread per-query rate at
   each search_k, and both interpolated at recall@10 = 0.95 (target: >= 1.8x on 2 cores).
"""

import argparse
import glob
import os
import sys
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="datasets/cache/glove-6b-50d/vectors.npy")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--search-k", default="1000,2000,3000,5000,7000,10000,20000")
    p.add_argument("--index-dir", default=None)
    return p.parse_args()


def load_data(pattern):
    paths = sorted(glob.glob(pattern))
    if len(paths) != 1:
        sys.exit(f"--data {pattern!r} must match exactly one .npy file, matched {paths}")
    return np.ascontiguousarray(np.load(paths[0]), dtype=np.float32)


def ground_truth(items, queries, k=10, chunk=1000):
    """Exact top-k by cosine similarity (what angular ranks by)."""
    def unit(x):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1)

    items_u = unit(items)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sims = unit(queries[start : start + chunk]) @ items_u.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def build(module, name, items, trees, seed, index_dir):
    f = items.shape[1]
    index = module.AnnoyIndex(f, "angular")
    path = os.path.join(index_dir, f"glove50-{name}-{trees}-{seed}.idx") if index_dir else None
    if path and os.path.exists(path):
        index.load(path)
        return index, None
    index.set_seed(seed)
    started = time.perf_counter()
    for i, row in enumerate(items):
        index.add_item(i, row)
    added = time.perf_counter()
    index.build(trees, n_jobs=-1)
    built = time.perf_counter()
    if path:
        index.save(path)
    return index, (added - started, built - added)


def sweep(index, queries, truth, search_k, k=10):
    """(recall@k, queries per second) of one pass, one thread."""
    get = index.get_nns_by_vector
    found = [None] * len(queries)
    started = time.perf_counter()
    for i, q in enumerate(queries):
        found[i] = get(q, k, search_k)
    elapsed = time.perf_counter() - started
    hits = sum(len(set(f).intersection(t)) for f, t in zip(found, truth.tolist()))
    return hits / (k * len(queries)), len(queries) / elapsed


def at_recall(points, target=0.95):
    """QPS at `target` recall, linear between the sweep points that bracket it."""
    points = sorted(points)  # by search_k
    for (k0, r0, q0), (k1, r1, q1) in zip(points, points[1:]):
        if r0 < target <= r1:
            return q0 + (target - r0) * (q1 - q0) / (r1 - r0), f"between search_k {k0} and {k1}"
    if points and points[0][1] >= target:
        return None, f"every point is above {target} (lowest search_k {points[0][0]}: {points[0][1]:.4f})"
    return None, f"recall {target} not reached (best {max(p[1] for p in points):.4f})"


def main():
    args = parse_args()
    import annoy
    import copse

    search_ks = [int(s) for s in args.search_k.split(",")]
    print(f"copse {copse.__version__}, annoy {getattr(annoy, '__version__', '1.17.x')}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    data = load_data(args.data)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(data))
    q_ids, item_ids = perm[: args.queries], np.sort(perm[args.queries :])
    items, queries = data[item_ids], np.ascontiguousarray(data[q_ids])
    print(f"GloVe 6B {data.shape[1]}d: {len(items)} items, {len(queries)} held-out queries (seed {args.seed}), "
          f"{args.trees} trees, angular")
    if args.index_dir:
        os.makedirs(args.index_dir, exist_ok=True)

    indexes = {}
    for name, module in (("copse", copse), ("annoy", annoy)):
        index, times = build(module, name, items, args.trees, args.seed, args.index_dir)
        indexes[name] = index
        if times:
            print(f"{name}: add_item {times[0]:.1f} s, build {times[1]:.1f} s (n_jobs=-1)")
        else:
            print(f"{name}: loaded from {args.index_dir}")

    started = time.perf_counter()
    truth = ground_truth(items, queries)
    print(f"ground truth (numpy, exact cosine top-10): {time.perf_counter() - started:.1f} s")

    # Each library gets the query form it reads fastest: copse contiguous float32 rows (read
    # in place), annoy Python lists (what it converts element by element anyway).
    inputs = {"copse": list(queries), "annoy": queries.tolist()}
    for name, index in indexes.items():
        sweep(index, inputs[name][:2000], truth[:2000], search_ks[0])  # warm-up: fault pages in

    print()
    print(f"{'search_k':>8}  {'copse recall':>12} {'copse QPS':>10}  {'annoy recall':>12} {'annoy QPS':>10}  {'QPS ratio':>9}")
    results = {"copse": [], "annoy": []}
    for search_k in search_ks:
        row = {}
        for name, index in indexes.items():
            recall, qps = sweep(index, inputs[name], truth, search_k)
            results[name].append((search_k, recall, qps))
            row[name] = (recall, qps)
        print(f"{search_k:>8}  {row['copse'][0]:>12.4f} {row['copse'][1]:>10.0f}  {row['annoy'][0]:>12.4f} "
              f"{row['annoy'][1]:>10.0f}  {row['copse'][1] / row['annoy'][1]:>8.2f}x")

    print()
    at = {}
    for name in ("copse", "annoy"):
        qps, how = at_recall(results[name])
        at[name] = qps
        shown = f"{qps:.0f} QPS" if qps is not None else "n/a"
        print(f"{name}: at recall@10 = 0.95: {shown} ({how})")
    if at["copse"] and at["annoy"]:
        ratio = at["copse"] / at["annoy"]
        print(f"copse / annoy at recall@10 = 0.95: {ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'MISSED'})")

    print()
    copse_index = indexes["copse"]
    print(f"copse batch: get_nns_by_vectors(queries, 10, search_k, n_threads) vs one-thread get_nns_by_vector")
    print(f"{'search_k':>8}  {'per-query QPS':>13} {'batch 1 thr':>11} {'batch all':>10}  {'all / per-query':>15}")
    batch_all = []
    for (search_k, recall, per_query) in results["copse"]:
        rates = {}
        for n_threads in (1, -1):
            started = time.perf_counter()
            ids = copse_index.get_nns_by_vectors(queries, 10, search_k, n_threads=n_threads)
            rates[n_threads] = len(queries) / (time.perf_counter() - started)
            hits = sum(len(set(f).intersection(t)) for f, t in zip(ids.tolist(), truth.tolist()))
            assert abs(hits / ids.size - recall) < 1e-9, "batch results differ from per-query results"
        batch_all.append((search_k, recall, rates[-1]))
        speedup = rates[-1] / per_query
        print(f"{search_k:>8}  {per_query:>13.0f} {rates[1]:>11.0f} {rates[-1]:>10.0f}  {speedup:>14.2f}x")
    qps, how = at_recall(batch_all)
    if qps is not None and at["copse"]:
        ratio = qps / at["copse"]
        print(f"copse batch, all cores, at recall@10 = 0.95: {qps:.0f} QPS ({how}), {ratio:.2f}x the "
              f"one-thread per-query rate (target >= 1.8x: {'met' if ratio >= 1.8 else 'MISSED'})")


if __name__ == "__main__":
    main()
