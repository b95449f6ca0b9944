//! The vectors added before a build: rows indexed by item id, a bitmap of which ids were added,
//! and (for angular and dot) each item's norm. Ids never added are holes: zero rows, bit clear.
//!
//! Rows live in memory, or (for on-disk builds, Annoy's `on_disk_build`) in a file mapping at
//! the offset where the finished index will hold its items section, so the build never copies
//! the vector data and never holds it in anonymous memory.

use std::fs::File;

use copse_distance::Rows;
use copse_format::{Element, Metric};

use crate::BuildError;

/// Item vectors by id, in memory or in a file.
#[derive(Debug)]
pub struct VectorStore {
    metric: Metric,
    dims: usize,
    row_len: usize,
    /// The rows, `n_items * row_len` elements (f32, or u64 words for hamming).
    rows: RowBuffer,
    /// Norm of each row (angular and dot), `n_items`.
    norms: Vec<f32>,
    /// Bit `id` set if `id` was added.
    present: Vec<u64>,
    n_items: usize,
    n_present: usize,
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
        if dims == 0 {
            return Err(BuildError::ZeroDimensions);
        }
        if u32::try_from(dims).is_err() {
            return Err(BuildError::TooLarge(format!("{dims} dimensions")));
        }
        Ok(VectorStore {
            metric,
            dims,
            row_len: metric.row_len(dims),
            rows: RowBuffer::Memory(Vec::new()),
            norms: Vec::new(),
            present: Vec::new(),
            n_items: 0,
            n_present: 0,
        })
    }

    /// Moves the rows into `file` from byte `offset` on (where the finished index's items
    /// section will start), keeping every item added so far. Rows added later go to the file.
    pub fn move_to_file(&mut self, file: File, offset: u64) -> Result<(), BuildError> {
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
        self.rows = rows;
        Ok(())
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
        self.n_items * self.row_len * self.metric.element().size()
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

    /// Largest id added plus one.
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Number of distinct ids added.
    pub fn n_present(&self) -> usize {
        self.n_present
    }

    /// True if `id` was added.
    pub fn is_present(&self, id: u32) -> bool {
        let id = id as usize;
        self.present
            .get(id / 64)
            .is_some_and(|w| w >> (id % 64) & 1 == 1)
    }

    /// Adds (or replaces) item `id`. For hamming, values above 0.5 are set bits, as in Annoy.
    pub fn add(&mut self, id: u32, vector: &[f32]) -> Result<(), BuildError> {
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
        match self.metric.element() {
            Element::F32 => {
                self.grow(id)?;
                let (row, len) = (id as usize * self.row_len, self.row_len);
                self.floats_mut()[row..row + len].copy_from_slice(vector);
                if self.metric.stores_norms() {
                    // Fixed order: the same norm on every CPU, and the one queries compute.
                    let squared = copse_distance::fixed::norm_squared(vector)?;
                    // f32 overflow of the squared norm (|v| near 1e19) is reported, not stored.
                    if !squared.is_finite() {
                        return Err(BuildError::NormOverflow { id });
                    }
                    self.norms[id as usize] = copse_distance::fixed::norm_of_squared(squared);
                }
            }
            Element::Bits => {
                let mut words = vec![0u64; self.row_len];
                for (i, &v) in vector.iter().enumerate() {
                    if v > 0.5 {
                        words[i / 64] |= 1 << (i % 64);
                    }
                }
                self.grow(id)?;
                let (row, len) = (id as usize * self.row_len, self.row_len);
                self.words_mut()[row..row + len].copy_from_slice(&words);
            }
        }
        self.mark_present(id);
        Ok(())
    }

    /// Adds (or replaces) hamming item `id` from packed words (bit `i` of the vector is bit
    /// `i % 64` of word `i / 64`). Bits at or beyond `dims` must be zero.
    pub fn add_bits(&mut self, id: u32, words: &[u64]) -> Result<(), BuildError> {
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
        self.grow(id)?;
        let (row, len) = (id as usize * self.row_len, self.row_len);
        self.words_mut()[row..row + len].copy_from_slice(words);
        self.mark_present(id);
        Ok(())
    }

    fn mark_present(&mut self, id: u32) {
        let (word, bit) = (id as usize / 64, id as usize % 64);
        if self.present[word] >> bit & 1 == 0 {
            self.present[word] |= 1 << bit;
            self.n_present += 1;
        }
    }

    /// Makes room for ids up to `id`, with zero rows for the holes. Allocation failure is an
    /// error, not an abort.
    fn grow(&mut self, id: u32) -> Result<(), BuildError> {
        let n = id as usize + 1;
        if n <= self.n_items {
            return Ok(());
        }
        let too_large = || BuildError::OutOfMemory { id };
        let bytes = n
            .checked_mul(self.row_len)
            .and_then(|cells| cells.checked_mul(self.metric.element().size()))
            .ok_or_else(too_large)?;
        self.rows.grow(bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::OutOfMemory => too_large(),
            _ => BuildError::Io(e),
        })?;
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

    fn words_mut(&mut self) -> &mut [u64] {
        let len = self.rows_len();
        bytemuck::try_cast_slice_mut(&mut self.rows.bytes_mut()[..len]).unwrap_or(&mut [])
    }

    /// The f32 rows (empty for hamming).
    pub fn rows(&self) -> Rows<'_> {
        let floats: &[f32] = match self.metric.element() {
            Element::F32 => bytemuck::try_cast_slice(self.row_bytes()).unwrap_or(&[]),
            Element::Bits => &[],
        };
        Rows::new(floats, self.row_len).unwrap_or(Rows::empty(self.row_len))
    }

    /// The packed rows (empty for f32 metrics).
    pub fn words(&self) -> &[u64] {
        match self.metric.element() {
            Element::Bits => bytemuck::try_cast_slice(self.row_bytes()).unwrap_or(&[]),
            Element::F32 => &[],
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

    /// The ids that were added, ascending.
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

    /// The f32 row of `id`, if in range.
    pub fn row(&self, id: u32) -> Option<&[f32]> {
        self.rows().row(id as usize)
    }

    /// The packed row of `id`, if in range.
    pub fn bits(&self, id: u32) -> Option<&[u64]> {
        let start = (id as usize).checked_mul(self.row_len)?;
        self.words().get(start..start + self.row_len)
    }
}
