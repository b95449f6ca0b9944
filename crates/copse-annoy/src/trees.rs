//! Opening an Annoy node array and searching it exactly as Annoy 1.17 does.

use std::collections::BinaryHeap;

use copse_format::Metric;
use copse_query::{Neighbor, Query};

use crate::error::corrupt;
use crate::{AnnoyError, Layout, math};

/// What opening an Annoy node array finds: its layout, its roots and its item count. Holds no
/// bytes; [`AnnoyTrees::view`] pairs it with the bytes it was opened from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnoyTrees {
    layout: Layout,
    n_nodes: u32,
    n_items: u32,
    roots: Vec<u32>,
}

impl AnnoyTrees {
    /// Opens the node array `nodes` of an Annoy index of `dims` dimensions and `metric` (Annoy
    /// files carry no header: the caller says what they hold). As Annoy's `load`: the length
    /// must be a whole number of nodes; the roots are the nodes at the end of the array with
    /// the same `n_descendants` (less the last tree's original root, which precedes the copies
    /// of all roots); their `n_descendants` is the item count. Costs time in the number of
    /// trees, not the file's size. Further references are checked as they are followed.
    pub fn open(nodes: &[u8], dims: usize, metric: Metric) -> Result<AnnoyTrees, AnnoyError> {
        let layout = Layout::new(dims, metric)?;
        let len = nodes.len() as u64;
        if len == 0 {
            return Err(AnnoyError::Empty);
        }
        if !len.is_multiple_of(layout.node_size as u64) {
            return Err(AnnoyError::SizeMismatch {
                len,
                node_size: layout.node_size,
                dims,
                metric,
            });
        }
        let n_nodes = len / layout.node_size as u64;
        let n_nodes = u32::try_from(n_nodes)
            .ok()
            .filter(|&n| n <= i32::MAX as u32)
            .ok_or(AnnoyError::TooLarge(n_nodes))?;
        let mut trees = AnnoyTrees {
            layout,
            n_nodes,
            n_items: 0,
            roots: Vec::new(),
        };
        let view = AnnoyView {
            trees: &trees,
            nodes,
        };
        let mut roots = Vec::new();
        let mut m: i32 = -1;
        for i in (0..n_nodes).rev() {
            let k = view.n_descendants(i)?;
            if m == -1 || k == m {
                roots.push(i);
                m = k;
            } else {
                break;
            }
        }
        if roots.len() > 1 {
            let (first, last) = (roots[0], roots[roots.len() - 1]);
            if view.child(first, 0)? == view.child(last, 0)? {
                roots.pop();
            }
        }
        let n_items = u32::try_from(m)
            .ok()
            .filter(|&m| m <= n_nodes)
            .ok_or_else(|| {
                corrupt(format!(
                    "its roots claim {m} items, but it has {n_nodes} nodes"
                ))
            })?;
        trees.n_items = n_items;
        trees.roots = roots;
        Ok(trees)
    }

    /// The search view over `nodes`, the bytes this was opened from.
    pub fn view<'a>(&'a self, nodes: &'a [u8]) -> AnnoyView<'a> {
        AnnoyView { trees: self, nodes }
    }

    /// The node layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Largest item id plus one (Annoy's `get_n_items`).
    pub fn n_items(&self) -> u64 {
        u64::from(self.n_items)
    }

    /// Number of trees (Annoy's `get_n_trees`).
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Nodes in the file.
    pub fn n_nodes(&self) -> u64 {
        u64::from(self.n_nodes)
    }

    /// The root nodes, in Annoy's order (last tree first).
    pub fn roots(&self) -> &[u32] {
        &self.roots
    }

    /// Most nodes a search may visit: every node once, and every item node once per tree.
    /// A walk that visits more has met a cycle.
    fn visit_budget(&self) -> u64 {
        u64::from(self.n_nodes)
            + u64::from(self.n_items) * self.roots.len() as u64
            + self.roots.len() as u64
    }
}

/// An [`AnnoyTrees`] with its bytes: what queries run on. Every node reference is checked
/// before it is followed.
#[derive(Debug, Clone, Copy)]
pub struct AnnoyView<'a> {
    trees: &'a AnnoyTrees,
    nodes: &'a [u8],
}

/// A priority in Annoy's queue for the float metrics: ordered as C++ orders floats (`-0.0`
/// equals `0.0`), totally (NaN, which only a corrupt file can produce, sorts last).
#[derive(Debug, Clone, Copy)]
struct FloatPriority(f32);

