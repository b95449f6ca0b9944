//! The build's working copy of the item vectors: each row quantized to i8 with its own scale.
//!
//! Building reads every row once per tree level and samples rows at random for two-means. With
//! f32 rows that traffic exceeds what memory delivers (GloVe 400k x 50: 1 GB per tree); a
//! quarter-size copy mostly stays in the last-level cache. Splits only need to separate items,
//! not to place each one exactly, so the quantization error (at most half a step of
//! `max|x| / 127` per coordinate) does not matter: the hyperplanes still come out of two-means,
//! and each item is assigned to the side its quantized row falls on.

use copse_distance::Rows;

/// Quantized rows in memory advised to use huge pages: `stride` codes per row, the first
/// `dims` of them the row's, the rest zero, so dot products run in whole 16-code steps.
pub(crate) struct RowCodes {
    codes: Codes,
    scales: Vec<f32>,
    /// Squared norm of each quantized row.
    squares: Vec<f32>,
    stride: usize,
}

/// Row length of the codes for `dims` dimensions: a whole number of 16-code steps.
pub(crate) fn code_stride(dims: usize) -> usize {
    dims.next_multiple_of(16)
}

enum Codes {
    Huge(memmap2::MmapMut),
    Heap(Vec<i8>),
}

/// Smaller copies gain nothing from huge pages.
const HUGE_PAGE: usize = 2 << 20;

impl RowCodes {
    /// Quantizes every row of `rows`.
    pub(crate) fn new(rows: Rows<'_>) -> RowCodes {
        let dims = rows.dims();
        let stride = code_stride(dims);
        let len = rows.len() * stride;
        let mut codes = match memmap2::MmapMut::map_anon(len) {
            Ok(map) if len >= HUGE_PAGE => {
                // Advice only: without huge pages the copy works the same, just slower.
                let _ = map.advise(memmap2::Advice::HugePage);
                Codes::Huge(map)
            }
            _ => Codes::Heap(vec![0; len]),
        };
        let out: &mut [i8] = match &mut codes {
            Codes::Huge(map) => bytemuck::cast_slice_mut(&mut map[..]),
            Codes::Heap(v) => v,
        };
        let mut scales = Vec::with_capacity(rows.len());
        let mut squares = Vec::with_capacity(rows.len());
        if dims > 0 {
            for (row, code) in rows
                .as_slice()
                .chunks_exact(dims)
                .zip(out.chunks_exact_mut(stride))
            {
                let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
                let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let mut sum = 0.0f32;
                for (c, x) in code.iter_mut().zip(row) {
                    *c = copse_distance::quantize_i8(x * inverse);
                    sum += f32::from(*c) * f32::from(*c);
                }
                scales.push(scale);
                squares.push(sum * scale * scale);
            }
        }
        RowCodes {
            codes,
            scales,
            squares,
            stride,
        }
    }

    /// A borrowed view.
    pub(crate) fn view(&self) -> CodesView<'_> {
        CodesView {
            codes: match &self.codes {
                Codes::Huge(map) => bytemuck::cast_slice(&map[..]),
                Codes::Heap(v) => v,
            },
            scales: &self.scales,
            squares: &self.squares,
            stride: self.stride,
        }
    }
}

/// Borrowed quantized rows.
#[derive(Clone, Copy)]
pub(crate) struct CodesView<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    squares: &'a [f32],
    stride: usize,
}

impl<'a> CodesView<'a> {
    /// Row `id`'s codes (with the zero padding, [`code_stride`] long) and scale
    /// (`x ~ codes * scale`).
    #[inline(always)]
    pub(crate) fn row(&self, id: u32) -> Option<(&'a [i8], f32)> {
        let scale = *self.scales.get(id as usize)?;
        let start = (id as usize).checked_mul(self.stride)?;
        Some((self.codes.get(start..start + self.stride)?, scale))
    }

    /// Squared norm of quantized row `id` (0 if out of range).
    #[inline(always)]
    pub(crate) fn squared_norm(&self, id: u32) -> f32 {
        self.squares.get(id as usize).copied().unwrap_or(0.0)
    }

    /// Codes per row (the dimensions rounded up to a whole number of 16-code steps).
    #[inline(always)]
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Row `id` dequantized into `out` (`dims` long); false if out of range.
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

    /// Starts loading row `id`.
    #[inline(always)]
    pub(crate) fn prefetch(&self, id: u32) {
        let start = (id as usize).saturating_mul(self.stride);
        if let Some(codes) = self.codes.get(start..) {
            copse_distance::prefetch(codes);
            if self.stride > 64 {
                copse_distance::prefetch(&codes[64.min(codes.len())..]);
            }
        }
        if let Some(scale) = self.scales.get(id as usize..) {
            copse_distance::prefetch(scale);
        }
        if let Some(square) = self.squares.get(id as usize..) {
            copse_distance::prefetch(square);
        }
    }
}
