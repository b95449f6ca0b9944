"""Graph indexes: `build(..., graph=True)`, `get_graph_degree()`, search quality against a numpy
brute-force oracle, argument errors, and round trips (pickle, bytes, files, copies)."""

import copy
import pickle

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import METRICS, make_data, oracle_distances, tie_aware_recall

N, F, TREES, K = 2000, 16, 4, 10
# The metrics whose items are their own nearest neighbours (dot favours long vectors; hamming
# data has repeated rows).
SELF_NEAREST = ["angular", "euclidean", "manhattan"]


def graph_index(metric, n_trees=TREES, seed=3, **build):
    data = make_data(metric, N, F, seed)
    index = AnnoyIndex(F, metric)
    index.add_items(None, data)
    index.build(n_trees, graph=True, **build)
    return index, data


@pytest.fixture(scope="module", params=METRICS)
def built(request):
    metric = request.param
    index, data = graph_index(metric)
    return metric, index, data


def test_graph_build_for_every_metric(built):
    metric, index, data = built
    assert index.get_graph_degree() == 32
    assert index.get_n_trees() == TREES
    assert index.get_n_items() == N
    assert repr(index) == f"<copse.AnnoyIndex f={F} metric='{metric}' n_items={N} n_trees={TREES} graph_degree=32 built>"
    # Well-formed answers at the default search_k: distinct ids, the metric's true distances in
    # order.
    for q in make_data(metric, 20, F, seed=99):
        ids, dists = index.get_nns_by_vector(q, K, include_distances=True)
        assert len(ids) == K and len(set(ids)) == K
        np.testing.assert_allclose(dists, oracle_distances(metric, data, q)[ids], rtol=1e-4, atol=1e-3)
        step = np.diff(dists)
        assert np.all(step <= 1e-6) if metric == "dot" else np.all(step >= -1e-6)


@pytest.mark.parametrize("metric", SELF_NEAREST)
def test_graph_items_find_themselves_first(metric):
    index, _ = graph_index(metric)
    missed = [i for i in range(N) if index.get_nns_by_item(i, 1)[0] != i]
    assert missed == []


@pytest.mark.parametrize("metric", SELF_NEAREST)
def test_graph_recall_at_10_against_brute_force(metric):
    index, data = graph_index(metric)
    queries = make_data(metric, 100, F, seed=99)
    recalls = [
        tie_aware_recall(metric, oracle_distances(metric, data, q), index.get_nns_by_vector(q, K, search_k=2000), K)
        for q in queries
    ]
    assert np.mean(recalls) >= 0.9, np.mean(recalls)
    # The batch call answers the same.
    batch = index.get_nns_by_vectors(queries, K, search_k=2000)
    for row, q in zip(batch, queries):
        assert list(row) == index.get_nns_by_vector(q, K, search_k=2000)


@pytest.mark.parametrize("metric", ["dot", "hamming"])
def test_graph_recall_for_dot_and_hamming(metric):
    index, data = graph_index(metric)
    queries = make_data(metric, 100, F, seed=99)
    recalls = [
        tie_aware_recall(metric, oracle_distances(metric, data, q), index.get_nns_by_vector(q, K, search_k=2000), K)
        for q in queries
    ]
    assert np.mean(recalls) >= 0.9, np.mean(recalls)


def test_graph_search_k_trades_candidates_for_recall():
    index, data = graph_index("euclidean")
    queries = make_data("euclidean", 100, F, seed=98)

    def recall(search_k):
        return np.mean(
            [
                tie_aware_recall("euclidean", oracle_distances("euclidean", data, q), index.get_nns_by_vector(q, K, search_k=search_k), K)
                for q in queries
            ]
        )

    small, large = recall(160), recall(4000)
    assert large >= small
    assert large >= 0.95, large


def test_graph_with_automatic_trees():
    # n_trees=-1 with a graph: the few trees a graph needs for its starting points
    # (GRAPH_ENTRY_TREES in src/index.rs), not Annoy's count for f.
    index, data = graph_index("angular", n_trees=-1)
    assert index.get_n_trees() == 8
    assert index.get_graph_degree() == 32
    assert index.get_nns_by_item(7, 1) == [7]
    # Without a graph, -1 is still Annoy's count.
    plain = AnnoyIndex(F, "angular")
    plain.add_items(None, data)
    plain.build(-1)
    assert plain.get_n_trees() == round(0.38 * (F + 2))
    assert plain.get_graph_degree() == 0


def test_graph_argument_forms():
    data = make_data("euclidean", 300, F, seed=4)
    reference = None
    for args, kwargs in [
        ((4, -1, True), {}),  # positionally third
        ((4,), {"graph": True}),
        ((4, 1), {"graph": 1}),  # integers are truth values, as Annoy's flags
        ((4,), {"graph": np.bool_(True), "n_jobs": 2}),
    ]:
        index = AnnoyIndex(F, "euclidean")
        index.add_items(None, data)
        assert index.build(*args, **kwargs) is True
        assert index.get_graph_degree() == 32
        # The same seed gives the same bytes, whatever the thread count.
        if reference is None:
            reference = index.serialize()
        assert index.serialize() == reference
    for kwargs in [{}, {"graph": False}, {"graph": None}, {"graph": 0}]:
        index = AnnoyIndex(F, "euclidean")
        index.add_items(None, data)
        index.build(4, **kwargs)
        assert index.get_graph_degree() == 0
        assert len(index.serialize()) < len(reference)


