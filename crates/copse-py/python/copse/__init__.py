"""copse: approximate nearest neighbours with forests of random-projection trees.

``copse.AnnoyIndex`` is a drop-in replacement for Annoy's ``AnnoyIndex`` (same methods,
arguments, defaults, return types and exceptions), with a numpy batch API on top:
``add_items`` and ``get_nns_by_vectors``.

``copse.Collection`` is an index that takes adds, upserts and deletes after build: a directory
of static index files with a manifest replaced atomically at each ``commit()``.

``copse.spark`` (imported on its own; needs pyspark, pandas and pyarrow) builds collections on
Apache Spark, one task per shard, and joins query DataFrames against them.
"""

from ._copse import AnnoyIndex, Collection, CollectionFilter, IdFilter, __version__

__all__ = ["AnnoyIndex", "Collection", "CollectionFilter", "IdFilter", "__version__"]
