"""Labels stored in the index: add_item(label=), add_items(labels=), get_item_label and
get_id_by_label, before and after build, through save/load and pickling, with sparse ids."""

import pickle

import numpy as np
import pytest

from copse import AnnoyIndex

from conftest import make_data

LABELS = ["königin", "", "日本", "a" * 300, None, "A", "a"]


def build(ids, graph=False):
    f = 4
    data = make_data("angular", len(ids), f, seed=5)
    index = AnnoyIndex(f, "angular")
    for k, (i, v) in enumerate(zip(ids, data)):
        label = LABELS[k % len(LABELS)] if k < len(LABELS) else f"w{k}"
        if label is None:
            index.add_item(i, v)
        else:
            index.add_item(i, v, label=label)
    return index


def expected(k):
    return LABELS[k % len(LABELS)] if k < len(LABELS) else f"w{k}"


@pytest.mark.parametrize("ids", [list(range(40)), [k * 2**50 + 3 for k in range(40)][::-1]])
def test_labels_round_trip_both_ways(tmp_path, ids):
    index = build(ids)
    for k, i in enumerate(ids):  # before the build: from the builder
        assert index.get_item_label(i) == expected(k)
    index.build(3, graph=True)
    path = str(tmp_path / "labels.copse")
    index.save(path)
    loaded = AnnoyIndex(4, "angular")
    loaded.load(path)
    for other in (index, loaded, pickle.loads(pickle.dumps(index))):
        for k, i in enumerate(ids):
            label = expected(k)
            assert other.get_item_label(i) == label
            if label is not None:
                assert other.get_id_by_label(label) == i
        assert other.get_id_by_label("nope") is None
        assert other.get_id_by_label("königi") is None
        with pytest.raises(IndexError):
            other.get_item_label(max(ids) + 1)


def test_duplicate_labels_are_refused_and_add_nothing():
    index = AnnoyIndex(2, "euclidean")
    index.add_item(0, [0, 1], label="x")
    with pytest.raises(ValueError, match="already names item 0"):
        index.add_item(1, [1, 0], label="x")
    assert len(index) == 1
    # A batch: refused whole when two rows share a label, or take another item's.
    with pytest.raises(ValueError, match=r"labels\b|already names"):
        index.add_items([5, 6], np.eye(2, dtype=np.float32), labels=["y", "y"])
    with pytest.raises(ValueError, match="already names item 0"):
        index.add_items([5, 6], np.eye(2, dtype=np.float32), labels=["x", None])
    assert len(index) == 1
    # Within one batch a label may move from an item that gets a new one.
    index.add_items([0, 7], np.eye(2, dtype=np.float32), labels=["z", "x"])
    assert index.get_id_by_label("x") == 7 and index.get_item_label(0) == "z"
    with pytest.raises(ValueError, match="2 labels for 1 vectors"):
        index.add_items([8], np.ones((1, 2), np.float32), labels=["p", "q"])
    with pytest.raises(TypeError):
        index.add_items([8], np.ones((1, 2), np.float32), labels=[3])
    index.build(2)
    assert index.get_id_by_label("x") == 7


def test_an_index_without_labels_answers_none():
    index = AnnoyIndex(2, "dot")
    index.add_item(3, [1, 2])
    assert index.get_item_label(3) is None
    index.build(1)
    assert index.get_item_label(3) is None
    assert index.get_id_by_label("") is None
