//! The on-disk structs: header, section table entries, tree entries and split nodes. All are
//! `#[repr(C)]`, `Pod`, little-endian, with explicit padding, so the reader casts mapped bytes
//! to them directly.

use bytemuck::{Pod, Zeroable};

use crate::{Element, FormatError, Metric};

/// First bytes of every copse index.
pub const MAGIC: [u8; 8] = *b"COPSEIDX";
/// The newest version this build writes: 2 for a file with an [`SectionKind::IdMap`] (so
/// that readers older than the id map refuse it instead of returning row numbers as ids), 1
/// for every other file.
pub const FORMAT_VERSION: u32 = 2;
/// The version of a file without an id map: dense ids, readable by every copse release.
pub const DENSE_VERSION: u32 = 1;
/// The oldest version this build reads.
pub const OLDEST_VERSION: u32 = 1;
/// Every section starts at a multiple of this many bytes.
pub const SECTION_ALIGN: u64 = 64;
/// Set in a [`NodeRef`] that names a leaf; clear for a split node.
pub const LEAF_FLAG: u32 = 1 << 31;

/// The fixed-size header at offset 0. The section table follows it directly.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Format version.
    pub version: u32,
    /// Bytes of header plus section table.
    pub header_len: u32,
    /// Total length of the file.
    pub file_len: u64,
    /// Metric code.
    pub metric: u32,
    /// Element code (must match the metric).
    pub element: u32,
    /// Dimensions the user sees (bits, for hamming).
    pub dims: u32,
    /// Stored elements per item row.
    pub row_len: u32,
    /// Item rows: the largest id plus one, or with an id map the number of items.
    pub n_items: u64,
    /// Number of ids that were added (the rest are holes).
    pub n_present: u64,
    /// Number of trees.
    pub n_trees: u32,
    /// Largest number of items a leaf may hold.
    pub leaf_capacity: u32,
    /// The seed the trees were built with.
    pub seed: u64,
    /// Entries in the section table.
    pub n_sections: u32,
    /// Bits per id in [`SectionKind::LeafIds`] (see [`IndexInfo::id_bits`]).
    pub id_bits: u32,
    /// Reserved, zero.
    pub reserved: [u64; 5],
    /// xxh3-64 of the header (with this field zero) followed by the section table.
    pub checksum: u64,
}

/// One entry of the section table.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct SectionEntry {
    /// Section kind code.
    pub kind: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Offset from the start of the file, a multiple of [`SECTION_ALIGN`].
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// xxh3-64 of the section's bytes.
    pub checksum: u64,
}

/// What a section holds. Readers skip kinds they do not know, so new kinds can be added
/// without a format break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Item vectors, `n_items` rows of `row_len` elements; holes are zero rows.
    Items,
    /// Euclidean norm of each item (`n_items` f32), for angular and dot.
    Norms,
    /// Bitmap of the ids that were added (`ceil(n_items / 64)` u64).
    Present,
    /// One [`TreeEntry`] per tree.
    Trees,
    /// Every tree's split records, tree after tree, [`split_stride`] bytes each: a
    /// [`SplitNode`], then (f32 metrics) the hyperplane normal quantized to `row_len` i8.
    Splits,
    /// Per tree, `n_leaves + 1` u32 offsets into that tree's ids: leaf `i` holds
    /// `ids[off[i]..off[i + 1]]`.
    LeafOffsets,
    /// Per tree, a permutation of the present ids, grouped by leaf, packed `id_bits` bits each
    /// (little-endian bit order) from the tree's `ids_base` byte; 8 zero bytes end the section.
    LeafIds,
    /// Each item quantized for fast approximate scoring (angular, euclidean, dot):
    /// [`item_code_stride`] bytes per item: scale (f32), sum of squared codes (f32), then
    /// `row_len` i8 codes (of the unit vector, for angular).
    ItemCodes,
    /// Item codes of 4 bits, in place of [`SectionKind::ItemCodes`] (half-precision rows only):
    /// [`CodeWidth::stride`] bytes per item: scale (f32), sum of squared codes (f32), then the
    /// codes packed two a byte in groups of [`copse_distance::NIBBLE_GROUP`] dimensions.
    /// Readers that do not know it skip it and score from the half rows.
    ItemCodes4,
    /// Trees converted from an Annoy index: Annoy's node array, byte for byte (item nodes,
    /// split and leaf nodes, root copies; Annoy's layout for the header's metric and dims).
    /// A file with this section has no other section: the Annoy nodes hold the items too.
    AnnoyNodes,
    /// A proximity graph over the items: a [`GraphHeader`], then for every item
    /// [`GraphHeader::degree`] neighbour ids (u32), used slots first, unused ones
    /// [`EMPTY_SLOT`]. Optional: a file without it is searched through its trees alone.
    Graph,
    /// The ids of sparse or 64-bit items: row `i` holds the item whose id is `ids[i]` (u64,
    /// strictly ascending), and `n_present = n_items` (no holes). Without it, row `i` is id
    /// `i`. Only in format version 2.
    IdMap,
    /// An optional string per item, unique, looked up both ways (see `labels.rs`). Optional:
    /// readers that do not know it skip it and lose only the labels.
    Labels,
    /// A kind this reader does not know (skipped).
    Unknown(u32),
}

