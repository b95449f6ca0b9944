"""An argument fuzz of copse's whole Python API, with hypothesis.

Every public method of `AnnoyIndex` (and the constructor, `deserialize` and the pickle and copy
hooks), on indexes in every state (empty, with items, built with or without a graph, loaded,
deserialized with or without a graph), is called with extreme integers, special floats,
NaN-filled vectors, wrong shapes, wrong dtypes and wrong types. Only documented exceptions may come out: TypeError, ValueError, IndexError, MemoryError,
OverflowError, RuntimeError (copse's state errors) and OSError (files). A call that raises must
leave the index answering as before.

A crash (an abort, a Rust panic) must fail the run rather than kill pytest, so test_fuzz.py runs
this file in its own process: `python -m pytest fuzz_api.py`. Its name keeps pytest from
collecting it with the other tests.

Sizes are chosen so that a huge item id asks for far more memory than any machine has (f = 32
floats, 2048 bits): the allocation fails at once and is a MemoryError, instead of succeeding and
zeroing gigabytes.
"""

import atexit
import copy
import math
import pathlib
import pickle
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import copse
from copse import AnnoyIndex

ALLOWED = (TypeError, ValueError, IndexError, MemoryError, OverflowError, RuntimeError, OSError)

# At most 16 GiB of address space for this process: a size taken from an argument is then
# refused at once on any machine, so an allocation that cannot fail gracefully aborts here (and
# fails the test) instead of succeeding on a large machine, and nothing zeroes gigabytes.
ADDRESS_SPACE = 16 << 30
try:
    import resource

    _soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if _soft == resource.RLIM_INFINITY or _soft > ADDRESS_SPACE:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, _hard))
except (ImportError, ValueError, OSError):  # not on this platform: the fuzz still runs
    pass

