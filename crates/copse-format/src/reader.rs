//! Validating reader. [`IndexFile::open`] checks the header, the section table and the tree
//! table (work proportional to the number of sections and trees, not to the file's size) and
//! remembers where each section is; [`IndexFile::view`] casts the sections to typed slices.

use core::ops::Range;

use bytemuck::Pod;
use copse_distance::{Rows, bf16, f16};

use crate::layout::{
    FORMAT_VERSION, Header, LEAF_FLAG, MAGIC, OLDEST_VERSION, SECTION_ALIGN, SectionEntry,
};
use crate::{
    CodeWidth, EMPTY_SLOT, Element, FormatError, GraphHeader, IndexInfo, Labels, MAX_DEGREE,
    Metric, SectionKind, SplitNode, TreeEntry, item_code_stride, packed_ids_len, split_stride,
};

/// More section-table entries than any version needs: a bound on what open reads.
pub(crate) const MAX_SECTIONS: usize = 1024;

/// An index file over bytes `B`, validated at open.
#[derive(Debug)]
pub struct IndexFile<B> {
    bytes: B,
    info: IndexInfo,
    sections: Sections,
    table: Vec<SectionEntry>,
}

/// Byte ranges of the sections this version reads.
#[derive(Debug, Clone, Default)]
struct Sections {
    items: Range<usize>,
    norms: Range<usize>,
    present: Range<usize>,
    trees: Range<usize>,
    splits: Range<usize>,
    leaf_offsets: Range<usize>,
    leaf_ids: Range<usize>,
    item_codes: Range<usize>,
    /// The width of the codes in `item_codes`.
    code_width: CodeWidth,
    annoy_nodes: Range<usize>,
    /// The graph's slots (after its header), and its header.
    graph: Range<usize>,
    graph_header: GraphHeader,
    id_map: Range<usize>,
    labels: Range<usize>,
}

impl<B: AsRef<[u8]>> IndexFile<B> {
    /// Opens an index held in `bytes`: checks the header, section table and tree table.
    /// Section contents are not read (see [`IndexFile::verify`]).
    pub fn open(bytes: B) -> Result<Self, FormatError> {
        let (info, sections, table) = validate(bytes.as_ref())?;
        Ok(IndexFile {
            bytes,
            info,
            sections,
            table,
        })
    }

    /// What the header says.
    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Gives the bytes back.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    /// Every section in the table, with its length in bytes.
    pub fn sections(&self) -> Vec<(SectionKind, u64)> {
        self.table
            .iter()
            .map(|e| (SectionKind::from_code(e.kind), e.len))
            .collect()
    }

    /// Checks every section against its checksum (the error names the first that fails), then
    /// the graph's structure: every neighbour a present item other than the item itself, no
    /// neighbour twice, used slots first, holes without neighbours, and the edge count the
    /// graph's header records.
    pub fn verify(&self) -> Result<(), FormatError> {
        self.verify_checksums()?;
        let view = self.view();
        check_id_map(view.ids)?;
        check_item_codes(&view.codes, view.info.element())?;
        view.labels.verify()?;
        check_graph(&view.graph, |row| view.is_present(u64::from(row)))
    }

    fn verify_checksums(&self) -> Result<(), FormatError> {
        let data = self.bytes.as_ref();
        for entry in &self.table {
            let kind = SectionKind::from_code(entry.kind);
            let range = entry.offset as usize..(entry.offset + entry.len) as usize;
            let bytes = data
                .get(range)
                .ok_or(FormatError::SectionChecksum { kind })?;
            if xxhash_rust::xxh3::xxh3_64(bytes) != entry.checksum {
                return Err(FormatError::SectionChecksum { kind });
            }
        }
        Ok(())
    }

    /// True if the file holds trees converted from Annoy ([`SectionKind::AnnoyNodes`]) instead
    /// of copse's own sections.
    pub fn has_annoy_nodes(&self) -> bool {
        !self.sections.annoy_nodes.is_empty()
    }

