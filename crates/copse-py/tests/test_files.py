"""Saving, loading and unloading: Annoy's file semantics, paths, errors, and no memory growth
over 100,000 load/unload pairs."""

import os
import pathlib

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import METRICS, make_data


def built(metric="euclidean", n=200, f=8, trees=8, seed=0):
    index = AnnoyIndex(f, metric)
    index.add_items(None, make_data(metric, n, f, seed))
    index.build(trees)
    return index


@pytest.mark.parametrize("metric", METRICS)
def test_save_then_index_is_loaded_and_answers_the_same(metric, tmp_path):
    index = built(metric)
    queries = [index.get_nns_by_item(i, 10, include_distances=True) for i in range(0, 200, 7)]
    vectors = [index.get_item_vector(i) for i in range(0, 200, 7)]
    assert index.save(tmp_path / "a.copse") is True
    # Annoy maps what it saved: the index now behaves as a loaded one.
    with pytest.raises(RuntimeError, match="loaded index"):
        index.add_item(0, [0.0] * 8)
    with pytest.raises(RuntimeError, match="loaded index"):
        index.unbuild()
    with pytest.raises(RuntimeError, match="loaded index"):
        index.build(2)
    assert index.get_n_items() == 200 and index.get_n_trees() == 8
    assert [index.get_nns_by_item(i, 10, include_distances=True) for i in range(0, 200, 7)] == queries
    other = AnnoyIndex(8, metric)
    assert other.load(tmp_path / "a.copse") is True
    assert [other.get_nns_by_item(i, 10, include_distances=True) for i in range(0, 200, 7)] == queries
    assert [other.get_item_vector(i) for i in range(0, 200, 7)] == vectors


def test_paths_str_and_pathlib(tmp_path):
    index = built()
    index.save(str(tmp_path / "s.copse"))
    index.save(pathlib.Path(tmp_path / "p.copse"))
    assert (tmp_path / "s.copse").read_bytes() == (tmp_path / "p.copse").read_bytes()
    for path in (str(tmp_path / "s.copse"), tmp_path / "p.copse"):
        fresh = AnnoyIndex(8, "euclidean")
        assert fresh.load(path) is True
        assert fresh.get_n_items() == 200


def test_save_of_a_loaded_index_writes_a_copy_and_maps_it(tmp_path):
    index = built()
    before = [index.get_nns_by_item(i, 5) for i in range(20)]
    index.save(tmp_path / "a.copse")
    index.save(tmp_path / "b.copse")
    assert (tmp_path / "a.copse").read_bytes() == (tmp_path / "b.copse").read_bytes()
    assert repr(index).endswith(f"loaded from '{tmp_path / 'b.copse'}'>")
    # Saving over the mapped file itself is safe (a new file is renamed over it).
    index.save(tmp_path / "b.copse")
    assert [index.get_nns_by_item(i, 5) for i in range(20)] == before
    assert (tmp_path / "a.copse").read_bytes() == (tmp_path / "b.copse").read_bytes()


def test_save_unbuilt_is_os_error(tmp_path):
    index = AnnoyIndex(3, "angular")
    with pytest.raises(OSError, match="hasn't been built"):
        index.save(tmp_path / "x.copse")
    index.add_item(0, [1, 2, 3])
    with pytest.raises(OSError, match="hasn't been built"):
        index.save(tmp_path / "x.copse")
    assert not (tmp_path / "x.copse").exists()


def test_file_errors_are_os_errors_with_errno(tmp_path):
    index = AnnoyIndex(8, "euclidean")
    with pytest.raises(FileNotFoundError) as missing:
        index.load(tmp_path / "missing.copse")
    assert missing.value.errno == 2 and missing.value.filename == str(tmp_path / "missing.copse")
    with pytest.raises(FileNotFoundError):
        built().save(tmp_path / "no-such-dir" / "x.copse")
    with pytest.raises(OSError):
        index.load(tmp_path)  # a directory


