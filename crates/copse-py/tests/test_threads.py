"""The batch API and threads: get_nns_by_vectors equals per-query results, queries from many
Python threads at once, and unload/load while other threads query."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import METRICS, make_data

N, F = 1500, 16


@pytest.fixture(scope="module", params=METRICS)
def built(request):
    metric = request.param
    f = 64 if metric == "hamming" else F
    data = make_data(metric, N, f, seed=11)
    index = AnnoyIndex(f, metric)
    index.add_items(None, data)
    index.build(10)
    queries = make_data(metric, 200, f, seed=12)
    return metric, index, queries


@pytest.mark.parametrize("n_threads", [1, 2, 3, -1])
def test_batch_equals_per_query(built, n_threads):
    metric, index, queries = built
    ids, dists = index.get_nns_by_vectors(queries, 10, search_k=300, include_distances=True, n_threads=n_threads)
    assert ids.shape == (200, 10) and ids.dtype == np.int64
    assert dists.shape == (200, 10) and dists.dtype == np.float32
    for row, q in enumerate(queries):
        one_ids, one_dists = index.get_nns_by_vector(q, 10, search_k=300, include_distances=True)
        assert ids[row].tolist() == one_ids
        np.testing.assert_array_equal(dists[row], np.array(one_dists, dtype=np.float32))
    only_ids = index.get_nns_by_vectors(queries, 10, search_k=300, n_threads=n_threads)
    np.testing.assert_array_equal(only_ids, ids)


def test_batch_accepts_any_numeric_matrix(built):
    metric, index, queries = built
    expected = index.get_nns_by_vectors(queries, 5)
    for variant in (
        queries.astype(np.float64),
        np.asfortranarray(queries),
        queries.tolist(),
        np.ascontiguousarray(np.repeat(queries, 2, axis=0)[::2]),
    ):
        np.testing.assert_array_equal(index.get_nns_by_vectors(variant, 5), expected)


def test_batch_pads_short_rows_with_minus_one_and_nan():
    index = AnnoyIndex(3, "euclidean")
    index.add_items([0, 1, 4], np.eye(3, dtype=np.float32))  # ids 2 and 3 are holes
    index.build(2)
    # Never wider than the item count (5), however large n is.
    for n in (5, 6, 2**31, 2**62):
        ids, dists = index.get_nns_by_vectors(np.eye(3, dtype=np.float32), n, include_distances=True)
        assert ids.shape == dists.shape == (3, 5)
        np.testing.assert_array_equal(np.sort(ids[:, :3], axis=1), [[0, 1, 4]] * 3)
        np.testing.assert_array_equal(ids[:, 3:], -1)
        assert np.isnan(dists[:, 3:]).all() and not np.isnan(dists[:, :3]).any()
        assert ids[:, :3].tolist() == [index.get_nns_by_vector(q, n) for q in np.eye(3)]


def test_batch_edge_cases_and_errors(built):
    metric, index, queries = built
    f = queries.shape[1]
    assert index.get_nns_by_vectors(queries, 0).shape == (200, 0)
    assert index.get_nns_by_vectors(np.zeros((0, f), np.float32), 3).shape == (0, 3)
    bad = queries.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"vectors\[7\]"):
        index.get_nns_by_vectors(bad, 3)
    with pytest.raises(IndexError, match=f"expected {f}"):
        index.get_nns_by_vectors(queries[:, :-1], 3)
    with pytest.raises(ValueError, match="2-dimensional"):
        index.get_nns_by_vectors(queries[0], 3)
    for n_threads in (0, -2, 100_000):
        with pytest.raises(ValueError, match="n_threads"):
            index.get_nns_by_vectors(queries, 3, n_threads=n_threads)
    with pytest.raises(ValueError, match="search_k"):
        index.get_nns_by_vectors(queries, 3, search_k=-5)


def test_concurrent_queries_from_a_thread_pool(built):
    metric, index, queries = built
    expected = [index.get_nns_by_vector(q, 10, include_distances=True) for q in queries]
    items = [index.get_nns_by_item(i, 10) for i in range(200)]

    def work(row):
        return (
            index.get_nns_by_vector(queries[row], 10, include_distances=True),
            index.get_nns_by_item(row, 10),
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            results = list(pool.map(work, range(200)))
            assert [r[0] for r in results] == expected
            assert [r[1] for r in results] == items


def test_unload_and_load_while_other_threads_query(tmp_path):
    """Queries hold their own reference to the index: swapping it underneath them is safe,
    and every query answers from either the old or the new index."""
    data = make_data("euclidean", 800, 8, seed=3)
    index = AnnoyIndex(8, "euclidean")
    index.add_items(None, data)
    index.build(5)
    path = tmp_path / "a.copse"
    index.save(path)
    answer = index.get_nns_by_item(5, 5)
    stop = threading.Event()
    errors = []

    def query():
        while not stop.is_set():
            try:
                got = index.get_nns_by_item(5, 5)
                if got != answer:
                    errors.append(f"wrong answer {got}")
            except IndexError:
                pass  # between unload() and load(): no items
            except Exception as e:  # anything else is a bug
                errors.append(repr(e))

    threads = [threading.Thread(target=query) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            index.unload()
            index.load(path)
            index.get_nns_by_vectors(data[:50], 5, n_threads=2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def test_build_releases_the_gil_and_rejects_concurrent_mutation():
    data = make_data("angular", 20_000, 32, seed=9)
    index = AnnoyIndex(32, "angular")
    index.add_items(None, data)
    seen = []
    started = threading.Event()

    def other():
        started.set()
        # Runs while build() holds no GIL; each call either sees the build running or done.
        while True:
            try:
                index.add_item(0, data[0])
            except RuntimeError as e:
                seen.append(str(e))
                if "built index" in str(e):
                    return

    t = threading.Thread(target=other)
    t.start()
    started.wait()
    index.build(20, n_jobs=1)
    t.join()
    assert any("running in another thread" in s for s in seen), seen[:3]
    assert index.get_n_trees() == 20
