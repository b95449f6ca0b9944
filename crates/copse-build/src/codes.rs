//! The build's working copy of the item vectors: the item codes the file stores for fast
//! approximate scoring, each row quantized to i8 with its own scale, one record (scale, sum of
//! squared codes, codes, zero padding) per item; 64 bytes, one cache line, for 50 dimensions.
//!
//! Building reads every row once per tree level and samples rows at random for two-means. With
//! f32 rows that traffic exceeds what memory delivers (GloVe 400k x 50: 1 GB per tree); the
//! quarter-size records mostly stay in the last-level cache. Splits only need to separate items,
//! not to place each one exactly, so the quantization error (at most half a step of
//! `max|x| / 127` per coordinate) does not matter: the hyperplanes still come out of two-means,
//! and each item is assigned to the side its quantized row falls on. For angular the codes hold
//! the unit vector, which changes no side (a positive scale) and is what two-means uses anyway.

use copse_format::{CodeWidth, Element, Metric};
use rayon::prelude::*;

use crate::{BuildError, VectorStore};

/// Encodes every item of `store` as item-code records of `width`, in parallel, into memory
/// advised to use huge pages when large: the 8-bit codes the build reads, or the 4-bit ones a
/// file keeps instead ([`section_len`]).
pub(crate) fn encode(store: &VectorStore, width: CodeWidth) -> Result<ItemCodes, BuildError> {
    let len = encoded_len(store, width);
    let mut bytes = match memmap2::MmapMut::map_anon(len.max(1)) {
        Ok(map) if len >= HUGE_PAGE => {
            // Advice only: without huge pages the codes work the same, just slower.
            let _ = map.advise(memmap2::Advice::HugePage);
            Bytes::Anonymous(map)
        }
        _ => Bytes::Heap(vec![0; len]),
    };
    encode_into(store, width, &mut bytes.as_mut()[..len]);
    Ok(ItemCodes {
        bytes,
        len,
        stride: width.stride(store.row_len()),
    })
}

/// Encodes every item of `store` into a shared mapping of `file` at `offset` (extending the
/// file as needed): for on-disk builds, where the codes must not live in anonymous memory.
pub(crate) fn encode_to_file(
    store: &VectorStore,
    width: CodeWidth,
    file: &std::fs::File,
    offset: u64,
) -> Result<ItemCodes, BuildError> {
    let len = encoded_len(store, width);
    let stride = width.stride(store.row_len());
    if len == 0 {
        return Ok(ItemCodes {
            bytes: Bytes::Heap(Vec::new()),
            len,
            stride,
        });
    }
    let end = offset + len as u64;
    if file.metadata().map_err(BuildError::Io)?.len() < end {
        file.set_len(end).map_err(BuildError::Io)?;
    }
    // SAFETY: the file is the on-disk build's own temporary file (or spill file), not yet
    // visible under its final name, and this is the only mapping of the range
    // `offset..offset + len` (the rows' mapping ends before it).
    let mut map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_mut(file)
            .map_err(BuildError::Io)?
    };
    encode_into(store, width, &mut map);
    Ok(ItemCodes {
        bytes: Bytes::File(map),
        len,
        stride,
    })
}

/// Bytes of the file's item-codes section (of [`VectorStore::code_width`]; 0 without one).
pub(crate) fn section_len(store: &VectorStore) -> usize {
    store
        .code_width()
        .map_or(0, |width| store.n_items() * width.stride(store.row_len()))
}

/// Bytes of codes of `width` for every item of `store`: 0 for hamming, which builds on its bits
/// directly, and for int8 rows, which are the records already ([`ItemCodes::view`] reads them).
fn encoded_len(store: &VectorStore, width: CodeWidth) -> usize {
    match (store.metric(), store.element()) {
        (Metric::Hamming, _) | (_, Element::I8) => 0,
        // Half rows: the 8-bit codes of the vectors as given are the store's already.
        _ if width == CodeWidth::Eight && store.given_codes().is_some() => 0,
        _ => store.n_items() * width.stride(store.row_len()),
    }
}

fn encode_into(store: &VectorStore, width: CodeWidth, out: &mut [u8]) {
    let metric = store.metric();
    let stride = width.stride(store.row_len());
    if out.is_empty() || stride == 0 {
        return;
    }
    let norms = store.norms();
    out.par_chunks_mut(stride)
        .enumerate()
        .for_each(|(id, record)| {
            let row = store.vector(id as u32).unwrap_or_default();
            let norm = norms.get(id).copied().unwrap_or(0.0);
            copse_format::encode_item_code(metric, width, &row, norm, record);
        });
}

