"""copse.AnnoyIndex against the real annoy.AnnoyIndex (skipped when annoy is not installed):
the same calls give the same return types, results and exception types, except where Annoy
silently misbehaves and copse raises (listed in DEVIATIONS)."""

import numpy as np
import pytest

import copse

from conftest import METRICS, make_data

annoy = pytest.importorskip("annoy")


def pair(f=3, metric="angular"):
    return copse.AnnoyIndex(f, metric), annoy.AnnoyIndex(f, metric)


def outcome(call):
    """('ok', value) or ('raises', exception type)."""
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - comparing what each raises
        return ("raises", type(e))


def same_kind(ours, theirs):
    """True if both return values of the same type, or both raise the same exception type (a
    RuntimeError of ours stands for Annoy's bare Exception, which it subclasses)."""
    if ours[0] != theirs[0]:
        return False
    if ours[0] == "ok":
        return type(ours[1]) is type(theirs[1])
    if theirs[1] is Exception:
        return issubclass(ours[1], Exception)
    return issubclass(ours[1], theirs[1])


def filled(index, n=6):
    for i, v in enumerate(make_data("angular", n, 3, seed=1)):
        index.add_item(i, v)
    return index


# (description, setup, call): each applied to a fresh pair of indexes.
CASES = [
    ("bad metric", None, lambda cls: cls(3, "foo")),
    ("float f", None, lambda cls: cls(3.0, "angular")),
    ("add negative id", "empty", lambda ix: ix.add_item(-1, [1, 2, 3])),
    ("add short vector", "empty", lambda ix: ix.add_item(0, [1, 2])),
    ("add long vector", "empty", lambda ix: ix.add_item(0, [1, 2, 3, 4])),
    ("add strings", "empty", lambda ix: ix.add_item(0, ["a", "b", "c"])),
    ("add complex", "empty", lambda ix: ix.add_item(0, [1j, 2, 3])),
    ("add None", "empty", lambda ix: ix.add_item(0, None)),
    ("add int", "empty", lambda ix: ix.add_item(0, 5)),
    ("add generator", "empty", lambda ix: ix.add_item(0, (x for x in [1, 2, 3]))),
    ("add float id", "empty", lambda ix: ix.add_item(1.0, [1, 2, 3])),
    ("add list", "empty", lambda ix: ix.add_item(0, [1, 2, 3])),
    ("add tuple", "empty", lambda ix: ix.add_item(0, (1, 2, 3))),
    ("add bools", "empty", lambda ix: ix.add_item(0, [True, False, True])),
    ("add float64 array", "empty", lambda ix: ix.add_item(0, np.array([1.0, 2, 3]))),
    ("add int array", "empty", lambda ix: ix.add_item(0, np.array([1, 2, 3]))),
    ("huge int value", "empty", lambda ix: ix.add_item(0, [10**400, 1, 2])),
    ("build", "filled", lambda ix: ix.build(3)),
    ("build kw", "filled", lambda ix: ix.build(n_trees=3, n_jobs=1)),
    ("build twice", "built", lambda ix: ix.build(3)),
    ("unbuild", "built", lambda ix: ix.unbuild()),
    ("unbuild fresh", "empty", lambda ix: ix.unbuild()),
    ("save unbuilt", "filled", lambda ix: ix.save("/nonexistent-dir/never.ann")),
    ("save to missing dir", "built", lambda ix: ix.save("/nonexistent-dir/x.ann")),
    ("load missing", "empty", lambda ix: ix.load("/nonexistent-dir/x.ann")),
    ("unload", "built", lambda ix: ix.unload()),
    ("unload fresh", "empty", lambda ix: ix.unload()),
    ("nns by item", "built", lambda ix: ix.get_nns_by_item(0, 3)),
    ("nns by item with distances", "built", lambda ix: ix.get_nns_by_item(0, 3, include_distances=True)),
    ("nns by item positional", "built", lambda ix: ix.get_nns_by_item(0, 3, -1, True)),
    ("nns by item n=0", "built", lambda ix: ix.get_nns_by_item(0, 0)),
    ("nns by item search_k=0", "built", lambda ix: ix.get_nns_by_item(0, 3, search_k=0)),
    ("nns by item include 1", "built", lambda ix: ix.get_nns_by_item(0, 3, -1, 1)),
    ("nns by item include str", "built", lambda ix: ix.get_nns_by_item(0, 3, -1, "x")),
    ("nns by item out of range", "built", lambda ix: ix.get_nns_by_item(100, 3)),
    ("nns by item negative", "built", lambda ix: ix.get_nns_by_item(-1, 3)),
    ("nns by item float n", "built", lambda ix: ix.get_nns_by_item(0, 2.0)),
    ("nns by vector", "built", lambda ix: ix.get_nns_by_vector([1, 2, 3], 3)),
    ("nns by vector with distances", "built", lambda ix: ix.get_nns_by_vector([1, 2, 3], 3, include_distances=True)),
    ("nns by vector short", "built", lambda ix: ix.get_nns_by_vector([1, 2], 3)),
    ("nns by vector strings", "built", lambda ix: ix.get_nns_by_vector("abc", 3)),
    ("item vector", "built", lambda ix: ix.get_item_vector(1)),
    ("item vector before build", "filled", lambda ix: ix.get_item_vector(1)),
    ("item vector out of range", "built", lambda ix: ix.get_item_vector(100)),
    ("item vector negative", "built", lambda ix: ix.get_item_vector(-1)),
    ("distance", "built", lambda ix: ix.get_distance(0, 1)),
    ("distance before build", "filled", lambda ix: ix.get_distance(0, 1)),
    ("distance out of range", "built", lambda ix: ix.get_distance(0, 100)),
    ("distance negative", "built", lambda ix: ix.get_distance(-1, 0)),
    ("n items", "built", lambda ix: ix.get_n_items()),
    ("n trees", "built", lambda ix: ix.get_n_trees()),
    ("n trees unbuilt", "filled", lambda ix: ix.get_n_trees()),
    ("verbose", "empty", lambda ix: ix.verbose(False)),
    ("set seed", "empty", lambda ix: ix.set_seed(5)),
    ("set seed negative", "empty", lambda ix: ix.set_seed(-5)),
    ("f", "empty", lambda ix: ix.f),
]

