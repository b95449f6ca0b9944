//! The search itself: the best-first walk, deduplication, re-rank and selection, generic over the
//! SIMD level and the metric and run under one dispatch.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use copse_distance::{Kernels, WithKernels, prefetch, prefetch_lines, prefetch_row};
use copse_format::{ItemRows, Metric, NodeRef, TreeEntry, View};

use crate::filter::{All, Allow, RowFilter};
use crate::metric::{self, Prepared, QueryMetric};
use crate::{Neighbor, Query, QueryError};

/// Buffers one searcher reuses from query to query. Keep one per thread (or pool them); a
/// scratch adapts itself to whichever index it is used with.
#[derive(Debug, Default)]
pub struct Scratch {
    heap: BinaryHeap<Entry>,
    /// Bit `id` set if `id` was gathered (or, in a graph search, scored) by the current query.
    /// Cleared through `candidates` at the start of the next query, so clearing costs what the
    /// query visited.
    pub(crate) visited: Vec<u64>,
    /// Every id the current query has visited, in order.
    pub(crate) candidates: Vec<u32>,
    pub(crate) shortlist: Vec<u32>,
    pub(crate) scores: Vec<f32>,
    pub(crate) best: BinaryHeap<Ranked>,
    /// Graph search: the beam.
    pub(crate) beam: crate::beam::Beam,
    /// Filtered graph search: the allowed items scored, and their scores.
    pub(crate) found: Vec<u32>,
    pub(crate) found_scores: Vec<f32>,
    /// The query's i8 code, for metrics scored from the item codes ([`Prepared::codes`]).
    query_codes: Vec<i8>,
}

impl Scratch {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Scratch::default()
    }

    /// Starts a query over `n_items` ids, with nothing visited.
    pub(crate) fn begin(&mut self, n_items: usize) {
        let words = n_items.div_ceil(64);
        if self.visited.len() != words {
            self.visited.clear();
            self.visited.resize(words, 0);
        } else {
            for &id in &self.candidates {
                if let Some(w) = self.visited.get_mut(id as usize / 64) {
                    *w = 0;
                }
            }
        }
        self.heap.clear();
        self.candidates.clear();
        self.best.clear();
    }
}

/// A node waiting in the walk's max-heap.
#[derive(Debug, Clone, Copy)]
struct Entry {
    priority: f32,
    tree: u32,
    node: NodeRef,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.total_cmp(&other.priority)
    }
}

/// A scored candidate; the max-heap of the best `n` keeps the worst on top.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub score: f32,
    pub id: u32,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.id.cmp(&other.id))
    }
}

pub(crate) struct SearchOp<'a, 'v> {
    pub view: &'a View<'v>,
    pub query: Query<'a>,
    pub n: usize,
    pub search_k: usize,
    pub filter: Option<&'a RowFilter<'a>>,
    pub scratch: &'a mut Scratch,
    pub out: &'a mut Vec<Neighbor>,
}

impl WithKernels for SearchOp<'_, '_> {
    type Output = Result<(), QueryError>;

    /// Each metric's search is a function of its own (see [`Kernels::vectorize_apart`]).
    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        match self.view.info.metric {
            Metric::Angular => k.vectorize_apart(MetricSearch::<metric::Angular>::new(self)),
            Metric::Euclidean => k.vectorize_apart(MetricSearch::<metric::Euclidean>::new(self)),
            Metric::Manhattan => k.vectorize_apart(MetricSearch::<metric::Manhattan>::new(self)),
            Metric::Dot => k.vectorize_apart(MetricSearch::<metric::DotProduct>::new(self)),
            Metric::Hamming => k.vectorize_apart(MetricSearch::<metric::Hamming>::new(self)),
        }
    }
}

/// A search under metric `M`.
struct MetricSearch<'a, 'v, M> {
    op: SearchOp<'a, 'v>,
    metric: std::marker::PhantomData<M>,
}

impl<'a, 'v, M> MetricSearch<'a, 'v, M> {
    fn new(op: SearchOp<'a, 'v>) -> Self {
        MetricSearch {
            op,
            metric: std::marker::PhantomData,
        }
    }
}

impl<M: QueryMetric> WithKernels for MetricSearch<'_, '_, M> {
    type Output = Result<(), QueryError>;

    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        search::<K, M>(k, self.op)
    }
}

