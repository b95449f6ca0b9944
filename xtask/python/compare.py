"""Runs Annoy or hnswlib on the benchmark's split and prints one JSON object per configuration.

Usage: compare.py LIB WORKDIR METRIC K TREES SEARCH_KS

WORKDIR holds data.npy (float32 rows), queries.npy and truth.npy (int32 top-100 ids per query),
written by `cargo xtask bench-glove`. Queries run one at a time on one thread, like copse's
single-thread figures.
"""
import json
import os
import sys
import time

import numpy as np


def recall(found, truth, k):
    return len(set(found[:k]) & set(truth[:k])) / k


def measure(run_query, queries, truth, k):
    """Single-thread QPS over all queries, recall@1/@10 from the same results."""
    results = []
    start = time.perf_counter()
    for q in queries:
        results.append(run_query(q, k))
    elapsed = time.perf_counter() - start
    r1 = float(np.mean([recall(r, t, 1) for r, t in zip(results, truth)]))
    rk = float(np.mean([recall(r, t, min(k, 10)) for r, t in zip(results, truth)]))
    return len(queries) / elapsed, r1, rk


def recall_at_100(run_query, queries, truth):
    sample = min(len(queries), 1000)
    return float(np.mean([recall(run_query(q, 100), t, 100) for q, t in zip(queries[:sample], truth[:sample])]))


def main():
    lib, workdir, metric, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    trees = [int(x) for x in sys.argv[5].split(",") if x]
    search_ks = [int(x) for x in sys.argv[6].split(",") if x]
    data = np.load(os.path.join(workdir, "data.npy"))
    queries = np.load(os.path.join(workdir, "queries.npy"))
    truth = np.load(os.path.join(workdir, "truth.npy"))
    query_lists = [list(map(float, q)) for q in queries]
    n, dims = data.shape

    if lib == "annoy":
        import annoy

        for n_trees in trees:
            index = annoy.AnnoyIndex(dims, metric)
            for i in range(n):
                index.add_item(i, data[i])
            start = time.perf_counter()
            index.build(n_trees, n_jobs=-1)
            build = time.perf_counter() - start
            path = os.path.join(workdir, f"annoy-{n_trees}.ann")
            index.save(path)
            size = os.path.getsize(path)
            index.unload()
            start = time.perf_counter()
            index.load(path)
            load = time.perf_counter() - start
            for search_k in search_ks:
                def run(q, kk, sk=search_k):
                    return index.get_nns_by_vector(q, kk, search_k=sk)
                qps, r1, rk = measure(run, query_lists, truth, k)
                r100 = recall_at_100(run, query_lists, truth)
                print(json.dumps({
                    "library": "annoy", "trees": n_trees, "search_k": search_k,
                    "build_s": build, "index_bytes": size, "load_s": load,
                    "qps": qps, "recall_1": r1, "recall_10": rk, "recall_100": r100,
                }), flush=True)
            index.unload()
            os.remove(path)
    elif lib == "hnswlib":
        import hnswlib

        space = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}[metric]
        index = hnswlib.Index(space=space, dim=dims)
        index.init_index(max_elements=n, ef_construction=200, M=16)
        start = time.perf_counter()
        index.add_items(data, np.arange(n), num_threads=-1)
        build = time.perf_counter() - start
        path = os.path.join(workdir, "hnswlib.bin")
        index.save_index(path)
        size = os.path.getsize(path)
        index.set_num_threads(1)
        for ef in search_ks:
            index.set_ef(max(ef, 100))

            def run(q, kk, ef=ef):
                index.set_ef(max(ef, kk))
                labels, _ = index.knn_query(np.asarray(q, dtype=np.float32), k=kk)
                return list(labels[0])
            qps, r1, rk = measure(run, query_lists, truth, k)
            r100 = recall_at_100(run, query_lists, truth)
            print(json.dumps({
                "library": "hnswlib", "trees": 0, "search_k": ef,
                "build_s": build, "index_bytes": size, "load_s": None,
                "qps": qps, "recall_1": r1, "recall_10": rk, "recall_100": r100,
            }), flush=True)
        os.remove(path)
    else:
        sys.exit(f"unknown library {lib}")


if __name__ == "__main__":
    main()
