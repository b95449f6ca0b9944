//! The vectors added before a build: one row per item, a bitmap of which rows hold an item,
//! and (for angular and dot) each item's norm.
//!
//! Ids are any `u64`. While they stay dense (below 2^32 − 1, and at most about half the rows
//! would be holes), row `i` is id `i` and ids never added are holes: zero rows, bit clear, as
//! in Annoy. Past that the store keeps an id map: rows hold the items in the order their ids
//! arrived, and [`VectorStore::arrange`] sorts them by id before a build. Memory and file size
//! then grow with the number of items, never with the largest id.
//!
//! Rows live in memory, or (for on-disk builds, Annoy's `on_disk_build`) in a file mapping at
//! the offset where the finished index will hold its items section, so the build never copies
//! the vector data and never holds it in anonymous memory.

use std::collections::HashMap;
use std::fs::File;

use std::borrow::Cow;

use copse_distance::{Half, Rows, bf16, f16};
use copse_format::{CodeWidth, Element, Metric};

use crate::BuildError;

/// Item vectors by id, in memory or in a file.
#[derive(Debug)]
pub struct VectorStore {
    metric: Metric,
    /// How rows are stored: f32, f16, bf16 or bits.
    element: Element,
    /// The item codes the file keeps beside the rows: always 8-bit for f32 rows of the metrics
    /// that score from codes; a choice with half-precision rows (none, 8-bit or 4-bit).
    codes: Option<CodeWidth>,
    dims: usize,
    row_len: usize,
    /// The rows, `n_items * row_len` elements (f32, or u64 words for hamming).
    rows: RowBuffer,
    /// Norm of each row (angular and dot), `n_items`.
    norms: Vec<f32>,
    /// Bit `row` set if the row holds an item.
    present: Vec<u64>,
    /// Rows.
    n_items: usize,
    n_present: usize,
    ids: Ids,
    /// The largest id added.
    max_id: Option<u64>,
    /// True while the rows are in the order [`VectorStore::arrange`] puts them.
    arranged: bool,
    /// For half-precision rows of the metrics that keep item codes: each row's 8-bit item-code
    /// record made from the vector as given, before rounding (one per row, kept in step with
    /// the rows). The build makes its trees and graph from these, so a half-row index has the
    /// trees and graph of the f32 index of the same vectors and seed (angular and euclidean;
    /// dot's splits also read the rounded norms), and the row type changes only what queries
    /// read (`docs/performance.md`, "4-bit codes beside half rows").
    given_codes: Option<RowBuffer>,
}

/// How rows relate to ids.
#[derive(Debug, Default)]
enum Ids {
    /// Row `i` is id `i`.
    #[default]
    Dense,
    /// Row `i` holds id `ids[i]` (every row is present); `rows` finds an id's row.
    Mapped {
        ids: Vec<u64>,
        rows: HashMap<u64, u32>,
    },
}

/// Whether items whose largest id is `max_id` are stored densely (row = id) when `n_present`
/// ids are present: ids below 2^32 − 1 (a row number is a u32, and `u32::MAX` marks an unused
/// graph slot), and holes at most the present items plus 1024. Past that an id map costs less
/// (8 bytes an item against a row and an item code a hole).
pub fn dense_fits(max_id: u64, n_present: usize) -> bool {
    max_id < u64::from(u32::MAX) && max_id < 2 * n_present as u64 + 1024
}

/// Where the rows live. Both forms are 8-byte aligned, so f32 and u64 rows cast in place.
#[derive(Debug)]
enum RowBuffer {
    Memory(Vec<u64>),
    File(FileRows),
}

/// Rows in a shared, writable mapping of `file` from byte `offset`, grown by doubling.
#[derive(Debug)]
struct FileRows {
    file: File,
    offset: u64,
    /// `None` until the first row arrives (an empty mapping is an error on Linux).
    map: Option<memmap2::MmapMut>,
}

/// The smallest file mapping worth creating for rows.
const MIN_FILE_ROWS: usize = 1 << 20;

impl RowBuffer {
    fn bytes(&self) -> &[u8] {
        match self {
            RowBuffer::Memory(words) => bytemuck::cast_slice(words),
            RowBuffer::File(rows) => rows.map.as_deref().unwrap_or(&[]),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            RowBuffer::Memory(words) => bytemuck::cast_slice_mut(words),
            RowBuffer::File(rows) => rows.map.as_deref_mut().unwrap_or(&mut []),
        }
    }