impl SectionKind {
    /// Every kind this version writes, in file order.
    pub const KNOWN: [SectionKind; 13] = [
        SectionKind::Items,
        SectionKind::Norms,
        SectionKind::Present,
        SectionKind::Trees,
        SectionKind::Splits,
        SectionKind::LeafOffsets,
        SectionKind::LeafIds,
        SectionKind::ItemCodes,
        SectionKind::ItemCodes4,
        SectionKind::AnnoyNodes,
        SectionKind::Graph,
        SectionKind::IdMap,
        SectionKind::Labels,
    ];

    /// The code the section table stores.
    pub fn code(self) -> u32 {
        match self {
            SectionKind::Items => 1,
            SectionKind::Norms => 2,
            SectionKind::Present => 3,
            SectionKind::Trees => 4,
            SectionKind::Splits => 5,
            SectionKind::LeafOffsets => 7,
            SectionKind::LeafIds => 8,
            SectionKind::ItemCodes => 9,
            SectionKind::AnnoyNodes => 10,
            SectionKind::Graph => 11,
            SectionKind::IdMap => 12,
            SectionKind::Labels => 13,
            SectionKind::ItemCodes4 => 14,
            SectionKind::Unknown(code) => code,
        }
    }

    /// The kind a code names.
    pub fn from_code(code: u32) -> SectionKind {
        SectionKind::KNOWN
            .into_iter()
            .find(|k| k.code() == code)
            .unwrap_or(SectionKind::Unknown(code))
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Items => "items",
            SectionKind::Norms => "norms",
            SectionKind::Present => "present-ids",
            SectionKind::Trees => "trees",
            SectionKind::Splits => "splits",
            SectionKind::LeafOffsets => "leaf-offsets",
            SectionKind::LeafIds => "leaf-ids",
            SectionKind::ItemCodes => "item-codes",
            SectionKind::ItemCodes4 => "item-codes-4",
            SectionKind::AnnoyNodes => "annoy-nodes",
            SectionKind::Graph => "graph",
            SectionKind::IdMap => "id-map",
            SectionKind::Labels => "labels",
            SectionKind::Unknown(_) => "unknown",
        }
    }
}

impl core::fmt::Display for SectionKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SectionKind::Unknown(code) => write!(f, "unknown ({code})"),
            _ => f.write_str(self.name()),
        }
    }
}

/// Where one tree's nodes live in the shared sections. Counts and bases are in elements of the
/// section they index.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct TreeEntry {
    /// Index of the tree's first split record in [`SectionKind::Splits`].
    pub split_base: u64,
    /// Number of split nodes.
    pub n_splits: u64,
    /// Index of the tree's first offset in [`SectionKind::LeafOffsets`].
    pub leaf_base: u64,
    /// Number of leaves (the tree has `n_leaves + 1` offsets).
    pub n_leaves: u64,
    /// Byte offset of the tree's packed ids in [`SectionKind::LeafIds`].
    pub ids_base: u64,
    /// Number of ids (the present items).
    pub n_ids: u64,
    /// The root node.
    pub root: NodeRef,
    /// Reserved, zero.
    pub reserved: u32,
}

/// A reference to a node within its tree: a leaf index with [`LEAF_FLAG`] set, or a split
/// index.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default, Hash)]
pub struct NodeRef(pub u32);