    /// Typed slices of the sections.
    pub fn view(&self) -> View<'_> {
        let data = self.bytes.as_ref();
        let s = &self.sections;
        let row_len = self.info.row_len();
        let items = match self.info.element() {
            Element::F32 => ItemRows::F32(
                Rows::new(cast(data, &s.items), row_len).unwrap_or(Rows::empty(row_len)),
            ),
            Element::F16 => ItemRows::F16(
                Rows::new(cast(data, &s.items), row_len).unwrap_or(Rows::empty(row_len)),
            ),
            Element::Bf16 => ItemRows::Bf16(
                Rows::new(cast(data, &s.items), row_len).unwrap_or(Rows::empty(row_len)),
            ),
            Element::Bits => ItemRows::Bits {
                words: cast(data, &s.items),
                row_len,
            },
            Element::I8 => ItemRows::I8(ItemCodes {
                bytes: data.get(s.items.clone()).unwrap_or(&[]),
                stride: item_code_stride(row_len),
                row_len,
                width: CodeWidth::Eight,
            }),
        };
        // i8 rows are item-code records: the approximate pass reads them as codes too.
        let codes = match items {
            ItemRows::I8(codes) => codes,
            _ => ItemCodes {
                bytes: data.get(s.item_codes.clone()).unwrap_or(&[]),
                stride: s.code_width.stride(row_len),
                row_len,
                width: s.code_width,
            },
        };
        View {
            info: &self.info,
            items,
            norms: cast(data, &s.norms),
            present: cast(data, &s.present),
            trees: cast(data, &s.trees),
            splits: data.get(s.splits.clone()).unwrap_or(&[]),
            split_stride: split_stride(self.info.metric, row_len),
            leaf_offsets: cast(data, &s.leaf_offsets),
            leaf_ids: data.get(s.leaf_ids.clone()).unwrap_or(&[]),
            id_bits: self.info.id_bits(),
            codes,
            annoy_nodes: data.get(s.annoy_nodes.clone()).unwrap_or(&[]),
            graph: Graph {
                slots: cast(data, &s.graph),
                degree: s.graph_header.degree as usize,
                n_edges: s.graph_header.n_edges,
            },
            ids: cast(data, &s.id_map),
            // Parsed at open; cannot fail here (an empty range gives no labels).
            labels: match data.get(s.labels.clone()) {
                Some(bytes) if !bytes.is_empty() => {
                    Labels::parse(bytes, self.info.n_items).unwrap_or_default()
                }
                _ => Labels::default(),
            },
        }
    }
}

/// The neighbour lists of [`SectionKind::Graph`] (empty if the file has no graph).
#[derive(Debug, Clone, Copy)]
pub struct Graph<'a> {
    slots: &'a [u32],
    degree: usize,
    n_edges: u64,
}

impl<'a> Graph<'a> {
    /// True if the index has no graph.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slots per item (0 without a graph).
    pub fn degree(&self) -> usize {
        if self.is_empty() { 0 } else { self.degree }
    }

    /// Used slots over all items, as the graph's header records it.
    pub fn n_edges(&self) -> u64 {
        self.n_edges
    }

    /// Item `id`'s slots, if in range: neighbour ids, then [`EMPTY_SLOT`]s. The ids are
    /// whatever the file holds; check each before use.
    #[inline(always)]
    pub fn slots(&self, id: u32) -> Option<&'a [u32]> {
        let start = (id as usize).checked_mul(self.degree)?;
        self.slots.get(start..start.checked_add(self.degree)?)
    }
}

/// Checks that an id map is strictly ascending (see [`IndexFile::verify`]); lookups by id
/// binary-search it.
fn check_id_map(ids: &[u64]) -> Result<(), FormatError> {
    match ids.windows(2).position(|pair| pair[0] >= pair[1]) {
        None => Ok(()),
        Some(row) => Err(FormatError::BadSection {
            kind: SectionKind::IdMap,
            problem: format!("is not ascending at row {}", row + 1),
        }),
    }
}

