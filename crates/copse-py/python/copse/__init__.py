"""copse: approximate nearest neighbours with forests of random-projection trees.

``copse.AnnoyIndex`` is a drop-in replacement for Annoy's ``AnnoyIndex`` (same methods,
arguments, defaults, return types and exceptions), with a numpy batch API on top:
``add_items`` and ``get_nns_by_vectors``.
"""

from ._copse import AnnoyIndex, IdFilter, __version__

__all__ = ["AnnoyIndex", "IdFilter", "__version__"]