    /// Makes the first `len` bytes available, zero where new.
    fn grow(&mut self, len: usize) -> std::io::Result<()> {
        match self {
            RowBuffer::Memory(words) => {
                let want = len.div_ceil(8);
                if want > words.len() {
                    words
                        .try_reserve(want - words.len())
                        .map_err(|_| std::io::ErrorKind::OutOfMemory)?;
                    words.resize(want, 0);
                }
                Ok(())
            }
            RowBuffer::File(rows) => {
                let mapped = rows.map.as_ref().map_or(0, |m| m.len());
                if len <= mapped {
                    return Ok(());
                }
                let capacity = len.max(mapped.saturating_mul(2)).max(MIN_FILE_ROWS);
                rows.remap(capacity)
            }
        }
    }
}

impl FileRows {
    /// Maps `capacity` bytes of rows, extending the file (with zeros) to hold them.
    fn remap(&mut self, capacity: usize) -> std::io::Result<()> {
        if let Some(map) = &self.map {
            map.flush_async()?;
        }
        self.map = None;
        let end = self.offset + capacity as u64;
        if self.file.metadata()?.len() < end {
            self.file.set_len(end)?;
        }
        // SAFETY: the file is the builder's own temporary file (created by `on_disk`, never
        // handed out), and no other mapping of this range is alive: the previous one was
        // dropped above. Another process could still truncate the file by name, which no
        // file mapping can guard against (it would fault, as with any mmap).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(self.offset)
                .len(capacity)
                .map_mut(&self.file)?
        };
        self.map = Some(map);
        Ok(())
    }
}

impl VectorStore {
    /// An empty store for `dims`-dimensional vectors (bits, for hamming).
    pub fn new(dims: usize, metric: Metric) -> Result<Self, BuildError> {
        VectorStore::with_element(dims, metric, metric.element())
    }

    /// An empty store whose rows are stored as `element`: f32, f16, bf16 or i8 for the float
    /// metrics, bits for hamming. Vectors are rounded to the type as they are added, and the
    /// norms are the rounded rows' (what a query reads); half rows of the metrics that keep
    /// item codes also keep the 8-bit code of each vector as given, which the build reads
    /// ([`VectorStore::given_codes`]).
    pub fn with_element(dims: usize, metric: Metric, element: Element) -> Result<Self, BuildError> {
        if !element.fits(metric) {
            return Err(BuildError::ElementForMetric { element, metric });
        }
        if dims == 0 {
            return Err(BuildError::ZeroDimensions);
        }
        if u32::try_from(dims).is_err() {
            return Err(BuildError::TooLarge(format!("{dims} dimensions")));
        }
        Ok(VectorStore {
            metric,
            element,
            codes: element.default_codes(metric, metric.row_len(dims)),
            dims,
            row_len: metric.row_len(dims),
            rows: RowBuffer::Memory(Vec::new()),
            norms: Vec::new(),
            present: Vec::new(),
            n_items: 0,
            n_present: 0,
            ids: Ids::Dense,
            max_id: None,
            arranged: true,
            given_codes: (matches!(element, Element::F16 | Element::Bf16) && metric.stores_codes())
                .then(|| RowBuffer::Memory(Vec::new())),
        })
    }

    /// Moves the rows into `file` from byte `offset` on (where the finished index's items
    /// section will start), keeping every item added so far. Rows added later go to the file.
    /// The item codes of the given vectors (half rows) go to an unnamed scratch file in
    /// `scratch_dir`.
    pub fn move_to_file(
        &mut self,
        file: File,
        offset: u64,
        scratch_dir: &std::path::Path,
    ) -> Result<(), BuildError> {
        let len = self.rows_len();
        let mut rows = RowBuffer::File(FileRows {
            file,
            offset,
            map: None,
        });
        if len > 0 {
            rows.grow(len).map_err(BuildError::Io)?;
            rows.bytes_mut()[..len].copy_from_slice(&self.rows.bytes()[..len]);
        }
        if let Some(given) = &self.given_codes {
            let len = self.given_codes_len();
            let mut moved = RowBuffer::File(FileRows {
                file: tempfile::tempfile_in(scratch_dir).map_err(BuildError::Io)?,
                offset: 0,
                map: None,
            });
            if len > 0 {
                moved.grow(len).map_err(BuildError::Io)?;
                moved.bytes_mut()[..len].copy_from_slice(&given.bytes()[..len]);
            }
            self.given_codes = Some(moved);
        }
        self.rows = rows;
        Ok(())
    }