/// Checks every item-code record (see [`IndexFile::verify`]): a finite, non-negative scale
/// and the sum of squared codes it carries, so a bad scale is an error, not wrong distances.
fn check_item_codes(codes: &ItemCodes<'_>, element: Element) -> Result<(), FormatError> {
    let kind = if element == Element::I8 {
        SectionKind::Items
    } else {
        codes.width.section()
    };
    let rows = codes.bytes.len().checked_div(codes.stride).unwrap_or(0);
    for row in 0..rows {
        let problem = match codes.get(row as u32) {
            None => Some("is cut short".to_string()),
            Some((scale, squares, values)) => {
                let sum =
                    crate::code_values(codes.width, bytemuck::cast_slice(values), codes.row_len)
                        .fold(0.0f32, |sum, c| sum + f32::from(c) * f32::from(c));
                if !(scale.is_finite() && scale >= 0.0) {
                    Some(format!("has scale {scale} for row {row}"))
                } else if sum.to_bits() != squares.to_bits() {
                    Some(format!("has a wrong sum of squares for row {row}"))
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            return Err(FormatError::BadSection { kind, problem });
        }
    }
    Ok(())
}

/// Checks a graph's structure (see [`IndexFile::verify`]).
fn check_graph(graph: &Graph<'_>, is_present: impl Fn(u32) -> bool) -> Result<(), FormatError> {
    if graph.is_empty() {
        return Ok(());
    }
    let bad = |problem: String| FormatError::BadSection {
        kind: SectionKind::Graph,
        problem,
    };
    let mut edges = 0u64;
    let mut sorted = Vec::with_capacity(graph.degree);
    for (item, slots) in graph.slots.chunks_exact(graph.degree).enumerate() {
        let item = item as u32;
        let used = slots.iter().take_while(|&&s| s != EMPTY_SLOT).count();
        if slots[used..].iter().any(|&s| s != EMPTY_SLOT) {
            return Err(bad(format!(
                "item {item} has a neighbour after an unused slot"
            )));
        }
        if used > 0 && !is_present(item) {
            return Err(bad(format!("item {item} is a hole but has neighbours")));
        }
        sorted.clear();
        sorted.extend_from_slice(&slots[..used]);
        sorted.sort_unstable();
        for pair in sorted.windows(2) {
            if pair[0] == pair[1] {
                return Err(bad(format!("item {item} lists {} twice", pair[0])));
            }
        }
        for &neighbour in &sorted {
            if neighbour == item {
                return Err(bad(format!("item {item} lists itself")));
            }
            if !is_present(neighbour) {
                return Err(bad(format!(
                    "item {item} lists {neighbour}, which is not an item"
                )));
            }
        }
        edges += used as u64;
    }
    if edges != graph.n_edges {
        return Err(bad(format!(
            "holds {edges} edges, its header says {}",
            graph.n_edges
        )));
    }
    Ok(())
}

/// Casts a validated range. Open checked bounds, size and alignment, so this cannot fail; if it
/// somehow did, an empty slice makes every later lookup miss (an error), never a panic.
fn cast<'a, T: Pod>(data: &'a [u8], range: &Range<usize>) -> &'a [T] {
    data.get(range.clone())
        .and_then(|bytes| bytemuck::try_cast_slice(bytes).ok())
        .unwrap_or(&[])
}

/// The item vectors, typed by how the file stores them.
#[derive(Debug, Clone, Copy)]
pub enum ItemRows<'a> {
    /// One f32 row per item.
    F32(Rows<'a>),
    /// One IEEE binary16 row per item.
    F16(Rows<'a, f16>),
    /// One bfloat16 row per item.
    Bf16(Rows<'a, bf16>),
    /// One item-code record per item (i8 codes and their scale).
    I8(ItemCodes<'a>),
    /// Packed bits, `row_len` words per item.
    Bits {
        /// All rows, item after item.
        words: &'a [u64],
        /// Words per item.
        row_len: usize,
    },
}

/// Typed slices of an open index. Every index into them must still be checked: the slices are
/// in bounds of the file, but their contents are whatever the file holds.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The header.
    pub info: &'a IndexInfo,
    /// Item vectors.
    pub items: ItemRows<'a>,
    /// Item norms (angular and dot; empty otherwise).
    pub norms: &'a [f32],
    /// Bitmap of present ids.
    pub present: &'a [u64],
    /// One entry per tree.
    pub trees: &'a [TreeEntry],
    /// All split records, `split_stride` bytes each.
    pub splits: &'a [u8],
    /// Bytes per split record.
    pub split_stride: usize,
    /// All leaf offsets.
    pub leaf_offsets: &'a [u32],
    /// All leaf ids, packed.
    pub leaf_ids: &'a [u8],
    /// Bits per packed leaf id.
    pub id_bits: u32,
    /// Quantized items (empty unless the metric stores them).
    pub codes: ItemCodes<'a>,
    /// Annoy's node array, for a file converted from Annoy (empty otherwise; then every
    /// other slice is empty).
    pub annoy_nodes: &'a [u8],
    /// The proximity graph (empty if the file has none).
    pub graph: Graph<'a>,
    /// The user id of each row, ascending (empty when row `i` is id `i`). Everything inside
    /// the file (trees, graph, the searches) works on rows; ids are for the caller.
    pub ids: &'a [u64],
    /// The items' labels (empty if the file has none), by row.
    pub labels: Labels<'a>,
}

/// The quantized items of [`SectionKind::ItemCodes`] or [`SectionKind::ItemCodes4`].
#[derive(Debug, Clone, Copy)]
pub struct ItemCodes<'a> {
    bytes: &'a [u8],
    stride: usize,
    row_len: usize,
    width: CodeWidth,
}

impl<'a> ItemCodes<'a> {
    /// True if the index has no codes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Codes per item (the row length).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The whole record of item `id` (for prefetching).
    #[inline(always)]
    pub fn record(&self, id: u32) -> Option<&'a [u8]> {
        let start = (id as usize).checked_mul(self.stride)?;
        self.bytes.get(start..start.checked_add(self.stride)?)
    }

    /// The codes' width.
    pub fn width(&self) -> CodeWidth {
        self.width
    }

    /// Item `id`'s scale, sum of squared codes, and codes (`x ~ codes * scale`): for 8-bit
    /// codes, `row_len` i8; for 4-bit codes, the packed bytes ([`CodeWidth::codes_len`];
    /// [`crate::code_values`] unpacks them).
    #[inline(always)]
    pub fn get(&self, id: u32) -> Option<(f32, f32, &'a [i8])> {
        let record = self.record(id)?;
        let scale = f32::from_le_bytes(record.get(0..4)?.try_into().ok()?);
        let squares = f32::from_le_bytes(record.get(4..8)?.try_into().ok()?);
        let codes = record.get(8..8 + self.width.codes_len(self.row_len))?;
        Some((scale, squares, bytemuck::cast_slice(codes)))
    }
}