def test_load_rejects_other_files_and_leaves_the_index_unchanged(tmp_path):
    index = built()
    index.save(tmp_path / "good.copse")
    (tmp_path / "junk").write_bytes(b"not an index at all" * 10)
    (tmp_path / "empty").write_bytes(b"")
    good = (tmp_path / "good.copse").read_bytes()
    (tmp_path / "truncated").write_bytes(good[: len(good) // 2])
    for name in ("junk", "empty", "truncated"):
        with pytest.raises(OSError):
            index.load(tmp_path / name)
        assert index.get_n_items() == 200  # still the good index
        assert len(index.get_nns_by_item(0, 5)) == 5
    with pytest.raises(OSError, match="9 dimensions|expected euclidean with 9"):
        AnnoyIndex(9, "euclidean").load(tmp_path / "good.copse")
    with pytest.raises(OSError, match="expected angular"):
        AnnoyIndex(8, "angular").load(tmp_path / "good.copse")


def test_load_replaces_added_items(tmp_path):
    built().save(tmp_path / "a.copse")
    index = AnnoyIndex(8, "euclidean")
    index.add_item(1000, [0.0] * 8)
    assert index.load(tmp_path / "a.copse") is True
    assert index.get_n_items() == 200


def test_load_prefault_and_reload(tmp_path):
    built().save(tmp_path / "a.copse")
    index = AnnoyIndex(8, "euclidean")
    index.load(tmp_path / "a.copse", prefault=True)
    first = index.get_nns_by_item(3, 5)
    index.load(str(tmp_path / "a.copse"), True)
    assert index.get_nns_by_item(3, 5) == first
    with pytest.raises(TypeError):
        index.load(tmp_path / "a.copse", prefault="yes")


def test_unload_resets_to_an_empty_index(tmp_path):
    index = built()
    index.save(tmp_path / "a.copse")
    assert index.unload() is True
    assert index.get_n_items() == 0 and index.get_n_trees() == 0
    with pytest.raises(IndexError):
        index.get_nns_by_item(0, 1)
    assert index.unload() is True
    # An unloaded index can be filled and built again.
    index.add_item(0, [1.0] * 8)
    index.build(1)
    assert index.get_nns_by_item(0, 1) == [0]


def test_save_load_unload_cycles(tmp_path):
    data = make_data("angular", 300, 16, seed=5)
    expected = None
    index = AnnoyIndex(16, "angular")
    for cycle in range(20):
        index.unload()
        index.add_items(None, data)
        index.build(5)
        path = tmp_path / f"cycle{cycle % 3}.copse"
        index.save(path)
        index.unload()
        index.load(path)
        got = [index.get_nns_by_item(i, 5) for i in range(0, 300, 30)]
        if expected is None:
            expected = got
        assert got == expected


def test_saved_file_survives_the_object(tmp_path):
    index = built()
    index.save(tmp_path / "a.copse")
    before = index.get_nns_by_item(0, 5)
    del index
    again = AnnoyIndex(8, "euclidean")
    again.load(tmp_path / "a.copse")
    assert again.get_nns_by_item(0, 5) == before


def _rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_load_unload_100k_times_without_memory_growth(tmp_path):
    path = tmp_path / "a.copse"
    built(n=1000, f=16).save(path)
    index = AnnoyIndex(16, "euclidean")
    spath = str(path)
    for _ in range(2_000):  # warm up allocator pools and caches
        index.load(spath)
        index.unload()
    before = _rss_kib()
    for _ in range(100_000):
        index.load(spath)
        index.unload()
    growth = _rss_kib() - before
    # A leak of even one 4 KiB page (a mapping) or 64 bytes per pair would exceed this.
    assert growth < 2048, f"resident memory grew by {growth} KiB over 100,000 load/unload pairs"
    index.load(spath)
    assert index.get_n_items() == 1000


@pytest.mark.parametrize("metric", METRICS)
def test_on_disk_build(metric, tmp_path):
    f = 64 if metric == "hamming" else 8
    data = make_data(metric, 500, f, seed=6)
    path = tmp_path / "disk.copse"
    index = AnnoyIndex(f, metric)
    assert index.on_disk_build(path) is True
    index.add_items(None, data)
    index.set_seed(7)
    assert index.build(6) is True
    assert path.exists()
    answers = [index.get_nns_by_item(i, 5, include_distances=True) for i in range(0, 500, 25)]
    # Same as an in-memory build with the same seed, byte for byte.
    memory = AnnoyIndex(f, metric)
    memory.add_items(None, data)
    memory.set_seed(7)
    memory.build(6)
    memory.save(tmp_path / "memory.copse")
    assert path.read_bytes() == (tmp_path / "memory.copse").read_bytes()
    # The file is a complete index.
    other = AnnoyIndex(f, metric)
    other.load(path)
    assert [other.get_nns_by_item(i, 5, include_distances=True) for i in range(0, 500, 25)] == answers
    # Saving to the build's own file keeps it; saving elsewhere copies it.
    assert index.save(str(path)) is True
    assert path.read_bytes() == (tmp_path / "memory.copse").read_bytes()
    assert index.save(tmp_path / "copy.copse") is True
    assert (tmp_path / "copy.copse").read_bytes() == path.read_bytes()


def test_on_disk_build_unbuild_and_rebuild(tmp_path):
    path = tmp_path / "disk.copse"
    data = make_data("euclidean", 300, 8, seed=1)
    index = AnnoyIndex(8, "euclidean")
    index.on_disk_build(str(path))
    index.add_items(None, data[:200])
    index.build(4)
    first = path.read_bytes()
    with pytest.raises(RuntimeError, match="unbuild"):
        index.on_disk_build(path)
    index.unbuild()
    index.add_items(None, data[200:])
    assert index.get_n_items() == 300
    index.build(4)
    assert index.get_n_items() == 300 and path.read_bytes() != first
    assert index.get_nns_by_vector(data[250], 1, search_k=10_000) == [250]
    loaded = AnnoyIndex(8, "euclidean")
    loaded.load(path)
    assert loaded.get_n_items() == 300


def test_on_disk_build_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        AnnoyIndex(3, "angular").on_disk_build(tmp_path / "missing-dir" / "x.copse")
    index = AnnoyIndex(3, "angular")
    index.add_item(0, [1, 2, 3])
    index.build(1)
    index.save(tmp_path / "a.copse")
    with pytest.raises(RuntimeError, match="loaded index"):
        index.on_disk_build(tmp_path / "b.copse")
    # Items added before the call move to the file; nothing is written at the path until the
    # build succeeds.
    late = AnnoyIndex(3, "angular")
    late.add_item(0, [1, 2, 3])
    late.add_item(1, [3, 2, 1])
    late.on_disk_build(tmp_path / "late.copse")
    assert not (tmp_path / "late.copse").exists()
    late.build(2)
    assert late.get_item_vector(1) == [3.0, 2.0, 1.0]
    assert (tmp_path / "late.copse").exists()