    /// Bytes of the given vectors' item codes (0 where the store keeps none).
    fn given_codes_len(&self) -> usize {
        match self.given_codes {
            Some(_) => self.n_items * copse_format::item_code_stride(self.row_len),
            None => 0,
        }
    }

    /// The 8-bit item-code records of the vectors as given (before rounding), one per row, for
    /// half-precision rows of the metrics that keep codes; `None` otherwise.
    pub fn given_codes(&self) -> Option<&[u8]> {
        let len = self.given_codes_len();
        self.given_codes
            .as_ref()
            .map(|given| given.bytes().get(..len).unwrap_or(&[]))
    }

    /// True if the rows live in a file.
    pub fn is_on_disk(&self) -> bool {
        matches!(self.rows, RowBuffer::File(_))
    }

    /// The file the rows live in, if any.
    pub fn file(&self) -> Option<&File> {
        match &self.rows {
            RowBuffer::File(rows) => Some(&rows.file),
            RowBuffer::Memory(_) => None,
        }
    }

    /// Shrinks a file mapping of the rows to exactly the items section (the mapping grows by
    /// doubling), so what follows the rows in the file can be mapped on its own.
    pub(crate) fn fit_rows_to_items(&mut self) -> Result<(), BuildError> {
        let len = self.rows_len();
        if let RowBuffer::File(rows) = &mut self.rows {
            if len == 0 {
                rows.map = None;
            } else if rows.map.as_ref().map_or(0, |m| m.len()) != len {
                rows.remap(len).map_err(BuildError::Io)?;
            }
        }
        Ok(())
    }

    /// Makes sure the rows are written to the file (no-op in memory).
    pub fn flush(&self) -> Result<(), BuildError> {
        if let RowBuffer::File(FileRows { map: Some(map), .. }) = &self.rows {
            map.flush().map_err(BuildError::Io)?;
        }
        Ok(())
    }

    /// Bytes of row data: `n_items * row_len` elements.
    fn rows_len(&self) -> usize {
        self.n_items * self.element.row_bytes(self.row_len)
    }

    /// The rows as bytes, exactly `n_items * row_len` elements: the items section.
    pub fn row_bytes(&self) -> &[u8] {
        self.rows.bytes().get(..self.rows_len()).unwrap_or(&[])
    }

    /// The metric the store was made for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Dimensions per vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Rows: the largest id added plus one, or with an id map the number of items.
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Number of distinct ids added.
    pub fn n_present(&self) -> usize {
        self.n_present
    }

    /// The largest id added, if any.
    pub fn max_id(&self) -> Option<u64> {
        self.max_id
    }

    /// The id of each row, ascending, if the store keeps an id map (after [`VectorStore::arrange`];
    /// `None` when row `i` is id `i`).
    pub fn id_map(&self) -> Option<&[u64]> {
        match &self.ids {
            Ids::Dense => None,
            Ids::Mapped { ids, .. } => Some(ids),
        }
    }

    /// The row of item `id`, if it was added.
    pub fn row_of(&self, id: u64) -> Option<u32> {
        let row = match &self.ids {
            Ids::Dense => u32::try_from(id).ok()?,
            Ids::Mapped { rows, .. } => *rows.get(&id)?,
        };
        self.is_present(row).then_some(row)
    }

    /// True if row `row` holds an item.
    pub fn is_present(&self, row: u32) -> bool {
        let row = row as usize;
        self.present
            .get(row / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1)
    }