/// The ids of one leaf, unpacked on the fly.
#[derive(Debug, Clone, Copy)]
pub struct LeafIds<'a> {
    bytes: &'a [u8],
    start_bit: u64,
    len: usize,
    bits: u32,
}

impl<'a> LeafIds<'a> {
    /// Number of ids.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the leaf is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids, in order.
    #[inline(always)]
    pub fn iter(&self) -> LeafIdsIter<'a> {
        LeafIdsIter {
            bytes: self.bytes,
            bit: self.start_bit,
            left: self.len,
            bits: self.bits,
            mask: (1u64 << self.bits) - 1,
        }
    }
}

impl<'a> IntoIterator for LeafIds<'a> {
    type Item = u32;
    type IntoIter = LeafIdsIter<'a>;
    fn into_iter(self) -> LeafIdsIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`LeafIds`]. Each id is one unaligned 8-byte load, a shift and a mask; the
/// load is bounds-checked (open validated the range, so the check never fails on a file that
/// opened, and yields 0 rather than reading out of bounds if it did).
#[derive(Debug, Clone)]
pub struct LeafIdsIter<'a> {
    bytes: &'a [u8],
    bit: u64,
    left: usize,
    bits: u32,
    mask: u64,
}

impl Iterator for LeafIdsIter<'_> {
    type Item = u32;

    #[inline(always)]
    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let byte = (self.bit / 8) as usize;
        let word = self
            .bytes
            .get(byte..byte + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let id = (word >> (self.bit % 8)) & self.mask;
        self.bit += u64::from(self.bits);
        Some(id as u32)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for LeafIdsIter<'_> {}

impl<'a> View<'a> {
    /// The id of the item in `row` (what a caller sees).
    #[inline]
    pub fn id_of(&self, row: u32) -> u64 {
        match self.ids.get(row as usize) {
            Some(&id) => id,
            None => u64::from(row),
        }
    }

    /// The row of item `id`, if `id` was added.
    #[inline]
    pub fn row_of(&self, id: u64) -> Option<u32> {
        let row = if self.ids.is_empty() {
            u32::try_from(id).ok()?
        } else {
            // On a corrupt (unsorted) map the search may miss, never fail.
            u32::try_from(self.ids.binary_search(&id).ok()?).ok()?
        };
        self.is_present(u64::from(row)).then_some(row)
    }

    /// The largest id added, if any: the id map's last entry, or the last present row.
    pub fn max_id(&self) -> Option<u64> {
        if let Some(&last) = self.ids.last() {
            return Some(last);
        }
        let word = self.present.iter().rposition(|&w| w != 0)?;
        Some(word as u64 * 64 + 63 - u64::from(self.present[word].leading_zeros()))
    }

    /// True if row `id` holds an added item (false for holes and rows out of range). Rows
    /// are ids unless the file has an id map ([`View::row_of`]).
    #[inline]
    pub fn is_present(&self, id: u64) -> bool {
        let Ok(id) = usize::try_from(id) else {
            return false;
        };
        self.present
            .get(id / 64)
            .is_some_and(|word| word >> (id % 64) & 1 == 1)
    }

    /// The f32 vector of item `id` (f32 rows), present or not.
    #[inline]
    pub fn item_f32(&self, id: usize) -> Option<&'a [f32]> {
        match self.items {
            ItemRows::F32(rows) => rows.row(id),
            _ => None,
        }
    }

    /// The vector of item `id` as f32, present or not: the stored values, widened exactly
    /// (f32, f16, bf16), or i8 codes times their scale, each product rounded to f32 (for
    /// angular, the unit vector's). `None` for hamming.
    pub fn item_vector(&self, id: usize) -> Option<std::borrow::Cow<'a, [f32]>> {
        use std::borrow::Cow;
        fn widen<T: copse_distance::RowElement>(row: &[T]) -> Cow<'static, [f32]> {
            Cow::Owned(row.iter().map(|x| x.to_f32()).collect())
        }
        match self.items {
            ItemRows::F32(rows) => rows.row(id).map(Cow::Borrowed),
            ItemRows::F16(rows) => rows.row(id).map(widen),
            ItemRows::Bf16(rows) => rows.row(id).map(widen),
            ItemRows::I8(codes) => {
                let mut values = vec![0.0; codes.row_len()];
                crate::decode_item_code(codes.record(u32::try_from(id).ok()?)?, &mut values)
                    .then_some(Cow::Owned(values))
            }
            ItemRows::Bits { .. } => None,
        }
    }

    /// The packed bits of item `id` (hamming), present or not.
    #[inline]
    pub fn item_bits(&self, id: usize) -> Option<&'a [u64]> {
        match self.items {
            ItemRows::Bits { words, row_len } => {
                let start = id.checked_mul(row_len)?;
                words.get(start..start.checked_add(row_len)?)
            }
            _ => None,
        }
    }

    /// Split `index` of `tree` and its quantized normal (empty for hamming), if in range.
    #[inline(always)]
    pub fn split(&self, tree: &TreeEntry, index: u32) -> Option<(SplitNode, &'a [i8])> {
        let record = self.split_record(tree, index)?;
        let (header, normal) = record.split_at_checked(size_of::<SplitNode>())?;
        let node: SplitNode = bytemuck::pod_read_unaligned(header);
        let normal = match self.info.element() {
            Element::Bits => &[],
            _ => normal.get(..self.info.row_len())?,
        };
        Some((node, bytemuck::cast_slice(normal)))
    }

    /// The raw bytes of split `index` of `tree`, if in range (for prefetching).
    #[inline(always)]
    pub fn split_record(&self, tree: &TreeEntry, index: u32) -> Option<&'a [u8]> {
        if u64::from(index) >= tree.n_splits {
            return None;
        }
        let global = tree.split_base as usize + index as usize;
        let start = global.checked_mul(self.split_stride)?;
        self.splits
            .get(start..start.checked_add(self.split_stride)?)
    }

    /// The ids in leaf `index` of `tree`, if the leaf and its offsets are in range.
    #[inline(always)]
    pub fn leaf(&self, tree: &TreeEntry, index: u32) -> Option<LeafIds<'a>> {
        if u64::from(index) >= tree.n_leaves {
            return None;
        }
        let at = tree.leaf_base as usize + index as usize;
        let start = *self.leaf_offsets.get(at)?;
        let end = *self.leaf_offsets.get(at + 1)?;
        if start > end || u64::from(end) > tree.n_ids {
            return None;
        }
        Some(LeafIds {
            bytes: self.leaf_ids,
            start_bit: tree.ids_base * 8 + u64::from(start) * u64::from(self.id_bits),
            len: (end - start) as usize,
            bits: self.id_bits,
        })
    }

    /// The bytes holding the start of leaf `index`'s ids (for prefetching), if in range.
    #[inline(always)]
    pub fn leaf_start(&self, tree: &TreeEntry, index: u32) -> Option<&'a [u8]> {
        let at = tree.leaf_base as usize + index as usize;
        let start = u64::from(*self.leaf_offsets.get(at)?);
        let byte = tree.ids_base + start * u64::from(self.id_bits) / 8;
        self.leaf_ids.get(usize::try_from(byte).ok()?..)
    }
}

