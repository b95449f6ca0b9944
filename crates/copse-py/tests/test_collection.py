"""copse.Collection from Python: adds, upserts, deletes, commits and compactions against a
brute-force oracle over the live items; readers and writers in separate processes; errors."""

import subprocess
import sys

import numpy as np
import pytest

from copse import Collection, CollectionFilter

from conftest import METRICS, make_data, oracle_distances, oracle_order

PAD = 2**64 - 1


def exact_search(c, live, queries, n):
    """The collection's answers and the oracle's distances, for an exhaustive search_k."""
    ids, dist = c.search(queries, n, search_k=1 << 20, n_threads=2)
    keys = sorted(live)
    data = np.array([live[k] for k in keys], dtype=np.float32)
    return ids, dist, keys, data


@pytest.mark.parametrize("metric", METRICS)
def test_changes_match_the_oracle(tmp_path, metric):
    f = 70 if metric == "hamming" else 8
    data = make_data(metric, 600, f, seed=3)
    c = Collection.create(tmp_path / "c", f, metric, n_trees=3, graph=False, seed=1)
    c.set_merge_policy(factor=2, floor=50)
    live = {}
    big = 2**63 + 5
    ids = np.array([big + 3 * i if i % 4 == 0 else 3 * i for i in range(600)], dtype=np.uint64)
    for start in range(0, 600, 150):
        c.add(ids[start : start + 150], data[start : start + 150])
        live.update({int(i): data[k] for k, i in enumerate(ids[start : start + 150], start)})
        assert len(c) == len(live) - 150, "uncommitted items are not searched"
        c.commit()
        assert len(c) == len(live)
    gone = [int(i) for i in ids[::7]]
    assert c.delete(gone + [12345678]) == len(gone)
    for i in gone:
        del live[i]
    changed = ids[1::11][:20]
    new_vectors = make_data(metric, len(changed), f, seed=9)
    c.upsert(changed, new_vectors)
    live.update({int(i): v for i, v in zip(changed, new_vectors)})
    with pytest.raises(ValueError):
        c.add(ids[2:3], data[2:3])
    c.commit(user_data=b"offset 42")
    c.wait_for_merges()
    assert c.user_data == b"offset 42"
    for state in ("segments", "compacted"):
        if state == "compacted":
            c.compact()
            assert len(c.segments()) == 1 and c.segments()[0]["n_deleted"] == 0
        assert len(c) == len(live)
        assert sorted(int(i) for i in c.ids()) == sorted(live)
        assert c.ids().dtype == np.uint64
        for k in list(live)[::50]:
            assert k in c
            np.testing.assert_array_equal(c.get_item_vector(k), live[k])
            other = list(live)[-1]
            want = oracle_distances(metric, np.array([live[other]]), live[k])[0]
            assert c.get_distance(k, other) == pytest.approx(want, rel=1e-3, abs=1e-3)
        queries = make_data(metric, 20, f, seed=11)
        found, dist, keys, kept = exact_search(c, live, queries, 10)
        assert found.dtype == np.uint64 and dist.dtype == np.float32
        assert found.shape == dist.shape == (20, 10)
        for q, row_ids, row_dist in zip(queries, found, dist):
            truth = oracle_distances(metric, kept, q)
            want = [truth[j] for j in oracle_order(metric, truth)[:10]]
            np.testing.assert_allclose(row_dist, want, rtol=1e-3, atol=1e-3)
            got = oracle_distances(metric, np.array([live[int(i)] for i in row_ids]), q)
            np.testing.assert_allclose(got, row_dist, rtol=1e-3, atol=1e-3)
        # Filtered: every third live id allowed, as a CollectionFilter and as raw ids.
        allowed = keys[::3]
        made = c.make_filter(np.array(allowed + [999_999_999], dtype=np.uint64))
        assert isinstance(made, CollectionFilter) and len(made) == len(allowed)
        subset = np.array([live[k] for k in allowed], dtype=np.float32)
        for flt in (made, allowed):
            f_ids, f_dist = c.search(queries, 5, search_k=1 << 20, filter=flt)
            for q, row_ids, row_dist in zip(queries, f_ids, f_dist):
                assert set(int(i) for i in row_ids) <= set(allowed)
                truth = oracle_distances(metric, subset, q)
                want = [truth[j] for j in oracle_order(metric, truth)[:5]]
                np.testing.assert_allclose(row_dist, want, rtol=1e-3, atol=1e-3)
    c.verify()
    # More neighbours than items: padded rows.
    few = Collection.create(tmp_path / "few", f, metric, graph=False)
    few.add([5, 6], data[:2])
    few.commit()
    padded, pad_dist = few.search(data[:1], 2)
    assert padded.shape == (1, 2)
    empty_ids, _ = few.search(data[:1], 0)
    assert empty_ids.shape == (1, 0)
    few.delete([5])
    few.commit()
    got, got_dist = few.search(data[:1], 3)
    assert got.shape == (1, 1) and int(got[0, 0]) == 6
    c.close()