    /// The row for item `id`: its row if it was added, else a new one (growing the store, and
    /// switching it to an id map when `id` would leave too many holes).
    fn row_for(&mut self, id: u64) -> Result<u32, BuildError> {
        if let Ids::Dense = self.ids {
            if id < self.n_items as u64 {
                return Ok(id as u32);
            }
            if dense_fits(id, self.n_present + 1) {
                self.grow(id as u32)?;
                return Ok(id as u32);
            }
            self.compact_to_map()?;
        }
        let next = self.n_items;
        let Ids::Mapped { ids, rows } = &mut self.ids else {
            return Err(BuildError::Internal("no id map".into()));
        };
        if let Some(&row) = rows.get(&id) {
            return Ok(row);
        }
        let row = u32::try_from(next)
            .ok()
            .filter(|&row| row < u32::MAX)
            .ok_or_else(|| BuildError::TooLarge(format!("{next} items (at most 2^32 - 1)")))?;
        ids.try_reserve(1)
            .and_then(|()| rows.try_reserve(1))
            .map_err(|_| BuildError::OutOfMemory { id })?;
        // The row first: if it cannot be had, the map is left as it was.
        self.grow(row).map_err(|e| match e {
            BuildError::OutOfMemory { .. } => BuildError::OutOfMemory { id },
            other => other,
        })?;
        if let Ids::Mapped { ids, rows } = &mut self.ids {
            ids.push(id);
            rows.insert(id, row);
        }
        self.arranged = false;
        Ok(row)
    }

    /// Switches a dense store to an id map: the present rows move down, in id order, over the
    /// holes.
    fn compact_to_map(&mut self) -> Result<(), BuildError> {
        let present = self.present_ids();
        let row_bytes = self.row_bytes_each();
        compact(self.rows.bytes_mut(), row_bytes, &present, self.n_items);
        if let Some(given) = &mut self.given_codes {
            let stride = copse_format::item_code_stride(self.row_len);
            compact(given.bytes_mut(), stride, &present, self.n_items);
        }
        let n = present.len();
        if self.metric.stores_norms() {
            for (to, &from) in present.iter().enumerate() {
                self.norms[to] = self.norms[from as usize];
            }
            self.norms.truncate(n);
        }
        self.set_all_present(n);
        let rows = present
            .iter()
            .enumerate()
            .map(|(row, &id)| (u64::from(id), row as u32));
        self.ids = Ids::Mapped {
            ids: present.iter().map(|&id| u64::from(id)).collect(),
            rows: rows.collect(),
        };
        Ok(())
    }

    /// `n` rows, every one present.
    fn set_all_present(&mut self, n: usize) {
        self.present.clear();
        self.present.resize(n.div_ceil(64), u64::MAX);
        if !n.is_multiple_of(64) {
            self.present[n / 64] = (1u64 << (n % 64)) - 1;
        }
        self.n_items = n;
        self.n_present = n;
    }

    /// Bytes per row.
    fn row_bytes_each(&self) -> usize {
        self.element.row_bytes(self.row_len)
    }

