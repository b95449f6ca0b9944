"""Every method of copse.AnnoyIndex: arguments, defaults, return types, exception types and the
state machine (add -> build -> save/load -> unload), without needing Annoy."""

import pathlib
import warnings

import numpy as np
import pytest

import copse
from copse import AnnoyIndex

from conftest import METRICS, make_data, oracle_distances


def small(metric="angular", n=50, f=8, trees=5, seed=0):
    index = AnnoyIndex(f, metric)
    data = make_data(metric, n, f, seed)
    for i, v in enumerate(data):
        index.add_item(i, v)
    index.build(trees)
    return index, data


# --- construction -----------------------------------------------------------------------------


def test_version_and_exports():
    assert isinstance(copse.__version__, str) and copse.__version__
    assert copse.AnnoyIndex is AnnoyIndex


@pytest.mark.parametrize("metric", METRICS)
def test_metrics_and_f(metric):
    index = AnnoyIndex(7, metric)
    assert index.f == 7
    assert index.metric == metric
    assert index.get_n_items() == 0
    assert index.get_n_trees() == 0
    assert len(index) == 0


def test_keyword_arguments():
    index = AnnoyIndex(f=3, metric="euclidean")
    assert index.f == 3 and index.metric == "euclidean"


def test_default_metric_warns_like_annoy():
    with pytest.warns(FutureWarning, match="metric"):
        index = AnnoyIndex(3)
    assert index.metric == "angular"


def test_unknown_metric_is_value_error():
    with pytest.raises(ValueError, match="No such metric") as raised:
        AnnoyIndex(3, "cosinus")
    for name in ["angular", "cosine", "euclidean", "manhattan", "hamming", "dot"]:
        assert f"'{name}'" in str(raised.value)


def test_cosine_is_angular():
    data = make_data("angular", 400, 10, seed=21)
    queries = make_data("angular", 20, 10, seed=22)
    indexes = {}
    for name in ("cosine", "angular"):
        index = AnnoyIndex(10, name)
        index.set_seed(77)
        index.add_items(None, data)
        index.build(6)
        indexes[name] = index
    cosine, angular = indexes["cosine"], indexes["angular"]
    assert cosine.metric == "angular"
    assert cosine.serialize() == angular.serialize()
    for i in range(0, 400, 13):
        assert cosine.get_nns_by_item(i, 10, include_distances=True) == angular.get_nns_by_item(
            i, 10, include_distances=True
        )
        assert cosine.get_distance(i, 399 - i) == angular.get_distance(i, 399 - i)
    for q in queries:
        got = cosine.get_nns_by_vector(q, 10, include_distances=True)
        assert got == angular.get_nns_by_vector(q, 10, include_distances=True)
        # Angular distance is sqrt(2 - 2 cos): check against the oracle too.
        expected = oracle_distances("angular", data, q)
        np.testing.assert_allclose(got[1], expected[got[0]], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("f", [0, -1])
def test_non_positive_f_is_value_error(f):
    with pytest.raises(ValueError, match="f must be"):
        AnnoyIndex(f, "angular")


@pytest.mark.parametrize("f", [3.0, "3", None])
def test_non_integer_f_is_type_error(f):
    with pytest.raises(TypeError):
        AnnoyIndex(f, "angular")


def test_metric_must_be_a_string():
    with pytest.raises(TypeError):
        AnnoyIndex(3, 1)


def test_f_is_read_only():
    index = AnnoyIndex(3, "angular")
    with pytest.raises(AttributeError):
        index.f = 4
    assert index.f == 3


# --- add_item ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        [1, 2, 3],
        (1.0, 2.0, 3.0),
        [True, False, True],
        np.array([1, 2, 3], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.float64),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([1, 2, 3], dtype=np.uint8),
        np.array([1, 2, 3], dtype=np.float16),
        np.array([True, False, True]),
        np.arange(6, dtype=np.float32)[::2],  # not contiguous
        range(1, 4),  # any sequence with a length
    ],
)
def test_add_item_accepts_sequences_and_numeric_arrays(vector):
    index = AnnoyIndex(3, "euclidean")
    assert index.add_item(0, vector) is None
    expected = [float(x) for x in np.asarray(list(vector), dtype=np.float32)]
    assert index.get_item_vector(0) == expected


def test_add_item_numpy_integer_id():
    index = AnnoyIndex(2, "euclidean")
    index.add_item(np.int64(4), [1, 2])
    assert index.get_n_items() == 5