fn validate(data: &[u8]) -> Result<(IndexInfo, Sections, Vec<SectionEntry>), FormatError> {
    let len = data.len() as u64;
    let header_size = size_of::<Header>();
    if data.len() < header_size || data[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotAnIndex { len });
    }
    let header: Header = bytemuck::pod_read_unaligned(&data[..header_size]);
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return Err(FormatError::UnsupportedVersion {
            found: header.version,
            oldest: OLDEST_VERSION,
            newest: FORMAT_VERSION,
        });
    }
    if data.as_ptr().align_offset(8) != 0 {
        return Err(FormatError::Misaligned);
    }
    let n_sections = header.n_sections as usize;
    let header_len = header_size + n_sections.min(MAX_SECTIONS) * size_of::<SectionEntry>();
    if n_sections > MAX_SECTIONS || header.header_len as usize != header_len {
        return Err(FormatError::HeaderChecksum);
    }
    let Some(header_bytes) = data.get(..header_len) else {
        return Err(FormatError::Length {
            expected: header.file_len.max(header_len as u64),
            found: len,
        });
    };
    let mut zeroed = header_bytes.to_vec();
    let at = core::mem::offset_of!(Header, checksum);
    zeroed[at..at + 8].fill(0);
    if xxhash_rust::xxh3::xxh3_64(&zeroed) != header.checksum {
        return Err(FormatError::HeaderChecksum);
    }
    if header.file_len != len {
        return Err(FormatError::Length {
            expected: header.file_len,
            found: len,
        });
    }

    let metric = Metric::from_code(header.metric)?;
    let element = Element::from_code(header.element)
        .filter(|e| e.fits(metric))
        .ok_or_else(|| {
            FormatError::BadHeader(format!(
                "element code {} does not fit metric {metric}",
                header.element
            ))
        })?;
    let info = IndexInfo {
        version: header.version,
        metric,
        dims: header.dims as usize,
        n_items: header.n_items,
        n_present: header.n_present,
        n_trees: header.n_trees as usize,
        leaf_capacity: header.leaf_capacity as usize,
        seed: header.seed,
        element,
    };
    info.check()?;
    if header.id_bits != info.id_bits() {
        return Err(FormatError::BadHeader(format!(
            "{} bits per leaf id for {} items",
            header.id_bits, info.n_items
        )));
    }
    if header.row_len as usize != info.row_len() {
        return Err(FormatError::BadHeader(format!(
            "row length {} for {} dimensions",
            header.row_len, info.dims
        )));
    }

    let table: Vec<SectionEntry> = bytemuck::pod_collect_to_vec(&header_bytes[header_size..]);
    let sections = locate_sections(&info, data, &table, header_len as u64)?;
    // Annoy trees are checked by their reader (copse-annoy) as it follows them.
    if sections.annoy_nodes.is_empty() {
        check_trees(&info, data, &sections)?;
    }
    Ok((info, sections, table))
}