    /// Puts the rows in the order a file stores them, before a build: with an id map, sorted by
    /// id; and if the ids turn out dense after all (say they were added in descending order),
    /// row `i` as id `i` again, without a map. The same items give the same rows, whatever
    /// the order they were added in.
    pub fn arrange(&mut self) -> Result<(), BuildError> {
        if self.arranged {
            return Ok(());
        }
        let Ids::Mapped { ids, .. } = &self.ids else {
            self.arranged = true;
            return Ok(());
        };
        let n = ids.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&row| ids[row as usize]);
        let sorted: Vec<u64> = order.iter().map(|&row| ids[row as usize]).collect();
        let Some(&max_id) = sorted.last() else {
            self.ids = Ids::Dense;
            self.set_all_present(0);
            return Ok(());
        };
        // Where each row goes.
        let mut target = vec![0usize; n];
        if dense_fits(max_id, n) {
            for (row, &id) in ids.iter().enumerate() {
                target[row] = id as usize;
            }
            let len = max_id as usize + 1;
            self.grow(max_id as u32)?;
            self.permute_rows(&target, len);
            self.present.fill(0);
            for &id in &sorted {
                self.present[id as usize / 64] |= 1 << (id % 64);
            }
            self.n_present = n;
            self.ids = Ids::Dense;
        } else {
            for (k, &row) in order.iter().enumerate() {
                target[row as usize] = k;
            }
            self.permute_rows(&target, n);
            let rows = sorted.iter().enumerate().map(|(row, &id)| (id, row as u32));
            self.ids = Ids::Mapped {
                rows: rows.collect(),
                ids: sorted,
            };
        }
        self.arranged = true;
        Ok(())
    }

    /// Moves row `r` to row `target[r]` for the first `target.len()` rows, in place, over `len`
    /// rows (the rest are zero rows, which fill the places no row moves to).
    fn permute_rows(&mut self, target: &[usize], len: usize) {
        let row_bytes = self.row_bytes_each();
        // A whole permutation of `0..len`: the zero rows go to the places left over.
        let mut to = Vec::with_capacity(len);
        to.extend_from_slice(target);
        let mut taken = vec![false; len];
        for &t in target {
            taken[t] = true;
        }
        to.extend((0..len).filter(|&t| !taken[t]));
        permute(
            &mut self.rows.bytes_mut()[..len * row_bytes],
            row_bytes,
            &to,
        );
        let stride = copse_format::item_code_stride(self.row_len);
        if let Some(given) = &mut self.given_codes {
            permute(&mut given.bytes_mut()[..len * stride], stride, &to);
        }
        if self.metric.stores_norms() {
            let mut norms = vec![0.0f32; len];
            for (row, &t) in target.iter().enumerate() {
                norms[t] = self.norms[row];
            }
            self.norms = norms;
        }
    }

    /// Checks that `vector` can be added as item `id` of a `metric` index with `element` rows
    /// (values in the type's range, a norm f32 can hold: what [`VectorStore::add`] checks),
    /// by adding it to a store of its own, which is then dropped. For callers that keep
    /// vectors to build from later (collections), so that a vector is refused when given.
    pub fn check_item(
        metric: Metric,
        element: Element,
        id: u64,
        vector: &[f32],
    ) -> Result<(), BuildError> {
        VectorStore::with_element(vector.len(), metric, element)?.add(id, vector)
    }

    /// Adds (or replaces) item `id`. For hamming, values above 0.5 are set bits, as in Annoy.
    pub fn add(&mut self, id: u64, vector: &[f32]) -> Result<(), BuildError> {
        if vector.len() != self.dims {
            return Err(BuildError::WrongDimensions {
                expected: self.dims,
                found: vector.len(),
            });
        }
        if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
            return Err(BuildError::NotFinite {
                id,
                position,
                value: vector[position],
            });
        }
        // Half rows: the item code of the vector as given, made before a row is taken (see
        // `given_codes`).
        let given_code = match self.given_codes {
            Some(_) => Some(code_record(self.metric, id, vector, self.row_len)?),
            None => None,
        };
        let rounded;
        let vector = match self.element {
            Element::F16 => {
                rounded = round_to::<f16>(id, vector, self.element)?;
                &rounded[..]
            }
            Element::Bf16 => {
                rounded = round_to::<bf16>(id, vector, self.element)?;
                &rounded[..]
            }
            Element::F32 | Element::Bits | Element::I8 => vector,
        };
        match self.element {
            Element::F32 | Element::F16 | Element::Bf16 => {
                // Checked before a row is taken, so a refused vector leaves no trace.
                let norm = if self.metric.stores_norms() {
                    Some(checked_norm(id, vector)?)
                } else {
                    None
                };
                let row = self.row_for(id)?;
                let (at, len) = (row as usize * self.row_len, self.row_len);
                match self.element {
                    Element::F16 => put_rounded::<f16>(self.halves_mut(), at, vector),
                    Element::Bf16 => put_rounded::<bf16>(self.halves_mut(), at, vector),
                    _ => self.floats_mut()[at..at + len].copy_from_slice(vector),
                }
                if let Some(norm) = norm {
                    self.norms[row as usize] = norm;
                }
                if let (Some(code), Some(given)) = (given_code, &mut self.given_codes) {
                    let at = row as usize * code.len();
                    given.bytes_mut()[at..at + code.len()].copy_from_slice(&code);
                }
                self.mark_present(row, id);
            }
            Element::I8 => self.add_codes(id, vector)?,
            Element::Bits => {
                let mut words = vec![0u64; self.row_len];
                for (i, &v) in vector.iter().enumerate() {
                    if v > 0.5 {
                        words[i / 64] |= 1 << (i % 64);
                    }
                }
                self.put_words(id, &words)?;
            }
        }
        Ok(())
    }

    /// Stores item `id` as an i8 code record (for angular, of its unit vector), and as its norm
    /// that of the stored row: what queries read.
    fn add_codes(&mut self, id: u64, vector: &[f32]) -> Result<(), BuildError> {
        let stride = self.element.row_bytes(self.row_len);
        let record = code_record(self.metric, id, vector, self.row_len)?;
        let norm = if self.metric.stores_norms() {
            Some(checked_norm(id, &decode_record(&record, self.row_len))?)
        } else {
            None
        };
        let row = self.row_for(id)?;
        let at = row as usize * stride;
        self.rows.bytes_mut()[at..at + stride].copy_from_slice(&record);
        if let Some(norm) = norm {
            self.norms[row as usize] = norm;
        }
        self.mark_present(row, id);
        Ok(())
    }

    /// Stores hamming item `id`'s words in its row.
    fn put_words(&mut self, id: u64, words: &[u64]) -> Result<(), BuildError> {
        let row = self.row_for(id)?;
        let (at, len) = (row as usize * self.row_len, self.row_len);
        self.words_mut()[at..at + len].copy_from_slice(words);
        self.mark_present(row, id);
        Ok(())
    }

    /// Adds (or replaces) hamming item `id` from packed words (bit `i` of the vector is bit
    /// `i % 64` of word `i / 64`). Bits at or beyond `dims` must be zero.
    pub fn add_bits(&mut self, id: u64, words: &[u64]) -> Result<(), BuildError> {
        if self.metric != Metric::Hamming {
            return Err(BuildError::BitsForFloatMetric(self.metric));
        }
        if words.len() != self.row_len {
            return Err(BuildError::WrongDimensions {
                expected: self.row_len,
                found: words.len(),
            });
        }
        let spare = self.row_len * 64 - self.dims;
        if spare > 0 && words[self.row_len - 1] >> (64 - spare) != 0 {
            return Err(BuildError::BitsBeyondDims {
                id,
                dims: self.dims,
            });
        }
        self.put_words(id, words)
    }

    /// Records that `row` holds item `id`.
    fn mark_present(&mut self, row: u32, id: u64) {
        self.max_id = self.max_id.max(Some(id));
        let (word, bit) = (row as usize / 64, row as usize % 64);
        if self.present[word] >> bit & 1 == 0 {
            self.present[word] |= 1 << bit;
            self.n_present += 1;
        }
    }

    /// Makes room for rows up to `row`, zero rows where new. Allocation failure is an error,
    /// not an abort.
    fn grow(&mut self, row: u32) -> Result<(), BuildError> {
        let n = row as usize + 1;
        if n <= self.n_items {
            return Ok(());
        }
        let too_large = || BuildError::OutOfMemory { id: row.into() };
        let bytes = n
            .checked_mul(self.element.row_bytes(self.row_len))
            .ok_or_else(too_large)?;
        self.rows.grow(bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::OutOfMemory => too_large(),
            _ => BuildError::Io(e),
        })?;
        if let Some(given) = &mut self.given_codes {
            let bytes = n
                .checked_mul(copse_format::item_code_stride(self.row_len))
                .ok_or_else(too_large)?;
            given.grow(bytes).map_err(|e| match e.kind() {
                std::io::ErrorKind::OutOfMemory => too_large(),
                _ => BuildError::Io(e),
            })?;
        }
        let oom = |_| too_large();
        if self.metric.stores_norms() {
            self.norms.try_reserve(n - self.norms.len()).map_err(oom)?;
            self.norms.resize(n, 0.0);
        }
        let words = n.div_ceil(64);
        self.present
            .try_reserve(words.saturating_sub(self.present.len()))
            .map_err(oom)?;
        self.present.resize(words, 0);
        self.n_items = n;
        Ok(())
    }

    fn floats_mut(&mut self) -> &mut [f32] {
        let len = self.rows_len();
        bytemuck::try_cast_slice_mut(&mut self.rows.bytes_mut()[..len]).unwrap_or(&mut [])
    }

    fn halves_mut(&mut self) -> &mut [u16] {
        let len = self.rows_len();
        bytemuck::try_cast_slice_mut(&mut self.rows.bytes_mut()[..len]).unwrap_or(&mut [])
    }

    fn words_mut(&mut self) -> &mut [u64] {
        let len = self.rows_len();
        bytemuck::try_cast_slice_mut(&mut self.rows.bytes_mut()[..len]).unwrap_or(&mut [])
    }

    /// The f32 rows (empty unless rows are stored as f32: see [`VectorStore::vector`]).
    pub fn rows(&self) -> Rows<'_> {
        let floats: &[f32] = match self.element {
            Element::F32 => bytemuck::try_cast_slice(self.row_bytes()).unwrap_or(&[]),
            _ => &[],
        };
        Rows::new(floats, self.row_len).unwrap_or(Rows::empty(self.row_len))
    }

    /// How rows are stored.
    pub fn element(&self) -> Element {
        self.element
    }

    /// True if the file keeps item codes beside the rows.
    pub fn keeps_codes(&self) -> bool {
        self.codes.is_some()
    }

    /// The width of the item codes the file keeps beside the rows, if any.
    pub fn code_width(&self) -> Option<CodeWidth> {
        self.codes
    }

    /// The item codes to keep beside half-precision rows: none, 8-bit or 4-bit (f32 rows of
    /// the metrics that score from codes always keep 8-bit codes; manhattan and hamming have
    /// none; i8 rows are codes). An error where the choice is not open.
    pub fn set_codes(&mut self, codes: Option<CodeWidth>) -> Result<(), BuildError> {
        let open =
            self.element.allows_codes(self.metric) && !self.element.requires_codes(self.metric);
        if codes != self.codes && !open {
            return Err(BuildError::CodesFixed {
                element: self.element,
                metric: self.metric,
            });
        }
        self.codes = codes;
        Ok(())
    }

    /// The vector in row `row` as f32, whatever the row type (exact: every stored value is
    /// an f32); `None` for hamming or a row out of range.
    pub fn vector(&self, row: u32) -> Option<Cow<'_, [f32]>> {
        fn widen<H: Half>(bytes: &[u8], row: usize, len: usize) -> Option<Cow<'static, [f32]>> {
            let halves: &[H] = bytemuck::try_cast_slice(bytes).ok()?;
            let start = row.checked_mul(len)?;
            let values = halves.get(start..start.checked_add(len)?)?;
            Some(Cow::Owned(values.iter().map(|h| h.widen()).collect()))
        }
        match self.element {
            Element::F32 => self.rows().row(row as usize).map(Cow::Borrowed),
            Element::F16 => widen::<f16>(self.row_bytes(), row as usize, self.row_len),
            Element::Bf16 => widen::<bf16>(self.row_bytes(), row as usize, self.row_len),
            Element::I8 => {
                let stride = self.element.row_bytes(self.row_len);
                let start = (row as usize).checked_mul(stride)?;
                let record = self.row_bytes().get(start..start.checked_add(stride)?)?;
                Some(Cow::Owned(decode_record(record, self.row_len)))
            }
            Element::Bits => None,
        }
    }

    /// Every row widened to f32 into `out` (`n_items * row_len` values), for builds that
    /// read rows as f32 many times (manhattan's graph).
    pub(crate) fn widen_rows_into(&self, out: &mut [f32]) {
        fn widen<H: Half>(bytes: &[u8], out: &mut [f32]) {
            let halves: &[H] = bytemuck::try_cast_slice(bytes).unwrap_or(&[]);
            for (o, h) in out.iter_mut().zip(halves) {
                *o = h.widen();
            }
        }
        match self.element {
            Element::F32 => {
                let rows = self.rows().as_slice();
                let n = rows.len().min(out.len());
                out[..n].copy_from_slice(&rows[..n]);
            }
            Element::F16 => widen::<f16>(self.row_bytes(), out),
            Element::Bf16 => widen::<bf16>(self.row_bytes(), out),
            Element::I8 => {
                let stride = self.element.row_bytes(self.row_len);
                let records = self.row_bytes().chunks_exact(stride);
                for (record, out) in records.zip(out.chunks_exact_mut(self.row_len)) {
                    copse_format::decode_item_code(record, out);
                }
            }
            Element::Bits => {}
        }
    }

    /// The packed rows (empty for f32 metrics).
    pub fn words(&self) -> &[u64] {
        match self.element {
            Element::Bits => bytemuck::try_cast_slice(self.row_bytes()).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Words per hamming row, or floats per f32 row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Norms (angular and dot; empty otherwise).
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// The present-ids bitmap.
    pub fn present_bitmap(&self) -> &[u64] {
        &self.present
    }

    /// The rows that hold items, ascending.
    pub fn present_ids(&self) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.n_present);
        for (w, &word) in self.present.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                ids.push((w * 64) as u32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        ids
    }

    /// The packed vector in row `row`, if in range.
    pub fn bits(&self, row: u32) -> Option<&[u64]> {
        let start = (row as usize).checked_mul(self.row_len)?;
        self.words().get(start..start + self.row_len)
    }
}

