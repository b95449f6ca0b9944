"""Runs Annoy, hnswlib, Faiss or USearch on the benchmark's split; prints one JSON object per
configuration.

Usage: compare.py LIB WORKDIR METRIC K TREES KNOBS [REPEATS [THREADS]]

WORKDIR holds data.npy (float32 rows), queries.npy and truth.npy (int32 top-100 ids per query),
written by `cargo xtask bench-glove`. KNOBS are search_k values for annoy and the search-time
beam (ef, efSearch, expansion_search) for the HNSW libraries. Builds use THREADS threads (all
cores by default); queries run on one thread, like copse's single-thread figures: one batch call
with one thread for the libraries that have one (hnswlib, Faiss, USearch), one call per query
for Annoy, which has no batch call. Each point's QPS is the best of REPEATS passes (default 3).
"""
import json
import os
import sys
import time

import numpy as np


def recall(found, truth, k):
    return len(set(found[:k]) & set(truth[:k])) / k


def best_time(fn, repeats):
    """The fastest of `repeats` runs of fn(), and fn()'s result from the first."""
    best, first = float("inf"), None
    for rep in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        if rep == 0:
            first = result
    return best, first


def recalls(results, truth, k):
    r1 = float(np.mean([recall(list(r), t, 1) for r, t in zip(results, truth)]))
    rk = float(np.mean([recall(list(r), t, min(k, 10)) for r, t in zip(results, truth)]))
    return r1, rk


def measure_each(run_query, queries, truth, k, repeats):
    """Single-thread QPS of one call per query (best of `repeats`), recall@1/@10."""
    elapsed, results = best_time(lambda: [run_query(q, k) for q in queries], repeats)
    r1, rk = recalls(results, truth, k)
    return len(queries) / elapsed, r1, rk


def measure_batch(run_batch, queries, truth, k, repeats):
    """Single-thread QPS of one batch call over every query (best of `repeats`), recall@1/@10."""
    elapsed, results = best_time(lambda: run_batch(queries, k), repeats)
    r1, rk = recalls(results, truth, k)
    return len(queries) / elapsed, r1, rk


def recall_at_100(run_batch, queries, truth):
    sample = min(len(queries), 1000)
    found = run_batch(queries[:sample], 100)
    return float(np.mean([recall(list(f), t, 100) for f, t in zip(found, truth[:sample])]))


def emit(**row):
    print(json.dumps(row), flush=True)


def sweep_batch(lib, version, trees, knobs, set_knob, run_batch, queries, truth, k, repeats,
                build, size, load):
    for knob in knobs:
        set_knob(knob)
        qps, r1, rk = measure_batch(run_batch, queries, truth, k, repeats)
        # The batch functions raise the beam to at least the number of neighbours asked for.
        r100 = recall_at_100(run_batch, queries, truth)
        emit(library=lib, version=version, trees=trees, search_k=knob, build_s=build,
             index_bytes=size, load_s=load, qps=qps, recall_1=r1, recall_10=rk,
             recall_100=r100)