/// Starts loading what visiting `node` will read.
#[inline(always)]
fn prefetch_node(view: &View<'_>, tree: &TreeEntry, node: NodeRef) {
    match node.decode() {
        Ok(leaf) => {
            if let Some(offsets) = view
                .leaf_offsets
                .get(tree.leaf_base as usize + leaf as usize..)
            {
                prefetch(offsets);
            }
        }
        Err(split) => {
            if let Some(record) = view.split_record(tree, split) {
                prefetch(record);
                prefetch(&record[record.len().min(64)..]);
            }
        }
    }
}

/// Starts loading the records of splits `first..first + count` of `tree`. In preorder a node's
/// subtree follows it, so near the bottom of a tree this covers the rest of a descent.
#[inline(always)]
fn prefetch_splits(view: &View<'_>, tree: &TreeEntry, first: u32, count: usize) {
    if u64::from(first) >= tree.n_splits {
        return;
    }
    let start = (tree.split_base as usize + first as usize).saturating_mul(view.split_stride);
    let len = count.saturating_mul(view.split_stride);
    if let Some(bytes) = view
        .splits
        .get(start..start.saturating_add(len).min(view.splits.len()))
    {
        for line in bytes.chunks(64) {
            prefetch(line);
        }
    }
}

/// Split records prefetched below each child of a visited split.
const SUBTREE_PREFETCH: usize = 4;

/// Candidates kept from the approximate pass for exact scoring: the approximation (8-bit codes
/// of the query and the items) moves a score by well under the gap between the n-th and the
/// (2n + 20)-th neighbour, so the true n best survive (measured on GloVe and on 384-d sentence
/// embeddings: recall identical to keeping 4n + 64, and n + 20).
pub(crate) fn shortlist_len(n: usize) -> usize {
    n.saturating_mul(2).saturating_add(20)
}

/// What scoring will read for each candidate, prefetched as candidates are found.
#[derive(Clone, Copy)]
pub(crate) enum Prefetch<'a> {
    Codes,
    Rows(copse_distance::Rows<'a>),
    /// Rows of another type (half precision): every line of each, as the bytes it spans.
    RowBytes {
        bytes: &'a [u8],
        stride: usize,
    },
    Bits,
}

/// The best `keep` of `ids` by `scores` into `best` (emptied first), by a bounded max-heap
/// whose worst score is kept in a register: most candidates lose one float comparison and
/// never touch the heap.
#[inline(always)]
pub(crate) fn keep_best(scores: &[f32], ids: &[u32], keep: usize, best: &mut BinaryHeap<Ranked>) {
    best.clear();
    if keep == 0 {
        return;
    }
    let mut worst = f32::INFINITY;
    for (&score, &id) in scores.iter().zip(ids) {
        if score > worst {
            continue;
        }
        let ranked = Ranked { score, id };
        if best.len() < keep {
            best.push(ranked);
            if best.len() == keep {
                worst = best.peek().map_or(f32::INFINITY, |r| r.score);
            }
        } else {
            let replaced = match best.peek_mut() {
                Some(mut top) if ranked < *top => {
                    *top = ranked;
                    true
                }
                _ => false,
            };
            if replaced {
                worst = best.peek().map_or(f32::INFINITY, |r| r.score);
            }
        }
    }
}

/// Appends the results held in `best` to `out`, nearest first (ties by id), as the distances
/// the user sees.
#[inline(always)]
pub(crate) fn emit<M: QueryMetric>(best: &mut BinaryHeap<Ranked>, out: &mut Vec<Neighbor>) {
    let start = out.len();
    out.extend(best.drain().map(|r| Neighbor {
        id: u64::from(r.id),
        distance: r.score,
    }));
    out[start..].sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    for neighbor in &mut out[start..] {
        neighbor.distance = M::user(neighbor.distance);
    }
}

impl<'a> Prefetch<'a> {
    fn row_bytes<T: copse_distance::RowElement>(rows: copse_distance::Rows<'a, T>) -> Self {
        Prefetch::RowBytes {
            bytes: copse_distance::bytemuck::cast_slice(rows.as_slice()),
            stride: rows.dims() * size_of::<T>(),
        }
    }

    /// Starts loading what scoring will read for item `id`.
    #[inline(always)]
    pub(crate) fn item(self, view: &View<'_>, id: u32) {
        match self {
            Prefetch::Codes => {
                if let Some(record) = view.codes.record(id) {
                    prefetch_lines(record);
                }
            }
            Prefetch::Rows(rows) => prefetch_row(rows, id),
            Prefetch::RowBytes { bytes, stride } => {
                let start = id as usize * stride;
                if let Some(row) = bytes.get(start..start + stride) {
                    for lines in row.chunks(512) {
                        prefetch_lines(lines);
                    }
                }
            }
            Prefetch::Bits => {
                if let Some(bits) = view.item_bits(id as usize) {
                    prefetch(bits);
                }
            }
        }
    }
}