impl NodeRef {
    /// A reference to leaf `index` (`index < 2^31`).
    pub fn leaf(index: u32) -> NodeRef {
        NodeRef(index | LEAF_FLAG)
    }

    /// A reference to split `index` (`index < 2^31`).
    pub fn split(index: u32) -> NodeRef {
        NodeRef(index & !LEAF_FLAG)
    }

    /// `Ok(leaf index)` or `Err(split index)`.
    #[inline(always)]
    pub fn decode(self) -> Result<u32, u32> {
        if self.0 & LEAF_FLAG != 0 {
            Ok(self.0 & !LEAF_FLAG)
        } else {
            Err(self.0)
        }
    }
}

/// The fixed part of a split record: where the children are, and how to compute a query's
/// margin. For f32 metrics the record continues with the hyperplane's normal quantized to
/// `row_len` i8, and the margin is `offset + scale * dot(normal, query)`; points with a positive
/// margin go to `children[1]`. For hamming the split tests one bit (set: `children[1]`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Default)]
pub struct SplitNode {
    /// Negative side, positive side.
    pub children: [NodeRef; 2],
    /// Added to the margin (euclidean and manhattan; zero otherwise).
    pub offset: f32,
    /// f32 metrics: the normal's scale, as `f32` bits (zero for a split that sent items to
    /// random sides). Hamming: the bit tested, or [`SplitNode::RANDOM`].
    pub param: u32,
}

impl SplitNode {
    /// The hamming `param` of a split that assigned items to random sides.
    pub const RANDOM: u32 = u32::MAX;

    /// The normal's scale (f32 metrics).
    #[inline(always)]
    pub fn scale(&self) -> f32 {
        f32::from_bits(self.param)
    }

    /// The bit tested (hamming).
    #[inline(always)]
    pub fn axis(&self) -> u32 {
        self.param
    }
}

/// The start of the [`SectionKind::Graph`] section (64 bytes, so the slots that follow stay
/// cache-line aligned).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
pub struct GraphHeader {
    /// Slots per item (the most neighbours an item can have), 1 to [`MAX_DEGREE`].
    pub degree: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Used slots over all items (for the mean out-degree, without reading the slots).
    pub n_edges: u64,
    /// Reserved, zero.
    pub reserved: [u64; 6],
}

/// An unused neighbour slot in [`SectionKind::Graph`].
pub const EMPTY_SLOT: u32 = u32::MAX;

/// The largest graph degree a file may declare.
pub const MAX_DEGREE: usize = 1024;

/// Bytes per split record for `metric` with `row_len` stored elements per item: the header and,
/// for f32 metrics, `row_len` i8, padded to a multiple of 4 so every header stays aligned.
pub fn split_stride(metric: Metric, row_len: usize) -> usize {
    match metric.element() {
        Element::Bits => size_of::<SplitNode>(),
        _ => (size_of::<SplitNode>() + row_len).next_multiple_of(4),
    }
}

/// Bytes per item in [`SectionKind::ItemCodes`]: 8 bytes of scale and squared-code sum, then
/// `row_len` codes, padded to a multiple of 16 (a 50-dimensional item fills one cache line).
pub fn item_code_stride(row_len: usize) -> usize {
    CodeWidth::Eight.stride(row_len)
}

/// How many bits each item code has: the width of the codes candidates are scored from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodeWidth {
    /// One i8 per dimension, `-127..=127` ([`SectionKind::ItemCodes`]; always with f32 rows).
    #[default]
    Eight,
    /// Half a byte per dimension, `-7..=7` ([`SectionKind::ItemCodes4`]; half-precision rows
    /// only, whose re-rank reads the rows: measured in `docs/performance.md`, "4-bit codes").
    Four,
}

impl CodeWidth {
    /// Bits per code.
    pub fn bits(self) -> u32 {
        match self {
            CodeWidth::Eight => 8,
            CodeWidth::Four => 4,
        }
    }

    /// The width of `bits`-bit codes (8 or 4).
    pub fn from_bits(bits: u32) -> Option<CodeWidth> {
        match bits {
            8 => Some(CodeWidth::Eight),
            4 => Some(CodeWidth::Four),
            _ => None,
        }
    }

    /// The largest code magnitude: a row's scale is its largest magnitude over this.
    pub fn levels(self) -> f32 {
        match self {
            CodeWidth::Eight => 127.0,
            CodeWidth::Four => 7.0,
        }
    }

