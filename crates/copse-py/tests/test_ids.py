"""Any id in [0, 2**64): the edges of 32 and 64 bits, sparse and dense ids mixed, every metric,
checked against a brute-force oracle; get_n_items() keeps Annoy's meaning (largest id + 1) and
len() counts the items."""

import pickle

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import METRICS, make_data, oracle_distances, oracle_order

EDGE_IDS = [0, 2**32 - 1, 2**32, 2**40, 2**63, 2**64 - 1]


def mixed_ids(n, seed=0):
    rng = np.random.default_rng(seed)
    ids = list(EDGE_IDS) + list(range(1, 101))
    seen = set(ids)
    while len(ids) < n:
        i = int(rng.integers(0, 2**64, dtype=np.uint64))
        if i not in seen:
            seen.add(i)
            ids.append(i)
    return ids


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("graph", [False, True])
def test_sparse_64_bit_ids_answer_like_brute_force(metric, graph):
    n, f = 300, 10
    data = make_data(metric, n, f, seed=3)
    ids = mixed_ids(n, seed=4)
    index = AnnoyIndex(f, metric)
    for i, v in zip(ids, data):
        index.add_item(i, v)
    assert len(index) == n
    assert index.get_n_items() == 2**64
    index.build(4, graph=graph)
    assert len(index) == n
    assert index.get_n_items() == 2**64
    for row in range(0, n, 13):
        i = ids[row]
        assert index.get_item_vector(i) == pytest.approx(data[row].tolist())
        truth = oracle_distances(metric, data, data[row])
        order = oracle_order(metric, truth)
        want = [truth[j] for j in order[:10]]
        for found, dist in [
            index.get_nns_by_vector(data[row], 10, search_k=100_000, include_distances=True),
            index.get_nns_by_item(i, 10, search_k=100_000, include_distances=True),
        ]:
            assert all(isinstance(x, int) for x in found)
            assert set(found) <= set(ids)
            np.testing.assert_allclose(dist, want, rtol=1e-3, atol=1e-3)
            for x, d in zip(found, dist):
                assert truth[ids.index(x)] == pytest.approx(d, rel=1e-3, abs=1e-3)
        j = ids[(row + 1) % n]
        assert index.get_distance(i, j) == pytest.approx(
            truth[(row + 1) % n], rel=1e-3, abs=1e-3
        )
    for missing in [101, 2**32 + 1, 2**64 - 2]:
        with pytest.raises(IndexError):
            index.get_item_vector(missing)


def test_batch_ids_are_int64_until_an_id_needs_uint64():
    f = 6
    data = make_data("euclidean", 40, f, seed=1)
    small = AnnoyIndex(f, "euclidean")
    small.add_items(np.arange(40, dtype=np.int64) * 2**40, data)
    small.build(3)
    ids = small.get_nns_by_vectors(data[:5], 45)
    assert ids.dtype == np.int64 and ids.shape == (5, 40)
    assert ids[0, 0] == 0 and ids[3, 0] == 3 * 2**40

    big = AnnoyIndex(f, "euclidean")
    wide = np.arange(40, dtype=np.uint64) + np.uint64(2**64 - 40)
    big.add_items(wide, data)
    big.build(3)
    ids, dist = big.get_nns_by_vectors(data[:5], 41, include_distances=True)
    # 41 asked, 40 exist: never wider than the items.
    assert ids.dtype == np.uint64 and ids.shape == dist.shape == (5, 40)
    assert [int(x) for x in ids[:, 0]] == [2**64 - 40 + k for k in range(5)]
    assert not np.isnan(dist).any()


def test_add_items_takes_python_ints_past_int64_and_refuses_bad_ones():
    f = 3
    index = AnnoyIndex(f, "angular")
    index.add_items([2**64 - 1, 2**63, 5], np.eye(3, dtype=np.float32))
    assert len(index) == 3 and index.get_n_items() == 2**64
    assert index.get_item_vector(2**63) == [0.0, 1.0, 0.0]
    with pytest.raises(OverflowError):
        index.add_items([2**64], np.ones((1, 3), np.float32))
    with pytest.raises(IndexError):
        index.add_items([-1], np.ones((1, 3), np.float32))
    with pytest.raises(IndexError):
        index.add_item(-(2**70), [1, 2, 3])
    # ids=None continues after the largest id: past 2**64 - 1 there is no room.
    with pytest.raises(OverflowError):
        index.add_items(None, np.ones((1, 3), np.float32))
    assert len(index) == 3


def test_sparse_index_saves_loads_and_pickles(tmp_path):
    f = 5
    data = make_data("dot", 60, f, seed=7)
    ids = [k * 2**45 + 17 for k in range(60)]
    index = AnnoyIndex(f, "dot")
    index.add_items(ids, data)
    index.build(5)
    path = str(tmp_path / "sparse.copse")
    index.save(path)
    loaded = AnnoyIndex(f, "dot")
    loaded.load(path)
    copy = pickle.loads(pickle.dumps(index))
    for other in (loaded, copy):
        assert len(other) == 60
        assert other.get_n_items() == ids[-1] + 1
        for k in range(0, 60, 9):
            assert other.get_nns_by_item(ids[k], 5) == index.get_nns_by_item(ids[k], 5)


def test_a_hundred_items_at_huge_ids_make_a_small_file(tmp_path):
    f = 16
    index = AnnoyIndex(f, "euclidean")
    data = make_data("euclidean", 100, f, seed=2)
    for k, v in enumerate(data):
        index.add_item(2**40 + 7919 * k, v)
    index.build(10)
    path = tmp_path / "huge-ids.copse"
    index.save(str(path))
    assert path.stat().st_size < 1_000_000
    assert index.get_n_items() == 2**40 + 7919 * 99 + 1
    assert len(index) == 100
