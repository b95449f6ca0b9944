"""copse on Apache Spark: sharded builds and distributed k-nearest-neighbour joins.

Spark schedules, retries and moves the data; copse builds, maps and searches. What these
functions make and read is an ordinary ``copse.Collection`` directory, so a collection built
here opens in one process with ``copse.Collection.open(path)`` and answers exactly as the joins
do, and one built in one process can be joined here.

- ``build(df, path, ...)``: one task per shard builds a segment from its partition and saves it
  atomically under ``path``; the driver then commits the segments in one manifest.
- ``knn_join(queries_df, path, k, ...)``: each query's ``k`` nearest items, as rows of
  ``(query_id, neighbor_id, distance, rank)``. Each Python worker maps the collection once and
  keeps it for every task it runs; Arrow batches are searched through the batch API with the
  GIL released, every segment searched and the candidates merged to the top ``k``.
- ``self_join(path, k, ...)``: every item's ``k`` nearest other items.

Ids are 64-bit: Spark's ``long`` column read as unsigned (two's complement), so every id a
``Collection`` can hold round-trips (ids at or above 2**63 show as negative longs).

``path`` is a directory on a file system the driver and every executor see (local in
``local[...]`` mode, a shared mount on a cluster). With ``ship=True`` the joins send the
collection to the executors through Spark's own file distribution instead, for executors that
cannot see ``path``: a directory on the driver goes as one tar (``SparkContext.addArchive``:
Spark ships no local directory to a cluster), which each executor unpacks once; a URL that
Spark's file systems read (HDFS, an object store) is fetched with ``SparkContext.addFile``.

Needs PySpark 3.5 or later, pandas and pyarrow (``pip install copse[spark]``); the Python
workers must run an interpreter that has copse (``PYSPARK_PYTHON``).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from ._copse import Collection

__all__ = ["build", "knn_join", "self_join", "RESULT_SCHEMA"]

#: The schema of ``knn_join`` and ``self_join`` results; ``rank`` 1 is the nearest.
RESULT_SCHEMA = "query_id long, neighbor_id long, distance float, rank int"

#: A search's padding id: a row with fewer than ``k`` results ends with it.
_NO_ITEM = np.uint64(2**64 - 1)

_ARROW_RESULT = pa.schema(
    [
        ("query_id", pa.int64()),
        ("neighbor_id", pa.int64()),
        ("distance", pa.float32()),
        ("rank", pa.int32()),
    ]
)

_BUILT = pa.schema([("number", pa.int64()), ("n_items", pa.int64())])


# ---------------------------------------------------------------------------------------------
# The driver's side
# ---------------------------------------------------------------------------------------------


def build(
    df: Any,
    path: str,
    *,
    vector_col: str = "vector",
    id_col: str = "id",
    n_shards: Optional[int] = None,
    metric: str = "angular",
    graph: bool = True,
    n_trees: int = 8,
    seed: Optional[int] = None,
    f: Optional[int] = None,
    append: bool = False,
    dtype: Optional[Any] = None,
) -> int:
    """Builds a collection in directory ``path`` from DataFrame ``df``, one segment per shard.

    ``df[id_col]`` holds the items' integer ids (unique), ``df[vector_col]`` their vectors
    (an array of float or double, or an ``pyspark.ml`` vector), all ``f`` long (by default,
    the first row's length). The rows are hash-partitioned by id into ``n_shards`` shards
    (default: ``spark.sparkContext.defaultParallelism``); one task per shard builds its
    segment on ``spark.task.cpus`` threads and saves it atomically under ``path``, and the
    driver commits all segments in one new manifest. A retried task rebuilds its segment.

    A new collection is created with ``metric``, ``graph``, ``n_trees``, ``seed`` and
    ``dtype`` (how rows are stored: ``"float16"``, ``"int8"``, ...; as
    ``copse.Collection.create``); with ``append=True`` the shards are added to the existing
    collection at ``path`` instead, and none of their ids may be in it already.

    Returns the collection's generation after the commit. Raises ``ValueError`` for
    duplicate ids, vectors of the wrong length, NaN or infinite values; the collection is
    then unchanged (a new one stays empty).
    """
    spark = df.sparkSession
    if n_shards is None:
        n_shards = spark.sparkContext.defaultParallelism
    n_shards = _positive(n_shards, "n_shards")
    path = os.path.abspath(os.fspath(path))
    rows = _select(df, id_col, vector_col)
    if append:
        collection = Collection.open(path)
    else:
        if f is None:
            f = _first_length(rows)
        collection = Collection.create(
            path,
            _positive(f, "f"),
            metric,
            n_trees=n_trees,
            graph=graph,
            seed=seed,
            dtype=dtype,
        )
    try:
        numbers = collection.reserve_segments(n_shards)
        options = collection.build_options()
        threads = _task_cpus(spark)

        def build_shard(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            yield _build_shard(path, options, numbers, threads, batches)

        built = rows.repartition(n_shards, rows.columns[0]).mapInArrow(
            build_shard, "number long, n_items long"
        )
        numbers_built = sorted(row.number for row in built.collect() if row.n_items)
        return collection.attach_segments(numbers_built)
    finally:
        collection.close()


def knn_join(
    queries_df: Any,
    path: str,
    k: int,
    *,
    vector_col: str = "vector",
    id_col: str = "id",
    search_k: int = -1,
    filter_col: Optional[str] = None,
    ship: bool = False,
) -> Any:
    """The ``k`` nearest items of the collection at ``path`` to each row of ``queries_df``.

    ``queries_df[id_col]`` identifies each query (any integer; it is copied to ``query_id``),
    ``queries_df[vector_col]`` is its vector. ``search_k`` is the per-segment effort, as in
    ``Collection.search`` (-1: the default). ``filter_col``, if given, is a column of arrays
    of item ids: a query with one is answered from those items only (null: from all).

    Returns a lazy DataFrame of ``RESULT_SCHEMA``: ``k`` rows per query (fewer if the
    collection is smaller, or the filter allows fewer), ``rank`` 1 the nearest. The query
    partitioning is the caller's: give at least as many partitions as cores. Every task
    reads the collection's generation of the moment this function ran; a task that finds
    another (the collection was committed to meanwhile) fails rather than mix the two.
    """
    k = _positive(k, "k")
    search_k = int(search_k)
    spark = queries_df.sparkSession
    where = _Where.of(spark, path, ship)
    columns = [id_col, vector_col] + ([filter_col] if filter_col else [])
    rows = _select(queries_df, *columns)
    threads = _task_cpus(spark)
    filtered = filter_col is not None

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        collection = where.open()
        for batch in batches:
            yield _search_batch(collection, batch, k, search_k, threads, filtered)

    return rows.mapInArrow(search, RESULT_SCHEMA)


def self_join(
    path: str,
    k: int,
    *,
    spark: Any = None,
    search_k: int = -1,
    include_self: bool = False,
    n_partitions: Optional[int] = None,
    ship: bool = False,
) -> Any:
    """Every item's ``k`` nearest items in the collection at ``path`` (the recommendation
    case): a lazy DataFrame of ``RESULT_SCHEMA`` with ``query_id`` the item.

    An item is not its own neighbour unless ``include_self=True``. The items are split into
    ``n_partitions`` ranges (default: four per core of ``spark``, the active session by
    default), each a task that reads its items' vectors from the mapped collection.
    """
    k = _positive(k, "k")
    search_k = int(search_k)
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise RuntimeError("self_join needs a SparkSession: pass spark= or start one")
    where = _Where.of(spark, path, ship)
    if n_partitions is None:
        n_partitions = 4 * spark.sparkContext.defaultParallelism
    n_partitions = _positive(n_partitions, "n_partitions")
    threads = _task_cpus(spark)

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        collection = where.open()
        ids = _cached_ids(collection)
        for batch in batches:
            for part in batch.column(0).to_numpy():
                start = len(ids) * int(part) // n_partitions
                end = len(ids) * (int(part) + 1) // n_partitions
                for at in range(start, end, _CHUNK):
                    chunk = ids[at : min(end, at + _CHUNK)]
                    yield _self_search(collection, chunk, k, search_k, threads, include_self)

    parts = spark.range(0, n_partitions, numPartitions=n_partitions)
    return parts.mapInArrow(search, RESULT_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Where a job reads the collection, and the worker's cache of open ones
# ---------------------------------------------------------------------------------------------

#: Items a self-join searches per Arrow batch it returns.
_CHUNK = 8192


class _Where:
    """Where tasks open the collection, and which generation they must find there."""

    def __init__(self, path: str, shipped_as: Optional[str], generation: Optional[int]):
        self.path = path
        self.shipped_as = shipped_as
        self.generation = generation

    @staticmethod
    def of(spark: Any, path: str, ship: bool) -> "_Where":
        path = os.fspath(path)
        if "://" in path:
            if not ship:
                raise ValueError(f"{path!r} is a URL: copse maps local files; pass ship=True")
            # A directory on a file system Spark reads (HDFS, an object store): the executors
            # fetch it whole. Its generation is not known here, so it is not pinned.
            return _Where(path, _ship_directory(spark, path), None)
        path = os.path.abspath(path)
        # Checks the collection on the driver (a clear error now, not in every task) and pins
        # the generation the tasks must read.
        with Collection.open(path, readonly=True) as collection:
            generation = collection.generation
            shipped_as = _ship_archive(spark, collection) if ship else None
        return _Where(path, shipped_as, generation)

    def local_path(self) -> str:
        if self.shipped_as is None:
            return self.path
        from pyspark import SparkFiles

        return SparkFiles.get(self.shipped_as)

    def open(self) -> Collection:
        return _open_cached(self.local_path(), self.generation)


def _ship_archive(spark: Any, collection: Collection) -> str:
    """Sends the collection's files (its manifest and the segments it names) to every
    executor as one uncompressed tar, which each unpacks once; returns the name tasks find
    the unpacked directory under. Spark cannot ship a local directory to a cluster, and a
    tar keeps the collection's file names apart from every other collection's."""
    import atexit
    import shutil
    import tarfile
    import tempfile
    import uuid

    context = spark.sparkContext
    key = (id(context), str(collection.path), collection.generation)
    name = _SHIPPED.get(key)
    if name is not None:
        return name
    base = os.path.basename(str(collection.path).rstrip("/")) or "collection"
    name = f"copse-{base}-{collection.generation}-{uuid.uuid4().hex[:8]}.tar"
    staging = tempfile.mkdtemp(prefix="copse-ship-")
    atexit.register(shutil.rmtree, staging, True)
    archive = os.path.join(staging, name)
    with tarfile.open(archive, "w") as tar:
        tar.add(os.path.join(str(collection.path), "MANIFEST"), arcname="MANIFEST")
        for segment in collection.segments():
            tar.add(str(segment["path"]), arcname=os.path.basename(str(segment["path"])))
    context.addArchive(archive)
    _SHIPPED[key] = name
    return name


def _ship_directory(spark: Any, url: str) -> str:
    """Sends directory ``url`` (a URL Spark's file systems read) to every executor."""
    context = spark.sparkContext
    key = (id(context), url, None)
    if key not in _SHIPPED:
        context.addFile(url, recursive=True)
        _SHIPPED[key] = os.path.basename(url.rstrip("/"))
    return _SHIPPED[key]


#: What each SparkContext (by id) has shipped, by path and generation: the name tasks find it
#: under. Spark refuses to add a file twice.
_SHIPPED: Dict[Tuple[int, str, Optional[int]], str] = {}

#: The collections this worker process has open, by path: mapped once, shared by its tasks.
_OPEN: Dict[str, Collection] = {}
_OPEN_LOCK = threading.Lock()
_IDS: Dict[Tuple[str, int], np.ndarray] = {}


def _open_cached(path: str, generation: Optional[int]) -> Collection:
    with _OPEN_LOCK:
        collection = _OPEN.get(path)
        if collection is not None and generation is not None:
            if collection.generation != generation:
                collection.refresh()
        if collection is None:
            collection = Collection.open(path, readonly=True)
            _OPEN[path] = collection
        if generation is not None and collection.generation != generation:
            raise RuntimeError(
                f"the collection at {path} is at generation {collection.generation}, the job "
                f"was planned at {generation}: it was changed during the job; run it again"
            )
        return collection


def _cached_ids(collection: Collection) -> np.ndarray:
    """The collection's ids, in its own order, read once per worker and generation."""
    key = (str(collection.path), collection.generation)
    with _OPEN_LOCK:
        ids = _IDS.get(key)
        if ids is None:
            for old in [old for old in _IDS if old[0] == key[0]]:
                del _IDS[old]
            ids = collection.ids()
            _IDS[key] = ids
        return ids


# ---------------------------------------------------------------------------------------------
# The tasks' work
# ---------------------------------------------------------------------------------------------


def _build_shard(
    path: str,
    options: Dict[str, Any],
    numbers: List[int],
    threads: int,
    batches: Iterator[pa.RecordBatch],
) -> pa.RecordBatch:
    from pyspark import TaskContext

    number = numbers[TaskContext.get().partitionId()]
    f = options["f"]
    ids: List[np.ndarray] = []
    vectors: List[np.ndarray] = []
    for batch in batches:
        if batch.num_rows:
            ids.append(_ids(batch.column(0), "id"))
            vectors.append(_matrix(batch.column(1), f))
    n_items = sum(len(chunk) for chunk in ids)
    if n_items:
        Collection.build_segment(
            path,
            options,
            number,
            np.concatenate(ids),
            np.concatenate(vectors),
            n_threads=threads,
        )
    return pa.RecordBatch.from_arrays(
        [pa.array([number], pa.int64()), pa.array([n_items], pa.int64())], schema=_BUILT
    )


def _search_batch(
    collection: Collection,
    batch: pa.RecordBatch,
    k: int,
    search_k: int,
    threads: int,
    filtered: bool,
) -> pa.RecordBatch:
    if batch.column(0).null_count:
        raise ValueError("a query has a null id")
    query_ids = batch.column(0).to_numpy(zero_copy_only=False)
    vectors = _matrix(batch.column(1), collection.f)
    if not filtered:
        ids, distances = collection.search(vectors, k, search_k=search_k, n_threads=threads)
        return _rows(query_ids, ids, distances, ids != _NO_ITEM)
    # Queries without a filter in one batch search; each filtered one alone, with its own.
    allowed = batch.column(2)
    has_filter = allowed.is_valid().to_numpy(zero_copy_only=False)
    width = min(k, len(collection))
    ids = np.full((len(vectors), width), _NO_ITEM, dtype=np.uint64)
    distances = np.full((len(vectors), width), np.nan, dtype=np.float32)
    plain = ~has_filter
    if plain.any():
        ids[plain], distances[plain] = collection.search(
            vectors[plain], k, search_k=search_k, n_threads=threads
        )
    for row in np.flatnonzero(has_filter):
        only = _ids(allowed[int(row)].values, "filter id")
        found, dist = collection.search(
            vectors[row : row + 1], k, search_k=search_k, filter=only, n_threads=1
        )
        ids[row, : found.shape[1]], distances[row, : found.shape[1]] = found[0], dist[0]
    return _rows(query_ids, ids, distances, ids != _NO_ITEM)


def _self_search(
    collection: Collection,
    items: np.ndarray,
    k: int,
    search_k: int,
    threads: int,
    include_self: bool,
) -> pa.RecordBatch:
    vectors = collection.get_item_vectors(items)
    wanted = k if include_self else k + 1
    ids, distances = collection.search(vectors, wanted, search_k=search_k, n_threads=threads)
    keep = ids != _NO_ITEM
    if not include_self:
        keep &= ids != items[:, None]
        # The nearest k others: a row that did not find itself has k + 1 of them.
        keep &= np.cumsum(keep, axis=1) <= k
    return _rows(items.view(np.int64), ids, distances, keep)


def _rows(
    query_ids: np.ndarray, ids: np.ndarray, distances: np.ndarray, keep: np.ndarray
) -> pa.RecordBatch:
    """Result rows from search arrays: the entries ``keep`` marks, ranked from 1 per query."""
    counts = keep.sum(axis=1)
    rank = np.cumsum(keep, axis=1, dtype=np.int32)[keep]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.repeat(np.asarray(query_ids, dtype=np.int64), counts)),
            pa.array(ids[keep].view(np.int64)),
            pa.array(distances[keep].astype(np.float32, copy=False)),
            pa.array(rank),
        ],
        schema=_ARROW_RESULT,
    )