def test_add_item_negative_id_is_index_error():
    index = AnnoyIndex(3, "angular")
    with pytest.raises(IndexError, match="negative"):
        index.add_item(-1, [1, 2, 3])


@pytest.mark.parametrize("vector", [[1, 2], [1, 2, 3, 4], np.zeros(2, np.float32), np.zeros(4)])
def test_add_item_wrong_length_is_index_error(vector):
    index = AnnoyIndex(3, "angular")
    with pytest.raises(IndexError, match=r"expected 3, got [24]"):
        index.add_item(0, vector)
    assert index.get_n_items() == 0


@pytest.mark.parametrize(
    "vector",
    [["a", "b", "c"], [1j, 2, 3], None, 5, (x for x in [1, 2, 3]), np.array(["a", "b", "c"])],
)
def test_add_item_non_numbers_is_type_error(vector):
    index = AnnoyIndex(3, "angular")
    with pytest.raises(TypeError):
        index.add_item(0, vector)


@pytest.mark.parametrize("id_", [1.0, "1", None])
def test_add_item_non_integer_id_is_type_error(id_):
    index = AnnoyIndex(3, "angular")
    with pytest.raises(TypeError):
        index.add_item(id_, [1, 2, 3])


@pytest.mark.parametrize(
    "vector",
    [
        [float("nan"), 1, 2],
        [1, float("inf"), 2],
        np.array([1, 2, np.nan], dtype=np.float32),
        np.array([1, 2, 1e300]),  # beyond float32
    ],
)
def test_add_item_non_finite_is_value_error(vector):
    index = AnnoyIndex(3, "angular")
    with pytest.raises(ValueError, match="position"):
        index.add_item(0, vector)
    assert index.get_n_items() == 0


def test_add_item_two_dimensional_array_is_value_error():
    index = AnnoyIndex(3, "angular")
    with pytest.raises(ValueError, match="1-dimensional"):
        index.add_item(0, np.zeros((1, 3), np.float32))


def test_add_item_id_past_u64_is_overflow_error():
    index = AnnoyIndex(3, "angular")
    with pytest.raises(OverflowError):
        index.add_item(2**64, [1, 2, 3])
    with pytest.raises(OverflowError):
        index.add_item(2**100, [1, 2, 3])
    assert len(index) == 0


def test_add_item_replaces():
    index = AnnoyIndex(2, "euclidean")
    index.add_item(0, [1, 2])
    index.add_item(0, [3, 4])
    assert index.get_item_vector(0) == [3.0, 4.0]
    assert index.get_n_items() == 1


# --- add_items --------------------------------------------------------------------------------


def test_add_items_with_ids_and_none():
    data = make_data("euclidean", 20, 4)
    a = AnnoyIndex(4, "euclidean")
    a.add_items(None, data[:10])
    a.add_items(None, data[10:].tolist())  # lists of lists too
    b = AnnoyIndex(4, "euclidean")
    b.add_items(np.arange(19, -1, -1), data[::-1])
    c = AnnoyIndex(4, "euclidean")
    c.add_items(list(range(20)), np.asfortranarray(data.astype(np.float64)))
    for index in (a, b, c):
        assert index.get_n_items() == 20
        for i in range(20):
            assert index.get_item_vector(i) == [float(x) for x in data[i]]


def test_add_items_errors_add_nothing():
    index = AnnoyIndex(3, "euclidean")
    bad = np.ones((4, 3), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"\[2, 1\]"):
        index.add_items(None, bad)
    with pytest.raises(IndexError, match="expected 3, got 2"):
        index.add_items(None, np.ones((4, 2)))
    with pytest.raises(ValueError, match="2-dimensional"):
        index.add_items(None, np.ones(3))
    with pytest.raises(ValueError, match="ids for"):
        index.add_items([0, 1], np.ones((3, 3)))
    with pytest.raises(IndexError, match="negative"):
        index.add_items([0, -1, 2], np.ones((3, 3)))
    with pytest.raises(TypeError):
        index.add_items([0.5, 1, 2], np.ones((3, 3)))
    with pytest.raises(TypeError):
        index.add_items(None, np.array([["a", "b", "c"]]))
    assert index.get_n_items() == 0


