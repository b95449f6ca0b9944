"""copse.spark on a standalone Spark cluster on loopback: a master and two workers (one core
each) started here, so that shards are built and searched in other processes than the
driver's, each with its own executor directory.

Run it with `cargo xtask spark-cluster` (which sets up the venv) or, in a venv with copse,
pyspark, pandas and pyarrow, `python crates/copse-py/tests/spark_cluster.py`. Every socket binds
to 127.0.0.1. It checks:

- `build` with 4 shards: each built by an executor, the collection equal to the input;
- `knn_join` with `ship=True` (the executors read the copies `addFile` sent them) and
  `self_join`: exactly the single-process `Collection`'s answers;
- that the tasks ran on both executors, in other processes than the driver.

Exits 0 when all hold; prints what it measured.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def main():
    from pyspark.find_spark_home import _find_spark_home

    spark_home = _find_spark_home()
    spark_class = os.path.join(spark_home, "bin", "spark-class")
    scratch = tempfile.mkdtemp(prefix="copse-spark-cluster-")
    env = dict(
        os.environ,
        SPARK_HOME=spark_home,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_PUBLIC_DNS="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    os.environ.update(
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = []
    processes = []

    def start(name, args):
        log = open(os.path.join(scratch, f"{name}.log"), "w")
        logs.append(log)
        processes.append(
            subprocess.Popen(
                [spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(free_port())])
        wait_for_port(port, "the master")
        for i in range(2):
            work = os.path.join(scratch, f"worker-{i}")
            os.makedirs(work)
            start(f"worker-{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                  "--cores", "1", "--memory", "2g", "--work-dir", work,
                                  "--webui-port", str(free_port()), master_url])
        run_job(master_url, scratch)
    finally:
        for p in processes:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
    shutil.rmtree(scratch, ignore_errors=True)
    print("spark cluster: all checks passed")


def run_job(master_url, scratch):
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import SparkSession

    import copse
    import copse.spark as cs

    started = time.monotonic()
    spark = (
        SparkSession.builder.master(master_url)
        .appName("copse-cluster-check")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.executor.cores", "1")
        .config("spark.executor.memory", "1g")
        .config("spark.cores.max", "2")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        # Both executors registered (the driver's block manager is the third).
        deadline = time.monotonic() + 120
        status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
        while status.size() < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the two executors did not register within 120 s")
            time.sleep(0.5)
            status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
        print(f"spark cluster: master and 2 workers up in {time.monotonic() - started:.1f} s")

        rng = np.random.default_rng(1)
        n, f, k = 20_000, 32, 10
        vectors = rng.standard_normal((n, f)).astype(np.float32)
        ids = rng.choice(1 << 40, size=n, replace=False).astype(np.uint64) + np.uint64(1 << 32)
        frame = pd.DataFrame({"id": ids.view(np.int64), "vector": list(vectors)})
        df = spark.createDataFrame(frame).repartition(4)
        path = os.path.join(scratch, "collection")
        t = time.monotonic()
        cs.build(df, path, n_shards=4, metric="euclidean")
        print(f"spark cluster: built 4 shards of {n} items in {time.monotonic() - t:.1f} s")
        collection = copse.Collection.open(path, readonly=True)
        assert len(collection.segments()) == 4, collection.segments()
        assert sorted(collection.ids().tolist()) == sorted(ids.tolist())
        np.testing.assert_array_equal(collection.get_item_vectors(ids), vectors)

        queries = rng.standard_normal((2000, f)).astype(np.float32)
        qdf = spark.createDataFrame(
            pd.DataFrame({"id": np.arange(2000), "vector": list(queries)})
        ).repartition(4)
        t = time.monotonic()
        rows = cs.knn_join(qdf, path, k, ship=True).toPandas()
        print(f"spark cluster: knn_join of 2000 queries in {time.monotonic() - t:.1f} s")
        rows = rows.sort_values(["query_id", "rank"])
        got = rows.neighbor_id.to_numpy().astype(np.int64).view(np.uint64).reshape(2000, k)
        want_ids, want_dist = collection.search(queries, k)
        np.testing.assert_array_equal(got, want_ids)
        np.testing.assert_array_equal(rows.distance.to_numpy().reshape(2000, k), want_dist)

        pairs = cs.self_join(path, 5, spark=spark).toPandas()
        assert len(pairs) == n * 5, len(pairs)
        sample = rng.choice(n, 200, replace=False)
        own_ids, _ = collection.search(vectors[sample], 6)
        by_item = pairs.sort_values(["query_id", "rank"]).groupby("query_id").neighbor_id
        lists = {np.int64(q).view(np.uint64): g.to_numpy() for q, g in by_item}
        for row, item in enumerate(ids[sample]):
            others = [i for i in own_ids[row] if i != item][:5]
            assert lists[item].astype(np.int64).view(np.uint64).tolist() == others

        # Where the tasks ran: other processes than the driver, on both executors, reading
        # the shipped copies.
        where = cs._Where.of(spark, path, ship=True)

        def report(batches):
            from pyspark import SparkFiles

            for _ in batches:
                yield pa.RecordBatch.from_pydict(
                    {"pid": [os.getpid()], "local": [os.path.abspath(where.local_path())],
                     "root": [os.path.abspath(SparkFiles.getRootDirectory())]}
                )

        seen = spark.range(8, numPartitions=8).mapInArrow(
            report, "pid long, local string, root string"
        ).collect()
        roots = {r.root for r in seen}
        assert len(roots) == 2, roots
        assert all(r.pid != os.getpid() and r.local.startswith(r.root) for r in seen), seen
        assert all(not r.local.startswith(path) for r in seen), seen
        print("spark cluster: tasks ran on 2 executors, in their own processes and directories")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