// No closures in the hot code below: a closure is compiled as its own function without the
// level's target features, and the kernels it calls would stop being inlined.
#[inline(always)]
fn search<K: Kernels, M: QueryMetric>(k: K, op: SearchOp<'_, '_>) -> Result<(), QueryError> {
    let SearchOp {
        view,
        query,
        n,
        search_k,
        filter,
        scratch: s,
        out,
    } = op;
    let prefetch_kind = match view.items {
        _ if M::APPROXIMATE && !view.codes.is_empty() => Prefetch::Codes,
        ItemRows::F32(rows) => Prefetch::Rows(rows),
        ItemRows::F16(rows) => Prefetch::row_bytes(rows),
        ItemRows::Bf16(rows) => Prefetch::row_bytes(rows),
        ItemRows::I8(_) => Prefetch::Codes,
        ItemRows::Bits { .. } => Prefetch::Bits,
    };
    // The query's code lives outside the scratch while the search borrows both.
    let mut query_codes = std::mem::take(&mut s.query_codes);
    let prepared = match query {
        Query::F32(floats) => {
            let (code_scale, code_bias) = if matches!(prefetch_kind, Prefetch::Codes) {
                metric::quantize_query_for(floats, view.codes.width(), &mut query_codes)
            } else {
                query_codes.clear();
                (0.0, 0)
            };
            Prepared {
                floats,
                bits: &[],
                norm: if M::USES_QUERY_NORM {
                    copse_distance::fixed::norm_of_squared(k.norm_squared_fixed(floats))
                } else {
                    0.0
                },
                code_scale,
                code_bias,
                codes: &query_codes,
            }
        }
        Query::Bits(bits) => Prepared {
            floats: &[],
            bits,
            norm: 0.0,
            codes: &[],
            code_scale: 0.0,
            code_bias: 0,
        },
    };
    let plan = Plan {
        view,
        query: &prepared,
        n,
        search_k,
        prefetch: prefetch_kind,
    };
    let result = search_planned::<K, M>(k, plan, filter, s, out);
    s.query_codes = query_codes;
    result
}

/// One search with its inputs resolved: the file, the prepared query, the results wanted, the
/// effort and what scoring will read.
#[derive(Clone, Copy)]
pub(crate) struct Plan<'a> {
    pub view: &'a View<'a>,
    pub query: &'a Prepared<'a>,
    pub n: usize,
    pub search_k: usize,
    pub prefetch: Prefetch<'a>,
}

#[inline(always)]
fn search_planned<K: Kernels, M: QueryMetric>(
    k: K,
    plan: Plan<'_>,
    filter: Option<&RowFilter<'_>>,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    let n_items = usize::try_from(plan.view.info.n_items)
        .map_err(|_| QueryError::Corrupt("item count exceeds memory"))?;
    s.begin(n_items);
    if let Some(filter) = filter {
        return crate::filter::search::<K, M>(k, plan, filter, s, out);
    }
    if !plan.view.graph.is_empty() {
        return crate::beam::search::<K, M, _>(k, plan, All, s, out);
    }
    forest::<K, M, _>(k, plan, All, s, out)
}

/// The forest search: the tree walk gathers `plan.search_k` candidates (the rows `allow`
/// allows), then they are ranked.
#[inline(always)]
pub(crate) fn forest<K: Kernels, M: QueryMetric, A: Allow>(
    k: K,
    plan: Plan<'_>,
    allow: A,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    gather::<K, M, A>(
        k,
        plan.view,
        plan.query,
        plan.search_k,
        allow,
        s,
        plan.prefetch,
    )?;
    rank::<K, M>(k, plan, s, out)
}