/// Finds each known section, checks its placement and its exact expected size.
fn locate_sections(
    info: &IndexInfo,
    data: &[u8],
    table: &[SectionEntry],
    header_len: u64,
) -> Result<Sections, FormatError> {
    let file_len = data.len() as u64;
    let mut found: Vec<(SectionKind, Range<usize>)> = Vec::new();
    for entry in table {
        let kind = SectionKind::from_code(entry.kind);
        let bad = |problem: String| FormatError::BadSection { kind, problem };
        let end = entry
            .offset
            .checked_add(entry.len)
            .ok_or_else(|| bad("overflows".into()))?;
        if !entry.offset.is_multiple_of(SECTION_ALIGN) {
            return Err(bad(format!("starts at unaligned offset {}", entry.offset)));
        }
        if entry.offset < header_len || end > file_len {
            return Err(bad(format!(
                "spans bytes {}..{end} outside {header_len}..{file_len}",
                entry.offset
            )));
        }
        if matches!(kind, SectionKind::Unknown(_)) {
            continue;
        }
        if found.iter().any(|(k, _)| *k == kind) {
            return Err(bad("appears twice".into()));
        }
        found.push((kind, entry.offset as usize..end as usize));
    }
    let take = |kind: SectionKind| -> Option<Range<usize>> {
        found
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| r.clone())
    };
    let need = |kind: SectionKind| {
        take(kind).ok_or(FormatError::BadSection {
            kind,
            problem: "is missing".into(),
        })
    };
    let sized = |kind: SectionKind, range: Range<usize>, expected: Option<u64>| {
        let expected = expected.ok_or_else(|| FormatError::TooLarge(format!("{kind} section")))?;
        if range.len() as u64 != expected {
            return Err(FormatError::BadSection {
                kind,
                problem: format!("is {} bytes, expected {expected}", range.len()),
            });
        }
        Ok(range)
    };
    let multiple = |kind: SectionKind, range: Range<usize>, unit: usize| {
        if !range.len().is_multiple_of(unit) {
            return Err(FormatError::BadSection {
                kind,
                problem: format!("is {} bytes, not a multiple of {unit}", range.len()),
            });
        }
        Ok(range)
    };

    if let Some(annoy_nodes) = take(SectionKind::AnnoyNodes) {
        for kind in SectionKind::KNOWN {
            if kind != SectionKind::AnnoyNodes && take(kind).is_some() {
                return Err(FormatError::BadSection {
                    kind,
                    problem: "is present beside Annoy nodes".into(),
                });
            }
        }
        if annoy_nodes.is_empty() {
            return Err(FormatError::BadSection {
                kind: SectionKind::AnnoyNodes,
                problem: "is empty".into(),
            });
        }
        return Ok(Sections {
            annoy_nodes,
            ..Sections::default()
        });
    }

    let row_bytes = info.element().row_bytes(info.row_len()) as u64;
    let items = sized(
        SectionKind::Items,
        need(SectionKind::Items)?,
        info.n_items.checked_mul(row_bytes),
    )?;
    let norms = if info.metric.stores_norms() {
        sized(
            SectionKind::Norms,
            need(SectionKind::Norms)?,
            info.n_items.checked_mul(4),
        )?
    } else {
        forbid(SectionKind::Norms, take(SectionKind::Norms))?
    };
    let present = sized(
        SectionKind::Present,
        need(SectionKind::Present)?,
        info.n_items.div_ceil(64).checked_mul(8),
    )?;
    let trees = sized(
        SectionKind::Trees,
        need(SectionKind::Trees)?,
        (info.n_trees as u64).checked_mul(size_of::<TreeEntry>() as u64),
    )?;
    let splits = multiple(
        SectionKind::Splits,
        need(SectionKind::Splits)?,
        split_stride(info.metric, info.row_len()),
    )?;
    let leaf_offsets = multiple(SectionKind::LeafOffsets, need(SectionKind::LeafOffsets)?, 4)?;
    let leaf_ids = need(SectionKind::LeafIds)?;
    let (graph, graph_header) = match take(SectionKind::Graph) {
        None => (0..0, GraphHeader::default()),
        Some(range) => locate_graph(info, data, range)?,
    };
    let id_map = match take(SectionKind::IdMap) {
        None => 0..0,
        Some(range) => {
            let bad = |problem: String| FormatError::BadSection {
                kind: SectionKind::IdMap,
                problem,
            };
            if info.version < 2 {
                return Err(bad(format!("is in a version {} file", info.version)));
            }
            if info.n_present != info.n_items {
                return Err(bad(format!(
                    "is in a file with {} holes",
                    info.n_items - info.n_present
                )));
            }
            sized(SectionKind::IdMap, range, info.n_items.checked_mul(8))?
        }
    };
    let labels = match take(SectionKind::Labels) {
        None => 0..0,
        Some(range) => {
            let bytes = data.get(range.clone()).unwrap_or(&[]);
            Labels::parse(bytes, info.n_items)?;
            range
        }
    };
    let item_codes = if info.element.requires_codes(info.metric) {
        Some(need(SectionKind::ItemCodes)?)
    } else {
        take(SectionKind::ItemCodes)
    };
    let item_codes = match item_codes {
        Some(range) if info.element.allows_codes(info.metric) => sized(
            SectionKind::ItemCodes,
            range,
            info.n_items
                .checked_mul(item_code_stride(info.row_len()) as u64),
        )?,
        other => forbid(SectionKind::ItemCodes, other)?,
    };
    // 4-bit codes: only where codes are a choice (half rows), and never beside 8-bit ones.
    let (item_codes, code_width) = match take(SectionKind::ItemCodes4) {
        None => (item_codes, CodeWidth::Eight),
        Some(range) => {
            let open = info.element.allows_codes(info.metric)
                && !info.element.requires_codes(info.metric)
                && item_codes.is_empty();
            let range = if open {
                sized(
                    SectionKind::ItemCodes4,
                    range,
                    info.n_items
                        .checked_mul(CodeWidth::Four.stride(info.row_len()) as u64),
                )?
            } else {
                return Err(FormatError::BadSection {
                    kind: SectionKind::ItemCodes4,
                    problem: format!(
                        "is present beside {} rows of metric {}{}",
                        info.element,
                        info.metric,
                        if item_codes.is_empty() {
                            ""
                        } else {
                            " and 8-bit codes"
                        }
                    ),
                });
            };
            (range, CodeWidth::Four)
        }
    };
    Ok(Sections {
        items,
        norms,
        present,
        trees,
        splits,
        leaf_offsets,
        leaf_ids,
        item_codes,
        code_width,
        annoy_nodes: 0..0,
        graph,
        graph_header,
        id_map,
        labels,
    })
}

