//! # copse
//!
//! Approximate nearest-neighbour search with forests of random-projection trees, in the lineage
//! of Spotify's Annoy: build an index once, save it as a static file, and memory-map it from as
//! many processes as you like; loading costs nothing.
//!
//! ```
//! use copse::{IndexBuilder, Metric};
//!
//! let mut builder = IndexBuilder::new(3, Metric::Angular)?.seed(42);
//! builder.add_item(0, &[1.0, 0.0, 0.0])?;
//! builder.add_item(1, &[0.9, 0.1, 0.0])?;
//! builder.add_item(2, &[0.0, 1.0, 0.0])?;
//! let index = builder.build(10)?;
//!
//! let nearest = index.nns_by_vector(&[1.0, 0.05, 0.0], 2, None)?;
//! assert_eq!(nearest.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 1]);
//!
//! let dir = std::env::temp_dir().join(format!("copse-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! index.save(dir.join("example.copse"))?;
//! let loaded = copse::Index::load(dir.join("example.copse"))?;
//! assert_eq!(loaded.nns_by_item(0, 2, None)?, index.nns_by_item(0, 2, None)?);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Distances follow Annoy: angular is `sqrt(2 - 2 cos)`, euclidean and manhattan are the usual
//! ones, hamming counts differing bits, and dot reports the inner product (larger is closer).
//!
//! Nothing a caller passes in, and nothing a file contains, can make this crate panic or read
//! out of bounds: bad input gives an [`Error`].

/// The README's Rust example, compiled and run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;

mod builder;
mod collection;
mod error;
mod index;
mod storage;

pub use builder::IndexBuilder;
pub use collection::{
    BuildSettings, Collection, CollectionFilter, CollectionOptions, LOCK_FILE, MANIFEST_FILE,
    MergePolicy, SegmentInfo, Snapshot,
};
pub use copse_annoy::AnnoyError;
pub use copse_build::{
    BuildError, DEFAULT_LEAF_CAPACITY, DEFAULT_SEED, GraphOptions, MAX_THREADS, MAX_TREES,
    Progress, Stage,
};
pub use copse_distance::Level as SimdLevel;
pub use copse_format::{
    CodeWidth, Element, FOUR_BIT_CODES_FROM, FormatError, IndexInfo, MAX_DEGREE, Metric,
    SectionKind,
};
pub use copse_query::{Neighbor, QueryError};
pub use error::Error;
pub use index::{Filter, GraphStats, Index, LoadOptions};
