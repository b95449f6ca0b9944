"""Type stubs for the Rust extension module ``copse._copse``."""

import os
from types import TracebackType
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Type, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

_Vector = Union[Sequence[float], npt.NDArray[Any]]
_Matrix = Union[Sequence[Sequence[float]], npt.NDArray[Any]]
_Filter = Union["IdFilter", Sequence[int], npt.NDArray[np.integer[Any]]]

class IdFilter:
    """An allow-list for the filtered searches of one index, from ``AnnoyIndex.make_filter``."""
    def __len__(self) -> int: ...

_Path = Union[str, "os.PathLike[str]"]
_Metric = Literal["angular", "cosine", "euclidean", "manhattan", "hamming", "dot"]
_Buffer = Union[bytes, bytearray, memoryview]

class AnnoyIndex:
    """An approximate nearest-neighbour index with the interface of Annoy's ``AnnoyIndex``.

    States: items are added, then ``build`` makes the index queryable; ``save`` writes it and
    maps the file (the index is then a loaded one, as in Annoy); ``load`` maps a file;
    ``unload`` empties the object; ``unbuild`` drops the trees of a built (not loaded) index so
    more items can be added.
    """

    def __init__(
        self,
        f: int,
        metric: Optional[_Metric] = None,
        dtype: Optional[Union[str, Any]] = None,
        item_codes: Optional[Union[bool, int]] = None,
    ) -> None:
        """An empty index of ``f``-dimensional vectors under ``metric``.

        Without a metric, warns (``FutureWarning``, as Annoy) and uses ``"angular"``;
        ``"cosine"`` is another name for ``"angular"``. Raises ``ValueError`` for an unknown
        metric or ``f < 1``.

        ``dtype`` is how item vectors are stored: ``"float32"`` (the default), ``"float16"``,
        ``"bfloat16"`` or ``"int8"`` (also ``np.float16``, ``np.int8`` and the names ``"f16"``,
        ``"bf16"``, ``"i8"``). The half types halve the vectors' bytes; int8 stores a byte a
        value plus a float32 scale per vector (``max |x| / 127``), about a quarter. Vectors are
        rounded as they are added, and the index searches and returns (``get_item_vector``)
        the stored values; with int8, ``"angular"`` keeps only the direction (a unit vector
        comes back). A value float16 cannot hold (beyond 65504) raises ``ValueError``. Hamming
        stores bits and takes only the default. With the half types (angular/euclidean/dot),
        ``item_codes`` chooses the codes candidates are scored from: ``8`` or ``4`` bits a
        value (the default is 4 from 256 dimensions up, 8 below: half the bytes a candidate,
        with the re-rank from the rows making up for the coarser codes), or ``False`` for
        none: a smaller file, slower queries (int8 rows are those codes). ``True`` keeps the
        default.
        """
    @property
    def dtype(self) -> str:
        """How item vectors are stored: ``"float32"``, ``"float16"``, ``"bfloat16"``,
        ``"int8"`` or ``"bits"`` (hamming)."""
    @property
    def f(self) -> int:
        """The number of dimensions (read-only)."""
    @property
    def metric(self) -> str:
        """The metric's name (read-only)."""
    def add_item(self, i: int, vector: _Vector, label: Optional[str] = None) -> None:
        """Adds item ``i`` (an integer in [0, 2**64)) with ``vector``, and optionally a ``label``
        stored in the index (unique: ``get_id_by_label(label)`` finds ``i``).

        ``IndexError`` for a negative id or a vector of the wrong length, ``OverflowError`` for
        an id from 2**64 on, ``TypeError`` for values that are not numbers, ``ValueError`` for
        NaN or infinity or a label another item has, ``RuntimeError`` once built (call
        ``unbuild()`` first) or loaded.
        """
    def add_items(self, ids: Optional[Union[Sequence[int], npt.NDArray[np.integer[Any]]]], vectors: _Matrix, labels: Optional[Sequence[Optional[str]]] = None) -> None:
        """Adds the rows of a 2-D array as items ``ids``, with ``labels`` (one str or None per
        row) if given.

        With ``ids=None`` the rows become items ``get_n_items()``, ``get_n_items() + 1``, ...
        Every row and label is checked before any is added.
        """
    def make_filter(self, ids: Union[Sequence[int], npt.NDArray[np.integer[Any]]]) -> IdFilter:
        """An ``IdFilter`` allowing the items ``ids``, for the ``filter=`` argument of the
        searches (only allowed items are returned; the filter applies inside the search)."""
    def get_item_label(self, i: int) -> Optional[str]:
        """The label of item ``i``, or None if it has none."""
    def get_id_by_label(self, label: str) -> Optional[int]:
        """The id of the item labelled ``label``, or None."""
    def build(self, n_trees: int, n_jobs: int = -1, graph: bool = False) -> bool:
        """Builds ``n_trees`` trees (-1: about as many as Annoy would; at most 65536) on
        ``n_jobs`` threads (-1: all cores; at most 1024). With ``graph=True``, also builds a
        proximity graph over the items, which queries follow from the trees' candidates
        (``n_trees=-1`` then builds the few trees a graph needs for its starting points).
        Returns True."""
    def unbuild(self) -> bool:
        """Drops the trees so that items can be added again (not for a loaded index). Returns True."""
    def save(self, fn: _Path, prefault: bool = False) -> bool:
        """Writes the index to ``fn`` atomically, then maps that file. Returns True.

        ``OSError`` if the index is not built or the file cannot be written.
        """
    def load(self, fn: _Path, prefault: bool = False) -> bool:
        """Maps the index file ``fn``, replacing what the object held. Returns True.

        A file without copse's magic bytes is read as an index written by Annoy (1.17) with
        this object's ``f`` and metric, and searched exactly as Annoy searches it.

        ``OSError`` (``FileNotFoundError`` ...) if the file cannot be read, is neither a copse
        index nor an Annoy file that fits ``f`` and the metric, or has another ``f`` or metric.
        With ``prefault``, reads the whole file first.
        """
    def serialize(self) -> bytes:
        """The built or loaded index as the bytes of a copse index file.

        An Annoy file opened by ``load`` is converted to copse's format (same answers).
        ``RuntimeError`` if the index is not built.
        """
    @staticmethod
    def deserialize(data: _Buffer, prefault: bool = False) -> "AnnoyIndex":
        """A new index from the bytes of ``serialize()`` (any buffer), with their ``f`` and metric.

        Like a loaded index it keeps no items to rebuild from. Every checksum is verified:
        ``ValueError`` for bytes that are not a valid copse index (truncated, corrupted),
        ``TypeError`` for an object that is not a buffer. ``prefault`` changes nothing.
        """
    def __reduce__(self) -> Tuple[Type["AnnoyIndex"], Tuple[int, str], Dict[str, Any]]:
        """Pickling (a built or loaded index only; ``TypeError`` otherwise)."""
    def __setstate__(self, state: Dict[str, Any]) -> None: ...
    def __copy__(self) -> "AnnoyIndex":
        """A copy sharing this index's (immutable) data; ``TypeError`` if not built."""
    def __deepcopy__(self, memo: Dict[int, Any]) -> "AnnoyIndex": ...
    def unload(self) -> bool:
        """Frees the index and any items, leaving an empty index. Returns True."""
    def on_disk_build(self, fn: _Path) -> bool:
        """Builds in the file ``fn`` instead of in memory (call before adding items)."""
    @overload
    def get_nns_by_item(self, i: int, n: int, search_k: int = -1, include_distances: Literal[False] = False, filter: Optional[_Filter] = None) -> List[int]: ...
    @overload
    def get_nns_by_item(self, i: int, n: int, search_k: int, include_distances: Literal[True], filter: Optional[_Filter] = None) -> Tuple[List[int], List[float]]: ...
    @overload
    def get_nns_by_item(self, i: int, n: int, search_k: int = -1, *, include_distances: Literal[True], filter: Optional[_Filter] = None) -> Tuple[List[int], List[float]]: ...
    @overload
    def get_nns_by_item(self, i: int, n: int, search_k: int = -1, include_distances: bool = False, filter: Optional[_Filter] = None) -> Union[List[int], Tuple[List[int], List[float]]]: ...
    @overload
    def get_nns_by_vector(self, vector: _Vector, n: int, search_k: int = -1, include_distances: Literal[False] = False, filter: Optional[_Filter] = None) -> List[int]: ...
    @overload
    def get_nns_by_vector(self, vector: _Vector, n: int, search_k: int, include_distances: Literal[True], filter: Optional[_Filter] = None) -> Tuple[List[int], List[float]]: ...
    @overload
    def get_nns_by_vector(self, vector: _Vector, n: int, search_k: int = -1, *, include_distances: Literal[True], filter: Optional[_Filter] = None) -> Tuple[List[int], List[float]]: ...
    @overload
    def get_nns_by_vector(self, vector: _Vector, n: int, search_k: int = -1, include_distances: bool = False, filter: Optional[_Filter] = None) -> Union[List[int], Tuple[List[int], List[float]]]: ...
    @overload
    def get_nns_by_vectors(self, vectors: _Matrix, n: int, search_k: int = -1, include_distances: Literal[False] = False, n_threads: int = -1, filter: Optional[_Filter] = None) -> npt.NDArray[Union[np.int64, np.uint64]]: ...
    @overload
    def get_nns_by_vectors(self, vectors: _Matrix, n: int, search_k: int = -1, *, include_distances: Literal[True], n_threads: int = -1, filter: Optional[_Filter] = None) -> Tuple[npt.NDArray[Union[np.int64, np.uint64]], npt.NDArray[np.float32]]: ...
    @overload
    def get_nns_by_vectors(self, vectors: _Matrix, n: int, search_k: int = -1, include_distances: bool = False, n_threads: int = -1, filter: Optional[_Filter] = None) -> Union[npt.NDArray[Union[np.int64, np.uint64]], Tuple[npt.NDArray[Union[np.int64, np.uint64]], npt.NDArray[np.float32]]]: ...
    def get_item_vector(self, i: int) -> List[float]:
        """The vector of item ``i`` as stored, as floats (rounded for float16, bfloat16 and
        int8 storage; a unit vector for int8 angular)."""
    def get_distance(self, i: int, j: int) -> float:
        """The distance between items ``i`` and ``j``."""
    def get_n_items(self) -> int:
        """Annoy's item count: the largest id added plus one (``len()`` counts the items)."""
    def get_n_trees(self) -> int:
        """The number of trees (0 until built or loaded)."""
    def get_graph_degree(self) -> int:
        """The most neighbours an item has in the graph (0 without a graph or until built)."""
    def verbose(self, v: bool) -> bool:
        """Prints build progress, loads and saves on standard error. Returns True."""
    def set_seed(self, seed: int) -> None:
        """Seeds the next build: the same seed and items give the same index."""
    def __len__(self) -> int:
        """The number of items added."""
    def __enter__(self) -> "AnnoyIndex": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class CollectionFilter:
    """An allow-list for a collection's filtered searches, from ``Collection.make_filter``;
    valid until the collection's next commit or refresh."""
    def __len__(self) -> int: ...

