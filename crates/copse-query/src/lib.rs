//! Search over an open index: Annoy's best-first walk over all trees, then an exact re-rank of
//! the deduplicated candidates.
//!
//! [`search`] dispatches once per query to code generic over the SIMD level and the metric. The
//! walk keeps one max-heap of nodes over all trees, ordered by the smallest margin met on the way
//! down (as Annoy), and gathers leaf ids until `search_k` ids (counting repeats, as Annoy) have
//! been gathered. Repeats are dropped as they arrive with a per-searcher epoch array, the
//! survivors are re-ranked with the batch kernels, and the best `n` are selected without sorting
//! the rest. All buffers live in a reusable [`Scratch`], so a steady-state query allocates
//! nothing.
//!
//! Every node reference read from the file is checked before it is followed, and the walk stops
//! after visiting as many nodes as the trees hold, so a corrupt file gives an error or in-range
//! results, never a crash or an endless loop. This crate never builds anything.

mod beam;
mod filter;
mod metric;
mod walk;

use copse_distance::DistanceError;
use copse_format::{Metric, View};

pub use filter::RowFilter;
pub use walk::Scratch;

/// A result: an item and its distance to the query, in Annoy's convention for the metric
/// (for dot, the inner product, larger being closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The item's id (any `u64`: the file's id map turns rows into ids).
    pub id: u64,
    /// Its distance to the query.
    pub distance: f32,
}

