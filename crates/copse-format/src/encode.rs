//! Encoding the packed sections: leaf ids in `id_bits` bits, and the quantized item codes.

use crate::{CodeWidth, Metric};

/// Appends `ids` packed `bits` bits each, little-endian bit order, to `out`, which must start
/// the tree at a byte boundary. Writes exactly `packed_ids_len(ids.len(), bits)` bytes.
pub fn pack_ids(ids: &[u32], bits: u32, out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mask = (1u64 << bits) - 1;
    for &id in ids {
        acc |= (u64::from(id) & mask) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
}

/// The first `n` ids packed by [`pack_ids`] in `bytes` with `bits` bits each (ids past the end
/// of `bytes` come out as 0).
pub fn unpack_ids(bytes: &[u8], bits: u32, n: usize) -> Vec<u32> {
    let mask = (1u64 << bits) - 1;
    let mut ids = Vec::with_capacity(n);
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mut next = bytes.iter();
    for _ in 0..n {
        while filled < bits {
            acc |= u64::from(next.next().copied().unwrap_or(0)) << filled;
            filled += 8;
        }
        ids.push((acc & mask) as u32);
        acc >>= bits;
        filled -= bits;
    }
    ids
}

/// Writes the item-code record of one item, codes of `width`, into `out`
/// (`width.stride(row.len())` bytes): angular codes the unit vector (`norm` is the row's
/// euclidean norm), euclidean and dot the row itself. A zero row gives scale 0. 4-bit codes are
/// stored plus 8 (`1..=15`; a zero row's are all 8, value 0), packed in
/// [`copse_distance::NIBBLE_GROUP`]s (see [`code_values`]); nibbles past the row are 0.
pub fn encode_item_code(metric: Metric, width: CodeWidth, row: &[f32], norm: f32, out: &mut [u8]) {
    let stride = width.stride(row.len());
    let out = &mut out[..stride];
    out.fill(0);
    let divide = if metric == Metric::Angular && norm > 0.0 {
        norm
    } else {
        1.0
    };
    if width == CodeWidth::Four {
        // Every code 0 (stored as 8) to start with: what a zero row keeps.
        for i in 0..row.len() {
            let (byte, shift) = nibble_place(i);
            out[8 + byte] |= 8 << shift;
        }
    }
    let max = row.iter().fold(0.0f32, |m, x| m.max((x / divide).abs()));
    if max.partial_cmp(&0.0) != Some(core::cmp::Ordering::Greater) {
        return;
    }
    let scale = match width {
        CodeWidth::Eight => max / width.levels(),
        CodeWidth::Four => nibble_scale(row, divide, max),
    };
    let mut squares = 0.0f32;
    let codes = &mut out[8..8 + width.codes_len(row.len())];
    for (i, x) in row.iter().enumerate() {
        let value = x / divide / scale;
        let code = match width {
            CodeWidth::Eight => {
                let code = copse_distance::quantize_i8(value);
                codes[i] = code as u8;
                code
            }
            CodeWidth::Four => {
                let code = copse_distance::quantize_i4(value);
                let (byte, shift) = nibble_place(i);
                codes[byte] = (codes[byte] & !(15 << shift)) | ((code + 8) as u8) << shift;
                code
            }
        };
        squares += f32::from(code) * f32::from(code);
    }
    out[0..4].copy_from_slice(&scale.to_le_bytes());
    out[4..8].copy_from_slice(&squares.to_le_bytes());
}

/// The scale of a row's 4-bit codes: of `max / 7 × f` for `f` = 1, 0.95, ..., 0.5, the one
/// with the least squared error over the row (the first of equals). With 15 levels, scaling to
/// the largest value spends most of them on a range few coordinates use; clipping the few
/// largest values to shrink every step measured 29% less squared error and better ranking
/// than `max / 7` on 384-d embeddings (`docs/performance.md`, "4-bit codes"). 8-bit codes
/// keep `max / 127`: their steps are fine enough that clipping only lost recall.
fn nibble_scale(row: &[f32], divide: f32, max: f32) -> f32 {
    let mut best = (f32::INFINITY, max / 7.0);
    for step in 0..=10u8 {
        let scale = max / 7.0 * (1.0 - 0.05 * f32::from(step));
        let error: f32 = row
            .iter()
            .map(|x| {
                let value = x / divide;
                let miss = value - f32::from(copse_distance::quantize_i4(value / scale)) * scale;
                miss * miss
            })
            .sum();
        if error < best.0 {
            best = (error, scale);
        }
    }
    best.1
}

/// The byte and bit shift of dimension `i`'s nibble in 4-bit codes: in its group of 64, byte
/// `j` holds dimension `j` low and `32 + j` high.
#[inline(always)]
fn nibble_place(i: usize) -> (usize, u32) {
    let group = copse_distance::NIBBLE_GROUP;
    let within = i % group;
    let byte = i / group * (group / 2) + within % (group / 2);
    (byte, if within < group / 2 { 0 } else { 4 })
}

/// The first `row_len` signed codes of a record's code bytes `codes` of `width` (4-bit codes
/// unpacked and unbiased); codes past the end of `codes` come out as 0.
pub fn code_values(
    width: CodeWidth,
    codes: &[u8],
    row_len: usize,
) -> impl Iterator<Item = i8> + '_ {
    (0..row_len).map(move |i| match width {
        CodeWidth::Eight => codes.get(i).map_or(0, |&c| c as i8),
        CodeWidth::Four => {
            let (byte, shift) = nibble_place(i);
            codes
                .get(byte)
                .map_or(0, |&c| ((c >> shift) & 15) as i8 - 8)
        }
    })
}

