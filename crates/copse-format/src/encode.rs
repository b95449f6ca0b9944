//! Encoding the packed sections: leaf ids in `id_bits` bits, and the quantized item codes.

use crate::{Metric, item_code_stride};

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

/// Writes the [`crate::SectionKind::ItemCodes`] record of one item into `out`
/// (`item_code_stride(row.len())` bytes): angular codes the unit vector (`norm` is the row's
/// euclidean norm), euclidean and dot the row itself. A zero row gives scale 0.
pub fn encode_item_code(metric: Metric, row: &[f32], norm: f32, out: &mut [u8]) {
    let stride = item_code_stride(row.len());
    let out = &mut out[..stride];
    out.fill(0);
    let divide = if metric == Metric::Angular && norm > 0.0 {
        norm
    } else {
        1.0
    };
    let max = row.iter().fold(0.0f32, |m, x| m.max((x / divide).abs()));
    if max.partial_cmp(&0.0) != Some(core::cmp::Ordering::Greater) {
        return;
    }
    let scale = max / 127.0;
    let mut squares = 0.0f32;
    for (slot, x) in out[8..8 + row.len()].iter_mut().zip(row) {
        let code = copse_distance::quantize_i8(x / divide / scale);
        squares += f32::from(code) * f32::from(code);
        *slot = code as u8;
    }
    out[0..4].copy_from_slice(&scale.to_le_bytes());
    out[4..8].copy_from_slice(&squares.to_le_bytes());
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
            encode_item_code(metric, &row, norm, &mut out);
            let scale = f32::from_le_bytes(out[0..4].try_into().unwrap());
            let divide = if metric == Metric::Angular { norm } else { 1.0 };
            for (x, &c) in row.iter().zip(&out[8..58]) {
                // Rounding error is at most half a step.
                assert!((x / divide - f32::from(c as i8) * scale).abs() <= scale / 2.0 + 1e-6);
            }
        }
        let mut out = vec![1u8; item_code_stride(3)];
        encode_item_code(Metric::Dot, &[0.0; 3], 0.0, &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }
}
