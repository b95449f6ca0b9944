"""Shared helpers for the copse Python tests: seeded data and a brute-force oracle."""

import numpy as np
import pytest

METRICS = ["angular", "euclidean", "manhattan", "hamming", "dot"]


def make_data(metric, n, f, seed=0):
    """`n` seeded random vectors suited to `metric` (0/1 values for hamming), float32."""
    rng = np.random.default_rng(seed)
    if metric == "hamming":
        return rng.integers(0, 2, size=(n, f)).astype(np.float32)
    return rng.standard_normal((n, f)).astype(np.float32)


def oracle_distances(metric, items, query):
    """Annoy's distance from `query` to every row of `items`, in float64."""
    x = items.astype(np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "angular":
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
        cos = np.where(norms > 0, x @ q / np.where(norms > 0, norms, 1), 0.0)
        return np.sqrt(np.maximum(2.0 - 2.0 * np.where(norms > 0, cos, 0.0), 0.0))
    if metric == "euclidean":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    if metric == "manhattan":
        return np.abs(x - q).sum(axis=1)
    if metric == "hamming":
        return (x != q).sum(axis=1).astype(np.float64)
    if metric == "dot":
        return x @ q
    raise ValueError(metric)


def oracle_order(metric, distances):
    """Ids from nearest to farthest (largest inner product first for dot)."""
    if metric == "dot":
        return np.argsort(-distances, kind="stable")
    return np.argsort(distances, kind="stable")


def tie_aware_recall(metric, distances, found, k):
    """Fraction of the true `k` nearest that `found` matches, counting any item as good as the
    k-th nearest as a match (hamming has many ties)."""
    order = oracle_order(metric, distances)
    kth = distances[order[k - 1]]
    found = list(found)[:k]
    if metric == "dot":
        good = sum(1 for i in found if distances[i] >= kth - 1e-4 * max(1.0, abs(kth)))
    else:
        good = sum(1 for i in found if distances[i] <= kth + 1e-4 * max(1.0, abs(kth)))
    return good / k


@pytest.fixture
def tmp_index_path(tmp_path):
    return tmp_path / "index.copse"