# Where Annoy silently misbehaves (or crashes) and copse raises: description -> copse's type.
DEVIATIONS = {
    "nns by item n=-1": ValueError,  # Annoy returns everything (n cast to size_t)
    "nns by vector nan": ValueError,  # Annoy returns garbage
    "add nan": ValueError,  # Annoy stores it
    "add after build": RuntimeError,  # Annoy stores it outside the trees
    "nns before build": RuntimeError,  # Annoy returns []
    "build zero trees": ValueError,  # Annoy builds nothing and returns []
    "f zero": ValueError,  # Annoy accepts it
    "search_k -2": ValueError,  # Annoy searches everything (cast to size_t)
    "huge float value": ValueError,  # Annoy stores inf
}
DEVIATION_CASES = [
    ("nns by item n=-1", "built", lambda ix: ix.get_nns_by_item(0, -1)),
    ("nns by vector nan", "built", lambda ix: ix.get_nns_by_vector([float("nan"), 1, 2], 3)),
    ("add nan", "empty", lambda ix: ix.add_item(0, [float("nan"), 1, 2])),
    ("add after build", "built", lambda ix: ix.add_item(10, [1, 2, 3])),
    ("nns before build", "filled", lambda ix: ix.get_nns_by_item(0, 3)),
    ("build zero trees", "filled", lambda ix: ix.build(0)),
    ("f zero", None, lambda cls: cls(0, "angular")),
    ("search_k -2", "built", lambda ix: ix.get_nns_by_item(0, 3, search_k=-2)),
    ("huge float value", "empty", lambda ix: ix.add_item(0, [1e300, 1, 2])),
]


def prepare(setup, index):
    if setup in ("filled", "built"):
        filled(index)
    if setup == "built":
        index.build(5)
    return index


def run_case(setup, call, cls):
    if setup is None:
        return outcome(lambda: call(cls))
    return outcome(lambda: call(prepare(setup, cls(3, "angular"))))


