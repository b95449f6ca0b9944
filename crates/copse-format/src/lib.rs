//! The copse index file, format v1: the header, the section table, the node structs, a streaming
//! writer and a validating reader. `docs/format.md` is the specification; this crate is its one
//! implementation.
//!
//! The reader is generic over its bytes (`AsRef<[u8]>`: a `Vec`, a slice, an mmap), opens in time
//! independent of the file's size (header and section bounds only), and hands out typed slices
//! cast with `bytemuck`. Nothing read from a file is trusted: every count and offset is checked
//! before use, and the query engine checks every node reference it follows, so a corrupt file
//! gives an error or an in-range answer, never a crash. [`IndexFile::verify`] checks every
//! section's checksum when asked.
//!
//! This crate knows nothing about building or searching trees.

#[cfg(target_endian = "big")]
compile_error!(
    "copse maps its little-endian files directly into memory; big-endian hosts are not supported"
);

mod encode;
mod error;
mod labels;
mod layout;
mod metric;
mod reader;
mod writer;

pub use encode::{code_values, decode_item_code, encode_item_code, pack_ids, unpack_ids};
pub use error::FormatError;
pub use labels::{Labels, encode_labels, labels_len};
pub use layout::{
    CodeWidth, DENSE_VERSION, EMPTY_SLOT, FORMAT_VERSION, GraphHeader, Header, IndexInfo,
    LEAF_FLAG, MAGIC, MAX_DEGREE, NodeRef, OLDEST_VERSION, SECTION_ALIGN, SectionEntry,
    SectionKind, SplitNode, TreeEntry, item_code_stride, packed_ids_len, split_stride,
};
pub use metric::{Element, FOUR_BIT_CODES_FROM, Metric};
pub use reader::{Graph, IndexFile, ItemCodes, ItemRows, LeafIds, LeafIdsIter, View};
pub use writer::{HEADER_ROOM, IndexWriter, SectionWriter, planned_len, planned_offsets};
