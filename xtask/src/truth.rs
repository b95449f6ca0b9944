//! Exact nearest neighbours by brute force: the oracle every recall figure is measured against.
//!
//! Each query is scored against every data row with copse's batch kernels (one dispatch per
//! query, so the kernels run at the CPU's best SIMD level), queries spread over all cores.

use copse::Metric;
use copse_distance::{Dot, Kernels, L1, L2Squared, Rows, WithKernels};
use indicatif::ProgressBar;
use rayon::prelude::*;

/// The `depth` nearest data rows of each query, closest first, ties broken by row position;
/// `u32::MAX` fills the tail when there are fewer rows than `depth`. `data` and `queries` are
/// row-major with `dims` columns. Hamming rows hold one 0/1 value per bit.
pub fn exact_neighbors(
    metric: Metric,
    data: &[f32],
    queries: &[f32],
    dims: usize,
    depth: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<u32>> {
    let rows = Rows::new(data, dims)?;
    let n = rows.len();
    // Angular ranks by dot / |x|; the query's own norm does not change the order.
    let inv_norms: Vec<f32> = match metric {
        Metric::Angular => data
            .chunks_exact(dims)
            .map(|x| {
                let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
                if norm > 0.0 { 1.0 / norm } else { 0.0 }
            })
            .collect(),
        _ => Vec::new(),
    };
    let packed: Vec<u64> = match metric {
        Metric::Hamming => data.chunks_exact(dims).flat_map(pack_bits).collect(),
        _ => Vec::new(),
    };
    let words = dims.div_ceil(64);
    let result: anyhow::Result<Vec<Vec<u32>>> = queries
        .par_chunks_exact(dims)
        .map_init(
            || (vec![0.0f32; n], Vec::<(f32, u32)>::with_capacity(n)),
            |(scores, order), query| {
                if metric == Metric::Hamming {
                    let q = pack_bits(query);
                    for (s, row) in scores.iter_mut().zip(packed.chunks_exact(words)) {
                        *s = copse_distance::hamming(&q, row)? as f32;
                    }
                } else {
                    copse_distance::dispatch(Score {
                        metric,
                        query,
                        rows,
                        inv_norms: &inv_norms,
                        out: scores,
                    })??;
                }
                order.clear();
                order.extend(scores.iter().enumerate().map(|(i, &s)| (s, i as u32)));
                let keep = depth.min(n);
                let closer =
                    |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                if keep > 0 {
                    order.select_nth_unstable_by(keep - 1, closer);
                }
                order.truncate(keep);
                order.sort_unstable_by(closer);
                let mut ids: Vec<u32> = order.iter().map(|&(_, i)| i).collect();
                ids.resize(depth, u32::MAX);
                bar.inc(1);
                Ok(ids)
            },
        )
        .collect();
    Ok(result?.into_iter().flatten().collect())
}

/// Values above 0.5 as set bits, 64 to a word, lowest dimension in the lowest bit.
fn pack_bits(row: &[f32]) -> Vec<u64> {
    row.chunks(64)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u64, |w, (b, &v)| if v > 0.5 { w | 1 << b } else { w })
        })
        .collect()
}

/// One query scored against every row, lower is closer, under a single dispatch.
struct Score<'a> {
    metric: Metric,
    query: &'a [f32],
    rows: Rows<'a>,
    inv_norms: &'a [f32],
    out: &'a mut [f32],
}

impl WithKernels for Score<'_> {
    type Output = Result<(), copse_distance::DistanceError>;

    #[inline(always)]
    fn run<K: Kernels>(self, kernels: K) -> Self::Output {
        match self.metric {
            Metric::Angular => {
                kernels.batch_rows(Dot, self.query, self.rows, self.out)?;
                for (s, &inv) in self.out.iter_mut().zip(self.inv_norms) {
                    *s = -*s * inv;
                }
            }
            Metric::Dot => {
                kernels.batch_rows(Dot, self.query, self.rows, self.out)?;
                for s in self.out.iter_mut() {
                    *s = -*s;
                }
            }
            Metric::Euclidean => kernels.batch_rows(L2Squared, self.query, self.rows, self.out)?,
            Metric::Manhattan => kernels.batch_rows(L1, self.query, self.rows, self.out)?,
            Metric::Hamming => unreachable!("hamming is scored on packed words"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 scalar reference on random data, for every metric.
    #[test]
    fn matches_f64_reference() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let (n, nq, dims, depth) = (500, 20, 37, 10);
        for metric in [
            Metric::Angular,
            Metric::Euclidean,
            Metric::Manhattan,
            Metric::Dot,
            Metric::Hamming,
        ] {
            let draw = |rng: &mut rand_xoshiro::Xoshiro256PlusPlus| -> f32 {
                if metric == Metric::Hamming {
                    rng.random_range(0..2) as f32
                } else {
                    rng.random_range(-1.0..1.0)
                }
            };
            let data: Vec<f32> = (0..n * dims).map(|_| draw(&mut rng)).collect();
            let queries: Vec<f32> = (0..nq * dims).map(|_| draw(&mut rng)).collect();
            let got = exact_neighbors(metric, &data, &queries, dims, depth, &ProgressBar::hidden())
                .unwrap();
            for (qi, q) in queries.chunks_exact(dims).enumerate() {
                let mut scored: Vec<(f64, u32)> = data
                    .chunks_exact(dims)
                    .enumerate()
                    .map(|(i, x)| (reference(metric, q, x), i as u32))
                    .collect();
                scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<u32> = scored[..depth].iter().map(|s| s.1).collect();
                let got = &got[qi * depth..(qi + 1) * depth];
                // f32 and f64 may order exact near-ties differently; the sets must agree on
                // all but such ties, which random continuous data does not produce.
                if metric == Metric::Hamming {
                    let mut a = got.to_vec();
                    let mut b = want.clone();
                    // Integer distances tie often: compare distances, not ids.
                    a.iter_mut()
                        .for_each(|i| *i = reference(metric, q, row(&data, dims, *i)) as u32);
                    b.iter_mut()
                        .for_each(|i| *i = reference(metric, q, row(&data, dims, *i)) as u32);
                    assert_eq!(a, b, "{metric:?} query {qi}");
                } else {
                    assert_eq!(got, &want[..], "{metric:?} query {qi}");
                }
            }
        }
    }

    fn row(data: &[f32], dims: usize, i: u32) -> &[f32] {
        &data[i as usize * dims..(i as usize + 1) * dims]
    }

    fn reference(metric: Metric, q: &[f32], x: &[f32]) -> f64 {
        let pairs = q.iter().zip(x).map(|(&a, &b)| (f64::from(a), f64::from(b)));
        match metric {
            Metric::Angular => {
                let (mut dot, mut xx) = (0.0, 0.0);
                for (a, b) in pairs {
                    dot += a * b;
                    xx += b * b;
                }
                -dot / xx.sqrt()
            }
            Metric::Euclidean => pairs.map(|(a, b)| (a - b) * (a - b)).sum(),
            Metric::Manhattan => pairs.map(|(a, b)| (a - b).abs()).sum(),
            Metric::Dot => -pairs.map(|(a, b)| a * b).sum::<f64>(),
            Metric::Hamming => pairs.filter(|(a, b)| (*a > 0.5) != (*b > 0.5)).count() as f64,
        }
    }
}
