//! What can be wrong with an Annoy file or a query on it.

use copse_format::Metric;
use copse_query::QueryError;

/// An Annoy file could not be opened, or a query on it could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnnoyError {
    /// The file is empty.
    #[error("the Annoy index is empty (0 bytes)")]
    Empty,
    /// The number of dimensions cannot describe an Annoy index.
    #[error("{0} dimensions: an Annoy index has 1 to 2^24 dimensions")]
    BadDimensions(usize),
    /// The file's length is not a whole number of nodes of the size `dims` and `metric` give.
    #[error(
        "the Annoy index is {len} bytes, not a whole number of {node_size}-byte nodes, the node \
         size of a {metric} index with {dims} dimensions: was it written with another metric or \
         dimension, or is it truncated?"
    )]
    SizeMismatch {
        /// Bytes in the file.
        len: u64,
        /// Bytes per node for `dims` and `metric`.
        node_size: usize,
        /// Dimensions the caller gave.
        dims: usize,
        /// Metric the caller gave.
        metric: Metric,
    },
    /// More nodes than Annoy's 32-bit node references can name.
    #[error("the Annoy index has {0} nodes, more than Annoy's 2^31 - 1")]
    TooLarge(u64),
    /// The file's contents do not fit together (a node reference out of range, a cycle, an
    /// impossible count): corrupt, or opened with the wrong dimensions or metric.
    #[error("corrupt Annoy index (or wrong dimensions or metric given): {0}")]
    Corrupt(String),
    /// A query that cannot search this index: wrong length, kind, or a value not finite.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// An item id beyond the largest item.
    #[error("item {id} is out of range: the index has {n_items} ids")]
    ItemOutOfRange {
        /// The id asked for.
        id: u64,
        /// Largest id plus one.
        n_items: u64,
    },
}

pub(crate) fn corrupt(what: impl Into<String>) -> AnnoyError {
    AnnoyError::Corrupt(what.into())
}