/// A query vector, as the metric stores them.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    /// f32 values, for every metric but hamming.
    F32(&'a [f32]),
    /// Packed bits, for hamming.
    Bits(&'a [u64]),
}

impl Query<'_> {
    /// Checks that this query can search an index of `metric` whose vectors are `len` long
    /// (f32 values, or 64-bit words for hamming): the right kind, the right length, and (for
    /// f32) finite values; for angular and dot also a squared norm that f32 can hold (the
    /// builder refuses such items too): past it, inner products overflow to `inf - inf = NaN`.
    pub fn check(self, metric: Metric, len: usize) -> Result<(), QueryError> {
        let (found, floats): (usize, &[f32]) = match (self, metric) {
            (Query::Bits(q), Metric::Hamming) => (q.len(), &[]),
            (Query::F32(q), metric) if metric != Metric::Hamming => (q.len(), q),
            (Query::F32(_), metric) => {
                return Err(QueryError::WrongKind {
                    given: "float",
                    metric,
                });
            }
            (Query::Bits(_), metric) => {
                return Err(QueryError::WrongKind {
                    given: "bit",
                    metric,
                });
            }
        };
        if found != len {
            return Err(QueryError::WrongDimensions {
                expected: len,
                found,
            });
        }
        if let Some(position) = floats.iter().position(|v| !v.is_finite()) {
            return Err(QueryError::NotFinite {
                position,
                value: floats[position],
            });
        }
        if matches!(metric, Metric::Angular | Metric::Dot)
            && !copse_distance::fixed::norm_squared(floats)?.is_finite()
        {
            return Err(QueryError::NormOverflow);
        }
        Ok(())
    }
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query's length differs from the index's dimensions.
    #[error("query has {found} dimensions, the index has {expected}")]
    WrongDimensions {
        /// The index's dimensions (words, for packed hamming queries).
        expected: usize,
        /// The query's length.
        found: usize,
    },
    /// The query holds NaN or an infinity.
    #[error("query value {value} at position {position} is not a finite number")]
    NotFinite {
        /// Where.
        position: usize,
        /// The value.
        value: f32,
    },
    /// An angular or dot query whose squared norm overflows f32 (a norm above about 1.8e19).
    #[error("the query's squared norm overflows f32 (its norm is above about 1.8e19)")]
    NormOverflow,
    /// An f32 query for a hamming index or a bit query for an f32 index.
    #[error("a {given} query cannot search a {metric} index")]
    WrongKind {
        /// What the query was.
        given: &'static str,
        /// The index's metric.
        metric: Metric,
    },
    /// The index's contents are inconsistent (the file is corrupt).
    #[error("corrupt index: {0}")]
    Corrupt(&'static str),
    /// The SIMD level forced by `COPSE_SIMD` is unusable.
    #[error(transparent)]
    Simd(#[from] DistanceError),
}

/// Finds up to `n` nearest items to `query` into `out` (cleared first), nearest first. On a
/// forest, `search_k` candidates are gathered from the trees (default `n * n_trees`, as in
/// Annoy); on an index with a graph, `search_k` bounds the candidates scored (default: a beam
/// of `max(n, 128)`, `24 * max(n, 128)` candidates at most).
pub fn search(
    view: &View<'_>,
    query: Query<'_>,
    n: usize,
    search_k: Option<usize>,
    scratch: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    search_filtered(view, query, n, search_k, None, scratch, out)
}

/// [`search`] returning only rows `filter` allows (all rows without one): up to `n` of them,
/// fewer only when fewer are allowed. The filter applies inside the search (see `filter.rs`):
/// few allowed rows are scanned exactly; otherwise the graph or the trees are searched with
/// `search_k` scaled by the allowed share, so each way finds about as many allowed candidates
/// as an unfiltered search finds candidates.
pub fn search_filtered(
    view: &View<'_>,
    query: Query<'_>,
    n: usize,
    search_k: Option<usize>,
    filter: Option<&RowFilter<'_>>,
    scratch: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    out.clear();
    metric::check_query(view, query)?;
    if n == 0 {
        return Ok(());
    }
    let search_k = search_k.unwrap_or_else(|| {
        if view.graph.is_empty() {
            n.saturating_mul(view.info.n_trees.max(1))
        } else {
            beam::default_search_k(n)
        }
    });
    copse_distance::dispatch(walk::SearchOp {
        view,
        query,
        n,
        search_k,
        filter,
        scratch,
        out,
    })??;
    // The searches rank rows; rows ascend with ids, so ties stay ordered by id.
    if !view.ids.is_empty() {
        for neighbor in out.iter_mut() {
            neighbor.id = view.id_of(neighbor.id as u32);
        }
    }
    Ok(())
}

/// The distance between items `a` and `b` in Annoy's convention, or `None` if either is not a
/// present item.
pub fn item_distance(view: &View<'_>, a: u32, b: u32) -> Result<Option<f32>, QueryError> {
    if !view.is_present(u64::from(a)) || !view.is_present(u64::from(b)) {
        return Ok(None);
    }
    Ok(copse_distance::dispatch(metric::PairDistance {
        view,
        a,
        b,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_the_wrong_kind_length_or_a_non_finite_value() {
        let floats = [0.5f32, -1.0, 2.0];
        let words = [7u64, 0];
        assert_eq!(Query::F32(&floats).check(Metric::Angular, 3), Ok(()));
        assert_eq!(Query::Bits(&words).check(Metric::Hamming, 2), Ok(()));
        assert_eq!(
            Query::F32(&floats).check(Metric::Euclidean, 4),
            Err(QueryError::WrongDimensions {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            Query::Bits(&words).check(Metric::Hamming, 1),
            Err(QueryError::WrongDimensions {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            Query::F32(&floats).check(Metric::Hamming, 3),
            Err(QueryError::WrongKind {
                given: "float",
                metric: Metric::Hamming
            })
        );
        assert_eq!(
            Query::Bits(&words).check(Metric::Dot, 2),
            Err(QueryError::WrongKind {
                given: "bit",
                metric: Metric::Dot
            })
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let q = [1.0, bad, 3.0];
            match Query::F32(&q).check(Metric::Manhattan, 3) {
                Err(QueryError::NotFinite { position: 1, value }) => {
                    assert!(value.is_nan() == bad.is_nan() && (value.is_nan() || value == bad))
                }
                other => panic!("{other:?}"),
            }
        }
        // The length is checked before the values.
        assert!(matches!(
            Query::F32(&[f32::NAN]).check(Metric::Dot, 2),
            Err(QueryError::WrongDimensions { .. })
        ));
    }
}