impl FloatPriority {
    fn key(self) -> f32 {
        if self.0 == 0.0 { 0.0 } else { self.0 }
    }
}

impl PartialEq for FloatPriority {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for FloatPriority {}
impl PartialOrd for FloatPriority {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FloatPriority {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().total_cmp(&other.key())
    }
}

/// Annoy's `std::min(a, b)`: `b` if `b < a`, else `a`.
fn annoy_min(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

impl<'a> AnnoyView<'a> {
    /// The trees this view searches.
    pub fn trees(&self) -> &'a AnnoyTrees {
        self.trees
    }

    fn layout(&self) -> &Layout {
        &self.trees.layout
    }

    /// The bytes of node `i`.
    fn node(&self, i: u32) -> Result<&'a [u8], AnnoyError> {
        let size = self.layout().node_size;
        let start = (i as usize).checked_mul(size);
        start
            .and_then(|s| self.nodes.get(s..s.checked_add(size)?))
            .ok_or_else(|| corrupt(format!("node {i} is out of range")))
    }

    fn n_descendants(&self, i: u32) -> Result<i32, AnnoyError> {
        Ok(read_i32(self.node(i)?, 0))
    }

    /// Child `side` (0 or 1) of node `i`, as stored (unchecked).
    fn child(&self, i: u32, side: usize) -> Result<i32, AnnoyError> {
        Ok(read_i32(
            self.node(i)?,
            self.layout().children_at + 4 * side,
        ))
    }

    /// True if item `id` was added: an item node with one descendant.
    pub fn is_present(&self, id: u64) -> bool {
        id < self.trees.n_items() && matches!(self.n_descendants(id as u32), Ok(1))
    }

    /// The number of items added (reads every item node).
    pub fn count_present(&self) -> u64 {
        (0..self.trees.n_items())
            .filter(|&id| self.is_present(id))
            .count() as u64
    }

    fn check_item(&self, id: u64) -> Result<u32, AnnoyError> {
        let n_items = self.trees.n_items();
        if id >= n_items {
            return Err(AnnoyError::ItemOutOfRange { id, n_items });
        }
        Ok(id as u32)
    }

    /// The f32 vector of item `id` (zeros for an id never added, as Annoy); `None` for
    /// hamming.
    pub fn item_f32(&self, id: u64) -> Result<Option<Vec<f32>>, AnnoyError> {
        let id = self.check_item(id)?;
        if self.layout().metric == Metric::Hamming {
            return Ok(None);
        }
        Ok(Some(self.floats(self.node(id)?)))
    }

    /// The packed bits of hamming item `id`; `None` for float metrics.
    pub fn item_bits(&self, id: u64) -> Result<Option<Vec<u64>>, AnnoyError> {
        let id = self.check_item(id)?;
        if self.layout().metric != Metric::Hamming {
            return Ok(None);
        }
        Ok(Some(self.words(self.node(id)?)))
    }

