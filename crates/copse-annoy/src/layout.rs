//! Where Annoy 1.17 puts things in a node, per metric.
//!
//! Every node of an Annoy file has the same size. All start with `n_descendants` (i32). Then:
//!
//! | metric              | bytes 4..        | children at | vector at | node size     |
//! |---------------------|------------------|-------------|-----------|---------------|
//! | angular             | children / norm² | 4           | 12        | 12 + 4·f      |
//! | euclidean, manhattan| offset `a` (f32) | 8           | 16        | 16 + 4·f      |
//! | dot                 | children, then `dot_factor` (f32) | 4 | 16 | 16 + 4·f      |
//! | hamming             | children, 4 bytes padding | 4  | 16        | 16 + 8·words  |
//!
//! For hamming, `f` bits are packed into `words = ceil(f / 64)` u64. A node with
//! `n_descendants <= K` lists up to `K` item ids from the children field on, where `K` is the
//! number of i32 that fit between the children field and the end of the node.

use copse_format::Metric;

use crate::AnnoyError;

/// Largest number of dimensions accepted: far beyond any real index, small enough that node
/// sizes cannot overflow.
const MAX_DIMS: usize = 1 << 24;

/// The node layout of an Annoy index of `dims` dimensions and one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The metric.
    pub metric: Metric,
    /// Dimensions as the user sees them (bits, for hamming).
    pub dims: usize,
    /// Stored elements per vector: `dims` f32, or `ceil(dims / 64)` u64 words for hamming.
    pub row_len: usize,
    /// Bytes per node.
    pub node_size: usize,
    /// Byte offset of the children (or leaf id list) in a node.
    pub children_at: usize,
    /// Byte offset of the vector in a node.
    pub vector_at: usize,
    /// Most item ids a leaf node can list (Annoy's `K`).
    pub leaf_capacity: usize,
}

impl Layout {
    /// The layout Annoy 1.17 uses for `dims` and `metric`.
    pub fn new(dims: usize, metric: Metric) -> Result<Layout, AnnoyError> {
        if dims == 0 || dims > MAX_DIMS {
            return Err(AnnoyError::BadDimensions(dims));
        }
        let (children_at, vector_at, row_len, element) = match metric {
            Metric::Angular => (4, 12, dims, 4),
            Metric::Euclidean | Metric::Manhattan => (8, 16, dims, 4),
            Metric::Dot => (4, 16, dims, 4),
            Metric::Hamming => (4, 16, dims.div_ceil(64), 8),
        };
        let node_size = vector_at + row_len * element;
        Ok(Layout {
            metric,
            dims,
            row_len,
            node_size,
            children_at,
            vector_at,
            leaf_capacity: (node_size - children_at) / 4,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node sizes of files the real Annoy 1.17.3 wrote (the fixtures' lengths divide by them).
    #[test]
    fn node_sizes_and_leaf_capacities() {
        let l = Layout::new(10, Metric::Angular).unwrap();
        assert_eq!((l.node_size, l.leaf_capacity), (52, 12));
        let l = Layout::new(9, Metric::Euclidean).unwrap();
        assert_eq!((l.node_size, l.leaf_capacity), (52, 11));
        let l = Layout::new(12, Metric::Dot).unwrap();
        assert_eq!((l.node_size, l.leaf_capacity), (64, 15));
        let l = Layout::new(100, Metric::Hamming).unwrap();
        assert_eq!((l.node_size, l.leaf_capacity, l.row_len), (32, 7, 2));
        assert!(Layout::new(0, Metric::Angular).is_err());
        assert!(Layout::new(usize::MAX, Metric::Hamming).is_err());
    }
}