settings.register_profile(
    "fuzz",
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile("fuzz")

METRICS = ["angular", "euclidean", "manhattan", "dot", "hamming"]
N_ITEMS = 40
TMP = pathlib.Path(tempfile.mkdtemp(prefix="copse-fuzz-"))
atexit.register(shutil.rmtree, TMP, True)


def dims(metric):
    return 2048 if metric == "hamming" else 32


def data(metric):
    rng = np.random.default_rng(1)
    if metric == "hamming":
        return rng.integers(0, 2, size=(N_ITEMS, dims(metric))).astype(np.float32)
    return rng.standard_normal((N_ITEMS, dims(metric))).astype(np.float32)


def built_index(metric, graph=False):
    index = AnnoyIndex(dims(metric), metric)
    index.add_items(None, data(metric))
    index.build(3, graph=graph)
    return index


BYTES = {m: built_index(m).serialize() for m in METRICS}
GRAPH_BYTES = {m: built_index(m, graph=True).serialize() for m in METRICS}
FILES = {}
for _m in METRICS:
    FILES[_m] = TMP / f"{_m}.copse"
    FILES[_m].write_bytes(BYTES[_m])
GARBAGE = TMP / "garbage"
GARBAGE.write_bytes(b"\x01" * 1000)


def make_index(state, metric):
    f = dims(metric)
    if state == "empty":
        return AnnoyIndex(f, metric)
    if state == "items":
        index = AnnoyIndex(f, metric)
        index.add_items(None, data(metric))
        return index
    if state == "built":
        return built_index(metric)
    if state == "graph built":
        return built_index(metric, graph=True)
    if state == "loaded":
        index = AnnoyIndex(f, metric)
        index.load(FILES[metric])
        return index
    if state == "graph deserialized":
        return AnnoyIndex.deserialize(GRAPH_BYTES[metric])
    return AnnoyIndex.deserialize(BYTES[metric])


class Lazy:
    """An argument made for the index at hand (a vector of its `f`), shown by `desc`."""

    def __init__(self, desc, make):
        self.desc, self.make = desc, make

    def __repr__(self):
        return self.desc


def realize(arg, f):
    return arg.make(f) if isinstance(arg, Lazy) else arg


EXTREME_INTS = [0, 1, -1, 2, -2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1]
FLOATS = [0.0, -0.0, 0.5, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 3.5e38, 1e-45]
JUNK = [None, "", "abc", "\0", b"x", {}, {"a": 1}, [], (), 1j, object(), Ellipsis]

junk = st.sampled_from(JUNK) | st.builds(lambda: Lazy("generator", lambda f: (x for x in range(f))))
ints = st.sampled_from(EXTREME_INTS) | st.integers(-3, 60)
extremes = st.sampled_from(EXTREME_INTS)
int_args = (
    extremes  # the likeliest: the values that found aborts
    | extremes
    | ints
    | st.sampled_from(FLOATS + [True, False, 3.0])
    | st.sampled_from([np.int64(3), np.uint64(2**64 - 1), np.int8(-1), np.float32(2.0), np.bool_(True)])
    | junk
)
flags = st.sampled_from([True, False, 0, 1, 2**64, -1, np.bool_(False)]) | junk

LENGTHS = {"f": lambda f: f, "0": lambda f: 0, "1": lambda f: 1, "f-1": lambda f: f - 1, "f+1": lambda f: f + 1}
DTYPES = ["float16", "float32", "float64", "int64", "uint8", "bool", "complex64", "object"]


class LyingLength:
    """Says it holds `n` values but has only 3: nothing may be reserved from `len()` alone."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i >= 3:
            raise IndexError("LyingLength has only 3 values")
        return 1.0


def vector_of(kind, fill, length, nan_at):
    """A vector-like value of `kind`, `length(f)` long, filled with `fill`."""

    def make(f):
        n = LENGTHS[length](f)
        values = [fill] * n
        if nan_at and n:
            values[n // 2] = math.nan
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if kind == "list":
                return values
            if kind == "tuple":
                return tuple(values)
            if kind == "object":
                return np.array(values, dtype=object)
            if kind in DTYPES:
                return np.array(values, dtype=np.float64).astype(kind)
            if kind == "strided":
                return np.repeat(np.array(values, np.float32), 2)[::2]
            if kind == "column":
                return np.array(values, np.float32).reshape(-1, 1)
            if kind == "scalar array":
                return np.array(fill)
            if kind == "range":
                return range(n)
            if kind == "str":
                return "x" * n
            if kind == "bytes":
                return b"\x01" * n
            if kind == "dict":
                return {i: v for i, v in enumerate(values)}
            if kind == "set":
                return {i + 0.5 for i in range(n)}
            if kind == "lying length":
                return LyingLength(n)
            raise AssertionError(kind)

    return Lazy(f"{kind}(fill={fill!r}, len={length}, nan={nan_at})", make)


VECTOR_KINDS = ["list", "tuple", "strided", "column", "scalar array", "range", "str", "bytes", "dict", "set", "lying length"]
VECTOR_KINDS += DTYPES
vectors = (
    st.builds(vector_of, st.sampled_from(VECTOR_KINDS), st.sampled_from(FLOATS), st.sampled_from(list(LENGTHS)), st.booleans())
    | junk
    | st.sampled_from([5, 2.5])
)


def matrix_of(shape, dtype, fill, order):
    def make(f):
        dims_ = tuple(f if d == "f" else f + 1 if d == "f+1" else d for d in shape)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            m = np.full(dims_, fill, dtype=np.float64).astype(dtype)
        if order == "F":
            return np.asfortranarray(m)
        if order == "list":
            return m.tolist()
        return m

    return Lazy(f"matrix({shape}, {dtype}, fill={fill!r}, {order})", make)


SHAPES = [(2, "f"), (0, "f"), (3, "f+1"), (1, 0), ("f",), (2, "f", 1), (), (0, 0)]
matrices = st.builds(
    matrix_of, st.sampled_from(SHAPES), st.sampled_from(DTYPES), st.sampled_from(FLOATS), st.sampled_from(["C", "F", "list"])
) | junk

id_lists = (
    st.sampled_from([None, [0, 1], [2**32, 0], [-1, 1], [2**63 - 1, 0], [1.5, 2], ["a", "b"], [[0], [1]], []])
    | st.builds(lambda a, b: np.array([a, b]), ints, ints)
    | st.builds(lambda a, b, c: [a, b, c], ints, ints, ints)  # as many as a valid matrix's rows
    | junk
)


def path_of(kind):
    def make(f):
        if kind == "new":
            return TMP / f"new-{next(COUNTER)}.copse"
        if kind == "copse file":
            # A fresh copy: `save` may overwrite it.
            path = TMP / f"copy-{next(COUNTER)}.copse"
            path.write_bytes(BYTES["euclidean"])
            return path
        if kind == "str path":
            return str(TMP / f"str-{next(COUNTER)}.copse")
        if kind == "bytes path":
            return bytes(TMP / f"bytes-{next(COUNTER)}.copse")
        return {
            "garbage": GARBAGE,
            "directory": TMP,
            "missing dir": TMP / "no" / "such" / "file",
            "empty": "",
            "nul": "a\0b",
        }[kind]

    return Lazy(f"path({kind})", make)


COUNTER = iter(range(10**9))
paths = st.builds(
    path_of, st.sampled_from(["new", "copse file", "str path", "bytes path", "garbage", "directory", "missing dir", "empty", "nul"])
) | junk


def bytes_of(kind, metric, cut):
    # "graph whole", "graph flipped", ...: the same, from an index with a graph.
    desc = kind
    source = GRAPH_BYTES if kind.startswith("graph ") else BYTES
    kind = kind[len("graph ") :] if kind.startswith("graph ") else kind

    def make(f):
        b = source[metric]
        if kind == "whole":
            return b
        if kind == "truncated":
            return b[: cut % max(len(b), 1)]
        if kind == "flipped":
            flipped = bytearray(b)
            flipped[cut % len(b)] ^= 0xFF
            return bytes(flipped)
        if kind == "bytearray":
            return bytearray(b)
        if kind == "memoryview":
            return memoryview(b)[:: 1 + cut % 2]
        if kind == "float array":
            return np.frombuffer(b[: len(b) // 4 * 4], np.float32)
        if kind == "random":
            return np.random.default_rng(cut).bytes(cut % 5000)
        raise AssertionError(kind)

    return Lazy(f"bytes({desc}, {metric}, {cut})", make)


byte_data = st.builds(
    bytes_of,
    st.sampled_from(
        ["whole", "truncated", "flipped", "bytearray", "memoryview", "float array", "random"]
        + ["graph whole", "graph truncated", "graph flipped", "graph memoryview"]
    ),
    st.sampled_from(METRICS),
    st.integers(0, 10**6),
) | junk

states = st.sampled_from(["empty", "items", "built", "loaded", "deserialized", "graph built", "graph deserialized"])
metrics = st.sampled_from(METRICS)


def valid_vector(kind):
    def make(f):
        v = np.random.default_rng(f).standard_normal(f)
        return v.tolist() if kind == "list" else v.astype(kind)

    return Lazy(f"valid {kind} vector", make)


def valid_matrix(rows):
    return Lazy(f"valid ({rows}, f) matrix", lambda f: np.random.default_rng(rows).standard_normal((rows, f)).astype(np.float32))


item = st.integers(0, N_ITEMS - 1)
count = st.integers(0, 12)
search_k = st.sampled_from([-1, 0, 10, 1000])
threads = st.sampled_from([-1, 1, 2])
vector = st.sampled_from([valid_vector("list"), valid_vector("float32"), valid_vector("float64")])
matrix = st.sampled_from([valid_matrix(3), valid_matrix(1)])
new_path = st.builds(path_of, st.just("new"))
whole_bytes = st.builds(bytes_of, st.just("whole"), metrics, st.just(0))
state_dicts = st.fixed_dictionaries({"index": byte_data, "seed": int_args, "verbose": flags}) | junk

# Each method: (valid, fuzzed) strategies for each positional argument.
METHODS = {
    "add_item": [(item, int_args), (vector, vectors), (st.sampled_from([None, "x", "", "ü"]), junk)],
    "add_items": [(st.none(), id_lists), (matrix, matrices)],
    "build": [(st.integers(1, 3), int_args), (threads, int_args), (st.booleans(), flags)],
    "unbuild": [],
    "save": [(new_path, paths), (st.booleans(), flags)],
    "load": [(new_path, paths), (st.booleans(), flags)],
    "unload": [],
    "on_disk_build": [(new_path, paths)],
    "get_nns_by_item": [(item, int_args), (count, int_args), (search_k, int_args), (st.booleans(), flags)],
    "get_nns_by_vector": [(vector, vectors), (count, int_args), (search_k, int_args), (st.booleans(), flags)],
    "get_nns_by_vectors": [
        (matrix, matrices),
        (count, int_args),
        (search_k, int_args),
        (st.booleans(), flags),
        (threads, int_args),
    ],
    "get_item_vector": [(item, int_args)],
    "get_item_label": [(item, int_args)],
    "make_filter": [(st.just([0, 1, 2]), id_lists)],
    "get_id_by_label": [(st.sampled_from(["", "x", "item 0", "日本"]), junk)],
    "get_distance": [(item, int_args), (item, int_args)],
    "get_n_items": [],
    "get_n_trees": [],
    "get_graph_degree": [],
    "verbose": [(st.booleans(), flags)],
    "set_seed": [(st.integers(0, 2**64 - 1), int_args)],
    "serialize": [],
    "deserialize": [(whole_bytes, byte_data), (st.booleans(), flags)],
    "__setstate__": [(st.fixed_dictionaries({"index": whole_bytes}), state_dicts)],
    "__reduce__": [],
    "__copy__": [],
    "__deepcopy__": [(st.just({}), junk)],
    "__len__": [],
    "__repr__": [],
    "__enter__": [],
    "__exit__": [(st.none(), junk), (st.none(), junk), (st.none(), junk)],
}


def arguments(method, methods=None):
    """Arguments for `method` (of `methods`, by default `AnnoyIndex`'s): valid ones with one
    fuzzed (most often), all fuzzed, or a prefix (leaving out trailing arguments tries the
    defaults, and missing required ones)."""
    slots = (methods or METHODS)[method]
    if not slots:
        return st.just([])
    valid = st.tuples(*(v for v, _ in slots))
    fuzzed = st.tuples(*(f for _, f in slots))

    def one_bad(args):
        return st.tuples(st.integers(0, len(slots) - 1), fuzzed).map(
            lambda pair: [pair[1][i] if i == pair[0] else a for i, a in enumerate(args)]
        )

    return st.one_of(
        valid.flatmap(one_bad),
        valid.flatmap(one_bad),
        valid.flatmap(one_bad),
        fuzzed.map(list),
        st.tuples(valid, st.integers(0, len(slots) - 1)).map(lambda p: list(p[0][: p[1]])),
    )


def observe(index):
    """What the index answers, to check that a failed call changed nothing."""
    n_items, n_trees = index.get_n_items(), index.get_n_trees()
    degree = index.get_graph_degree()
    if n_trees:
        return n_items, n_trees, degree, index.get_nns_by_item(0, 5, include_distances=True)
    if n_items:
        return n_items, n_trees, degree, index.get_item_vector(0)
    return n_items, n_trees, degree, None


def exercise(index):
    """The index (or what a call returned) still works: every query answers or raises a
    documented error."""
    for call in (
        lambda: index.get_nns_by_item(0, 3, include_distances=True),
        lambda: index.get_nns_by_vector([0.5] * index.f, 3),
        lambda: index.get_nns_by_vectors(np.ones((2, index.f), np.float32), 3),
        lambda: index.get_item_vector(0),
        lambda: pickle.loads(pickle.dumps(index)).get_n_items(),
        lambda: repr(index),
    ):
        try:
            call()
        except ALLOWED:
            pass


def method_test(method):
    """A test calling `method` on an index of any state and metric with fuzzed arguments."""

    @given(states, metrics, arguments(method))
    def test(state, metric, args):
        index = make_index(state, metric)
        before = observe(index)
        args = [realize(a, index.f) for a in args]
        try:
            result = getattr(index, method)(*args)
        except ALLOWED:
            # Nothing changed.
            assert observe(index) == before
        else:
            if isinstance(result, AnnoyIndex):
                exercise(result)
        exercise(index)
        index.unload()

    test.__name__ = f"test_{method.strip('_')}"
    return test


for _method in METHODS:
    globals()[f"test_{_method.strip('_')}"] = method_test(_method)


@pytest.mark.parametrize("with_args", [False, True])
def test_missing_and_extra_arguments_are_type_errors(with_args):
    @given(states, metrics, st.sampled_from(list(METHODS)), st.integers(0, 7))
    def run(state, metric, method, n):
        index = make_index(state, metric)
        args = [0] * n if with_args else [None] * n
        try:
            getattr(index, method)(*args)
        except ALLOWED:
            pass
        exercise(index)

    run()


@given(int_args, st.sampled_from(METRICS + ["cosine", "COSINE", "nope", ""]) | junk, int_args, vectors)
def test_constructor_and_first_calls(f, metric, n, vector):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            index = AnnoyIndex(f, metric)
        except ALLOWED:
            return
    for call in (
        lambda: index.build(-1),
        lambda: index.unbuild(),
        lambda: index.build(1),
        lambda: index.unbuild(),
        lambda: index.build(-1, graph=True),
        lambda: index.get_graph_degree(),
        lambda: index.add_item(0, realize(vector, min(index.f, 64))),
        lambda: index.add_item(0, LyingLength(index.f)),
        lambda: index.get_nns_by_vector(LyingLength(index.f), 1),
        lambda: index.get_nns_by_vector(realize(vector, min(index.f, 64)), n),
        lambda: index.serialize(),
        lambda: pickle.dumps(index),
        lambda: copy.deepcopy(index),
        lambda: index.get_n_items(),
    ):
        try:
            call()
        except ALLOWED:
            pass


@given(
    int_args,
    st.sampled_from(METRICS) | junk,
    st.sampled_from([None, "float16", "bfloat16", "int8", "bits", "float64", "", 7, np.float16, np.int8]) | junk,
    vectors,
)
def test_collection_create_with_any_dtype(f, metric, dtype, vector):
    """Collection.create with fuzzed sizes, metrics and row types, then a first add, commit and
    search: only documented exceptions, and the process survives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            c = copse.Collection.create(TMP / f"create-{next(COUNTER)}", f, metric, n_trees=1, graph=False, dtype=dtype)
        except ALLOWED:
            return
    for call in (
        lambda: c.add([0], [realize(vector, min(c.f, 64))]),
        lambda: c.commit(),
        lambda: c.search([realize(vector, min(c.f, 64))], 3),
        lambda: c.get_item_vector(0),
        lambda: c.build_options(),
        lambda: c.dtype,
        lambda: c.close(),
    ):
        try:
            call()
        except ALLOWED:
            pass


@given(byte_data, flags)
def test_deserialize_from_the_class(data, prefault):
    try:
        index = AnnoyIndex.deserialize(realize(data, 0), prefault)
    except ALLOWED:
        return
    exercise(index)


def test_module_level_names():
    assert isinstance(copse.__version__, str)
    assert copse.__all__ == ["AnnoyIndex", "Collection", "CollectionFilter", "IdFilter", "__version__"]


# Collections: every method, on collections in every state, with the same fuzzed arguments.

COLLECTION_STATES = ["empty", "committed", "pending", "readonly", "closed"]


def make_collection(state, metric):
    path = TMP / f"collection-{next(COUNTER)}"
    c = copse.Collection.create(path, dims(metric), metric, n_trees=2, graph=False)
    if state == "empty":
        return c
    c.add(np.arange(N_ITEMS), data(metric))
    if state == "pending":
        return c
    c.commit()
    if state == "readonly":
        c.close()
        return copse.Collection.open(path, readonly=True)
    if state == "closed":
        c.close()
    return c


def observe_collection(c):
    try:
        pending = c.n_pending()
    except ValueError:  # closed
        pending = None
    return len(c), c.generation, sorted(int(i) for i in c.ids()), pending


def segment_options(f, **changed):
    """Valid `build_segment` options for `f` dimensions, with `changed` fields."""
    options = {"f": f, "metric": "euclidean", "n_trees": 2, "leaf_capacity": 0, "seed": 1, "graph": None}
    options.update(changed)
    return options


GRAPH = {"degree": 8, "candidates": 16, "rounds": 2, "search_beam": 8, "alpha": 1.2}
options_junk = st.sampled_from(
    [
        Lazy(f"options({k}={v!r})", lambda f, k=k, v=v: segment_options(f, **{k: v}))
        for k, v in [
            ("f", 0), ("f", -1), ("f", 2**64), ("f", "x"), ("metric", "nope"), ("metric", None),
            ("n_trees", 0), ("n_trees", 2**40), ("leaf_capacity", 2**62), ("seed", -1),
            ("graph", 5), ("graph", {}), ("graph", dict(GRAPH, degree=0)),
            ("graph", dict(GRAPH, alpha=math.nan)), ("graph", dict(GRAPH, rounds=2**40)),
            ("dtype", "float64"), ("dtype", "bits"), ("dtype", 7), ("dtype", "int8"),
            ("dtype", np.float16),
        ]
    ]
    + [Lazy("options(no f)", lambda f: {k: v for k, v in segment_options(f).items() if k != "f"})]
) | junk


COLLECTION_METHODS = {
    "add": [(st.just([100, 101, 102]), id_lists), (st.just(valid_matrix(3)), matrices)],
    "upsert": [(st.just([0, 101, 102]), id_lists), (st.just(valid_matrix(3)), matrices)],
    "delete": [(st.just([0, 1]), id_lists)],
    "commit": [(st.sampled_from([None, b"", b"offset"]), int_args | st.sampled_from([[1, 2], [300], "s"]))],
    "compact": [],
    "rollback": [],
    "refresh": [],
    "wait_for_merges": [],
    "set_merge_policy": [(st.just(2), int_args), (st.just(100), int_args), (st.just(0.3), int_args), (st.just(0.2), int_args)],
    "n_pending": [],
    "search": [(matrix, matrices), (count, int_args), (search_k, int_args), (st.none(), id_lists), (threads, int_args)],
    "make_filter": [(st.just([0, 1, 2]), id_lists)],
    "get_item_vector": [(item, int_args)],
    "get_distance": [(item, int_args), (item, int_args)],
    "ids": [],
    "segments": [],
    "verify": [],
    "close": [],
    "__len__": [],
    "__repr__": [],
    "__contains__": [(item, int_args)],
    "__enter__": [],
    "__exit__": [(st.none(), junk), (st.none(), junk), (st.none(), junk)],
    "get_item_vectors": [(st.just([0, 1]), id_lists)],
    "build_options": [],
    "reserve_segments": [(st.integers(0, 3), int_args)],
    "attach_segments": [(st.just([]), id_lists)],
    "build_segment": [
        (st.builds(lambda: Lazy("segment dir", lambda f: TMP / f"segments-{next(COUNTER)}")), paths),
        (st.just(Lazy("options", segment_options)), options_junk),
        (st.integers(0, 3), int_args),
        (st.just([0, 1, 2]), id_lists),
        (st.just(valid_matrix(3)), matrices),
        (threads, int_args),
    ],
}
# Changes a failed call must not have made (the read-only calls change nothing anyway).
CHANGING = {
    "add", "upsert", "delete", "commit", "compact", "rollback", "set_merge_policy",
    "reserve_segments", "attach_segments", "build_segment",
}


def collection_test(method):
    @settings(max_examples=60)
    @given(st.sampled_from(COLLECTION_STATES), metrics, arguments(method, COLLECTION_METHODS))
    def test(state, metric, args):
        c = make_collection(state, metric)
        before = observe_collection(c)
        args = [realize(a, dims(metric)) for a in args]
        try:
            getattr(c, method)(*args)
        except ALLOWED:
            if method in CHANGING:
                assert observe_collection(c) == before
        for call in (
            lambda: c.search(np.ones((2, dims(metric)), np.float32), 3),
            lambda: c.get_item_vector(0),
            lambda: repr(c),
            lambda: c.commit(),
        ):
            try:
                call()
            except ALLOWED:
                pass
        c.close()

    test.__name__ = f"test_collection_{method.strip('_')}"
    return test


for _method in COLLECTION_METHODS:
    globals()[f"test_collection_{_method.strip('_')}"] = collection_test(_method)