/// The values an item-code record stands for, into `out` (one a code, `out.len()` codes):
/// each code times the record's scale, rounded to f32, as the query kernels compute them (the
/// stored values of an int8 row). False, with `out` untouched, if the record is too short.
pub fn decode_item_code(record: &[u8], out: &mut [f32]) -> bool {
    let (Some(scale), Some(codes)) = (record.get(0..4), record.get(8..8 + out.len())) else {
        return false;
    };
    let scale = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = f32::from(c as i8) * scale;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_code_stride;

    #[test]
    fn packed_ids_round_trip_at_every_width() {
        for bits in 1..=32u32 {
            let max = if bits == 32 {
                u32::MAX
            } else {
                (1u32 << bits) - 1
            };
            let ids: Vec<u32> = (0..100u32)
                .map(|i| (i.wrapping_mul(2_654_435_761)) & max)
                .collect();
            let mut out = Vec::new();
            pack_ids(&ids, bits, &mut out);
            assert_eq!(
                out.len() as u64,
                crate::packed_ids_len(ids.len() as u64, bits).unwrap()
            );
            assert_eq!(unpack_ids(&out, bits, ids.len()), ids, "bits={bits}");
            out.extend([0u8; 8]);
            for (i, &id) in ids.iter().enumerate() {
                let bit = i as u64 * u64::from(bits);
                let byte = (bit / 8) as usize;
                let word = u64::from_le_bytes(out[byte..byte + 8].try_into().unwrap());
                let got = (word >> (bit % 8)) & ((1u64 << bits) - 1);
                assert_eq!(got as u32, id, "bits={bits} i={i}");
            }
        }
    }

    #[test]
    fn item_codes_approximate_the_row() {
        let row: Vec<f32> = (0..50)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        for metric in [Metric::Euclidean, Metric::Angular] {
            let mut out = vec![0u8; item_code_stride(row.len())];
            encode_item_code(metric, CodeWidth::Eight, &row, norm, &mut out);
            let scale = f32::from_le_bytes(out[0..4].try_into().unwrap());
            let divide = if metric == Metric::Angular { norm } else { 1.0 };
            for (x, &c) in row.iter().zip(&out[8..58]) {
                // Rounding error is at most half a step.
                assert!((x / divide - f32::from(c as i8) * scale).abs() <= scale / 2.0 + 1e-6);
            }
        }
        let mut out = vec![1u8; item_code_stride(3)];
        encode_item_code(Metric::Dot, CodeWidth::Eight, &[0.0; 3], 0.0, &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn four_bit_codes_approximate_the_row_and_unpack() {
        for dims in [1usize, 31, 32, 33, 50, 64, 65, 100, 384] {
            let row: Vec<f32> = (0..dims)
                .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            let width = CodeWidth::Four;
            let mut out = vec![0xAAu8; width.stride(dims)];
            encode_item_code(Metric::Euclidean, width, &row, norm, &mut out);
            let scale = f32::from_le_bytes(out[0..4].try_into().unwrap());
            let squares = f32::from_le_bytes(out[4..8].try_into().unwrap());
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(
                scale <= max / 7.0 && scale >= max / 7.0 * 0.49,
                "dims={dims}"
            );
            let codes: Vec<i8> = code_values(width, &out[8..], dims).collect();
            let mut sum = 0.0f32;
            let (mut error, mut unclipped_error) = (0.0f64, 0.0f64);
            for (x, &c) in row.iter().zip(&codes) {
                assert!((-7..=7).contains(&c));
                // Each value rounds to its nearest code, or to ±7 where clipped.
                let miss = (x - f32::from(c) * scale).abs();
                assert!(miss <= scale / 2.0 + 1e-5 || c.abs() == 7, "dims={dims}");
                sum += f32::from(c) * f32::from(c);
                error += f64::from(miss).powi(2);
                // The squared error of the plain max / 7 scale, in f64: the chosen scale is
                // no worse.
                let step = f64::from(max) / 7.0;
                let plain = (f64::from(*x) / step).round().clamp(-7.0, 7.0) * step;
                unclipped_error += (f64::from(*x) - plain).powi(2);
            }
            assert!(
                error <= unclipped_error * (1.0 + 1e-4) + 1e-9,
                "dims={dims}"
            );
            assert_eq!(sum, squares);
            // Every nibble placed where the layout says: group g, byte j holds dimensions
            // 64 g + j (low) and 64 g + 32 + j (high); nibbles past the row are zero.
            for (byte, &b) in out[8..8 + width.codes_len(dims)].iter().enumerate() {
                let (g, j) = (byte / 32, byte % 32);
                for (nibble, dim) in [(b & 15, g * 64 + j), (b >> 4, g * 64 + 32 + j)] {
                    let want = codes.get(dim).map_or(0, |&c| (c + 8) as u8);
                    assert_eq!(nibble, want, "dims={dims} dim={dim}");
                }
            }
            assert!(out[8 + width.codes_len(dims)..].iter().all(|&b| b == 0));
            // A zero row: scale 0, every code 0, squares 0.
            let mut zero = vec![0xAAu8; width.stride(dims)];
            encode_item_code(Metric::Angular, width, &vec![0.0; dims], 0.0, &mut zero);
            assert_eq!(zero[..8], [0; 8]);
            assert!(code_values(width, &zero[8..], dims).all(|c| c == 0));
        }
    }
}