@pytest.mark.parametrize("bad", ["yes", "", 1.0, [], {}, object(), b"x"])
def test_graph_argument_of_the_wrong_type_is_a_type_error(bad):
    index = AnnoyIndex(F, "angular")
    index.add_items(None, make_data("angular", 100, F))
    with pytest.raises(TypeError, match=f"graph must be a bool, not {type(bad).__name__}"):
        index.build(4, graph=bad)
    with pytest.raises(TypeError):
        index.build(4, -1, bad)
    # Nothing changed: the index still builds.
    assert index.get_n_trees() == 0
    assert index.build(4, graph=True)
    assert index.get_graph_degree() == 32


def test_graph_bad_arguments_follow_build_errors():
    index = AnnoyIndex(F, "angular")
    index.add_items(None, make_data("angular", 100, F))
    with pytest.raises(ValueError, match="n_trees"):
        index.build(0, graph=True)
    with pytest.raises(ValueError, match="n_trees"):
        index.build(-2, graph=True)
    with pytest.raises(ValueError, match="n_jobs"):
        index.build(4, 0, True)
    with pytest.raises(TypeError):
        index.build(4, graph=True, degree=8)
    with pytest.raises(TypeError):
        index.build(4, -1, True, 1)
    with pytest.raises(TypeError):
        index.build("4", graph=True)
    assert index.get_n_trees() == 0
    assert index.get_graph_degree() == 0


def test_graph_degree_through_the_life_of_an_index(tmp_index_path):
    index = AnnoyIndex(F, "manhattan")
    assert index.get_graph_degree() == 0
    data = make_data("manhattan", 500, F, seed=5)
    index.add_items(None, data)
    assert index.get_graph_degree() == 0
    index.build(3, graph=True)
    assert index.get_graph_degree() == 32
    # unbuild drops the graph with the trees; each build says whether it wants one.
    index.unbuild()
    assert index.get_graph_degree() == 0
    index.build(3)
    assert index.get_graph_degree() == 0
    index.unbuild()
    index.build(3, graph=True)
    answers = [index.get_nns_by_item(i, 5, include_distances=True) for i in range(0, 500, 50)]
    index.save(tmp_index_path)
    assert index.get_graph_degree() == 32
    assert repr(index).endswith(f"n_trees=3 graph_degree=32 loaded from '{tmp_index_path}'>")
    loaded = AnnoyIndex(F, "manhattan")
    loaded.load(tmp_index_path)
    assert loaded.get_graph_degree() == 32
    assert [loaded.get_nns_by_item(i, 5, include_distances=True) for i in range(0, 500, 50)] == answers
    loaded.unload()
    assert loaded.get_graph_degree() == 0


@pytest.mark.parametrize("metric", METRICS)
def test_graph_indexes_round_trip_through_pickle_bytes_and_copies(metric):
    index, data = graph_index(metric, seed=6)
    queries = make_data(metric, 10, F, seed=7)

    def answers(ix):
        by_item = [ix.get_nns_by_item(i, K, include_distances=True) for i in range(0, N, 97)]
        by_vector = [ix.get_nns_by_vector(q, K, search_k=500, include_distances=True) for q in queries]
        return by_item, by_vector

    expected = answers(index)
    data_bytes = index.serialize()
    for twin in [
        pickle.loads(pickle.dumps(index)),
        AnnoyIndex.deserialize(data_bytes),
        AnnoyIndex.deserialize(bytearray(data_bytes)),
        copy.copy(index),
        copy.deepcopy(index),
    ]:
        assert twin.get_graph_degree() == 32
        assert twin.get_n_trees() == TREES
        assert twin.serialize() == data_bytes
        assert answers(twin) == expected


def test_graph_on_disk_build_matches_in_memory(tmp_path):
    data = make_data("angular", 800, F, seed=8)
    in_memory = AnnoyIndex(F, "angular")
    in_memory.add_items(None, data)
    in_memory.build(5, graph=True)
    on_disk = AnnoyIndex(F, "angular")
    on_disk.on_disk_build(tmp_path / "disk.copse")
    on_disk.add_items(None, data)
    on_disk.build(5, graph=True)
    assert on_disk.get_graph_degree() == 32
    assert on_disk.serialize() == in_memory.serialize()


def test_graph_verbose_build_reports_each_stage(capfd):
    index = AnnoyIndex(F, "euclidean")
    index.add_items(None, make_data("euclidean", 300, F, seed=9))
    index.verbose(True)
    index.build(2, graph=True)
    err = capfd.readouterr().err
    assert "copse: building 2 trees and a graph over 300 items" in err
    assert "copse: tree 2/2 built" in err
    passes = [line for line in err.splitlines() if line.startswith("copse: graph pass ")]
    assert passes and passes[0].startswith("copse: graph pass 1/")
    assert "copse: built 2 trees and a graph of degree 32 in " in err