    /// The section that holds codes of this width.
    pub fn section(self) -> SectionKind {
        match self {
            CodeWidth::Eight => SectionKind::ItemCodes,
            CodeWidth::Four => SectionKind::ItemCodes4,
        }
    }

    /// Bytes of the codes of a `row_len` row, padding included: `row_len` for 8 bits; for 4
    /// bits, 32 bytes per (started) group of 64 dimensions.
    pub fn codes_len(self, row_len: usize) -> usize {
        match self {
            CodeWidth::Eight => row_len,
            CodeWidth::Four => {
                row_len.div_ceil(copse_distance::NIBBLE_GROUP) * (copse_distance::NIBBLE_GROUP / 2)
            }
        }
    }

    /// Bytes per item-code record: 8 bytes of scale and squared-code sum, then
    /// [`CodeWidth::codes_len`], padded to a multiple of 16.
    pub fn stride(self, row_len: usize) -> usize {
        (8 + self.codes_len(row_len)).next_multiple_of(16)
    }
}

/// Bytes of the packed ids of one tree (without the section's end padding).
pub fn packed_ids_len(n_ids: u64, id_bits: u32) -> Option<u64> {
    n_ids
        .checked_mul(u64::from(id_bits))
        .map(|bits| bits.div_ceil(8))
}

/// The logical header: what the writer is told and the reader reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexInfo {
    /// Format version of the file (the writer writes [`FORMAT_VERSION`] for a file with an id
    /// map, [`DENSE_VERSION`] otherwise, whatever this says).
    pub version: u32,
    /// Metric.
    pub metric: Metric,
    /// Dimensions as the user sees them (bits, for hamming).
    pub dims: usize,
    /// Item rows: the largest item id plus one, or with an id map the number of items.
    pub n_items: u64,
    /// Number of ids that were added.
    pub n_present: u64,
    /// Number of trees.
    pub n_trees: usize,
    /// Largest number of items a leaf may hold.
    pub leaf_capacity: usize,
    /// Seed the trees were built with.
    pub seed: u64,
    /// How item rows are stored ([`Metric::element`] unless rows are half precision).
    pub element: Element,
}

impl IndexInfo {
    /// Stored elements per item row.
    pub fn row_len(&self) -> usize {
        self.metric.row_len(self.dims)
    }

    /// How items are stored.
    pub fn element(&self) -> Element {
        self.element
    }

    /// Bits per packed leaf id: enough for the largest id, at least 1.
    pub fn id_bits(&self) -> u32 {
        IndexInfo::id_bits_for(self.n_items)
    }

    /// Bits per packed leaf id for an index of `n_items` ids.
    pub fn id_bits_for(n_items: u64) -> u32 {
        (64 - n_items.saturating_sub(1).leading_zeros()).max(1)
    }

    /// Checks the fields against each other and the format's limits.
    pub fn check(&self) -> Result<(), FormatError> {
        let bad = |what: String| Err(FormatError::BadHeader(what));
        if self.dims == 0 {
            return bad("zero dimensions".into());
        }
        if u32::try_from(self.dims).is_err() {
            return Err(FormatError::TooLarge(format!("{} dimensions", self.dims)));
        }
        if self.n_items > 1 << 32 {
            return Err(FormatError::TooLarge(format!(
                "{} items (at most 2^32)",
                self.n_items
            )));
        }
        if self.n_present > self.n_items {
            return bad(format!(
                "{} present items of {}",
                self.n_present, self.n_items
            ));
        }
        if u32::try_from(self.n_trees).is_err() || u32::try_from(self.leaf_capacity).is_err() {
            return bad("tree count or leaf capacity too large".into());
        }
        if self.leaf_capacity == 0 {
            return bad("zero leaf capacity".into());
        }
        if !self.element.fits(self.metric) {
            return bad(format!("{} rows for metric {}", self.element, self.metric));
        }
        Ok(())
    }
}

const _: () = {
    assert!(core::mem::size_of::<Header>() == 128);
    assert!(core::mem::size_of::<SectionEntry>() == 32);
    assert!(core::mem::size_of::<TreeEntry>() == 56);
    assert!(core::mem::size_of::<SplitNode>() == 16);
    assert!(core::mem::size_of::<GraphHeader>() == 64);
};