def main():
    lib, workdir, metric, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    trees = [int(x) for x in sys.argv[5].split(",") if x]
    knobs = [int(x) for x in sys.argv[6].split(",") if x]
    repeats = int(sys.argv[7]) if len(sys.argv) > 7 else 3
    threads = int(sys.argv[8]) if len(sys.argv) > 8 else (os.cpu_count() or 1)
    data = np.load(os.path.join(workdir, "data.npy"))
    queries = np.ascontiguousarray(np.load(os.path.join(workdir, "queries.npy")), dtype=np.float32)
    truth = np.load(os.path.join(workdir, "truth.npy"))
    n, dims = data.shape

    if lib == "annoy":
        import annoy
        from importlib.metadata import version as dist_version

        version = dist_version("annoy")
        query_lists = [list(map(float, q)) for q in queries]
        for n_trees in trees:
            index = annoy.AnnoyIndex(dims, metric)
            for i in range(n):
                index.add_item(i, data[i])
            start = time.perf_counter()
            index.build(n_trees, n_jobs=threads)
            build = time.perf_counter() - start
            path = os.path.join(workdir, f"annoy-{n_trees}.ann")
            index.save(path)
            size = os.path.getsize(path)
            index.unload()
            start = time.perf_counter()
            index.load(path)
            load = time.perf_counter() - start
            for search_k in knobs:
                def run(q, kk, sk=search_k):
                    return index.get_nns_by_vector(q, kk, search_k=sk)

                def run_batch(qs, kk, sk=search_k):
                    return [index.get_nns_by_vector(q, kk, search_k=sk) for q in qs]
                qps, r1, rk = measure_each(run, query_lists, truth, k, repeats)
                r100 = recall_at_100(run_batch, query_lists, truth)
                emit(library="annoy", version=version, trees=n_trees, search_k=search_k,
                     build_s=build, index_bytes=size, load_s=load, qps=qps, recall_1=r1,
                     recall_10=rk, recall_100=r100)
            index.unload()
            os.remove(path)
    elif lib == "hnswlib":
        import hnswlib
        from importlib.metadata import version as dist_version

        space = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}[metric]
        index = hnswlib.Index(space=space, dim=dims)
        index.init_index(max_elements=n, ef_construction=200, M=16)
        start = time.perf_counter()
        index.add_items(data, np.arange(n), num_threads=threads)
        build = time.perf_counter() - start
        path = os.path.join(workdir, "hnswlib.bin")
        index.save_index(path)
        size = os.path.getsize(path)
        state = {"ef": 10}

        def set_ef(ef):
            state["ef"] = ef

        def run_batch(qs, kk):
            index.set_ef(max(state["ef"], kk))
            labels, _ = index.knn_query(qs, k=kk, num_threads=1)
            return labels
        sweep_batch("hnswlib", dist_version("hnswlib"), 0, knobs, set_ef, run_batch, queries,
                    truth, k, repeats, build, size, None)
        os.remove(path)
    elif lib == "faiss":
        import faiss

        # HNSW32 (M = 32, faiss's usual string), efConstruction 200 as hnswlib's (faiss's own
        # default is 40). Angular: inner product of unit vectors, which ranks as cosine does.
        if metric in ("angular", "dot"):
            faiss_metric = faiss.METRIC_INNER_PRODUCT
        elif metric == "euclidean":
            faiss_metric = faiss.METRIC_L2
        else:
            sys.exit(f"faiss: no metric {metric}")
        base = np.ascontiguousarray(data, dtype=np.float32)
        if metric == "angular":
            base = base.copy()
            faiss.normalize_L2(base)
            queries = queries.copy()
            faiss.normalize_L2(queries)
        index = faiss.IndexHNSWFlat(dims, 32, faiss_metric)
        index.hnsw.efConstruction = 200
        faiss.omp_set_num_threads(threads)
        start = time.perf_counter()
        index.add(base)
        build = time.perf_counter() - start
        path = os.path.join(workdir, "faiss.index")
        faiss.write_index(index, path)
        size = os.path.getsize(path)
        faiss.omp_set_num_threads(1)

        def set_ef(ef):
            index.hnsw.efSearch = ef

        def run_batch(qs, kk):
            if index.hnsw.efSearch < kk:
                index.hnsw.efSearch = kk
            _, labels = index.search(qs, kk)
            return labels
        sweep_batch("faiss", faiss.__version__, 0, knobs, set_ef, run_batch, queries, truth, k,
                    repeats, build, size, None)
        os.remove(path)
    elif lib == "usearch":
        import usearch
        from usearch.index import Index

        # f32 storage like every other index here (usearch would pick bf16 or f16 on its own).
        usearch_metric = {"angular": "cos", "euclidean": "l2sq", "dot": "ip"}[metric]
        index = Index(ndim=dims, metric=usearch_metric, dtype="f32", connectivity=16,
                      expansion_add=200)
        start = time.perf_counter()
        index.add(np.arange(n, dtype=np.uint64), np.ascontiguousarray(data, dtype=np.float32),
                  threads=threads)
        build = time.perf_counter() - start
        path = os.path.join(workdir, "usearch.usearch")
        index.save(path)
        size = os.path.getsize(path)
        state = {"ef": 10}

        def set_ef(ef):
            state["ef"] = ef

        def run_batch(qs, kk):
            index.expansion_search = max(state["ef"], kk)
            return index.search(qs, kk, threads=1).keys
        sweep_batch("usearch", usearch.__version__, 0, knobs, set_ef, run_batch, queries, truth,
                    k, repeats, build, size, None)
        os.remove(path)
    else:
        sys.exit(f"unknown library {lib}")


if __name__ == "__main__":
    main()
