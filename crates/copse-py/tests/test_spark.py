"""copse.spark on Spark in local mode (`local[2]`, up to 4 attempts per task), against
single-process `copse.Collection` answers and a brute-force oracle.

Skipped when pyspark, pandas or pyarrow is missing, unless COPSE_REQUIRE_SPARK=1 (as
`cargo xtask ci` sets), which makes a missing piece a failure. Everything Spark opens binds to
127.0.0.1.
"""

import os
import signal
import sys
import tempfile

import numpy as np
import pytest

from conftest import METRICS, make_data, oracle_distances, oracle_order

if os.environ.get("COPSE_REQUIRE_SPARK") == "1":
    import pandas as pd
    import pyarrow  # noqa: F401
    import pyspark  # noqa: F401
else:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pytest.importorskip("pyspark")

import copse  # noqa: E402
import copse.spark as cs  # noqa: E402
from pyspark import cloudpickle  # noqa: E402

# The workers cannot import this file: functions defined here travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

F = 12


def loopback_session(master):
    """A SparkSession on `master` whose every socket is on 127.0.0.1."""
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master(master)
        .appName("copse-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(scope="module")
def spark():
    session = loopback_session("local[2,4]")
    yield session
    session.stop()


def frame(spark, ids, vectors, partitions=3, **more):
    columns = {"id": np.asarray(ids).astype(np.uint64).view(np.int64), "vector": list(vectors)}
    columns.update(more)
    return spark.createDataFrame(pd.DataFrame(columns)).repartition(partitions)


def spread_ids(n, seed):
    """`n` distinct ids above 2**32, a few of them at or above 2**63."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(1 << 40, size=n, replace=False).astype(np.uint64) + np.uint64(1 << 32)
    ids[:5] |= np.uint64(1 << 63)
    return ids


def result_arrays(result, n_queries, k, order):
    """A join's rows as (ids, distances) arrays of shape (n_queries, k), queries in `order`."""
    rows = result.toPandas().sort_values(["query_id", "rank"])
    got_ids = rows.neighbor_id.to_numpy().astype(np.int64).view(np.uint64)
    query_ids = rows.query_id.to_numpy().astype(np.int64)
    order = np.asarray(order)
    if order.dtype == np.uint64:  # item ids: Spark's longs read as unsigned
        query_ids = query_ids.view(np.uint64)
    position = {int(q): i for i, q in enumerate(order)}
    ids = np.full((n_queries, k), 2**64 - 1, dtype=np.uint64)
    dist = np.full((n_queries, k), np.nan, dtype=np.float32)
    for q, r, i, d in zip(query_ids, rows["rank"], got_ids, rows.distance):
        ids[position[int(q)], r - 1] = i
        dist[position[q], r - 1] = d
    return ids, dist


@pytest.mark.parametrize("metric", METRICS)
def test_build_then_join_equals_one_process_and_brute_force(spark, tmp_path, metric):
    n, k = 900, 10
    vectors = make_data(metric, n, F, seed=3)
    ids = spread_ids(n, 4)
    path = tmp_path / "c"
    generation = cs.build(
        frame(spark, ids, vectors), str(path), n_shards=3, metric=metric, graph=False,
        n_trees=4, seed=5,
    )
    collection = copse.Collection.open(str(path), readonly=True)
    assert collection.generation == generation == 1
    assert len(collection.segments()) == 3
    assert sorted(collection.ids().tolist()) == sorted(ids.tolist())
    np.testing.assert_array_equal(collection.get_item_vectors(ids), vectors)

    queries = make_data(metric, 60, F, seed=6)
    query_ids = np.arange(60) * 7 - 100
    search_k = 100_000  # every leaf of every tree: the forests are searched exhaustively
    result = cs.knn_join(frame(spark, query_ids, queries, 2), str(path), k, search_k=search_k)
    got_ids, got_dist = result_arrays(result, 60, k, query_ids)
    want_ids, want_dist = collection.search(queries, k, search_k=search_k)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)
    # Exhaustive, so the brute-force oracle's distances (ties may order ids differently).
    for row, q in enumerate(queries):
        d = oracle_distances(metric, vectors, q)
        best = d[oracle_order(metric, d)[:k]]
        np.testing.assert_allclose(got_dist[row], best, rtol=1e-4, atol=1e-4)