@pytest.mark.parametrize("dtype", ["float16", np.int8])
def test_row_types(tmp_path, dtype):
    """Segments store rows as ``dtype``: the collection answers as the oracle over the stored
    values, through commits, a compaction, reopening and segments built elsewhere."""
    f, metric = 10, "euclidean"
    data = make_data(metric, 300, f, seed=5)
    if dtype == "float16":
        stored = data.astype(np.float16).astype(np.float32)
    else:
        scale = np.abs(data).max(axis=1, keepdims=True) / np.float32(127)
        codes = np.clip(np.sign(data / scale) * np.floor(np.abs(data / scale) + 0.5), -127, 127)
        stored = (codes * scale).astype(np.float32)
    c = Collection.create(tmp_path / "c", f, metric, n_trees=3, graph=False, dtype=dtype)
    name = "float16" if dtype == "float16" else "int8"
    assert c.dtype == name and c.build_options()["dtype"] == name
    c.set_merge_policy(factor=0)
    c.add(np.arange(200, dtype=np.uint64), data[:200])
    c.commit()
    # Segments built elsewhere (as Spark does) from the options dict keep the row type.
    number = c.reserve_segments(1)[0]
    Collection.build_segment(tmp_path / "c", c.build_options(), number, np.arange(200, 300), data[200:])
    c.attach_segments([number])
    assert len(c.segments()) == 2
    queries = make_data(metric, 10, f, seed=6)
    for state in ("segments", "compacted", "reopened"):
        if state == "compacted":
            c.compact()
        if state == "reopened":
            c.close()
            c = Collection.open(tmp_path / "c", readonly=True)
            assert c.dtype == name
        for k in range(0, 300, 17):
            np.testing.assert_allclose(c.get_item_vector(k), stored[k], rtol=1e-6, atol=1e-7)
        found, dist = c.search(queries, 5, search_k=1 << 20)
        for q, row_ids, row_dist in zip(queries, found, dist):
            truth = oracle_distances(metric, stored, q)
            want = [truth[j] for j in oracle_order(metric, truth)[:5]]
            np.testing.assert_allclose(row_dist, want, rtol=1e-4, atol=1e-4)
            got = oracle_distances(metric, stored[row_ids.astype(np.int64)], q)
            np.testing.assert_allclose(got, row_dist, rtol=1e-4, atol=1e-4)
    c.close()
    w = Collection.create(tmp_path / "w", f, metric, dtype=dtype)
    if dtype == "float16":
        # Refused when added, not at the commit.
        with pytest.raises(ValueError, match="float16"):
            w.add([1], np.full((1, f), 70000.0, dtype=np.float32))
        assert w.n_pending() == 0
    w.close()
    with pytest.raises(ValueError, match="dtype"):
        Collection.create(tmp_path / "x", f, metric, dtype="float64")
    with pytest.raises(ValueError):
        Collection.create(tmp_path / "y", 64, "hamming", dtype="float16")
    h = Collection.create(tmp_path / "h", 64, "hamming")
    assert h.dtype == "bits" and h.build_options()["dtype"] == "bits"
    number = h.reserve_segments(1)[0]
    Collection.build_segment(tmp_path / "h", h.build_options(), number, [1], np.ones((1, 64)))
    h.attach_segments([number])
    assert len(h) == 1
    h.close()


