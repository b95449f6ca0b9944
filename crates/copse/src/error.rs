//! The one error type users see.

use std::path::PathBuf;

use copse_annoy::AnnoyError;
use copse_build::BuildError;
use copse_format::{FormatError, Metric};
use copse_query::QueryError;

/// Everything that can go wrong, with what the caller needs to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector's length differs from the index's dimensions.
    #[error("vector has {found} dimensions, the index has {expected}")]
    WrongDimensions {
        /// The index's dimensions (words, for packed hamming vectors).
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// A vector holds NaN or an infinity.
    #[error("value {value} at position {position} is not a finite number")]
    NotFinite {
        /// Where in the vector.
        position: usize,
        /// The value.
        value: f32,
    },
    /// An item id is beyond the largest id in the index.
    #[error("item {id} is out of range: the index has ids 0 to {}", .n_items.saturating_sub(1))]
    ItemOutOfRange {
        /// The id asked for.
        id: u64,
        /// Largest id plus one.
        n_items: u64,
    },
    /// An item id within range that was never added.
    #[error("item {id} was never added to the index")]
    ItemMissing {
        /// The id asked for.
        id: u64,
    },
    /// A label already names another item (labels are unique, so a label finds one item).
    #[error("label {label:?} already names item {other}, so it cannot name item {id}")]
    DuplicateLabel {
        /// The label.
        label: String,
        /// The item it was given to.
        id: u64,
        /// The item it names.
        other: u64,
    },
    /// Items cannot be added to, or the forest rebuilt from, a builder that has been built;
    /// call `unbuild` first.
    #[error("the index is already built; call unbuild() to add items or build again")]
    AlreadyBuilt,
    /// A vector of the wrong kind: packed bits for a float metric, or floats where bits are
    /// needed.
    #[error("{0}")]
    WrongKind(String),
    /// The index has another metric or dimension than the caller expected.
    #[error(
        "index is {found_metric} with {found_dims} dimensions, expected {expected_metric} with {expected_dims}"
    )]
    Mismatch {
        /// Metric the caller expected.
        expected_metric: Metric,
        /// Dimensions the caller expected.
        expected_dims: usize,
        /// Metric of the index.
        found_metric: Metric,
        /// Dimensions of the index.
        found_dims: usize,
    },
    /// Another handle, in this process or another, has the collection open for writing.
    #[error(
        "{path}: another writer has the collection open (one writer at a time; open it read-only to search)"
    )]
    Locked {
        /// The collection's lock file.
        path: PathBuf,
    },
    /// A collection's manifest or segment files are missing, corrupt, or disagree.
    #[error("{path}: {reason}")]
    Collection {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `add` of an id the collection already has (`upsert` replaces items), or an id twice in
    /// one batch.
    #[error("item {id} is already in the collection or the batch (upsert replaces an item)")]
    DuplicateId {
        /// The id.
        id: u64,
    },
    /// A change to a collection opened read-only.
    #[error("the collection is open read-only")]
    ReadOnly,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The bytes are not a usable copse index (not an index, unsupported version, corrupt).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The build failed.
    #[error(transparent)]
    Build(BuildError),
    /// A query found the index corrupt, or could not run.
    #[error(transparent)]
    Query(QueryError),
    /// An Annoy index (raw or converted) could not be opened, or is corrupt, or was given
    /// dimensions or a metric its file does not fit.
    #[error(transparent)]
    Annoy(AnnoyError),
}

impl From<AnnoyError> for Error {
    fn from(e: AnnoyError) -> Error {
        match e {
            AnnoyError::Query(q) => Error::from(q),
            AnnoyError::ItemOutOfRange { id, n_items } => Error::ItemOutOfRange { id, n_items },
            other => Error::Annoy(other),
        }
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Error {
        match e {
            BuildError::WrongDimensions { expected, found } => {
                Error::WrongDimensions { expected, found }
            }
            BuildError::NotFinite {
                position, value, ..
            } => Error::NotFinite { position, value },
            BuildError::BitsForFloatMetric(m) => {
                Error::WrongKind(format!("packed bit vectors are for hamming, not {m}"))
            }
            BuildError::Format(f) => Error::Format(f),
            other => Error::Build(other),
        }
    }
}

impl From<QueryError> for Error {
    fn from(e: QueryError) -> Error {
        match e {
            QueryError::WrongDimensions { expected, found } => {
                Error::WrongDimensions { expected, found }
            }
            QueryError::NotFinite { position, value } => Error::NotFinite { position, value },
            QueryError::WrongKind { given, metric } => {
                Error::WrongKind(format!("a {given} vector cannot query a {metric} index"))
            }
            other => Error::Query(other),
        }
    }
}
