//! The search itself: the best-first walk, deduplication, re-rank and selection, generic over the
//! SIMD level and the metric and run under one dispatch.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use copse_distance::{Kernels, WithKernels};
use copse_format::{Metric, NodeRef, View};

use crate::metric::{self, Prepared, QueryMetric};
use crate::{Neighbor, Query, QueryError};

/// Buffers one searcher reuses from query to query. Keep one per thread (or pool them); a
/// scratch adapts itself to whichever index it is used with.
#[derive(Debug, Default)]
pub struct Scratch {
    heap: BinaryHeap<Entry>,
    /// `visited[id] == epoch` if `id` was gathered by the current query.
    visited: Vec<u32>,
    epoch: u32,
    candidates: Vec<u32>,
    scores: Vec<f32>,
    ranked: Vec<(f32, u32)>,
}

impl Scratch {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Scratch::default()
    }

    /// Starts a query over `n_items` ids: a fresh epoch, so nothing counts as visited.
    fn begin(&mut self, n_items: usize) {
        if self.visited.len() != n_items {
            self.visited.clear();
            self.visited.resize(n_items, 0);
            self.epoch = 0;
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.fill(0);
            self.epoch = 1;
        }
        self.heap.clear();
        self.candidates.clear();
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

pub(crate) struct SearchOp<'a, 'v> {
    pub view: &'a View<'v>,
    pub query: Query<'a>,
    pub n: usize,
    pub search_k: usize,
    pub scratch: &'a mut Scratch,
    pub out: &'a mut Vec<Neighbor>,
}

impl WithKernels for SearchOp<'_, '_> {
    type Output = Result<(), QueryError>;

    #[inline(always)]
    fn run<K: Kernels>(self, k: K) -> Self::Output {
        match self.view.info.metric {
            Metric::Angular => search::<K, metric::Angular>(k, self),
            Metric::Euclidean => search::<K, metric::Euclidean>(k, self),
            Metric::Manhattan => search::<K, metric::Manhattan>(k, self),
            Metric::Dot => search::<K, metric::DotProduct>(k, self),
            Metric::Hamming => search::<K, metric::Hamming>(k, self),
        }
    }
}

#[inline(always)]
fn search<K: Kernels, M: QueryMetric>(k: K, op: SearchOp<'_, '_>) -> Result<(), QueryError> {
    let SearchOp {
        view,
        query,
        n,
        search_k,
        scratch: s,
        out,
    } = op;
    let prepared = match query {
        Query::F32(floats) => Prepared {
            floats,
            bits: &[],
            norm: k.norm_squared(floats).sqrt(),
        },
        Query::Bits(bits) => Prepared {
            floats: &[],
            bits,
            norm: 0.0,
        },
    };
    let n_items = usize::try_from(view.info.n_items)
        .map_err(|_| QueryError::Corrupt("item count exceeds memory"))?;
    s.begin(n_items);
    let epoch = s.epoch;

    // A valid tree is visited at most once per node; more pops mean a cycle in a corrupt file.
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
        let Some(entry) = s.heap.pop() else { break };
        budget = budget
            .checked_sub(1)
            .ok_or(QueryError::Corrupt("a tree's nodes form a cycle"))?;
        let tree = view
            .trees
            .get(entry.tree as usize)
            .ok_or(QueryError::Corrupt("tree out of range"))?;
        match entry.node.decode() {
            Ok(leaf) => {
                let ids = view
                    .leaf(tree, leaf)
                    .ok_or(QueryError::Corrupt("leaf out of range"))?;
                gathered += ids.len();
                for &id in ids {
                    let slot = s
                        .visited
                        .get_mut(id as usize)
                        .ok_or(QueryError::Corrupt("leaf id out of range"))?;
                    if *slot != epoch {
                        *slot = epoch;
                        s.candidates.push(id);
                    }
                }
            }
            Err(split) => {
                let (node, normal) = view
                    .split(tree, split)
                    .ok_or(QueryError::Corrupt("split node out of range"))?;
                let [negative, positive] = M::children(k, entry.priority, node, normal, &prepared);
                s.heap.push(Entry {
                    priority: positive,
                    tree: entry.tree,
                    node: node.children[1],
                });
                s.heap.push(Entry {
                    priority: negative,
                    tree: entry.tree,
                    node: node.children[0],
                });
            }
        }
    }

    // Holes never come out of a valid file's leaves; a corrupt one must not return them either.
    s.candidates.retain(|&id| view.is_present(u64::from(id)));
    s.scores.clear();
    s.scores.resize(s.candidates.len(), 0.0);
    M::score(k, view, &prepared, &s.candidates, &mut s.scores)?;

    s.ranked.clear();
    s.ranked
        .extend(s.scores.iter().copied().zip(s.candidates.iter().copied()));
    let by_score = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    let keep = n.min(s.ranked.len());
    if keep < s.ranked.len() && keep > 0 {
        s.ranked.select_nth_unstable_by(keep - 1, by_score);
    }
    s.ranked.truncate(keep);
    s.ranked.sort_unstable_by(by_score);
    out.extend(s.ranked.iter().map(|&(score, id)| Neighbor {
        id,
        distance: M::user(score),
    }));
    Ok(())
}
