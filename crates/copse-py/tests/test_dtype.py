"""Half-precision and int8 rows (``AnnoyIndex(f, metric, dtype=...)``): the index stores,
searches and returns the rounded values, checked against a brute force over the same rounded
values in float64."""

import pickle

import numpy as np
import pytest

from copse import AnnoyIndex

FLOAT_METRICS = ["angular", "euclidean", "manhattan", "dot"]


def rounded(data, dtype, metric):
    if dtype == "int8":
        # One scale per row, max |x| / 127; angular stores the unit vector.
        data = data.astype(np.float32)
        if metric == "angular":
            norms = np.linalg.norm(data.astype(np.float64), axis=1, keepdims=True)
            data = data / norms.astype(np.float32)
        scale = np.abs(data).max(axis=1, keepdims=True) / np.float32(127)
        codes = np.clip(np.round(data / scale), -127, 127)
        return (codes * scale).astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return data.astype(np.float16).astype(np.float64)
    # bfloat16: an f32's upper half, rounded to nearest even.
    bits = data.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).astype(np.float64)


def oracle(metric, stored, q):
    q = q.astype(np.float64)
    if metric == "angular":
        cos = stored @ q / (np.linalg.norm(stored, axis=1) * np.linalg.norm(q))
        return np.sqrt(np.maximum(2 - 2 * cos, 0))
    if metric == "euclidean":
        return np.linalg.norm(stored - q, axis=1)
    if metric == "manhattan":
        return np.abs(stored - q).sum(axis=1)
    return stored @ q


@pytest.mark.parametrize("metric", FLOAT_METRICS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("item_codes", [None, False, 4, 8])
def test_answers_match_brute_force_over_rounded_values(metric, dtype, item_codes):
    if item_codes is not None and (metric == "manhattan" or dtype == "int8"):
        pytest.skip("manhattan keeps no item codes; int8 rows are item codes")
    rng = np.random.default_rng(3)
    data = rng.standard_normal((800, 24)).astype(np.float32)
    index = AnnoyIndex(24, metric, dtype=dtype, item_codes=item_codes)
    assert index.dtype == dtype
    index.add_items(None, data)
    index.build(6, graph=True)
    stored = rounded(data, dtype, metric)
    # Half types round exactly as numpy does; int8's scale may differ in the last bit.
    np.testing.assert_allclose(index.get_item_vector(5), stored[5], rtol=2e-7 if dtype == "int8" else 0)
    for q in rng.standard_normal((10, 24)).astype(np.float32):
        ids, dists = index.get_nns_by_vector(q, 10, search_k=8000, include_distances=True)
        exact = oracle(metric, stored, q)
        np.testing.assert_allclose(dists, exact[ids], rtol=1e-4, atol=1e-4)
        best = np.sort(-exact if metric == "dot" else exact)[9]
        got = np.array([(-d if metric == "dot" else d) for d in dists])
        assert (got <= best + 1e-4 * max(1.0, abs(best))).mean() >= 0.9


def test_saved_loaded_and_pickled_half_indexes_answer_alike(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.standard_normal((300, 16)).astype(np.float32)
    index = AnnoyIndex(16, "euclidean", dtype=np.float16)
    index.add_items(None, data)
    index.build(4)
    path = str(tmp_path / "half.ann")
    index.save(path)
    loaded = AnnoyIndex(16, "euclidean")
    loaded.load(path)
    assert loaded.dtype == "float16"
    copy = pickle.loads(pickle.dumps(index))
    q = data[7]
    want = index.get_nns_by_vector(q, 5, include_distances=True)
    assert loaded.get_nns_by_vector(q, 5, include_distances=True) == want
    assert copy.get_nns_by_vector(q, 5, include_distances=True) == want
    # The item itself, exactly 0 from its stored value.
    assert loaded.get_nns_by_item(7, 1, include_distances=True) == ([7], [0.0])


def test_int8_files_are_small_and_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.standard_normal((2000, 96)).astype(np.float32)
    sizes = {}
    for dtype in ["float32", np.int8]:
        index = AnnoyIndex(96, "euclidean", dtype=dtype)
        index.add_items(None, data)
        index.build(2, graph=True)
        path = str(tmp_path / f"{np.dtype(dtype).name}.ann")
        index.save(path)
        sizes[np.dtype(dtype).name] = len(index.serialize())
        loaded = AnnoyIndex(96, "euclidean")
        loaded.load(path)
        assert loaded.dtype == np.dtype(dtype).name
        q = data[11]
        assert loaded.get_nns_by_vector(q, 5, include_distances=True) == index.get_nns_by_vector(
            q, 5, include_distances=True
        )
        assert loaded.get_nns_by_item(11, 1, include_distances=True) == ([11], [0.0])
    # int8 rows are the item codes float32 files keep beside their rows: the rows' bytes go.
    assert sizes["int8"] <= sizes["float32"] - 0.9 * data.nbytes, sizes


def test_four_bit_codes_are_the_default_from_256_dimensions_and_shrink_the_file():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((500, 256)).astype(np.float32)
    sizes = {}
    for codes in [None, 8, 4]:
        index = AnnoyIndex(256, "angular", dtype="float16", item_codes=codes)
        index.add_items(None, data)
        index.build(2, graph=True)
        sizes[codes] = len(index.serialize())
        # The nearest of each item is itself, found through the codes and re-ranked exactly.
        assert index.get_nns_by_item(3, 1, include_distances=True) == ([3], [0.0])
    # 8-bit codes are 8 + 256 bytes an item (rounded to 16); 4-bit ones 8 + 128 (to 144).
    assert sizes[8] - sizes[4] == 500 * (272 - 144), sizes
    assert sizes[None] == sizes[4]


def test_bad_dtypes_and_values_raise():
    for codes in [5, 0, 16, "4", 4.0, -8]:
        with pytest.raises(ValueError, match="item_codes"):
            AnnoyIndex(4, "angular", dtype="float16", item_codes=codes)
    with pytest.raises(ValueError):
        AnnoyIndex(4, "angular", item_codes=4)
    with pytest.raises(ValueError):
        AnnoyIndex(4, "angular", dtype="int8", item_codes=4)
    with pytest.raises(ValueError, match="dtype"):
        AnnoyIndex(4, "angular", dtype="int4")
    with pytest.raises(ValueError):
        AnnoyIndex(64, "hamming", dtype="float16")
    with pytest.raises(ValueError):
        AnnoyIndex(4, "manhattan", dtype="float16", item_codes=True)
    with pytest.raises(ValueError):
        AnnoyIndex(4, "euclidean", dtype="int8", item_codes=True)
    with pytest.raises(ValueError):
        AnnoyIndex(64, "hamming", dtype=np.int8)
    index = AnnoyIndex(3, "dot", dtype="i8")
    with pytest.raises(ValueError):
        index.add_item(0, [1.0, float("inf"), 0.0])
    assert index.get_n_items() == 0
    index = AnnoyIndex(3, "euclidean", dtype="f16")
    with pytest.raises(ValueError, match="float16"):
        index.add_item(0, [1.0, 1e5, 0.0])
    with pytest.raises(ValueError):
        index.add_item(0, [1.0, float("nan"), 0.0])
    assert index.get_n_items() == 0
    index.add_item(0, [65504.0, -1.0, 0.5])
    assert index.get_item_vector(0) == [65504.0, -1.0, 0.5]