def test_graph_shards_reach_recall_and_match_one_process(spark, tmp_path):
    n, k = 4000, 10
    vectors = make_data("euclidean", n, 16, seed=7)
    ids = spread_ids(n, 8)
    path = tmp_path / "g"
    cs.build(frame(spark, ids, vectors, 4), str(path), n_shards=4, metric="euclidean")
    collection = copse.Collection.open(str(path))
    queries = make_data("euclidean", 200, 16, seed=9)
    result = cs.knn_join(frame(spark, np.arange(200), queries, 2), str(path), k)
    got_ids, got_dist = result_arrays(result, 200, k, np.arange(200))
    want_ids, want_dist = collection.search(queries, k)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)
    hits = 0
    for row, q in enumerate(queries):
        d = oracle_distances("euclidean", vectors, q)
        hits += len(set(ids[oracle_order("euclidean", d)[:k]].tolist()) & set(got_ids[row].tolist()))
    assert hits / (200 * k) >= 0.95


def test_self_join_finds_other_items_and_self_on_request(spark, tmp_path):
    n, k = 700, 5
    vectors = make_data("euclidean", n, F, seed=10)
    ids = spread_ids(n, 11)
    path = tmp_path / "s"
    cs.build(frame(spark, ids, vectors), str(path), n_shards=2, metric="euclidean",
             graph=False, n_trees=4)
    collection = copse.Collection.open(str(path), readonly=True)
    search_k = 100_000
    got_ids, got_dist = result_arrays(
        cs.self_join(str(path), k, spark=spark, search_k=search_k, n_partitions=3), n, k, ids
    )
    assert not (got_ids == ids[:, None]).any()
    for row, q in enumerate(vectors):
        d = oracle_distances("euclidean", vectors, q)
        d[row] = np.inf
        np.testing.assert_allclose(got_dist[row], np.sort(d)[:k], rtol=1e-4, atol=1e-4)
    # Equal to one process dropping the item itself from k + 1.
    want_ids, _ = collection.search(vectors, k + 1, search_k=search_k)
    for row in range(n):
        others = [i for i in want_ids[row] if i != ids[row]][:k]
        assert got_ids[row].tolist() == others

    with_self, self_dist = result_arrays(
        cs.self_join(str(path), k, spark=spark, search_k=search_k, include_self=True), n, k, ids
    )
    np.testing.assert_array_equal(with_self[:, 0], ids)
    np.testing.assert_array_equal(self_dist[:, 0], 0.0)


def test_filter_column_limits_each_query(spark, tmp_path):
    n, k = 800, 6
    vectors = make_data("angular", n, F, seed=12)
    ids = spread_ids(n, 13)
    path = tmp_path / "f"
    cs.build(frame(spark, ids, vectors), str(path), n_shards=2, graph=False, n_trees=4)
    collection = copse.Collection.open(str(path), readonly=True)
    queries = make_data("angular", 40, F, seed=14)
    rng = np.random.default_rng(15)
    allowed = [
        None if q % 4 == 0 else rng.choice(ids, size=3 if q % 4 == 1 else 50, replace=False)
        for q in range(40)
    ]
    spark_allowed = [None if a is None else a.view(np.int64).tolist() for a in allowed]
    queries_df = frame(spark, np.arange(40), queries, 2, allowed=spark_allowed)
    search_k = 100_000
    result = cs.knn_join(queries_df, str(path), k, search_k=search_k, filter_col="allowed")
    got_ids, got_dist = result_arrays(result, 40, k, np.arange(40))
    for q in range(40):
        want_ids, want_dist = collection.search(
            queries[q : q + 1], k, search_k=search_k, filter=allowed[q]
        )
        found = want_ids.shape[1]
        np.testing.assert_array_equal(got_ids[q, :found], want_ids[0])
        np.testing.assert_array_equal(got_dist[q, :found], want_dist[0])
        assert (got_ids[q, found:] == 2**64 - 1).all()
        if allowed[q] is not None:
            live = got_ids[q][got_ids[q] != 2**64 - 1]
            assert set(live.tolist()) <= set(allowed[q].tolist())
            assert len(live) == min(k, len(allowed[q]))