/// Scores `s.candidates` and emits the best `plan.n`: from the item codes first where the
/// metric has them (then exactly for a shortlist of the best), else exactly.
#[inline(always)]
pub(crate) fn rank<K: Kernels, M: QueryMetric>(
    k: K,
    plan: Plan<'_>,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    let Plan {
        view,
        query: prepared,
        n,
        prefetch: prefetch_kind,
        ..
    } = plan;
    // Holes never come out of a valid file's leaves; a corrupt one must not return them either.
    s.candidates.retain(|&id| view.is_present(u64::from(id)));
    if matches!(prefetch_kind, Prefetch::Codes) && s.candidates.len() > shortlist_len(n) {
        // Two passes: approximate scores from the one-line item codes for every candidate,
        // then exact scores from the full rows for a shortlist of the best.
        s.scores.clear();
        s.scores.resize(s.candidates.len(), 0.0);
        M::approximate(k, view, prepared, &s.candidates, &mut s.scores)?;
        keep_best(&s.scores, &s.candidates, shortlist_len(n), &mut s.best);
        s.shortlist.clear();
        s.shortlist.extend(s.best.drain().map(|r| r.id));
        s.scores.clear();
        s.scores.resize(s.shortlist.len(), 0.0);
        M::score(k, view, prepared, &s.shortlist, &mut s.scores)?;
        keep_best(&s.scores, &s.shortlist, n, &mut s.best);
    } else {
        s.scores.clear();
        s.scores.resize(s.candidates.len(), 0.0);
        M::score(k, view, prepared, &s.candidates, &mut s.scores)?;
        keep_best(&s.scores, &s.candidates, n, &mut s.best);
    }
    emit::<M>(&mut s.best, out);
    Ok(())
}

/// The tree walk: gathers leaf ids into `s.candidates` (each once, in the order found) until
/// `search_k` ids, counting repeats as Annoy does, have been seen or the trees are exhausted,
/// prefetching what scoring will read for each. With a filter, only the rows it allows are
/// gathered and counted.
#[inline(always)]
pub(crate) fn gather<K: Kernels, M: QueryMetric, A: Allow>(
    k: K,
    view: &View<'_>,
    prepared: &Prepared<'_>,
    search_k: usize,
    allow: A,
    s: &mut Scratch,
    prefetch_kind: Prefetch<'_>,
) -> Result<(), QueryError> {
    // A valid tree is visited at most once per node; more visits mean a cycle in a corrupt file.
    let mut budget: u64 = 0;
    for (t, tree) in view.trees.iter().enumerate() {
        budget = budget.saturating_add(tree.n_splits + tree.n_leaves);
        s.heap.push(Entry {
            priority: M::INITIAL,
            tree: t as u32,
            node: tree.root,
        });
    }

    let mut gathered = 0usize;
    while gathered < search_k {
        let Some(mut entry) = s.heap.pop() else { break };
        let tree = view
            .trees
            .get(entry.tree as usize)
            .ok_or(QueryError::Corrupt("tree out of range"))?;
        // Descend from the popped node. The child on the query's side keeps the parent's
        // priority (or the margin, if smaller); while that is still the best in the heap it is
        // visited straight away instead of going through the heap, which is the same order
        // Annoy's walk takes, at a third of the heap operations.
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or(QueryError::Corrupt("a tree's nodes form a cycle"))?;
            match entry.node.decode() {
                Ok(leaf) => {
                    let ids = view
                        .leaf(tree, leaf)
                        .ok_or(QueryError::Corrupt("leaf out of range"))?;
                    if A::ALL {
                        gathered += ids.len();
                    }
                    for id in ids {
                        if !A::ALL && !allow.allows(id) {
                            continue;
                        }
                        let word = s
                            .visited
                            .get_mut(id as usize / 64)
                            .ok_or(QueryError::Corrupt("leaf id out of range"))?;
                        let bit = 1u64 << (id % 64);
                        if *word & bit == 0 {
                            *word |= bit;
                            s.candidates.push(id);
                            // Start loading what scoring will read for it.
                            prefetch_kind.item(view, id);
                            if !A::ALL {
                                gathered += 1;
                            }
                        }
                    }
                    break;
                }
                Err(split) => {
                    let (node, normal) = view
                        .split(tree, split)
                        .ok_or(QueryError::Corrupt("split node out of range"))?;
                    for child in node.children {
                        if let Err(c) = child.decode() {
                            prefetch_splits(view, tree, c, SUBTREE_PREFETCH);
                        }
                    }
                    let [negative, positive] =
                        M::children(k, entry.priority, &node, normal, prepared);
                    let (near, near_priority, far, far_priority) = if positive >= negative {
                        (node.children[1], positive, node.children[0], negative)
                    } else {
                        (node.children[0], negative, node.children[1], positive)
                    };
                    prefetch_node(view, tree, far);
                    s.heap.push(Entry {
                        priority: far_priority,
                        tree: entry.tree,
                        node: far,
                    });
                    let next = Entry {
                        priority: near_priority,
                        tree: entry.tree,
                        node: near,
                    };
                    if s.heap
                        .peek()
                        .is_some_and(|top| top.priority > near_priority)
                    {
                        prefetch_node(view, tree, near);
                        s.heap.push(next);
                        break;
                    }
                    entry = next;
                }
            }
        }
    }

    Ok(())
}
