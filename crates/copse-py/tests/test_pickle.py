"""Pickling, copying and serialize/deserialize: every way of copying an index gives one that
answers exactly as the original (ids, distances, vectors, counts), for copse's own indexes and
for Annoy files opened by copse; bad bytes are a ValueError, never a crash."""

import copy
import json
import pathlib
import pickle

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import METRICS, make_data

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "copse-annoy" / "tests" / "fixtures"
ANNOY_CASES = json.loads((FIXTURES / "answers.json").read_text())["cases"]

N = 300


def dims(metric):
    return 70 if metric == "hamming" else 12


def built(metric, seed=0):
    f = dims(metric)
    index = AnnoyIndex(f, metric)
    data = make_data(metric, N, f, seed=seed)
    for i, v in enumerate(data):
        if i % 17 != 5:  # holes: ids never added
            index.add_item(i, v)
    index.build(5)
    return index


def answers(index, queries):
    """Everything a query can tell about the index, for exact comparison."""
    n_items = index.get_n_items()
    present = [i for i in range(n_items) if i % 17 != 5]
    return {
        "n_items": n_items,
        "n_trees": index.get_n_trees(),
        "len": len(index),
        "f": index.f,
        "metric": index.metric,
        "by_item": [index.get_nns_by_item(i, 10, include_distances=True) for i in present[::7]],
        "by_item_k": [index.get_nns_by_item(i, 5, search_k=40) for i in present[::11]],
        "by_vector": [index.get_nns_by_vector(q, 10, include_distances=True) for q in queries],
        "vectors": [index.get_item_vector(i) for i in present[::5]],
        "distances": [index.get_distance(present[i], present[-1 - i]) for i in range(20)],
        "batch": [a.tolist() for a in index.get_nns_by_vectors(queries, 7, include_distances=True)],
    }


def copies(index):
    """(how, copy) for every way of copying an index."""
    data = index.serialize()
    assert isinstance(data, bytes)
    yield "pickle", pickle.loads(pickle.dumps(index))
    yield "pickle protocol 0", pickle.loads(pickle.dumps(index, protocol=0))
    yield "deepcopy", copy.deepcopy(index)
    yield "copy", copy.copy(index)
    yield "deserialize bytes", AnnoyIndex.deserialize(data)
    yield "deserialize bytearray", AnnoyIndex.deserialize(bytearray(data), prefault=True)
    yield "deserialize memoryview", AnnoyIndex.deserialize(memoryview(data))
    yield "deserialize numpy buffer", AnnoyIndex.deserialize(np.frombuffer(data, np.uint8))
    yield "deserialize keyword", AnnoyIndex.deserialize(data=data, prefault=False)
    yield "deserialize via instance", index.deserialize(data)


@pytest.mark.parametrize("metric", METRICS)
def test_copies_of_a_built_index_answer_identically(metric):
    index = built(metric)
    queries = make_data(metric, 15, dims(metric), seed=99)
    expected = answers(index, queries)
    for how, twin in copies(index):
        assert type(twin) is AnnoyIndex, how
        assert answers(twin, queries) == expected, how
    # The original is untouched by being copied.
    assert answers(index, queries) == expected


@pytest.mark.parametrize("metric", METRICS)
def test_copies_of_a_loaded_index_answer_identically(metric, tmp_path):
    index = built(metric)
    path = tmp_path / "index.copse"
    index.save(path)
    loaded = AnnoyIndex(dims(metric), metric)
    loaded.load(path)
    queries = make_data(metric, 15, dims(metric), seed=98)
    expected = answers(loaded, queries)
    # serialize() gives the file's bytes exactly.
    assert loaded.serialize() == path.read_bytes() == index.serialize()
    for how, twin in copies(loaded):
        assert answers(twin, queries) == expected, how