def test_ml_vectors_double_arrays_and_append(spark, tmp_path):
    from pyspark.ml.linalg import Vectors

    vectors = make_data("euclidean", 300, F, seed=16)
    ids = np.arange(300, dtype=np.int64) + (1 << 35)
    rows = [(int(i), Vectors.dense(v.astype(np.float64))) for i, v in zip(ids, vectors)]
    df = spark.createDataFrame(rows[:200], ["id", "features"])
    path = str(tmp_path / "m")
    cs.build(df, path, vector_col="features", n_shards=2, metric="euclidean", graph=False)
    more = spark.createDataFrame(
        [(int(i), v.tolist()) for i, v in zip(ids[200:], vectors[200:].astype(np.float64))],
        ["key", "values"],
    )
    assert cs.build(more, path, id_col="key", vector_col="values", n_shards=2, append=True) == 2
    collection = copse.Collection.open(path, readonly=True)
    assert sorted(collection.ids().tolist()) == ids.tolist()
    np.testing.assert_array_equal(collection.get_item_vectors(ids.astype(np.uint64)), vectors)
    # An id the collection has is refused, and nothing changes.
    with pytest.raises(ValueError, match="already in the collection"):
        cs.build(df.limit(5), path, vector_col="features", n_shards=2, append=True)
    assert copse.Collection.open(path, readonly=True).generation == 2


def test_shards_store_the_collections_row_type(spark, tmp_path):
    vectors = make_data("euclidean", 200, F, seed=21)
    ids = np.arange(200, dtype=np.int64) * 3
    path = str(tmp_path / "h")
    cs.build(
        frame(spark, ids, vectors), path, n_shards=2, metric="euclidean", graph=False,
        dtype="float16",
    )
    collection = copse.Collection.open(path, readonly=True)
    assert collection.dtype == "float16" and len(collection.segments()) == 2
    np.testing.assert_array_equal(
        collection.get_item_vectors(ids.astype(np.uint64)),
        vectors.astype(np.float16).astype(np.float32),
    )


def test_bad_rows_fail_the_build_and_leave_the_collection_empty(spark, tmp_path):
    vectors = make_data("euclidean", 100, F, seed=17)
    ids = np.arange(100)
    ids[50] = ids[10]
    path = str(tmp_path / "d")
    with pytest.raises(Exception, match="[Dd]uplicate|already"):
        cs.build(frame(spark, ids, vectors), path, n_shards=2, metric="euclidean")
    assert len(copse.Collection.open(path, readonly=True)) == 0

    short = spark.createDataFrame(pd.DataFrame({"id": [1, 2], "vector": [[0.5] * F, [0.5] * 3]}))
    path = str(tmp_path / "e")
    with pytest.raises(Exception, match="values, the collection"):
        cs.build(short, path, n_shards=1, metric="euclidean")
    assert len(copse.Collection.open(path, readonly=True)) == 0
    with pytest.raises(ValueError, match="k must be"):
        cs.knn_join(short, path, 0)
    with pytest.raises(OSError):
        cs.knn_join(short, str(tmp_path / "nothing"), 3)