/// Reads the graph's header and checks the section's size against it: `range` is the whole
/// section; the returned range holds the slots.
fn locate_graph(
    info: &IndexInfo,
    data: &[u8],
    range: Range<usize>,
) -> Result<(Range<usize>, GraphHeader), FormatError> {
    let kind = SectionKind::Graph;
    let bad = |problem: String| FormatError::BadSection { kind, problem };
    let header_size = size_of::<GraphHeader>();
    let header: GraphHeader = data
        .get(range.start..range.start.saturating_add(header_size))
        .filter(|_| range.len() >= header_size)
        .map(bytemuck::pod_read_unaligned)
        .ok_or_else(|| bad(format!("is {} bytes, shorter than its header", range.len())))?;
    let degree = header.degree as usize;
    if !(1..=MAX_DEGREE).contains(&degree) {
        return Err(bad(format!("declares degree {degree} (1 to {MAX_DEGREE})")));
    }
    let expected = info
        .n_items
        .checked_mul(degree as u64 * 4)
        .and_then(|slots| slots.checked_add(header_size as u64))
        .ok_or_else(|| FormatError::TooLarge("graph section".into()))?;
    if range.len() as u64 != expected {
        return Err(bad(format!(
            "is {} bytes, expected {expected}",
            range.len()
        )));
    }
    if header.n_edges > info.n_present.saturating_mul(degree as u64) {
        return Err(bad(format!("declares {} edges", header.n_edges)));
    }
    Ok((range.start + header_size..range.end, header))
}