/// Smaller buffers gain nothing from huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// Item code records for every item.
pub(crate) struct ItemCodes {
    bytes: Bytes,
    len: usize,
    stride: usize,
}

enum Bytes {
    Anonymous(memmap2::MmapMut),
    /// A mapping of the on-disk build's file.
    File(memmap2::MmapMut),
    Heap(Vec<u8>),
}

impl Bytes {
    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            Bytes::Anonymous(map) | Bytes::File(map) => map,
            Bytes::Heap(v) => v,
        }
    }

    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Anonymous(map) | Bytes::File(map) => map,
            Bytes::Heap(v) => v,
        }
    }
}

impl ItemCodes {
    /// The section's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes.as_ref()[..self.len]
    }

    /// Makes sure codes in a file mapping reach the file.
    pub(crate) fn flush(&self) -> Result<(), BuildError> {
        if let Bytes::File(map) = &self.bytes {
            map.flush().map_err(BuildError::Io)?;
        }
        Ok(())
    }

    /// A borrowed view of the records of `store`'s items: the encoded ones, or int8 rows
    /// themselves (the same records; see [`encoded_len`]).
    pub(crate) fn view<'a>(&'a self, store: &'a VectorStore) -> CodesView<'a> {
        let bytes = if store.element() == Element::I8 {
            store.row_bytes()
        } else if let Some(given) = store.given_codes() {
            given
        } else {
            self.as_bytes()
        };
        CodesView {
            bytes,
            stride: self.stride,
        }
    }
}

/// Borrowed item code records.
#[derive(Clone, Copy)]
pub(crate) struct CodesView<'a> {
    bytes: &'a [u8],
    stride: usize,
}

/// Bytes before the codes in a record: scale and sum of squared codes.
const HEADER: usize = 8;

impl<'a> CodesView<'a> {
    /// Every record.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes per record.
    #[inline(always)]
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Item `id`'s whole record as i8 (header included) and its scale.
    #[inline(always)]
    pub(crate) fn record_and_scale(&self, id: u32) -> Option<(&'a [i8], f32)> {
        let start = (id as usize).checked_mul(self.stride)?;
        let record = self.bytes.get(start..start.checked_add(self.stride)?)?;
        let scale = f32::from_le_bytes(record[..4].try_into().ok()?);
        Some((bytemuck::cast_slice(record), scale))
    }

    /// Codes per record, padding included: the unit the kernels run over. A hyperplane's
    /// quantized normal is padded to this length with zeros.
    #[inline(always)]
    pub(crate) fn padded_len(&self) -> usize {
        self.stride - HEADER
    }

    /// Row `id`'s codes (zero padding included) and scale (`x ~ codes * scale`).
    #[inline(always)]
    pub(crate) fn row(&self, id: u32) -> Option<(&'a [i8], f32)> {
        let start = (id as usize).checked_mul(self.stride)?;
        let record = self.bytes.get(start..start.checked_add(self.stride)?)?;
        let scale = f32::from_le_bytes(record[..4].try_into().ok()?);
        Some((bytemuck::cast_slice(&record[HEADER..]), scale))
    }

    /// Squared norm of quantized row `id` (0 if out of range).
    #[inline(always)]
    pub(crate) fn squared_norm(&self, id: u32) -> f32 {
        let start = (id as usize).saturating_mul(self.stride);
        let Some(header) = self.bytes.get(start..start + HEADER) else {
            return 0.0;
        };
        let scale = f32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let squares = f32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        squares * scale * scale
    }

    /// Row `id` dequantized into `out` (up to `out.len()` values); false if out of range.
    #[inline(always)]
    pub(crate) fn decode(&self, id: u32, out: &mut [f32]) -> bool {
        let Some((codes, scale)) = self.row(id) else {
            return false;
        };
        for (o, c) in out.iter_mut().zip(codes) {
            *o = f32::from(*c) * scale;
        }
        true
    }

    /// Starts loading row `id`'s record (every cache line of it).
    #[inline(always)]
    pub(crate) fn prefetch(&self, id: u32) {
        let start = (id as usize).saturating_mul(self.stride);
        if let Some(record) = self.bytes.get(start..start.saturating_add(self.stride)) {
            copse_distance::prefetch_lines(record);
        }
    }
}