@pytest.mark.parametrize("case", ANNOY_CASES, ids=[c["name"] for c in ANNOY_CASES])
def test_copies_of_an_annoy_file_answer_as_annoy_did(case):
    index = AnnoyIndex(case["dims"], case["metric"])
    index.load(FIXTURES / case["file"])
    for how, twin in copies(index):
        assert twin.get_n_items() == case["n_items"], how
        assert twin.get_n_trees() == case["n_trees"], how
        assert (twin.f, twin.metric) == (case["dims"], case["metric"]), how
        for q in case["by_item"]:
            got = twin.get_nns_by_item(q["item"], q["n"], q["search_k"], include_distances=True)
            assert got == index.get_nns_by_item(q["item"], q["n"], q["search_k"], include_distances=True), how
            assert got[0] == q["ids"], how
        for q in case["by_vector"]:
            got = twin.get_nns_by_vector(q["vector"], q["n"], q["search_k"], include_distances=True)
            assert got == index.get_nns_by_vector(q["vector"], q["n"], q["search_k"], include_distances=True), how
            assert got[0] == q["ids"], how
        for item in case["items"]:
            assert twin.get_item_vector(item["id"]) == index.get_item_vector(item["id"]), how
        for pair in case["distances"]:
            assert twin.get_distance(pair["a"], pair["b"]) == index.get_distance(pair["a"], pair["b"]), how


def test_annoy_file_serializes_to_a_copse_index_that_loads_back(tmp_path):
    case = ANNOY_CASES[0]
    index = AnnoyIndex(case["dims"], case["metric"])
    index.load(FIXTURES / case["file"])
    data = index.serialize()
    assert data != (FIXTURES / case["file"]).read_bytes()  # converted, so it names f and metric
    path = tmp_path / "converted.copse"
    path.write_bytes(data)
    again = AnnoyIndex(case["dims"], case["metric"])
    again.load(path)
    q = case["by_item"][0]
    assert again.get_nns_by_item(q["item"], q["n"], q["search_k"]) == q["ids"]


def test_a_copy_is_independent_of_the_original():
    index = built("euclidean")
    twin = copy.deepcopy(index)
    pickled = pickle.loads(pickle.dumps(index))
    expected = index.get_nns_by_item(0, 5)
    index.unload()
    assert index.get_n_items() == 0
    assert twin.get_nns_by_item(0, 5) == expected
    assert pickled.get_nns_by_item(0, 5) == expected
    twin.unload()
    assert pickled.get_nns_by_item(0, 5) == expected


def test_a_copy_has_no_builder_like_a_loaded_index():
    index = built("angular")
    for twin in (copy.copy(index), pickle.loads(pickle.dumps(index)), AnnoyIndex.deserialize(index.serialize())):
        with pytest.raises(RuntimeError, match="loaded index"):
            twin.add_item(N, [1.0] * 12)
        with pytest.raises(RuntimeError, match="loaded index"):
            twin.unbuild()
        assert "in memory" in repr(twin)
    # The original built index still has its items to rebuild from.
    index.unbuild()
    index.add_item(N, [1.0] * 12)


def test_pickle_keeps_the_seed_and_verbose(capfd):
    data = make_data("euclidean", 200, 6, seed=4)

    def build_with(index):
        for i, v in enumerate(data):
            index.add_item(i, v)
        index.build(4)
        return [index.get_nns_by_item(i, 5, search_k=8) for i in range(0, 200, 9)]

    reference = AnnoyIndex(6, "euclidean")
    reference.set_seed(12345)
    expected = build_with(reference)
    other_seed = AnnoyIndex(6, "euclidean")
    other_seed.set_seed(54321)
    assert build_with(other_seed) != expected  # the seed matters, so the check below can fail

    original = AnnoyIndex(6, "euclidean")
    original.set_seed(12345)
    original.add_item(0, data[0])
    original.build(1)
    original.verbose(True)
    capfd.readouterr()
    for twin in (pickle.loads(pickle.dumps(original)), copy.deepcopy(original)):
        twin.unload()  # an empty index with the copied seed and verbosity
        assert build_with(twin) == expected
        assert "copse: building" in capfd.readouterr().err
    # deserialize starts from the defaults: quiet.
    quiet = AnnoyIndex.deserialize(original.serialize())
    quiet.unload()
    build_with(quiet)
    assert capfd.readouterr().err == ""