def test_shipped_collection_is_read_from_the_executors_copy(spark, tmp_path):
    vectors = make_data("euclidean", 500, F, seed=18)
    ids = spread_ids(500, 19)
    path = tmp_path / "shipme"
    cs.build(frame(spark, ids, vectors), str(path), n_shards=2, metric="euclidean", graph=False)
    want_ids, want_dist = copse.Collection.open(str(path), readonly=True).search(
        vectors[:30], 5, search_k=100_000
    )
    result = cs.knn_join(
        frame(spark, np.arange(30), vectors[:30], 2), str(path), 5, search_k=100_000, ship=True
    )
    got_ids, got_dist = result_arrays(result, 30, 5, np.arange(30))
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)
    np.testing.assert_array_equal(got_ids[:, 0], ids[:30])

    # A URL Spark's file systems read is fetched whole with addFile.
    result = cs.knn_join(
        frame(spark, np.arange(30), vectors[:30], 2), path.as_uri(), 5, search_k=100_000,
        ship=True,
    )
    got_ids, got_dist = result_arrays(result, 30, 5, np.arange(30))
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)
    with pytest.raises(ValueError, match="ship=True"):
        cs.knn_join(frame(spark, np.arange(3), vectors[:3], 1), path.as_uri(), 5)

    # Tasks open the copy Spark shipped (in the executor's SparkFiles directory), not `path`.
    import pyarrow as pa

    where = cs._Where.of(spark, str(path), ship=True)

    def opened(batches):
        from pyspark import SparkFiles

        for _ in batches:
            local = where.local_path()
            yield pa.RecordBatch.from_pydict(
                {
                    "path": [local],
                    "root": [SparkFiles.getRootDirectory()],
                    "manifest": [os.path.exists(os.path.join(local, "MANIFEST"))],
                }
            )

    rows = (
        spark.range(4, numPartitions=4)
        .mapInArrow(opened, "path string, root string, manifest boolean")
        .collect()
    )
    assert len(rows) == 4
    for row in rows:
        assert row.path != str(path) and row.path.startswith(row.root), row
        assert row.manifest, row


def _children_of(parent):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry))
    return pids


def test_a_task_whose_python_workers_are_killed_is_retried_with_the_same_result(spark, tmp_path):
    vectors = make_data("angular", 2000, F, seed=20)
    ids = spread_ids(2000, 21)
    path = tmp_path / "k"
    cs.build(frame(spark, ids, vectors, 4), str(path), n_shards=2, n_trees=4)
    queries = make_data("angular", 1500, F, seed=22)
    want_ids, want_dist = copse.Collection.open(str(path), readonly=True).search(queries, 10)
    marks = tempfile.mkdtemp(dir=tmp_path)

    def kill_on_first_attempt(batches):
        """Passes the queries on; on partition 0's first attempt, after the first batch has
        gone to the search, SIGKILLs this task's other Python workers (the search's among
        them), so the task dies mid-query."""
        from pyspark import TaskContext

        context = TaskContext.get()
        for at, batch in enumerate(batches):
            yield batch
            if at == 0 and context.partitionId() == 0:
                if context.attemptNumber() == 0:
                    me = os.getpid()
                    victims = [p for p in _children_of(os.getppid()) if p != me]
                    with open(os.path.join(marks, "killed"), "w") as f:
                        f.write(" ".join(map(str, victims)))
                    for pid in victims:
                        os.kill(pid, signal.SIGKILL)
                else:
                    open(os.path.join(marks, f"retry-{context.attemptNumber()}"), "w").close()

    queries_df = frame(spark, np.arange(1500), queries, 2)
    upstream = queries_df.mapInArrow(kill_on_first_attempt, queries_df.schema)
    got_ids, got_dist = result_arrays(cs.knn_join(upstream, str(path), 10), 1500, 10,
                                      np.arange(1500))
    with open(os.path.join(marks, "killed")) as f:
        assert f.read().split(), "no Python worker was killed"
    assert any(name.startswith("retry-") for name in os.listdir(marks)), "no retry ran"
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_array_equal(got_dist, want_dist)


def test_the_readme_example_runs():
    """The README's PySpark example, as written, in its own interpreter (its own session)."""
    import re
    import subprocess

    readme = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")
    with open(readme) as f:
        text = f.read()
    found = re.search(
        r"<!-- spark-example[^>]*-->\s*```python\n(.*?)```\s*<!-- end spark-example -->",
        text,
        re.S,
    )
    assert found, "the README's Spark example is missing its markers"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run(
        [sys.executable, "-c", found.group(1)], env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "100000" in done.stdout, done.stdout
