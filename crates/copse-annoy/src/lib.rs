//! Spotify Annoy 1.17 index files, read in place and searched exactly as Annoy searches them.
//!
//! An Annoy file is an array of equal-sized nodes with no header: item `i` is node `i`, split
//! and leaf nodes follow, and copies of the tree roots end the file. The caller supplies the
//! dimensions and metric, as with Annoy. [`AnnoyTrees::open`] finds the roots the way Annoy's
//! `load` does; [`AnnoyView`] answers `get_nns_by_item`, `get_nns_by_vector`, `get_distance`
//! and `get_item_vector` with Annoy's walk (one max-heap over all trees, keyed by the smallest
//! margin, ties to the larger node index), Annoy's candidate budget (`search_k` ids counted
//! with repeats, default `n * n_trees`), Annoy's distances and normalisation, and Annoy's
//! floating-point order of operations. The same code serves a raw Annoy file and the
//! `annoy-nodes` section of a converted copse file (`docs/format.md`).
//!
//! Nothing read from the bytes is trusted: every node reference is checked before it is
//! followed, and a walk that visits more nodes than the trees can hold (a cycle in a corrupt
//! file) stops with an error. A corrupt file gives an [`AnnoyError`] or in-range answers,
//! never a panic or an out-of-bounds read.
//!
//! This crate owns the Annoy layout and search; it knows nothing about copse's own trees.

mod error;
mod layout;
mod math;
mod trees;

pub use error::AnnoyError;
pub use layout::Layout;
pub use trees::{AnnoyTrees, AnnoyView};