/// A section this metric must not have; an empty range if absent.
fn forbid(kind: SectionKind, range: Option<Range<usize>>) -> Result<Range<usize>, FormatError> {
    match range {
        None => Ok(0..0),
        Some(_) => Err(FormatError::BadSection {
            kind,
            problem: "is present but this metric has none".into(),
        }),
    }
}

/// Checks each tree's entry against the section sizes, so that later lookups only need to
/// check node indices against the tree's own counts.
fn check_trees(info: &IndexInfo, data: &[u8], s: &Sections) -> Result<(), FormatError> {
    let trees: &[TreeEntry] = cast(data, &s.trees);
    if trees.len() != info.n_trees {
        return Err(FormatError::BadSection {
            kind: SectionKind::Trees,
            problem: "cannot be read".into(),
        });
    }
    let total_splits = (s.splits.len() / split_stride(info.metric, info.row_len())) as u64;
    let total_offsets = (s.leaf_offsets.len() / 4) as u64;
    let ids_bytes = s.leaf_ids.len() as u64;
    let id_bits = info.id_bits();
    for (t, tree) in trees.iter().enumerate() {
        let bad = |problem: &str| FormatError::BadTree {
            tree: t,
            problem: problem.into(),
        };
        let within = |base: u64, count: u64, total: u64| {
            base.checked_add(count).is_some_and(|end| end <= total)
        };
        if !within(tree.split_base, tree.n_splits, total_splits) {
            return Err(bad("has split nodes outside the splits section"));
        }
        let offsets = tree.n_leaves.saturating_add(1);
        if tree.n_leaves == 0 || !within(tree.leaf_base, offsets, total_offsets) {
            return Err(bad("has leaf offsets outside the leaf-offsets section"));
        }
        // The ids end 8 bytes before the section does: every unpacking load stays inside.
        let packed = packed_ids_len(tree.n_ids, id_bits).and_then(|n| n.checked_add(8));
        if !packed.is_some_and(|n| within(tree.ids_base, n, ids_bytes)) {
            return Err(bad("has ids outside the leaf-ids section"));
        }
        if tree.n_ids != info.n_present {
            return Err(bad("does not hold every present item"));
        }
        if tree.n_splits >= u64::from(LEAF_FLAG) || tree.n_leaves >= u64::from(LEAF_FLAG) {
            return Err(bad("has too many nodes"));
        }
        let root_ok = match tree.root.decode() {
            Ok(leaf) => u64::from(leaf) < tree.n_leaves,
            Err(split) => u64::from(split) < tree.n_splits,
        };
        if !root_ok {
            return Err(bad("has its root out of range"));
        }
    }
    Ok(())
}
