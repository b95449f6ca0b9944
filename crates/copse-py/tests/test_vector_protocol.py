"""Vectors are read as Annoy reads them, through Python's sequence protocol (`len(v)`, then
`v[0]`, `v[1]`, ...), so a bad vector raises CPython's own error, word for word: checked against
what CPython itself says for `len(v)`, `v[0]` and `math.isfinite(v[0])`, and against the real
annoy when it is installed."""

import math
from collections import UserList

import numpy as np
import pytest

import copse

try:
    import annoy
except ImportError:  # the comparison with annoy is skipped, CPython's messages still checked
    annoy = None

F = 4


class LenOnly:
    def __len__(self):
        return F


class GetItemOnly:
    def __getitem__(self, i):
        return 1.0


class LenAndIter:
    def __len__(self):
        return F

    def __iter__(self):
        return iter([1.0] * F)


class Doubled(list):
    """A list whose `v[i]` differs from its iteration: Annoy reads `v[i]`."""

    def __getitem__(self, i):
        return 2 * list.__getitem__(self, i)


class Raises:
    def __len__(self):
        return F

    def __getitem__(self, i):
        raise ZeroDivisionError("from __getitem__")


def error_of(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the error is what is compared
        return type(e), str(e)
    return None


def vector_calls(lib, v):
    """Every method that takes a vector, on an index of `lib` (a module with AnnoyIndex)."""
    unbuilt = lib.AnnoyIndex(F, "euclidean")
    built = lib.AnnoyIndex(F, "euclidean")
    built.add_item(0, [1.0] * F)
    built.build(1)
    return {
        "add_item": lambda: unbuilt.add_item(0, v),
        "get_nns_by_vector": lambda: built.get_nns_by_vector(v, 1),
    }


NO_LEN = [GetItemOnly(), 5, 2.5, None, (x for x in range(F)), np.float64(1.0), np.zeros(())]
NOT_SUBSCRIPTABLE = [LenOnly(), LenAndIter(), set(range(F)), {i: 0 for i in range(F)}.keys()]


@pytest.mark.parametrize("v", NO_LEN, ids=lambda v: type(v).__name__)
def test_object_without_len_raises_cpythons_len_error(v):
    expected = error_of(lambda: len(v))
    assert expected is not None and expected[0] is TypeError
    for name, call in vector_calls(copse, v).items():
        assert error_of(call) == expected, name


@pytest.mark.parametrize("v", NOT_SUBSCRIPTABLE, ids=lambda v: type(v).__name__)
def test_object_without_getitem_raises_cpythons_subscript_error(v):
    expected = error_of(lambda: v[0])
    assert expected == (TypeError, f"'{type(v).__name__}' object is not subscriptable")
    for name, call in vector_calls(copse, v).items():
        assert error_of(call) == expected, name


@pytest.mark.parametrize("element", ["a", None, b"x", [1.0], 1j, 10**400], ids=repr)
def test_element_that_is_not_a_real_number_raises_cpythons_float_error(element):
    expected = error_of(lambda: math.isfinite(element))
    assert expected is not None
    for v in ([1.0, 2.0, element, 4.0], (1.0, 2.0, element, 4.0), UserList([1.0, 2.0, element, 4.0])):
        for name, call in vector_calls(copse, v).items():
            assert error_of(call) == expected, (name, type(v))


def test_getitem_errors_propagate_unchanged():
    keyed = {i + 1: 1.0 for i in range(F)}  # no key 0
    assert error_of(lambda: keyed[0]) == (KeyError, "0")
    for name, call in vector_calls(copse, keyed).items():
        assert error_of(call) == (KeyError, "0"), name
    for name, call in vector_calls(copse, Raises()).items():
        assert error_of(call) == (ZeroDivisionError, "from __getitem__"), name


def test_values_are_read_by_index_not_by_iteration():
    cases = [
        ({i: float(10 + i) for i in reversed(range(F))}, [10.0, 11.0, 12.0, 13.0]),
        (Doubled([1.0, 2.0, 3.0, 4.0]), [2.0, 4.0, 6.0, 8.0]),
        (range(F), [0.0, 1.0, 2.0, 3.0]),
        (np.arange(F, dtype=np.int64), [0.0, 1.0, 2.0, 3.0]),
    ]
    for v, expected in cases:
        index = copse.AnnoyIndex(F, "euclidean")
        index.add_item(0, v)
        assert index.get_item_vector(0) == expected, type(v)
        index.add_item(1, [0.0] * F)
        index.build(1)
        _, distances = index.get_nns_by_vector(v, 2, include_distances=True)
        assert distances[0] == pytest.approx(0.0, abs=1e-6), type(v)


ALL_BAD = NO_LEN[:-2] + NOT_SUBSCRIPTABLE + [
    {i + 1: 1.0 for i in range(F)},
    [1.0, "a", 3.0, 4.0],
    [1.0] * (F + 1),
    Raises(),
]


@pytest.mark.skipif(annoy is None, reason="annoy is not installed")
@pytest.mark.parametrize("v", ALL_BAD, ids=lambda v: type(v).__name__)
def test_errors_are_annoys_word_for_word(v):
    ours = {name: error_of(call) for name, call in vector_calls(copse, v).items()}
    theirs = {name: error_of(call) for name, call in vector_calls(annoy, v).items()}
    assert ours == theirs
    assert all(e is not None for e in ours.values())


@pytest.mark.skipif(annoy is None, reason="annoy is not installed")
def test_annoy_reads_the_same_values():
    for v in ({i: float(10 + i) for i in reversed(range(F))}, Doubled([1.0, 2.0, 3.0, 4.0]), range(F)):
        ours, theirs = copse.AnnoyIndex(F, "euclidean"), annoy.AnnoyIndex(F, "euclidean")
        ours.add_item(0, v)
        theirs.add_item(0, v)
        assert ours.get_item_vector(0) == theirs.get_item_vector(0)