/// Moves rows `present[k]` of `bytes` (rows of `row_bytes`, `n_rows` of them) down to rows
/// `k`, in order, and zeroes the rows after them.
fn compact(bytes: &mut [u8], row_bytes: usize, present: &[u32], n_rows: usize) {
    for (to, &from) in present.iter().enumerate() {
        let (from, to) = (from as usize * row_bytes, to * row_bytes);
        if from != to {
            bytes.copy_within(from..from + row_bytes, to);
        }
    }
    bytes[present.len() * row_bytes..n_rows * row_bytes].fill(0);
}

/// Moves row `r` of `bytes` (rows of `row_bytes`) to row `to[r]`, in place, `to` a whole
/// permutation of the rows.
fn permute(bytes: &mut [u8], row_bytes: usize, to: &[usize]) {
    let len = to.len();
    let mut carry = vec![0u8; row_bytes];
    let mut done = vec![false; len];
    for start in 0..len {
        if done[start] || to[start] == start {
            continue;
        }
        carry.copy_from_slice(&bytes[start * row_bytes..][..row_bytes]);
        let mut at = start;
        loop {
            done[at] = true;
            let next = to[at];
            carry.swap_with_slice(&mut bytes[next * row_bytes..][..row_bytes]);
            at = next;
            if at == start {
                break;
            }
        }
    }
}