def test_add_items_failing_late_adds_nothing():
    # A huge id no longer costs memory for the ids below it (it goes to the id map): 2**31 rows
    # of 256 KiB would be more than any machine has.
    f = 1 << 16
    index = AnnoyIndex(f, "euclidean")
    index.add_item(0, np.ones(f, np.float32))
    index.add_items([0, 1, 2**31], np.zeros((3, f), np.float32))
    assert index.get_n_items() == 2**31 + 1 and len(index) == 3
    assert index.get_item_vector(0)[:3] == [0.0, 0.0, 0.0]
    # A norm beyond float32 (angular and dot keep norms), in a later row.
    for metric in ("angular", "dot"):
        index = AnnoyIndex(3, metric)
        index.add_item(0, [1, 2, 3])
        with pytest.raises(ValueError, match=r"vectors\[1\]: the vector's norm overflows"):
            index.add_items([0, 1], np.array([[4, 5, 6], [2e19, 0, 0]], np.float32))
        assert index.get_n_items() == 1 and index.get_item_vector(0) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("metric", ["angular", "dot", "euclidean"])
def test_add_items_accepts_exactly_the_rows_add_item_accepts(metric):
    # Around the float32 limit of the squared norm (3.4e38): add_item (the library's own check)
    # is the oracle.
    for x in (1e19, 1.8e19, 1.84e19, 1.8446743e19, 1.845e19, 1.9e19, 3e38):
        single, batch = AnnoyIndex(2, metric), AnnoyIndex(2, metric)
        try:
            single.add_item(0, [x, 0.0])
            accepted = True
        except ValueError:
            accepted = False
        if accepted:
            batch.add_items(None, np.array([[x, 0.0]], np.float32))
            assert batch.get_item_vector(0) == single.get_item_vector(0)
        else:
            with pytest.raises(ValueError):
                batch.add_items(None, np.array([[x, 0.0]], np.float32))
            assert batch.get_n_items() == 0


def test_add_items_repeated_ids_last_row_wins():
    index = AnnoyIndex(2, "euclidean")
    index.add_items([5, 5, 3, 5, 3], np.array([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], np.float32))
    assert index.get_n_items() == 6
    assert index.get_item_vector(5) == [4.0, 4.0]
    assert index.get_item_vector(3) == [5.0, 5.0]


def test_add_items_empty_matrix():
    index = AnnoyIndex(3, "euclidean")
    index.add_items(None, np.zeros((0, 3), np.float32))
    assert index.get_n_items() == 0


# --- build, unbuild ---------------------------------------------------------------------------


def test_build_returns_true_and_counts_trees():
    index = AnnoyIndex(4, "angular")
    index.add_items(None, make_data("angular", 100, 4))
    assert index.build(7) is True
    assert index.get_n_trees() == 7
    assert index.get_n_items() == 100


def test_build_keywords_and_n_jobs():
    index = AnnoyIndex(4, "angular")
    index.add_items(None, make_data("angular", 100, 4))
    assert index.build(n_trees=3, n_jobs=1) is True
    assert index.get_n_trees() == 3


def test_build_auto_trees():
    index = AnnoyIndex(50, "angular")
    index.add_items(None, make_data("angular", 200, 50))
    index.build(-1)
    # Annoy builds about 0.38 * (f + 2) trees for -1 (20 for f = 50).
    assert 15 <= index.get_n_trees() <= 25


@pytest.mark.parametrize("n_trees", [0, -2])
def test_build_bad_tree_count_is_value_error(n_trees):
    index = AnnoyIndex(3, "angular")
    index.add_item(0, [1, 2, 3])
    with pytest.raises(ValueError, match="n_trees"):
        index.build(n_trees)
    index.build(1)  # still usable


@pytest.mark.parametrize("n_jobs", [0, -2])
def test_build_bad_n_jobs_is_value_error(n_jobs):
    index = AnnoyIndex(3, "angular")
    index.add_item(0, [1, 2, 3])
    with pytest.raises(ValueError, match="n_jobs"):
        index.build(2, n_jobs)


def test_build_twice_is_an_error_and_unbuild_allows_more_items():
    index, data = small()
    with pytest.raises(RuntimeError, match="built index"):
        index.build(5)
    with pytest.raises(RuntimeError, match="unbuild"):
        index.add_item(100, data[0])
    assert index.unbuild() is True
    assert index.get_n_trees() == 0
    index.add_item(100, data[0])
    assert index.get_n_items() == 101
    index.build(3)
    assert index.get_n_trees() == 3
    assert index.get_nns_by_item(100, 2, search_k=10_000)[0] in (0, 100)