@pytest.mark.parametrize("description,setup,call", CASES, ids=[c[0] for c in CASES])
def test_same_return_type_or_exception(description, setup, call):
    ours = run_case(setup, call, copse.AnnoyIndex)
    theirs = run_case(setup, call, annoy.AnnoyIndex)
    assert same_kind(ours, theirs), f"{description}: copse {ours}, annoy {theirs}"
    if ours[0] == "ok" and (ours[1] is None or type(ours[1]) in (bool, int)):
        assert ours[1] == theirs[1], description


@pytest.mark.parametrize("description,setup,call", DEVIATION_CASES, ids=[c[0] for c in DEVIATION_CASES])
def test_documented_deviations(description, setup, call):
    theirs = run_case(setup, call, annoy.AnnoyIndex)
    ours = run_case(setup, call, copse.AnnoyIndex)
    assert theirs[0] == "ok", f"annoy now raises for {description}: {theirs}; update the table"
    assert ours == ("raises", DEVIATIONS[description])


def test_load_after_save_state_matches(tmp_path):
    """After save, both treat the index as loaded: adding, unbuilding and building fail."""
    for cls in (copse.AnnoyIndex, annoy.AnnoyIndex):
        index = prepare("built", cls(3, "angular"))
        assert index.save(str(tmp_path / f"{cls.__module__}.idx")) is True
        for call in (lambda: index.add_item(9, [1, 2, 3]), index.unbuild, lambda: index.build(2)):
            with pytest.raises(Exception):
                call()
        assert index.get_n_items() == 6
        assert index.unload() is True
        assert index.get_n_items() == 0
        with pytest.raises(IndexError):
            index.get_nns_by_item(0, 1)


@pytest.mark.parametrize("metric", METRICS)
def test_same_neighbours_and_distances_as_annoy(metric):
    """With a search_k that visits everything, both return the exact neighbours with the same
    distances."""
    f = 64 if metric == "hamming" else 12
    data = make_data(metric, 400, f, seed=21)
    ours, theirs = copse.AnnoyIndex(f, metric), annoy.AnnoyIndex(f, metric)
    for i, v in enumerate(data):
        ours.add_item(i, v)
        theirs.add_item(i, v.tolist())
    ours.build(10)
    theirs.build(10)
    queries = make_data(metric, 30, f, seed=22)
    for q in queries:
        a_ids, a_d = ours.get_nns_by_vector(q, 10, search_k=100_000, include_distances=True)
        b_ids, b_d = theirs.get_nns_by_vector(q.tolist(), 10, search_k=100_000, include_distances=True)
        np.testing.assert_allclose(a_d, b_d, rtol=1e-4, atol=1e-3)
        if metric != "hamming":  # hamming ties order arbitrarily
            assert a_ids[:5] == b_ids[:5] or np.allclose(a_d[:5], b_d[:5], rtol=1e-5)
    for i in range(0, 400, 40):
        assert ours.get_item_vector(i) == pytest.approx(theirs.get_item_vector(i))
        assert ours.get_distance(i, i + 1) == pytest.approx(theirs.get_distance(i, i + 1), rel=1e-4, abs=1e-3)
    assert ours.get_n_items() == theirs.get_n_items()
    assert ours.get_n_trees() == theirs.get_n_trees()


def test_auto_tree_count_is_close_to_annoys():
    for f in (8, 50):
        data = make_data("angular", 3000, f, seed=5)
        counts = []
        for cls in (copse.AnnoyIndex, annoy.AnnoyIndex):
            index = cls(f, "angular")
            for i, v in enumerate(data):
                index.add_item(i, v.tolist())
            index.build(-1)
            counts.append(index.get_n_trees())
        assert abs(counts[0] - counts[1]) <= max(2, counts[1] // 5), counts


def test_on_disk_build_parity(tmp_path):
    for cls in (copse.AnnoyIndex, annoy.AnnoyIndex):
        index = cls(3, "angular")
        assert index.on_disk_build(str(tmp_path / f"{cls.__module__}.idx")) is True
        filled(index)
        assert index.build(3) is True
        assert index.get_n_items() == 6
        assert sorted(index.get_nns_by_item(0, 6, search_k=1000)) == list(range(6))
        with pytest.raises(OSError):
            cls(3, "angular").on_disk_build(str(tmp_path / "missing-dir" / "x.idx"))
