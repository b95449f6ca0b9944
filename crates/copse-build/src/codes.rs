//! The build's working copy of the item vectors: each row quantized to i8 with its own scale.
//!
//! Building reads every row once per tree level and samples rows at random for two-means. With
//! f32 rows that traffic exceeds what memory delivers (GloVe 400k x 50: 1 GB per tree); a
//! quarter-size copy mostly stays in the last-level cache. Splits only need to separate items,
//! not to place each one exactly, so the quantization error (at most half a step of
//! `max|x| / 127` per coordinate) does not matter: the hyperplanes still come out of two-means,
//! and each item is assigned to the side its quantized row falls on.

use copse_distance::Rows;

/// Quantized rows, `dims` codes per row, in memory advised to use huge pages.
pub(crate) struct RowCodes {
    codes: Codes,
    scales: Vec<f32>,
    dims: usize,
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
        let len = rows.as_slice().len();
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
        if dims > 0 {
            for (row, code) in rows
                .as_slice()
                .chunks_exact(dims)
                .zip(out.chunks_exact_mut(dims))
            {
                let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
                let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                for (c, x) in code.iter_mut().zip(row) {
                    *c = (x * inverse).round().clamp(-127.0, 127.0) as i8;
                }
                scales.push(scale);
            }
        }
        RowCodes {
            codes,
            scales,
            dims,
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
            dims: self.dims,
        }
    }
}

/// Borrowed quantized rows.
#[derive(Clone, Copy)]
pub(crate) struct CodesView<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    dims: usize,
}

impl<'a> CodesView<'a> {
    /// Row `id`'s codes and scale (`x ~ codes * scale`).
    #[inline(always)]
    pub(crate) fn row(&self, id: u32) -> Option<(&'a [i8], f32)> {
        let scale = *self.scales.get(id as usize)?;
        let start = (id as usize).checked_mul(self.dims)?;
        Some((self.codes.get(start..start + self.dims)?, scale))
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
        let start = (id as usize).saturating_mul(self.dims);
        if let Some(codes) = self.codes.get(start..) {
            copse_distance::prefetch(codes);
            if self.dims > 64 {
                copse_distance::prefetch(&codes[64.min(codes.len())..]);
            }
        }
        if let Some(scale) = self.scales.get(id as usize..) {
            copse_distance::prefetch(scale);
        }
    }
}
