//! Annoy's float arithmetic, in Annoy's order of operations.
//!
//! Annoy built for x86 with AVX (what `pip install annoy` compiles on such a machine) sums a
//! vector of more than 7 values in 8 lanes, adds the lanes pairwise (`(l0+l4)+(l2+l6)` and
//! `(l1+l5)+(l3+l7)`, then those two), then adds the remaining values one by one; shorter
//! vectors are summed one by one. Following the same order gives the same rounding, so
//! margins and distances match Annoy's to the bit in the common case. (An Annoy built without
//! AVX sums in plain order; its answers can differ from these in the last bit.)

/// `Σ term(i)` for `i < len`, in Annoy's AVX order.
#[inline]
fn annoy_sum(len: usize, term: impl Fn(usize) -> f32) -> f32 {
    let mut result = 0.0f32;
    let whole = if len > 7 { len / 8 * 8 } else { 0 };
    if whole > 0 {
        let mut lanes = [0.0f32; 8];
        for chunk in (0..whole).step_by(8) {
            for (lane, acc) in lanes.iter_mut().enumerate() {
                *acc += term(chunk + lane);
            }
        }
        let quad = [
            lanes[4] + lanes[0],
            lanes[5] + lanes[1],
            lanes[6] + lanes[2],
            lanes[7] + lanes[3],
        ];
        let pair = [quad[0] + quad[2], quad[1] + quad[3]];
        result += pair[0] + pair[1];
    }
    for i in whole..len {
        result += term(i);
    }
    result
}

/// Inner product.
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let len = x.len().min(y.len());
    annoy_sum(len, |i| x[i] * y[i])
}

/// Squared euclidean distance.
pub(crate) fn euclidean_squared(x: &[f32], y: &[f32]) -> f32 {
    let len = x.len().min(y.len());
    annoy_sum(len, |i| {
        let d = x[i] - y[i];
        d * d
    })
}

/// Manhattan distance.
pub(crate) fn manhattan(x: &[f32], y: &[f32]) -> f32 {
    let len = x.len().min(y.len());
    annoy_sum(len, |i| (x[i] - y[i]).abs())
}

/// Annoy's angular distance before normalisation, `2 - 2 cos`. The quotient is taken in double
/// precision, as Annoy's expression is.
///
/// Both squared norms are summed here, in the same order as the dot product, rather than read
/// from the file: the file's were summed by whatever SIMD width the Annoy that wrote it had (an
/// AVX-512 build uses 16 lanes), and only norms summed like `x . x` make a vector exactly 0 from
/// itself (`sqrt(pp * pp) == pp` in IEEE arithmetic). They differ from the stored ones by a
/// rounding at most, far below the 1e-5 to which copse matches Annoy's distances.
///
/// `pp` is `dot(x, x)`, which the caller computes once per query.
pub(crate) fn angular_with_norm(x: &[f32], pp: f32, y: &[f32]) -> f32 {
    let qq = dot(y, y);
    let pq = dot(x, y);
    let ppqq = pp * qq;
    if ppqq > 0.0 {
        (2.0 - 2.0 * f64::from(pq) / f64::from(ppqq.sqrt())) as f32
    } else {
        2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_a_plain_reference_closely_for_every_length() {
        for len in 0..40 {
            let x: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let y: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let reference: f64 = x.iter().zip(&y).map(|(a, b)| f64::from(a * b)).sum();
            assert!((f64::from(dot(&x, &y)) - reference).abs() < 1e-5, "{len}");
            let reference: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| f64::from((a - b).abs()))
                .sum();
            assert!((f64::from(manhattan(&x, &y)) - reference).abs() < 1e-5);
            let reference: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum();
            assert!((f64::from(euclidean_squared(&x, &y)) - reference).abs() < 1e-5);
        }
    }

    #[test]
    fn angular_of_zero_vectors_is_two() {
        assert_eq!(angular_with_norm(&[0.0; 3], 0.0, &[1.0, 0.0, 0.0]), 2.0);
        let d = angular_with_norm(&[1.0, 0.0], 1.0, &[2.0, 0.0]);
        assert!(d.abs() < 1e-7);
    }
}