# ---------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------


def _select(df: Any, id_col: str, vector_col: str, *more: str) -> Any:
    """``df``'s id and vector columns (an ``ml`` vector made an array), and ``more``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import UserDefinedType

    kind = df.schema[vector_col].dataType
    vector = F.col(vector_col)
    if isinstance(kind, UserDefinedType) and kind.simpleString() == "vector":
        from pyspark.ml.functions import vector_to_array

        vector = vector_to_array(vector, dtype="float32")
    return df.select(F.col(id_col), vector.alias(vector_col), *[F.col(c) for c in more])


def _first_length(rows: Any) -> int:
    from pyspark.sql import functions as F

    first = rows.select(F.size(rows.columns[1]).alias("f")).first()
    if first is None:
        raise ValueError("the DataFrame has no rows: nothing to build")
    return int(first.f)


def _ids(column: Any, what: str) -> np.ndarray:
    """An Arrow integer column as uint64 ids (longs read as unsigned)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        raise ValueError(f"a null {what}")
    if not pa.types.is_integer(column.type):
        raise ValueError(f"{what}s must be integers, not {column.type}")
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "u":
        return values.astype(np.uint64)
    return values.astype(np.int64).view(np.uint64)


def _matrix(column: Any, f: int) -> np.ndarray:
    """An Arrow column of vectors (lists of floats) as a float32 matrix of ``f`` columns."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise ValueError(f"vectors must be arrays of numbers, not {kind}")
    if column.null_count:
        raise ValueError("a vector is null")
    if not pa.types.is_fixed_size_list(kind):
        lengths = np.diff(column.offsets.to_numpy())
        wrong = np.flatnonzero(lengths != f)
        if wrong.size:
            row = int(wrong[0])
            raise IndexError(f"vector {row} has {int(lengths[row])} values, the collection {f}")
    elif kind.list_size != f:
        raise IndexError(f"vectors have {kind.list_size} values, the collection {f}")
    values = column.flatten()
    if values.null_count:
        raise ValueError("a vector holds a null value")
    matrix = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return matrix.reshape(len(column), f)


def _positive(value: Any, name: str) -> int:
    number = int(value)
    if number != value or number <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return number


def _task_cpus(spark: Any) -> int:
    """Threads each task may use: ``spark.task.cpus``."""
    return max(1, int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))