def test_rollback_context_manager_and_reopen(tmp_path):
    path = tmp_path / "c"
    data = make_data("euclidean", 40, 4, seed=1)
    with Collection.create(path, 4, "euclidean", graph=False) as c:
        c.add(range(20), data[:20])
    # The clean exit committed and released the lock.
    with Collection.open(path) as c:
        assert len(c) == 20
        c.add(range(20, 30), data[20:30])
        c.rollback()
        assert c.n_pending() == 0
        c.add(range(20, 30), data[20:30])
        with pytest.raises(RuntimeError):
            with c:
                raise RuntimeError("boom")
    # The exception rolled back and closed.
    c = Collection.open(path, readonly=True)
    assert len(c) == 20 and not c.writable
    with pytest.raises(PermissionError):
        c.add([99], data[:1])
    with pytest.raises(ValueError, match="closed"):
        w = Collection.open(path)
        w.close()
        w.add([1], data[:1])


def test_bad_arguments(tmp_path):
    c = Collection.create(tmp_path / "c", 3, "angular")
    with pytest.raises(ValueError, match="metric"):
        Collection.create(tmp_path / "d", 3, "nope")
    with pytest.raises(ValueError):
        Collection.create(tmp_path / "e", 0)
    with pytest.raises(IndexError):
        c.add([1], np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="one id per row"):
        c.add([1, 2], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        c.add([1], np.array([[np.nan, 0, 0]], dtype=np.float32))
    with pytest.raises(ValueError):
        c.add([1, 1], np.ones((2, 3), dtype=np.float32))
    with pytest.raises(IndexError):
        c.add([-1], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(OverflowError):
        c.add([2**64], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(IndexError):
        c.get_item_vector(7)
    with pytest.raises(IndexError):
        c.search(np.zeros((1, 2), dtype=np.float32), 3)
    with pytest.raises(ValueError):
        c.search(np.zeros((1, 3), dtype=np.float32), -1)
    with pytest.raises(BlockingIOError):
        Collection.open(tmp_path / "c")
    with pytest.raises(OSError, match="no manifest"):
        Collection.open(tmp_path / "missing", readonly=True)
    # A stale filter is refused.
    c.add([1, 2], np.eye(3, dtype=np.float32)[:2])
    c.commit()
    old = c.make_filter([1])
    c.add([3], np.eye(3, dtype=np.float32)[2:])
    c.commit()
    with pytest.raises(TypeError, match="generation"):
        c.search(np.ones((1, 3), dtype=np.float32), 1, filter=old)


WRITER = """
import sys
import numpy as np
from copse import Collection
path, data = sys.argv[1], np.load(sys.argv[2])
with Collection.open(path) as c:
    c.add(range(100, 100 + len(data)), data)
"""


def test_a_writer_in_another_process(tmp_path):
    """A reader in this process sees another process's commit after refresh; the writer's lock
    holds across processes."""
    path = str(tmp_path / "c")
    f = 6
    data = make_data("euclidean", 300, f, seed=5)
    np.save(tmp_path / "more.npy", data[100:])
    with Collection.create(path, f, "euclidean", graph=False) as c:
        c.add(range(100), data[:100])
    reader = Collection.open(path, readonly=True)
    holder = Collection.open(path)
    blocked = subprocess.run(
        [sys.executable, "-c", WRITER, path, str(tmp_path / "more.npy")],
        capture_output=True,
        text=True,
    )
    assert blocked.returncode != 0 and "BlockingIOError" in blocked.stderr
    holder.close()
    subprocess.run(
        [sys.executable, "-c", WRITER, path, str(tmp_path / "more.npy")], check=True
    )
    assert len(reader) == 100
    reader.refresh()
    assert len(reader) == 300
    found, dist = reader.search(data[150:151], 1, search_k=1 << 20)
    assert int(found[0, 0]) == 150 and dist[0, 0] == 0.0