class Collection:
    """A collection of static index files that takes adds, upserts and deletes after build.

    Searches see the last commit; ``commit()`` makes changes durable and visible, all or
    nothing. One writer at a time (another raises ``BlockingIOError``); any number of
    ``readonly=True`` handles, each on the snapshot it opened until ``refresh()``. As a context
    manager it commits on a clean exit, rolls back on an exception, and closes.
    """
    @staticmethod
    def create(
        path: _Path,
        f: int,
        metric: _Metric = "angular",
        *,
        n_trees: int = 8,
        graph: bool = True,
        seed: Optional[int] = None,
        dtype: Optional[Union[str, Any]] = None,
    ) -> "Collection":
        """Creates an empty collection in directory ``path``, open for writing. ``dtype`` is
        how segments store item vectors, as for ``AnnoyIndex``: ``"float32"`` (the default),
        ``"float16"``, ``"bfloat16"`` or ``"int8"`` (or the numpy type); searches and
        ``get_item_vector`` see the stored values."""
    @staticmethod
    def open(path: _Path, readonly: bool = False) -> "Collection":
        """Opens the collection in ``path`` for writing, or read-only."""
    @property
    def path(self) -> str: ...
    @property
    def f(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def dtype(self) -> str:
        """How segments store item vectors: ``"float32"``, ``"float16"``, ``"bfloat16"``,
        ``"int8"`` or ``"bits"``."""
    @property
    def generation(self) -> int:
        """Manifests written so far (each commit, compaction and merge adds one)."""
    @property
    def user_data(self) -> bytes:
        """The bytes given to the last ``commit(user_data=...)``."""
    @property
    def writable(self) -> bool: ...
    def __len__(self) -> int:
        """Live items in the last commit."""
    def __contains__(self, id: int) -> bool: ...
    def add(self, ids: Any, vectors: Any) -> None:
        """Adds rows of a 2-D array as items ``ids``; an existing id is a ``ValueError``."""
    def upsert(self, ids: Any, vectors: Any) -> None:
        """Adds rows as items ``ids``, replacing existing items."""
    def delete(self, ids: Any) -> int:
        """Deletes items; returns how many of ``ids`` were items."""
    def commit(self, user_data: Optional[bytes] = None) -> int:
        """Makes the changes durable and visible (with ``user_data``); returns the generation."""
    def compact(self) -> int:
        """Commits, then merges every segment into one without deleted items."""
    def rollback(self) -> None:
        """Drops the changes since the last commit."""
    def refresh(self) -> int:
        """Moves to the latest commit; returns the generation."""
    def wait_for_merges(self) -> int:
        """Waits for the background merges and installs them."""
    def set_merge_policy(
        self,
        factor: int = 2,
        floor: int = 10000,
        max_deleted: float = 0.3,
        merge_all_at: float = 0.2,
    ) -> None:
        """How segments merge in the background (``factor=0``: never; ``merge_all_at``:
        everything merges once the other segments hold that share of the largest's items)."""
    def n_pending(self) -> int:
        """Changes waiting for ``commit()``."""
    def close(self) -> None:
        """Waits for a background merge and releases the lock (uncommitted changes are lost)."""
    def search(
        self,
        vectors: Any,
        n: int,
        search_k: int = -1,
        filter: Optional[Union["CollectionFilter", Any]] = None,
        n_threads: int = -1,
    ) -> Tuple[Any, Any]:
        """(ids uint64, distances float32), each of shape (len(vectors), n); short rows are
        padded with id 2**64 - 1 and distance NaN."""
    def make_filter(self, ids: Any) -> CollectionFilter: ...
    def get_item_vector(self, id: int) -> Any:
        """The vector of live item ``id`` as a float32 array."""
    def get_distance(self, i: int, j: int) -> float:
        """The distance between live items ``i`` and ``j``."""
    def ids(self) -> Any:
        """The live ids as a uint64 array."""
    def segments(self) -> List[Dict[str, Any]]: ...
    def verify(self) -> None: ...
    def get_item_vectors(self, ids: Any) -> npt.NDArray[np.float32]:
        """The vectors of live items ``ids``, shape ``(len(ids), f)``."""
    def build_options(self) -> Dict[str, Any]:
        """How segments are built, as a picklable dict for ``build_segment``."""
    def reserve_segments(self, n: int) -> List[int]:
        """Segment numbers for segments built elsewhere, then attached by this writer."""
    def attach_segments(self, numbers: Sequence[int]) -> int:
        """Commits reserved, built segments in one generation; returns it."""
    @staticmethod
    def build_segment(
        path: Union[str, "os.PathLike[str]"],
        options: Dict[str, Any],
        number: int,
        ids: Any,
        vectors: Any,
        n_threads: int = 1,
    ) -> None:
        """Builds reserved segment ``number`` of the collection at ``path`` (no lock needed)."""
    def __enter__(self) -> "Collection": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