def test_unbuilt_index_cannot_be_pickled_copied_or_serialized():
    index = AnnoyIndex(3, "angular")
    index.add_item(0, [1, 2, 3])
    with pytest.raises(TypeError, match=r"not built: call build\(\) or load\(\) first"):
        pickle.dumps(index)
    with pytest.raises(TypeError, match="not built"):
        copy.copy(index)
    with pytest.raises(TypeError, match="not built"):
        copy.deepcopy(index)
    with pytest.raises(RuntimeError, match="not built"):
        index.serialize()
    # Still fine once built; after unbuild() it is an unbuilt index again.
    index.build(1)
    assert pickle.loads(pickle.dumps(index)).get_n_items() == 1
    index.unbuild()
    with pytest.raises(TypeError, match="not built"):
        pickle.dumps(index)


def test_deserialize_rejects_bad_bytes_with_value_error():
    index = built("angular")
    data = index.serialize()
    bad = [
        b"",
        b"\0" * 64,
        data[:16],
        data[: len(data) // 2],
        data[:-1],
        data + b"\0",
        (FIXTURES / "angular.ann").read_bytes(),  # an Annoy file names neither f nor metric
    ]
    # One flipped byte anywhere: the checksums catch it.
    rng = np.random.default_rng(5)
    for at in [0, 8, 40, 100, len(data) // 3, len(data) // 2, len(data) - 1] + list(rng.integers(0, len(data), 40)):
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        bad.append(bytes(flipped))
    for b in bad:
        with pytest.raises(ValueError, match="not a valid copse index"):
            AnnoyIndex.deserialize(b)
    state = index.__reduce__()[2]
    for b in bad:
        with pytest.raises(ValueError, match="not a valid copse index"):
            AnnoyIndex(12, "angular").__setstate__({**state, "index": b})


def test_deserialize_rejects_what_is_not_a_buffer_as_cpython_does():
    for data in ["text", None, 3, [1, 2], {"index": b""}]:
        with pytest.raises(TypeError) as ours:
            AnnoyIndex.deserialize(data)
        with pytest.raises(TypeError) as cpython:
            memoryview(data)
        assert str(ours.value) == str(cpython.value)
    with pytest.raises(TypeError, match="prefault"):
        AnnoyIndex.deserialize(b"", prefault="yes")


def test_unpickling_checks_f_and_metric():
    state = built("angular").__reduce__()[2]
    with pytest.raises(ValueError, match="does not fit"):
        AnnoyIndex(13, "angular").__setstate__(state)
    with pytest.raises(ValueError, match="does not fit"):
        AnnoyIndex(12, "euclidean").__setstate__(state)
    with pytest.raises(ValueError, match="no 'index'"):
        AnnoyIndex(12, "angular").__setstate__({})


def test_pickle_carries_the_serialized_index_and_settings():
    index = built("dot")
    index.set_seed(2**64 - 3)
    cls, args, state = index.__reduce__()
    assert cls is AnnoyIndex and args == (12, "dot")
    assert state == {"index": index.serialize(), "seed": 2**64 - 3, "verbose": False}


def test_copies_of_an_on_disk_build_answer_identically(tmp_path):
    data = make_data("manhattan", 200, 7, seed=8)
    index = AnnoyIndex(7, "manhattan")
    index.on_disk_build(tmp_path / "disk.copse")
    index.add_items(None, data)
    index.build(4)
    expected = [index.get_nns_by_item(i, 6, include_distances=True) for i in range(0, 200, 7)]
    assert index.serialize() == (tmp_path / "disk.copse").read_bytes()
    for twin in (copy.copy(index), copy.deepcopy(index), pickle.loads(pickle.dumps(index))):
        assert [twin.get_nns_by_item(i, 6, include_distances=True) for i in range(0, 200, 7)] == expected
    assert "disk.copse" in repr(copy.copy(index))