    /// The vector of a node.
    fn floats(&self, node: &[u8]) -> Vec<f32> {
        let at = self.layout().vector_at;
        node.get(at..)
            .unwrap_or(&[])
            .chunks_exact(4)
            .take(self.layout().row_len)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// The words of a hamming node.
    fn words(&self, node: &[u8]) -> Vec<u64> {
        let at = self.layout().vector_at;
        node.get(at..)
            .unwrap_or(&[])
            .chunks_exact(8)
            .take(self.layout().row_len)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    }

    /// Annoy's `get_distance(a, b)`, normalised as Annoy reports it.
    pub fn distance(&self, a: u64, b: u64) -> Result<f32, AnnoyError> {
        let (a, b) = (self.check_item(a)?, self.check_item(b)?);
        let (x, y) = (self.node(a)?, self.node(b)?);
        Ok(match self.layout().metric {
            Metric::Hamming => hamming(&self.words(x), &self.words(y)) as f32,
            metric => {
                let (xv, yv) = (self.floats(x), self.floats(y));
                normalise(metric, self.raw_distance(&xv, math::dot(&xv, &xv), &yv))
            }
        })
    }

    /// Annoy's distance from a query vector `q` (squared norm `qq`, used by angular) to item
    /// vector `v`, before normalisation.
    fn raw_distance(&self, q: &[f32], qq: f32, v: &[f32]) -> f32 {
        match self.layout().metric {
            Metric::Angular => math::angular_with_norm(q, qq, v),
            Metric::Euclidean => math::euclidean_squared(q, v),
            Metric::Manhattan => math::manhattan(q, v),
            Metric::Dot | Metric::Hamming => -math::dot(q, v),
        }
    }

    /// Annoy's `get_nns_by_item(id, n, search_k)`: the query is the item's stored vector.
    pub fn nns_by_item(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, AnnoyError> {
        let id = self.check_item(id)?;
        let node = self.node(id)?;
        match self.layout().metric {
            Metric::Hamming => self.search_bits(&self.words(node), n, search_k),
            _ => self.search_f32(&self.floats(node), n, search_k),
        }
    }

    /// Annoy's `get_nns_by_vector(query, n, search_k)`: up to `n` items, nearest first, from
    /// the candidates gathered until `search_k` ids (counting repeats) have been seen;
    /// `search_k = None` is Annoy's default, `n * n_trees`.
    pub fn nns(
        &self,
        query: Query<'_>,
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, AnnoyError> {
        let layout = self.layout();
        let len = if layout.metric == Metric::Hamming {
            layout.row_len
        } else {
            layout.dims
        };
        query.check(layout.metric, len)?;
        match query {
            Query::Bits(words) => self.search_bits(words, n, search_k),
            Query::F32(q) => self.search_f32(q, n, search_k),
        }
    }

    fn search_f32(
        &self,
        q: &[f32],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, AnnoyError> {
        let layout = *self.layout();
        let metric = layout.metric;
        let candidates = self.walk(
            FloatPriority(f32::INFINITY),
            n,
            search_k,
            |node, FloatPriority(d)| {
                let normal = self.floats(node);
                let mut margin = math::dot(&normal, q);
                match metric {
                    Metric::Euclidean | Metric::Manhattan => {
                        margin += f32::from_le_bytes(read_array(node, 4));
                    }
                    Metric::Dot => {
                        let factor = f32::from_le_bytes(read_array(node, 12));
                        margin += factor * factor;
                    }
                    _ => {}
                }
                Ok((
                    FloatPriority(annoy_min(d, margin)),
                    FloatPriority(annoy_min(d, -margin)),
                ))
            },
        )?;
        // The query's squared norm (angular), summed like every dot product here.
        let qq = if metric == Metric::Angular {
            math::dot(q, q)
        } else {
            0.0
        };
        let mut scored = Vec::with_capacity(candidates.len());
        for id in candidates {
            let node = self.node(id)?;
            let d = self.raw_distance(q, qq, &self.floats(node));
            scored.push((FloatPriority(d), id));
        }
        Ok(best(scored, n, |FloatPriority(d)| normalise(metric, d)))
    }

    fn search_bits(
        &self,
        q: &[u64],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, AnnoyError> {
        let candidates = self.walk(u64::MAX, n, search_k, |node, d| {
            let bit = u64::from_le_bytes(read_array(node, self.layout().vector_at));
            let word = usize::try_from(bit / 64)
                .ok()
                .and_then(|w| q.get(w))
                .ok_or_else(|| corrupt(format!("a split tests bit {bit}, beyond the vectors")))?;
            // Annoy tests bits from the top of each word down (its items are packed from the
            // bottom up, so a split on "bit b" looks at bit 63 - b % 64 of the word).
            let set = word >> (63 - bit % 64) & 1 == 1;
            Ok((
                d.wrapping_sub(u64::from(!set)),
                d.wrapping_sub(u64::from(set)),
            ))
        })?;
        let mut scored = Vec::with_capacity(candidates.len());
        for id in candidates {
            scored.push((hamming(q, &self.words(self.node(id)?)), id));
        }
        Ok(best(scored, n, |d| d as f32))
    }

    /// Annoy's best-first walk over all trees: a max-heap on (priority, node index), so ties go
    /// to the larger index; leaves add their ids (repeats included) until `search_k` ids have
    /// been gathered. `split` gives the priorities of a split node's children 1 and 0. Returns
    /// the distinct present ids gathered, ascending.
    fn walk<P: Ord + Copy>(
        &self,
        initial: P,
        n: usize,
        search_k: Option<usize>,
        split: impl Fn(&[u8], P) -> Result<(P, P), AnnoyError>,
    ) -> Result<Vec<u32>, AnnoyError> {
        let trees = self.trees;
        let search_k = search_k.unwrap_or_else(|| n.saturating_mul(trees.roots.len()));
        let k = self.layout().leaf_capacity;
        let children_at = self.layout().children_at;
        let mut heap: BinaryHeap<(P, u32)> = trees.roots.iter().map(|&r| (initial, r)).collect();
        let mut ids: Vec<u32> = Vec::new();
        let mut budget = trees.visit_budget();
        while ids.len() < search_k {
            let Some((d, i)) = heap.pop() else { break };
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| corrupt("a tree walk visits more nodes than the file holds"))?;
            let node = self.node(i)?;
            let n_descendants = read_i32(node, 0);
            if n_descendants == 1 && i < trees.n_items {
                ids.push(i);
            } else if n_descendants <= k as i32 {
                let count = usize::try_from(n_descendants)
                    .map_err(|_| corrupt(format!("node {i} has {n_descendants} descendants")))?;
                for c in 0..count {
                    let id = read_i32(node, children_at + 4 * c);
                    ids.push(self.item_ref(i, id)?);
                }
            } else {
                let (p1, p0) = split(node, d)?;
                heap.push((p1, self.node_ref(i, read_i32(node, children_at + 4))?));
                heap.push((p0, self.node_ref(i, read_i32(node, children_at))?));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        // Only item nodes with one descendant are results (ids never added are not).
        ids.retain(|&id| matches!(self.n_descendants(id), Ok(1)));
        Ok(ids)
    }

    /// A child reference of split node `parent`, checked.
    fn node_ref(&self, parent: u32, child: i32) -> Result<u32, AnnoyError> {
        u32::try_from(child)
            .ok()
            .filter(|&c| c < self.trees.n_nodes)
            .ok_or_else(|| corrupt(format!("node {parent} has child {child}, out of range")))
    }

    /// An item id listed by leaf node `leaf`, checked.
    fn item_ref(&self, leaf: u32, id: i32) -> Result<u32, AnnoyError> {
        u32::try_from(id)
            .ok()
            .filter(|&c| c < self.trees.n_items)
            .ok_or_else(|| corrupt(format!("leaf node {leaf} lists item {id}, out of range")))
    }

    /// Follows every tree from its root and checks every reference: children in range, leaf
    /// ids in range, no cycles (no walk longer than the file's nodes allow). Reads every node
    /// of every tree; queries check the same references as they go, so this is only needed to
    /// refuse a corrupt file up front (as before converting it).
    pub fn check_trees(&self) -> Result<(), AnnoyError> {
        let trees = self.trees;
        let k = self.layout().leaf_capacity as i32;
        let children_at = self.layout().children_at;
        let mut budget = trees.visit_budget();
        let mut stack: Vec<u32> = trees.roots.clone();
        while let Some(i) = stack.pop() {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| corrupt("a tree has a cycle (more nodes than the file holds)"))?;
            let node = self.node(i)?;
            let n_descendants = read_i32(node, 0);
            if n_descendants == 1 && i < trees.n_items {
                continue;
            }
            if n_descendants < 0 {
                return Err(corrupt(format!("node {i} has {n_descendants} descendants")));
            }
            if n_descendants <= k {
                for c in 0..n_descendants as usize {
                    self.item_ref(i, read_i32(node, children_at + 4 * c))?;
                }
            } else {
                stack.push(self.node_ref(i, read_i32(node, children_at))?);
                stack.push(self.node_ref(i, read_i32(node, children_at + 4))?);
            }
        }
        Ok(())
    }
}

/// The `n` best of `scored`, ordered by (distance, id) as Annoy's `partial_sort` of pairs.
fn best<D: Ord + Copy>(
    mut scored: Vec<(D, u32)>,
    n: usize,
    report: impl Fn(D) -> f32,
) -> Vec<Neighbor> {
    scored.sort_unstable();
    scored
        .into_iter()
        .take(n)
        .map(|(d, id)| Neighbor {
            id: id.into(),
            distance: report(d),
        })
        .collect()
}

/// Annoy's `normalized_distance` for the float metrics.
fn normalise(metric: Metric, raw: f32) -> f32 {
    match metric {
        Metric::Angular | Metric::Euclidean => raw.max(0.0).sqrt(),
        Metric::Manhattan => raw.max(0.0),
        Metric::Dot | Metric::Hamming => -raw,
    }
}

fn hamming(x: &[u64], y: &[u64]) -> u64 {
    x.iter()
        .zip(y)
        .map(|(a, b)| u64::from((a ^ b).count_ones()))
        .sum()
}

/// `N` bytes at `at` (zeros past the end, which a checked node never reaches).
fn read_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; N])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(read_array(bytes, at))
}