/// The 8-bit item-code record of `vector` (for angular, of its unit vector, by the norm an
/// f32 store computes for it): an int8 row, or the code of a half row's vector as given (what
/// an f32 index's build reads for the same vector).
fn code_record(
    metric: Metric,
    id: u64,
    vector: &[f32],
    row_len: usize,
) -> Result<Vec<u8>, BuildError> {
    let norm = if metric == Metric::Angular {
        checked_norm(id, vector)?
    } else {
        0.0
    };
    let mut record = Vec::new();
    let stride = copse_format::item_code_stride(row_len);
    record
        .try_reserve_exact(stride)
        .map_err(|_| BuildError::OutOfMemory { id })?;
    record.resize(stride, 0);
    copse_format::encode_item_code(metric, CodeWidth::Eight, vector, norm, &mut record);
    Ok(record)
}

/// The norm of item `id`'s `vector`, in the fixed order (the same on every CPU, and the one a
/// query computes); an f32 overflow of the squared norm (|v| near 1e19) is an error.
fn checked_norm(id: u64, vector: &[f32]) -> Result<f32, BuildError> {
    let squared = copse_distance::fixed::norm_squared(vector)?;
    if !squared.is_finite() {
        return Err(BuildError::NormOverflow { id });
    }
    Ok(copse_distance::fixed::norm_of_squared(squared))
}

