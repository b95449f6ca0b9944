//! The vectors added before a build: rows indexed by item id, a bitmap of which ids were added,
//! and (for angular and dot) each item's norm. Ids never added are holes: zero rows, bit clear.

use copse_distance::Rows;
use copse_format::{Element, Metric};

use crate::BuildError;

/// Item vectors in memory, by id.
#[derive(Debug, Clone)]
pub struct VectorStore {
    metric: Metric,
    dims: usize,
    row_len: usize,
    /// f32 rows (f32 metrics), `n_items * row_len`.
    floats: Vec<f32>,
    /// Packed rows (hamming), `n_items * row_len`.
    words: Vec<u64>,
    /// Norm of each row (angular and dot), `n_items`.
    norms: Vec<f32>,
    /// Bit `id` set if `id` was added.
    present: Vec<u64>,
    n_items: usize,
    n_present: usize,
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
            floats: Vec::new(),
            words: Vec::new(),
            norms: Vec::new(),
            present: Vec::new(),
            n_items: 0,
            n_present: 0,
        })
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
                let row = id as usize * self.row_len;
                self.floats[row..row + self.row_len].copy_from_slice(vector);
                if self.metric.stores_norms() {
                    let norm = f64::from(copse_distance::norm_squared(vector).unwrap_or(0.0));
                    // f32 overflow of the squared norm (|v| near 1e19) is reported, not stored.
                    if !norm.is_finite() {
                        return Err(BuildError::NormOverflow { id });
                    }
                    self.norms[id as usize] = norm.sqrt() as f32;
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
                let row = id as usize * self.row_len;
                self.words[row..row + self.row_len].copy_from_slice(&words);
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
        let row = id as usize * self.row_len;
        self.words[row..row + self.row_len].copy_from_slice(words);
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
        let cells = n.checked_mul(self.row_len).ok_or_else(too_large)?;
        let oom = |_| too_large();
        match self.metric.element() {
            Element::F32 => {
                self.floats
                    .try_reserve(cells - self.floats.len())
                    .map_err(oom)?;
                self.floats.resize(cells, 0.0);
            }
            Element::Bits => {
                self.words
                    .try_reserve(cells - self.words.len())
                    .map_err(oom)?;
                self.words.resize(cells, 0);
            }
        }
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

    /// The f32 rows (empty for hamming).
    pub fn rows(&self) -> Rows<'_> {
        Rows::new(&self.floats, self.row_len).unwrap_or(Rows::empty(self.row_len))
    }

    /// The packed rows (empty for f32 metrics).
    pub fn words(&self) -> &[u64] {
        &self.words
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
        self.words.get(start..start + self.row_len)
    }
}
