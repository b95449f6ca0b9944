"""Filtered search from Python: filter= on get_nns_by_vector, get_nns_by_item and
get_nns_by_vectors, as ids or a reusable IdFilter, against a brute-force oracle over the
allowed items."""

import numpy as np
import pytest

from copse import AnnoyIndex, IdFilter

from conftest import METRICS, make_data, oracle_distances, oracle_order


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("share", [1.0, 0.5, 0.1, 0.01, 0.0])
def test_filtered_results_match_the_filtered_oracle(metric, graph, share):
    n, f = 800, 12
    data = make_data(metric, n, f, seed=21)
    ids = [k * 3 + 1 for k in range(n)]
    index = AnnoyIndex(f, metric)
    index.add_items(ids, data)
    index.build(5, graph=graph)
    rng = np.random.default_rng(4)
    allowed = rng.random(n) < share
    allowed_ids = [i for i, a in zip(ids, allowed) if a]
    made = index.make_filter(np.array(allowed_ids + [2, 10**12], dtype=np.uint64))
    assert isinstance(made, IdFilter) and len(made) == len(allowed_ids)
    for row in range(0, n, 97):
        q = data[row]
        truth = oracle_distances(metric, data, q)
        order = [j for j in oracle_order(metric, truth) if allowed[j]][:10]
        want = [truth[j] for j in order]
        for flt in (made, allowed_ids, np.array(allowed_ids, dtype=np.int64)):
            found, dist = index.get_nns_by_vector(
                q, 10, search_k=100_000, include_distances=True, filter=flt
            )
            assert len(found) == min(10, len(allowed_ids))
            assert set(found) <= set(allowed_ids)
            np.testing.assert_allclose(dist, want, rtol=1e-3, atol=1e-3)
        by_item = index.get_nns_by_item(ids[row], 10, search_k=100_000, filter=made)
        assert set(by_item) <= set(allowed_ids)
        if metric != "dot":  # by inner product an item need not be its own nearest
            assert (ids[row] in by_item) == bool(allowed[row])
    batch, dist = index.get_nns_by_vectors(
        data[:20], 10, search_k=100_000, include_distances=True, filter=made
    )
    for r in range(20):
        filled = [int(x) for x, d in zip(batch[r], dist[r]) if not np.isnan(d)]
        assert filled == index.get_nns_by_vector(data[r], 10, search_k=100_000, filter=made)


def test_a_filter_belongs_to_its_index():
    f = 4
    a, b = AnnoyIndex(f, "euclidean"), AnnoyIndex(f, "euclidean")
    for index, seed in ((a, 1), (b, 2)):
        index.add_items(None, make_data("euclidean", 50, f, seed))
        index.build(2)
    made = a.make_filter(range(10))
    with pytest.raises(TypeError, match="another index"):
        b.get_nns_by_vector([0.0] * f, 3, filter=made)
    with pytest.raises(IndexError):
        a.get_nns_by_vector([0.0] * f, 3, filter=[-1])
    unbuilt = AnnoyIndex(f, "euclidean")
    with pytest.raises(RuntimeError):
        unbuilt.make_filter([1])