def test_unbuild_of_unbuilt_index_is_fine():
    index = AnnoyIndex(3, "angular")
    assert index.unbuild() is True


def test_queries_before_build_raise():
    index = AnnoyIndex(3, "angular")
    index.add_item(0, [1, 2, 3])
    index.add_item(1, [3, 2, 1])
    with pytest.raises(RuntimeError, match="not built"):
        index.get_nns_by_item(0, 2)
    with pytest.raises(RuntimeError, match="not built"):
        index.get_nns_by_vector([1, 2, 3], 2)
    with pytest.raises(RuntimeError, match="not built"):
        index.get_nns_by_vectors(np.ones((2, 3)), 2)
    # Like Annoy, vectors and distances are available before the build.
    assert index.get_item_vector(1) == [3.0, 2.0, 1.0]
    before = index.get_distance(0, 1)
    index.build(2)
    assert before == pytest.approx(index.get_distance(0, 1), rel=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_distance_before_build_matches_after(metric):
    index = AnnoyIndex(6, metric)
    data = make_data(metric, 10, 6, seed=3)
    index.add_items(None, data)
    before = [index.get_distance(i, j) for i in range(10) for j in range(10)]
    index.build(2)
    after = [index.get_distance(i, j) for i in range(10) for j in range(10)]
    assert before == pytest.approx(after, rel=1e-4, abs=2e-3)


# --- queries ----------------------------------------------------------------------------------


def test_get_nns_return_types():
    index, data = small("euclidean")
    ids = index.get_nns_by_item(0, 5)
    assert isinstance(ids, list) and len(ids) == 5 and all(type(i) is int for i in ids)
    assert ids[0] == 0
    out = index.get_nns_by_item(0, 5, include_distances=True)
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0] == ids and all(type(d) is float for d in out[1])
    assert out[1] == sorted(out[1])
    out = index.get_nns_by_vector(data[3], 5, -1, True)  # positional, as Annoy allows
    assert out[0][0] == 3 and out[1][0] == pytest.approx(0.0, abs=1e-3)
    assert index.get_nns_by_vector(list(data[3]), 5) == out[0]
    assert index.get_nns_by_item(0, 5, include_distances=1) == index.get_nns_by_item(0, 5, include_distances=True)
    assert index.get_nns_by_item(0, 5, include_distances=np.bool_(False)) == ids


def test_get_nns_n_zero_and_more_than_items():
    index, _ = small(n=20)
    assert index.get_nns_by_item(0, 0) == []
    assert index.get_nns_by_vector([0.5] * 8, 0) == []
    assert sorted(index.get_nns_by_item(0, 100, search_k=10_000)) == list(range(20))


def test_get_nns_search_k():
    index, _ = small(n=500, trees=10)
    assert index.get_nns_by_item(0, 10, search_k=0) == []
    assert len(index.get_nns_by_item(0, 10, search_k=100_000)) == 10
    with pytest.raises(ValueError, match="search_k"):
        index.get_nns_by_item(0, 10, search_k=-2)
    with pytest.raises(TypeError):
        index.get_nns_by_item(0, 10, search_k=1.5)


def test_get_nns_bad_arguments():
    index, _ = small(n=20)
    with pytest.raises(IndexError, match="negative"):
        index.get_nns_by_item(-1, 3)
    with pytest.raises(IndexError, match="largest item index"):
        index.get_nns_by_item(20, 3)
    with pytest.raises(ValueError, match="n must be"):
        index.get_nns_by_item(0, -1)
    with pytest.raises(TypeError):
        index.get_nns_by_item(0, 2.0)
    with pytest.raises(TypeError):
        index.get_nns_by_item(0, 2, -1, "yes")
    with pytest.raises(IndexError, match="expected 8, got 7"):
        index.get_nns_by_vector([1.0] * 7, 3)
    with pytest.raises(ValueError, match="finite"):
        index.get_nns_by_vector([float("nan")] + [1.0] * 7, 3)
    with pytest.raises(TypeError):
        index.get_nns_by_vector(["x"] * 8, 3)


def test_holes_are_index_errors():
    index = AnnoyIndex(2, "euclidean")
    index.add_item(0, [0, 0])
    index.add_item(5, [1, 1])
    index.build(2)
    assert index.get_n_items() == 6
    assert sorted(index.get_nns_by_item(0, 10)) == [0, 5]
    for call in (
        lambda: index.get_nns_by_item(3, 2),
        lambda: index.get_item_vector(3),
        lambda: index.get_distance(0, 3),
    ):
        with pytest.raises(IndexError, match="never added"):
            call()


