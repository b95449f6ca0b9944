//! What can be wrong with an index file.

use crate::SectionKind;

/// An index file could not be written, opened or verified.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file is shorter than a header, or does not start with copse's magic bytes.
    #[error("not a copse index (no copse header; {len} bytes)")]
    NotAnIndex {
        /// Length of what was given.
        len: u64,
    },
    /// The file's format version is outside the range this reader supports.
    #[error(
        "unsupported index format version {found}; this build reads versions {oldest} to {newest}"
    )]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Oldest version this reader supports.
        oldest: u32,
        /// Newest version this reader supports.
        newest: u32,
    },
    /// The header's checksum does not match its contents.
    #[error("index header is corrupt (checksum mismatch)")]
    HeaderChecksum,
    /// The file's length differs from the length its header records.
    #[error("index file is {found} bytes but its header says {expected}: truncated or padded")]
    Length {
        /// Length the header records.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// The header holds a metric code this reader does not know.
    #[error("unknown metric code {0} in index header")]
    UnknownMetric(u32),
    /// A metric name could not be parsed.
    #[error(
        "unknown metric {0:?}; expected angular (or cosine), euclidean, manhattan, dot or hamming"
    )]
    UnknownMetricName(String),
    /// A row type name that is not one of `float32`, `float16`, `bfloat16`, `int8`.
    #[error("unknown row type {0:?} (expected float32, float16, bfloat16 or int8)")]
    UnknownElementName(String),
    /// A header field is out of range or inconsistent with another.
    #[error("corrupt index header: {0}")]
    BadHeader(String),
    /// A section's placement or size is impossible.
    #[error("corrupt index: {kind} section {problem}")]
    BadSection {
        /// Which section.
        kind: SectionKind,
        /// What is wrong with it.
        problem: String,
    },
    /// A tree's entry points outside the sections.
    #[error("corrupt index: tree {tree} {problem}")]
    BadTree {
        /// Which tree.
        tree: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A section's bytes do not match its checksum.
    #[error("corrupt index: {kind} section fails its checksum")]
    SectionChecksum {
        /// The section that failed.
        kind: SectionKind,
    },
    /// The bytes are not aligned for the casts the reader makes (only possible with a caller's
    /// slice that does not start on an 8-byte boundary).
    #[error("index bytes are not 8-byte aligned in memory")]
    Misaligned,
    /// A value is too large for this format (more than 2^32 items, or a tree with more than 2^31
    /// nodes of a kind).
    #[error("too large for the index format: {0}")]
    TooLarge(String),
}