/// The values an i8 code record of `row_len` codes stands for (see
/// [`copse_format::decode_item_code`]); zeros for a short record, which the store never holds.
fn decode_record(record: &[u8], row_len: usize) -> Vec<f32> {
    let mut values = vec![0.0; row_len];
    copse_format::decode_item_code(record, &mut values);
    values
}

/// `vector` rounded to the half type `H` and widened back: the values the row will hold. A
/// value beyond the type's range is an error naming it.
fn round_to<H: Half>(id: u64, vector: &[f32], element: Element) -> Result<Vec<f32>, BuildError> {
    let mut out = Vec::new();
    out.try_reserve_exact(vector.len())
        .map_err(|_| BuildError::OutOfMemory { id })?;
    for (position, &value) in vector.iter().enumerate() {
        let widened = H::round(value).widen();
        if !widened.is_finite() {
            return Err(BuildError::OutOfRange {
                id,
                position,
                value,
                element,
                largest: largest_finite::<H>(),
            });
        }
        out.push(widened);
    }
    Ok(out)
}

/// The largest finite value of `H`.
fn largest_finite<H: Half>() -> f32 {
    match H::KIND {
        copse_distance::HalfKind::F16 => f16::MAX.to_f32(),
        copse_distance::HalfKind::Bf16 => bf16::MAX.to_f32(),
    }
}

/// Stores the (already rounded) `values` as `H` from element `at` of `halves`.
fn put_rounded<H: Half>(halves: &mut [u16], at: usize, values: &[f32]) {
    if let Some(cells) = halves.get_mut(at..at + values.len()) {
        for (cell, &v) in cells.iter_mut().zip(values) {
            *cell = bytemuck::cast(H::round(v));
        }
    }
}