def test_item_vector_and_distance_errors():
    index, data = small(n=10, f=3)
    assert index.get_item_vector(4) == pytest.approx(list(data[4]))
    assert all(type(x) is float for x in index.get_item_vector(4))
    assert type(index.get_distance(1, 2)) is float
    for call in (lambda: index.get_item_vector(10), lambda: index.get_distance(0, 10)):
        with pytest.raises(IndexError):
            call()
    for call in (lambda: index.get_item_vector(-1), lambda: index.get_distance(-1, 0)):
        with pytest.raises(IndexError, match="negative"):
            call()
    with pytest.raises(TypeError):
        index.get_item_vector(1.0)


def test_hamming_vectors_are_bits():
    index = AnnoyIndex(4, "hamming")
    index.add_item(0, [0.7, -3, 2, 0.3])
    assert index.get_item_vector(0) == [1.0, 0.0, 1.0, 0.0]
    index.add_item(1, [1, 1, 1, 1])
    index.build(2)
    assert index.get_distance(0, 1) == 2.0
    assert index.get_nns_by_vector([1, 0, 1, 0], 2, include_distances=True) == ([0, 1], [0.0, 2.0])


def test_dot_reports_inner_product_largest_first():
    index = AnnoyIndex(2, "dot")
    index.add_items(None, np.array([[1, 0], [2, 0], [0, 3]], np.float32))
    index.build(3)
    ids, dists = index.get_nns_by_vector([1, 0], 3, include_distances=True)
    assert ids[:2] == [1, 0] and dists[:2] == [2.0, 1.0]
    assert index.get_distance(1, 2) == 0.0


# --- verbose, set_seed, repr, len, context manager ----------------------------------------------


def test_verbose_prints_progress_to_stderr(capfd):
    index = AnnoyIndex(4, "angular")
    index.add_items(None, make_data("angular", 50, 4))
    assert index.verbose(True) is True
    index.build(3, n_jobs=1)
    err = capfd.readouterr().err
    assert "tree 3/3" in err and "built 3 trees" in err
    assert index.verbose(False) is True
    index.unbuild()
    index.build(2)
    assert capfd.readouterr().err == ""


def test_set_seed_returns_none_and_accepts_any_int():
    index = AnnoyIndex(3, "angular")
    assert index.set_seed(42) is None
    index.set_seed(-3)
    index.set_seed(2**63 + 5)
    with pytest.raises(OverflowError):
        index.set_seed(2**64)
    with pytest.raises(TypeError):
        index.set_seed(1.5)


def test_repr_and_len(tmp_index_path):
    index = AnnoyIndex(3, "euclidean")
    assert repr(index) == "<copse.AnnoyIndex f=3 metric='euclidean' n_items=0 not built>"
    index.add_item(4, [1, 2, 3])
    assert len(index) == 1  # items added; get_n_items() is the largest id + 1
    index.build(2)
    assert repr(index) == "<copse.AnnoyIndex f=3 metric='euclidean' n_items=5 n_trees=2 built>"
    index.save(str(tmp_index_path))
    assert repr(index).endswith(f"n_trees=2 loaded from '{tmp_index_path}'>")


def test_context_manager_unloads(tmp_index_path):
    index, _ = small()
    index.save(tmp_index_path)
    with AnnoyIndex(8, "angular") as loaded:
        loaded.load(tmp_index_path)
        assert loaded.get_n_items() == 50
    assert loaded.get_n_items() == 0
    with pytest.raises(KeyError):
        with AnnoyIndex(8, "angular") as other:
            other.load(tmp_index_path)
            raise KeyError("exceptions propagate")
    assert other.get_n_items() == 0


def test_stubs_and_marker_are_installed():
    root = pathlib.Path(copse.__file__).parent
    assert (root / "py.typed").exists()
    stub = (root / "_copse.pyi").read_text()
    for name in [m for m in dir(AnnoyIndex) if not m.startswith("_")]:
        assert f"def {name}(" in stub, name


def test_no_warnings_on_normal_use(tmp_index_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index, data = small()
        index.get_nns_by_vectors(data[:3], 2)
        index.save(tmp_index_path)
