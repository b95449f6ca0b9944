"""`cargo xtask bench-glove --spark`: copse.spark on the bench split, side by side in one run.

Usage: bench_spark.py WORK_DIR METRIC N_SHARDS N_QUERIES K OUT_JSON

WORK_DIR holds data.npy (the items; an item's id is its row), queries.npy and truth.npy
(each query's true neighbours, rows of data.npy). Measures, all on this machine:

- build: `copse.spark.build` with `local[2]` (4 shards, one task and one thread each)
  against building the same 4 shards (the same ids each) in this process with
  `Collection.build_segment` on 2 threads;
- knn_join: throughput of the first N_QUERIES queries with `local[1]` and `local[2]`, and
  `Collection.search` in this process on 2 threads, each the median of 3 timed runs after a
  warm one (results written to Spark's no-op sink, so nothing is collected);
- recall@K of the join at the default effort against the truth, and that the join's
  neighbours equal the in-process search's.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import copse
import copse.spark as cs


def session(master):
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName("copse-bench")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def frame(spark, ids, vectors, partitions):
    table = pd.DataFrame({"id": ids.astype(np.int64), "vector": list(vectors)})
    df = spark.createDataFrame(table).repartition(partitions).cache()
    df.count()
    return df


def timed(run, repeats=3):
    run()  # warm: workers started, the collection mapped
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main():
    work, metric, n_shards, n_queries, k, out = sys.argv[1:7]
    n_shards, n_queries, k = int(n_shards), int(n_queries), int(k)
    os.environ.update(
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    data = np.load(os.path.join(work, "data.npy"))
    queries = np.load(os.path.join(work, "queries.npy"))[:n_queries]
    truth = np.load(os.path.join(work, "truth.npy"))[:n_queries, :k]
    ids = np.arange(len(data), dtype=np.uint64)
    scratch = tempfile.mkdtemp(prefix="copse-bench-spark-")
    report = {"items": len(data), "queries": len(queries), "shards": n_shards, "k": k}
    try:
        # Spark local[2]: build, then the join.
        spark = session("local[2]")
        items = frame(spark, ids, data, 8)
        query_df = frame(spark, np.arange(len(queries)), queries, 8)
        spark_path = os.path.join(scratch, "spark")
        started = time.perf_counter()
        cs.build(items, spark_path, n_shards=n_shards, metric=metric)
        report["build_spark_2"] = time.perf_counter() - started
        print(f"spark local[2]: built {n_shards} shards in {report['build_spark_2']:.1f} s")

        def join():
            cs.knn_join(query_df, spark_path, k).write.format("noop").mode("overwrite").save()

        report["join_spark_2"] = timed(join)
        rows = cs.knn_join(query_df, spark_path, k).toPandas().sort_values(["query_id", "rank"])
        got = rows.neighbor_id.to_numpy().reshape(len(queries), k)
        # Which ids each shard got: build partitions by a hash of the id, as here.
        from pyspark.sql.functions import spark_partition_id

        placed = (
            items.select("id")
            .repartition(n_shards, "id")
            .withColumn("shard", spark_partition_id())
            .toPandas()
        )
        spark.stop()

        collection = copse.Collection.open(spark_path, readonly=True)
        want, _ = collection.search(queries, k, n_threads=2)
        report["join_equals_in_process"] = bool((got.astype(np.uint64) == want).all())
        hits = sum(len(set(g.tolist()) & set(t.tolist())) for g, t in zip(got, truth))
        report["recall"] = hits / truth.size
        report["search_in_process_2"] = timed(lambda: collection.search(queries, k, n_threads=2))

        # The same shards built in one process, 2 threads each.
        shard_ids = [
            np.sort(placed.id[placed.shard == s].to_numpy()).astype(np.uint64)
            for s in range(n_shards)
        ]
        sizes = sorted(len(s) for s in shard_ids)
        assert sizes == sorted(s["n_items"] for s in collection.segments()), sizes
        local_path = os.path.join(scratch, "local")
        started = time.perf_counter()
        local = copse.Collection.create(local_path, data.shape[1], metric)
        options = local.build_options()
        numbers = local.reserve_segments(len(shard_ids))
        for number, shard in zip(numbers, shard_ids):
            copse.Collection.build_segment(
                local_path, options, number, shard, data[shard.astype(np.int64)], n_threads=2
            )
        local.attach_segments(numbers)
        report["build_in_process_2"] = time.perf_counter() - started
        local.close()
        print(f"one process: built the same shards in {report['build_in_process_2']:.1f} s")

        # Spark local[1]: the join only.
        spark = session("local[1]")
        query_df = frame(spark, np.arange(len(queries)), queries, 8)
        report["join_spark_1"] = timed(join)
        spark.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    qps = lambda seconds: len(queries) / seconds  # noqa: E731
    report["qps_spark_1"] = qps(report["join_spark_1"])
    report["qps_spark_2"] = qps(report["join_spark_2"])
    report["qps_in_process_2"] = qps(report["search_in_process_2"])
    report["join_speedup_2_over_1"] = report["qps_spark_2"] / report["qps_spark_1"]
    report["in_process_over_spark_2"] = report["qps_in_process_2"] / report["qps_spark_2"]
    report["build_spark_over_in_process"] = report["build_spark_2"] / report["build_in_process_2"]
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(
        f"\nSpark, {report['items']} items in {n_shards} shards, {len(queries)} queries, k = {k}\n"
        f"  recall@{k} at the default effort: {report['recall']:.4f} (floor 0.95); "
        f"join equals one process: {report['join_equals_in_process']}\n"
        f"  knn_join QPS: local[1] {report['qps_spark_1']:.0f}, local[2] "
        f"{report['qps_spark_2']:.0f} ({report['join_speedup_2_over_1']:.2f}x, floor 1.6x); "
        f"in-process 2 threads {report['qps_in_process_2']:.0f} "
        f"({report['in_process_over_spark_2']:.2f}x local[2], ceiling 2x)\n"
        f"  build: local[2] {report['build_spark_2']:.1f} s, one process "
        f"{report['build_in_process_2']:.1f} s ({report['build_spark_over_in_process']:.2f}x, "
        f"ceiling 1.5x)"
    )


if __name__ == "__main__":
    main()
