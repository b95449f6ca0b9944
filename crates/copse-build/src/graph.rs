//! The proximity graph stored beside the forest ([`copse_format::SectionKind::Graph`]): for
//! every item at most `degree` neighbours, chosen to be near and diverse, so that a best-first
//! beam search started from the forest's candidates reaches a query's nearest items after
//! scoring few others.
//!
//! The build has five steps, each a pass over the items on the rayon pool:
//!
//! 1. **Seed from the forest.** Items that share a leaf are near each other: each item's first
//!    `k` candidates are its nearest leaf mates over (up to [`SEED_TREES`] of) the trees.
//! 2. **Refine by NN-descent.** Rounds of "a neighbour of a neighbour is likely a neighbour":
//!    each item looks through its neighbours' lists and its reverse neighbours (the items that
//!    list it), and keeps the `k` nearest it has seen. Only pairs involving an entry that is new
//!    since the last round are compared, so later rounds cost little; rounds stop early once
//!    few lists change.
//! 3. **Prune for diversity** (the α rule of DiskANN's robust prune; α = 1 is HNSW's
//!    heuristic): a candidate is kept only if no kept neighbour is more than α times nearer to
//!    it than the item is. Edges then point in many directions instead of into one cluster.
//! 4. **Add reverse edges** within the cap: every item also offers itself to the items it
//!    keeps, and an item with more than `degree` then is pruned again.
//! 5. **Search and prune** (Vamana's pass): a beam search for each item over the graph so
//!    far, started from its nearest candidates; what it expanded and its final beam join the
//!    item's candidates, are pruned again, and reverse edges are added again.
//!
//! Each batch of distances is prefetched before it is scored. An on-disk build keeps the large
//! buffers in scratch files (`buffer.rs`).
//!
//! Distances come from the item codes (an exact integer i8 dot product, then scalar f32) for
//! angular, euclidean and dot; from `copse_distance::fixed`'s order for manhattan; from bit
//! counts for hamming. Every step computes each item's new list from the previous step's lists
//! only, with ties broken by id, so the graph is the same for any thread count and (all sums
//! being in one order) on every CPU.

use std::sync::atomic::{AtomicUsize, Ordering};

use copse_distance::{Kernels, Rows, WithKernels};
use copse_format::{EMPTY_SLOT, Element, GraphHeader, Metric};
use rayon::prelude::*;

use crate::buffer::{Buffer, Buffers};
use crate::codes::CodesView;
use crate::{BuildError, Progress, Stage, TreeParts, VectorStore};

/// At most this many trees seed the candidate lists: past it, more leaf mates add work but
/// few new neighbours (NN-descent finds the rest).
pub const SEED_TREES: usize = 16;

/// How the graph is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphOptions {
    /// Most neighbours an item keeps (the file's slots per item).
    pub degree: usize,
    /// Candidates an item keeps while the graph is refined, before pruning (at least
    /// `degree`).
    pub candidates: usize,
    /// Most NN-descent rounds.
    pub rounds: usize,
    /// The diversity prune's α: 1 keeps the fewest edges, larger keeps more.
    pub alpha: f32,
    /// Beam width of the search-and-prune pass (0: no such pass).
    pub search_beam: usize,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            degree: DEFAULT_DEGREE,
            candidates: DEFAULT_CANDIDATES,
            rounds: DEFAULT_ROUNDS,
            alpha: DEFAULT_ALPHA,
            search_beam: DEFAULT_SEARCH_BEAM,
        }
    }
}

/// Default [`GraphOptions::degree`].
pub const DEFAULT_DEGREE: usize = 32;
// The defaults were first measured on a 50,000-word GloVe sample, then on all of GloVe and the
// 384-d set (`docs/performance.md`, "Graph search"): α = 1 beat 1.1 and 1.2; with the search
// pass started from each item's own candidates, one NN-descent round and a beam of 64 gave
// better recall at equal `search_k` than two rounds and a beam of 32, in 15% less build time.

/// Default [`GraphOptions::candidates`].
pub const DEFAULT_CANDIDATES: usize = 32;
/// Default [`GraphOptions::rounds`].
pub const DEFAULT_ROUNDS: usize = 1;
/// Default [`GraphOptions::alpha`].
pub const DEFAULT_ALPHA: f32 = 1.0;
/// Default [`GraphOptions::search_beam`].
pub const DEFAULT_SEARCH_BEAM: usize = 64;

/// The search pass starts from this many of each item's nearest refined candidates.
const SEARCH_STARTS: usize = 8;

impl GraphOptions {
    /// The default options with another degree, and as many more candidates kept while the
    /// graph is refined as the defaults keep per slot.
    pub fn with_degree(degree: usize) -> Self {
        let scaled = degree.saturating_mul(DEFAULT_CANDIDATES) / DEFAULT_DEGREE;
        GraphOptions {
            degree,
            candidates: scaled.max(degree),
            ..GraphOptions::default()
        }
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let max = copse_format::MAX_DEGREE;
        if !(1..=max).contains(&self.degree) {
            return Err(BuildError::BadGraph(format!(
                "degree must be between 1 and {max}, not {}",
                self.degree
            )));
        }
        if !(self.degree..=4 * max).contains(&self.candidates) {
            return Err(BuildError::BadGraph(format!(
                "candidates must be between the degree ({}) and {}, not {}",
                self.degree,
                4 * max,
                self.candidates
            )));
        }
        if self.rounds > 64 {
            return Err(BuildError::BadGraph(format!(
                "at most 64 refinement rounds, not {}",
                self.rounds
            )));
        }
        if self.search_beam > 4096 {
            return Err(BuildError::BadGraph(format!(
                "the search pass's beam is at most 4096, not {}",
                self.search_beam
            )));
        }
        if !(1.0..=4.0).contains(&self.alpha) {
            return Err(BuildError::BadGraph(format!(
                "alpha must be between 1 and 4, not {}",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// A built graph, as the file stores it.
#[derive(Debug, Clone, Default)]
pub struct BuiltGraph {
    /// Slots per item.
    pub degree: usize,
    /// `degree` slots per item: neighbour ids nearest first, then [`EMPTY_SLOT`].
    pub slots: Buffer<u32>,
    /// Used slots.
    pub n_edges: u64,
}

impl BuiltGraph {
    /// The section's header.
    pub fn header(&self) -> GraphHeader {
        GraphHeader {
            degree: self.degree as u32,
            n_edges: self.n_edges,
            ..GraphHeader::default()
        }
    }

    /// Bytes of the section.
    pub fn section_len(&self) -> u64 {
        (size_of::<GraphHeader>() + self.slots.len() * 4) as u64
    }
}

/// A candidate neighbour: its distance from the list's item, and its id. Unused entries are
/// `(∞, EMPTY_SLOT)`, which sort last.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Cand {
    dist: f32,
    id: u32,
}

const NONE: Cand = Cand {
    dist: f32::INFINITY,
    id: EMPTY_SLOT,
};

impl Cand {
    /// A key whose integer order is `(dist, id)`'s (the distance in `total_cmp`'s order): one
    /// comparison a step for the sorts.
    #[inline(always)]
    fn order_key(&self) -> u64 {
        let bits = self.dist.to_bits();
        let ordered = if bits >> 31 == 1 {
            !bits
        } else {
            bits | 1 << 31
        };
        u64::from(ordered) << 32 | u64::from(self.id)
    }

    #[inline(always)]
    fn before(self, other: Cand) -> bool {
        match self.dist.total_cmp(&other.dist) {
            core::cmp::Ordering::Less => true,
            core::cmp::Ordering::Greater => false,
            core::cmp::Ordering::Equal => self.id < other.id,
        }
    }
}

/// Inserts `c` into the sorted, fixed-capacity `list` (with its `fresh` flags) unless it is
/// already there or no better than the last entry. A distance is a function of the pair, so a
/// repeat has the same `(dist, id)` and is found where it would go.
#[inline(always)]
fn insert(list: &mut [Cand], fresh: &mut [u8], c: Cand) -> bool {
    let Some(&last) = list.last() else {
        return false;
    };
    if !c.before(last) {
        return false;
    }
    // Binary search for the first entry not before `c`.
    let (mut lo, mut hi) = (0, list.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if list[mid].before(c) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if list[lo] == c {
        return false;
    }
    list.copy_within(lo..list.len() - 1, lo + 1);
    fresh.copy_within(lo..fresh.len() - 1, lo + 1);
    list[lo] = c;
    fresh[lo] = 1;
    true
}

/// Adds to `batch` the ids of `theirs` (a list, cut at its first empty slot) that `seen` has
/// not marked and that pass `wanted` (given each one's fresh flag), marking them and starting
/// to load what their distances read.
#[inline(always)]
fn gather_unseen(
    space: &Space<'_>,
    seen: &mut Seen,
    theirs: &[Cand],
    their_fresh: &[u8],
    wanted: impl Fn(u8) -> bool,
    batch: &mut Vec<u32>,
) {
    batch.clear();
    for (m, &m_fresh) in theirs.iter().zip(their_fresh) {
        if m.id == EMPTY_SLOT {
            break;
        }
        if wanted(m_fresh) && seen.first(m.id) {
            space.prefetch(m.id);
            batch.push(m.id);
        }
    }
}

/// Scores each id of `batch` from item `id` and offers it to `list`; how many went in.
#[inline(always)]
fn insert_scored<K: Kernels>(
    kern: K,
    space: &Space<'_>,
    id: u32,
    batch: &[u32],
    list: &mut [Cand],
    fresh: &mut [u8],
) -> usize {
    let mut changed = 0;
    for &m in batch {
        let dist = space.dist(kern, id, m);
        changed += usize::from(insert(list, fresh, Cand { dist, id: m }));
    }
    changed
}

/// Per-thread marks of the ids an item has already compared, reset by moving to the next
/// epoch. One byte a mark, so that the marks of a few hundred thousand items stay in L2 (with
/// four bytes they missed it, and marking was an eighth of the build); every 255 items the
/// marks are cleared, which costs a fraction of what those items' searches do.
struct Seen {
    marks: Vec<u8>,
    epoch: u8,
}

impl Seen {
    fn new(n: usize) -> Self {
        Seen {
            marks: vec![0; n],
            epoch: 0,
        }
    }

    fn next(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `id`; true if it was not marked yet (false for ids out of range).
    #[inline(always)]
    fn first(&mut self, id: u32) -> bool {
        match self.marks.get_mut(id as usize) {
            Some(mark) if *mark != self.epoch => {
                *mark = self.epoch;
                true
            }
            _ => false,
        }
    }
}

/// How far apart two items are, as the graph build measures it (deterministically on every
/// level: exact integer or fixed-order sums, then scalar arithmetic).
#[derive(Clone, Copy)]
struct Space<'a> {
    metric: Metric,
    codes: CodesView<'a>,
    rows: Rows<'a>,
    words: &'a [u64],
    row_len: usize,
    /// Dot: each item's coordinate in the extra dimension of the transform that makes inner
    /// products euclidean (Bachrach et al.), `sqrt(max² - |x|²)`.
    extra: &'a [f32],
    /// Dot: `2 max²`, every transformed item's squared norm twice.
    twice_max_squared: f32,
}

impl Space<'_> {
    /// True if [`Space::dist`] is a squared distance (the α rule then compares with α²).
    fn squared(&self) -> bool {
        !matches!(self.metric, Metric::Manhattan | Metric::Hamming)
    }

    /// Starts loading what [`Space::dist`] reads of item `id`, so that a batch of distances
    /// from one item waits for memory once rather than once per item.
    #[inline(always)]
    fn prefetch(&self, id: u32) {
        match self.metric {
            Metric::Angular | Metric::Euclidean | Metric::Dot => self.codes.prefetch(id),
            Metric::Manhattan => copse_distance::prefetch_row(self.rows, id),
            Metric::Hamming => {
                let start = (id as usize).saturating_mul(self.row_len);
                if let Some(bits) = self.words.get(start..start.saturating_add(self.row_len)) {
                    copse_distance::prefetch_lines(bits);
                }
            }
        }
    }

    #[inline(always)]
    fn dist<K: Kernels>(&self, k: K, a: u32, b: u32) -> f32 {
        match self.metric {
            Metric::Angular | Metric::Euclidean => {
                let (Some((ca, sa)), Some((cb, sb))) = (self.codes.row(a), self.codes.row(b))
                else {
                    return f32::INFINITY;
                };
                let dot = k.dot_i8_i8(ca, cb) as f32;
                let squares = self.codes.squared_norm(a) + self.codes.squared_norm(b);
                (squares - 2.0 * (sa * sb) * dot).max(0.0)
            }
            Metric::Dot => {
                let (Some((ca, sa)), Some((cb, sb))) = (self.codes.row(a), self.codes.row(b))
                else {
                    return f32::INFINITY;
                };
                let dot = (sa * sb) * k.dot_i8_i8(ca, cb) as f32;
                let ea = self.extra.get(a as usize).copied().unwrap_or(0.0);
                let eb = self.extra.get(b as usize).copied().unwrap_or(0.0);
                (self.twice_max_squared - 2.0 * (dot + ea * eb)).max(0.0)
            }
            Metric::Manhattan => match (self.rows.row(a as usize), self.rows.row(b as usize)) {
                (Some(x), Some(y)) => k.l1_fixed(x, y),
                _ => f32::INFINITY,
            },
            Metric::Hamming => {
                let bits = |id: u32| {
                    let start = (id as usize).checked_mul(self.row_len)?;
                    self.words.get(start..start.checked_add(self.row_len)?)
                };
                match (bits(a), bits(b)) {
                    (Some(x), Some(y)) => k.hamming(x, y) as f32,
                    _ => f32::INFINITY,
                }
            }
        }
    }
}

/// Items per parallel task: enough to amortise a dispatch and a task, few enough to balance.
const CHUNK: usize = 256;

/// Builds the graph over the present items of `store`, seeded from `trees`.
pub(crate) fn build_graph(
    store: &VectorStore,
    codes: CodesView<'_>,
    trees: &[TreeParts<'_>],
    options: &GraphOptions,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(Progress) + Sync),
    buffers: Buffers<'_>,
) -> Result<BuiltGraph, BuildError> {
    options.check()?;
    let n = store.n_items();
    let k = options.candidates;
    let slots = n
        .checked_mul(k)
        .ok_or_else(|| BuildError::TooLarge("graph".into()))?;
    let metric = store.metric();
    let (extra, twice_max_squared) = dot_transform(store);
    // Manhattan's distances read rows as f32: half-precision rows are widened once.
    let widened = if metric == Metric::Manhattan && store.element() != Element::F32 {
        let mut rows = buffers.filled(0.0f32, n * store.row_len())?;
        store.widen_rows_into(&mut rows);
        Some(rows)
    } else {
        None
    };
    let space = Space {
        metric,
        codes,
        rows: match &widened {
            Some(rows) => Rows::new(rows, store.row_len()).unwrap_or(Rows::empty(0)),
            None => store.rows(),
        },
        words: store.words(),
        row_len: store.row_len(),
        extra: &extra,
        twice_max_squared,
    };
    let present = store.present_bitmap();
    let is_present = |id: usize| {
        present
            .get(id / 64)
            .is_some_and(|w| w >> (id % 64) & 1 == 1)
    };
    let total = options.rounds + 3 + usize::from(options.search_beam > 0);
    let step = AtomicUsize::new(0);
    let report = || {
        let done = step.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress {
            stage: Stage::Graph,
            done,
            total,
        });
    };

    // 1. Seed from the forest's leaves.
    let leaves = TreeLeaves::unpack(trees, n, store.n_present(), buffers)?;
    let mut lists = buffers.filled(NONE, slots)?;
    let mut fresh = buffers.filled(0u8, slots)?;
    pool.install(|| {
        lists
            .par_chunks_mut(CHUNK * k)
            .zip(fresh.par_chunks_mut(CHUNK * k))
            .enumerate()
            .for_each_init(
                || (Seen::new(n), Vec::new()),
                |(seen, batch), (chunk, (lists, fresh))| {
                    let _ = copse_distance::dispatch(SeedOp {
                        space,
                        leaves: &leaves,
                        first: chunk * CHUNK,
                        k,
                        lists,
                        fresh,
                        seen,
                        batch,
                    });
                },
            )
    });
    drop(leaves);
    report();

    // 2. NN-descent rounds.
    let mut next = buffers.filled(NONE, slots)?;
    let mut next_fresh = buffers.filled(0u8, slots)?;
    for _ in 0..options.rounds {
        let reverse = pool.install(|| Reverse::of(&lists, &fresh, k, n, k, buffers))?;
        let updates = AtomicUsize::new(0);
        pool.install(|| {
            next.par_chunks_mut(CHUNK * k)
                .zip(next_fresh.par_chunks_mut(CHUNK * k))
                .enumerate()
                .for_each_init(
                    || (Seen::new(n), Vec::new()),
                    |(seen, batch), (chunk, (out, out_fresh))| {
                        if let Ok(changed) = copse_distance::dispatch(DescentOp {
                            space,
                            lists: &lists,
                            fresh: &fresh,
                            reverse: &reverse,
                            first: chunk * CHUNK,
                            k,
                            out,
                            out_fresh,
                            seen,
                            batch,
                        }) {
                            updates.fetch_add(changed, Ordering::Relaxed);
                        }
                    },
                )
        });
        std::mem::swap(&mut lists, &mut next);
        std::mem::swap(&mut fresh, &mut next_fresh);
        report();
        // Converged: fewer than 0.1% of the entries changed.
        if updates.into_inner() * 1000 < slots {
            break;
        }
    }
    drop(next);
    drop(next_fresh);
    drop(fresh);

    // 3. Prune each list for diversity.
    let degree = options.degree;
    let alpha = if space.squared() {
        options.alpha * options.alpha
    } else {
        options.alpha
    };
    let mut pruned = buffers.filled(NONE, n * degree)?;
    pool.install(|| {
        pruned
            .par_chunks_mut(CHUNK * degree)
            .enumerate()
            .for_each(|(chunk, out)| {
                let _ = copse_distance::dispatch(PruneOp {
                    space,
                    lists: &lists,
                    k,
                    first: chunk * CHUNK,
                    degree,
                    alpha,
                    out,
                });
            })
    });
    report();

    // 4. Reverse edges, within the cap.
    let mut slots = merge_reverse(space, &pruned, degree, alpha, n, pool, buffers)?;
    report();

    // 5. Search-and-prune: each item's candidates become what a beam search for it over the
    // graph so far expands and its final beam (Vamana's pass), with its refined list, pruned
    // again; then reverse edges again. The searches find near items that the refinement
    // missed, a few hops away.
    if options.search_beam > 0 {
        pool.install(|| {
            pruned
                .par_chunks_mut(CHUNK * degree)
                .enumerate()
                .for_each_init(
                    || BeamScratch::new(n),
                    |scratch, (chunk, out)| {
                        let _ = copse_distance::dispatch(SearchPruneOp {
                            space,
                            graph: &slots,
                            lists: &lists,
                            k,
                            beam: options.search_beam,
                            first: chunk * CHUNK,
                            degree,
                            alpha,
                            out,
                            scratch,
                        });
                    },
                )
        });
        drop(slots);
        slots = merge_reverse(space, &pruned, degree, alpha, n, pool, buffers)?;
        report();
    }
    drop(lists);

    // Holes never gain edges (they are never anyone's candidate), but make sure.
    for (id, item) in slots.chunks_exact_mut(degree).enumerate() {
        if !is_present(id) {
            item.fill(EMPTY_SLOT);
        }
    }
    let n_edges = slots.iter().filter(|&&s| s != EMPTY_SLOT).count() as u64;
    Ok(BuiltGraph {
        degree,
        slots,
        n_edges,
    })
}

/// Each item's pruned list plus the items that kept it, pruned again where over `degree`,
/// as file slots.
fn merge_reverse(
    space: Space<'_>,
    pruned: &[Cand],
    degree: usize,
    alpha: f32,
    n: usize,
    pool: &rayon::ThreadPool,
    buffers: Buffers<'_>,
) -> Result<Buffer<u32>, BuildError> {
    let flags = buffers.filled(0u8, pruned.len())?;
    let reverse = pool.install(|| Reverse::of(pruned, &flags, degree, n, usize::MAX, buffers))?;
    drop(flags);
    let mut slots = buffers.filled(EMPTY_SLOT, n * degree)?;
    pool.install(|| {
        slots
            .par_chunks_mut(CHUNK * degree)
            .enumerate()
            .for_each(|(chunk, out)| {
                let _ = copse_distance::dispatch(MergeOp {
                    space,
                    pruned,
                    reverse: &reverse,
                    first: chunk * CHUNK,
                    degree,
                    alpha,
                    out,
                });
            })
    });
    Ok(slots)
}

/// One thread's buffers for the search pass.
struct BeamScratch {
    seen: Seen,
    frontier: std::collections::BinaryHeap<core::cmp::Reverse<Ordered>>,
    best: std::collections::BinaryHeap<Ordered>,
    pool: Vec<Cand>,
    /// The unvisited neighbours of the item being expanded, prefetched before they are scored.
    batch: Vec<u32>,
    /// The items the current search has expanded.
    expanded: Vec<Cand>,
}

impl BeamScratch {
    fn new(n: usize) -> Self {
        BeamScratch {
            seen: Seen::new(n),
            frontier: Default::default(),
            best: Default::default(),
            pool: Vec::new(),
            batch: Vec::new(),
            expanded: Vec::new(),
        }
    }
}

/// A [`Cand`] ordered by `(dist, id)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ordered(Cand);

impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0
            .dist
            .total_cmp(&other.0.dist)
            .then(self.0.id.cmp(&other.0.id))
    }
}

/// Step 5 for items `first..`: a beam search for each item over `graph`, then the α prune of
/// what it expanded and its final beam, together with the item's refined candidates.
struct SearchPruneOp<'a> {
    space: Space<'a>,
    graph: &'a [u32],
    lists: &'a [Cand],
    k: usize,
    beam: usize,
    first: usize,
    degree: usize,
    alpha: f32,
    out: &'a mut [Cand],
    scratch: &'a mut BeamScratch,
}

impl WithKernels for SearchPruneOp<'_> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernels>(self, kern: K) {
        let SearchPruneOp {
            space,
            graph,
            lists,
            k,
            beam,
            first,
            degree,
            alpha,
            out,
            scratch: s,
        } = self;
        for (offset, out) in out.chunks_exact_mut(degree).enumerate() {
            let id = (first + offset) as u32;
            let Some(own) = lists.get(id as usize * k..(id as usize + 1) * k) else {
                continue;
            };
            if own.first().is_none_or(|c| c.id == EMPTY_SLOT) {
                continue;
            }
            s.seen.next();
            s.seen.first(id);
            s.frontier.clear();
            s.best.clear();
            s.pool.clear();
            s.expanded.clear();
            // The search starts from the item's nearest refined candidates: the forest gives
            // queries starts near them too, so the pass spends its beam on the item's own
            // region rather than on the way there from one far entry (on GloVe, searches from
            // the medoid cost as much at beam 48 as these at 64, for a worse graph).
            for &c in own
                .iter()
                .take(SEARCH_STARTS)
                .take_while(|c| c.id != EMPTY_SLOT)
            {
                if s.seen.first(c.id) {
                    s.frontier.push(core::cmp::Reverse(Ordered(c)));
                    s.best.push(Ordered(c));
                }
            }
            while let Some(core::cmp::Reverse(Ordered(nearest))) = s.frontier.pop() {
                if s.best.len() >= beam && s.best.peek().is_some_and(|w| nearest.dist > w.0.dist) {
                    break;
                }
                let at = nearest.id as usize * degree;
                s.expanded.push(nearest);
                s.batch.clear();
                for &next in graph.get(at..at + degree).unwrap_or(&[]) {
                    if next == EMPTY_SLOT {
                        break;
                    }
                    if s.seen.first(next) {
                        space.prefetch(next);
                        s.batch.push(next);
                    }
                }
                for &next in &s.batch {
                    let c = Cand {
                        dist: space.dist(kern, id, next),
                        id: next,
                    };
                    if s.best.len() < beam {
                        s.best.push(Ordered(c));
                        s.frontier.push(core::cmp::Reverse(Ordered(c)));
                    } else if s.best.peek().is_some_and(|w| Ordered(c) < *w) {
                        s.best.pop();
                        s.best.push(Ordered(c));
                        s.frontier.push(core::cmp::Reverse(Ordered(c)));
                    }
                }
                // The next item to expand is likely the frontier's nearest: start loading its
                // neighbour list.
                if let Some(core::cmp::Reverse(Ordered(next))) = s.frontier.peek() {
                    let at = next.id as usize * degree;
                    if let Some(slots) = graph.get(at..at + degree) {
                        copse_distance::prefetch_lines(slots);
                    }
                }
            }
            // Vamana's candidates: the items the search expanded and the beam it ended with
            // (not everything it scored: a tenth of the pool to sort and prune, for a graph
            // as good on 384-d embeddings and 3% slower at recall 0.95 on GloVe).
            s.pool.append(&mut s.expanded);
            s.pool.extend(s.best.iter().map(|o| o.0));
            s.pool
                .extend(own.iter().copied().take_while(|c| c.id != EMPTY_SLOT));
            s.pool.sort_unstable_by_key(|c| c.order_key());
            s.pool.dedup_by_key(|c| c.id);
            out.fill(NONE);
            robust_prune(kern, &space, s.pool.iter().copied(), alpha, out);
        }
    }
}

/// Dot's transform: each item's extra coordinate `sqrt(max² - |x|²)` (in f64, rounded once)
/// and `2 max²`; nothing for other metrics.
fn dot_transform(store: &VectorStore) -> (Vec<f32>, f32) {
    if store.metric() != Metric::Dot {
        return (Vec::new(), 0.0);
    }
    let norms = store.norms();
    let max = norms.iter().copied().fold(0.0f32, f32::max);
    let max_sq = f64::from(max) * f64::from(max);
    let extra = norms
        .iter()
        .map(|&x| (max_sq - f64::from(x) * f64::from(x)).max(0.0).sqrt() as f32)
        .collect();
    (extra, (2.0 * max_sq) as f32)
}

/// Each seeding tree's ids by leaf, and which leaf each item is in.
struct TreeLeaves {
    trees: Vec<(Buffer<u32>, Vec<u32>, Buffer<u32>)>,
}

impl TreeLeaves {
    fn unpack(
        trees: &[TreeParts<'_>],
        n_items: usize,
        n_present: usize,
        buffers: Buffers<'_>,
    ) -> Result<Self, BuildError> {
        let bits = copse_format::IndexInfo::id_bits_for(n_items as u64);
        let mut out = Vec::new();
        for tree in trees.iter().take(SEED_TREES) {
            let unpacked = copse_format::unpack_ids(tree.packed_ids, bits, n_present);
            let mut ids = buffers.filled(0u32, unpacked.len())?;
            ids.copy_from_slice(&unpacked);
            drop(unpacked);
            let offsets = tree.leaf_offsets.to_vec();
            let mut leaf_of = buffers.filled(u32::MAX, n_items)?;
            for (leaf, range) in offsets.windows(2).enumerate() {
                for &id in ids.get(range[0] as usize..range[1] as usize).unwrap_or(&[]) {
                    if let Some(slot) = leaf_of.get_mut(id as usize) {
                        *slot = leaf as u32;
                    }
                }
            }
            out.push((ids, offsets, leaf_of));
        }
        Ok(TreeLeaves { trees: out })
    }

    /// The ids in item `id`'s leaf of each tree.
    fn mates(&self, id: u32) -> impl Iterator<Item = &[u32]> {
        self.trees
            .iter()
            .filter_map(move |(ids, offsets, leaf_of)| {
                let leaf = *leaf_of.get(id as usize)? as usize;
                let start = *offsets.get(leaf)? as usize;
                let end = *offsets.get(leaf + 1)? as usize;
                ids.get(start..end)
            })
    }
}

/// Who lists each item: for item `i`, every `(u, dist)` whose list holds `i` (with the
/// entry's fresh flag), nearest first.
struct Reverse {
    offsets: Buffer<usize>,
    entries: Buffer<Listed>,
    cap: usize,
}

/// An item that lists another ([`Reverse`]), with its distance, and whether the entry is new
/// since the last round (non-zero).
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Listed {
    by: Cand,
    fresh: u32,
}

impl Reverse {
    /// The reverse of `lists` (`k` entries per item, `n` items); [`Reverse::get`] gives at most
    /// `cap` per item. Filled in list order and sorted per item, so it does not depend on the
    /// thread count.
    fn of(
        lists: &[Cand],
        fresh: &[u8],
        k: usize,
        n: usize,
        cap: usize,
        buffers: Buffers<'_>,
    ) -> Result<Self, BuildError> {
        let mut offsets = buffers.filled(0usize, n + 1)?;
        for c in lists {
            if let Some(count) = offsets.get_mut(c.id as usize + 1) {
                *count += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let none = Listed { by: NONE, fresh: 0 };
        let mut entries = buffers.filled(none, offsets[n])?;
        let mut cursor = buffers.filled(0usize, n + 1)?;
        cursor.copy_from_slice(&offsets);
        for (slot, (c, &f)) in lists.iter().zip(fresh).enumerate() {
            if c.id == EMPTY_SLOT {
                continue;
            }
            if let Some(at) = cursor.get_mut(c.id as usize) {
                if let Some(entry) = entries.get_mut(*at) {
                    *entry = Listed {
                        by: Cand {
                            dist: c.dist,
                            id: (slot / k) as u32,
                        },
                        fresh: u32::from(f),
                    };
                }
                *at += 1;
            }
        }
        drop(cursor);
        // Each item's entries sorted, in groups of `CHUNK` items (one slice per group, not per
        // item: an on-disk build keeps its anonymous memory to a few bytes per item).
        let mut groups = Vec::with_capacity(n.div_ceil(CHUNK));
        let mut rest: &mut [Listed] = &mut entries;
        for first in (0..n).step_by(CHUNK) {
            let end = (first + CHUNK).min(n);
            let (group, tail) = rest.split_at_mut(offsets[end] - offsets[first]);
            groups.push((first, end, group));
            rest = tail;
        }
        groups.par_iter_mut().for_each(|(first, end, group)| {
            let base = offsets[*first];
            for i in *first..*end {
                if let Some(piece) = group.get_mut(offsets[i] - base..offsets[i + 1] - base) {
                    piece.sort_unstable_by_key(|l| l.by.order_key());
                }
            }
        });
        Ok(Reverse {
            offsets,
            entries,
            cap,
        })
    }

    /// The nearest (at most `cap`) items whose lists hold `id`.
    #[inline(always)]
    fn get(&self, id: u32) -> &[Listed] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => {
                let end = end.min(start.saturating_add(self.cap));
                self.entries.get(start..end).unwrap_or(&[])
            }
            _ => &[],
        }
    }
}

/// Step 1 for items `first..`: nearest leaf mates.
struct SeedOp<'a> {
    space: Space<'a>,
    leaves: &'a TreeLeaves,
    first: usize,
    k: usize,
    lists: &'a mut [Cand],
    fresh: &'a mut [u8],
    seen: &'a mut Seen,
    /// One leaf's unseen mates, prefetched before they are scored.
    batch: &'a mut Vec<u32>,
}

impl WithKernels for SeedOp<'_> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernels>(self, kern: K) {
        let SeedOp {
            space,
            leaves,
            first,
            k,
            lists,
            fresh,
            seen,
            batch,
        } = self;
        for (offset, (list, fresh)) in lists
            .chunks_exact_mut(k)
            .zip(fresh.chunks_exact_mut(k))
            .enumerate()
        {
            let id = (first + offset) as u32;
            seen.next();
            seen.first(id);
            for mates in leaves.mates(id) {
                batch.clear();
                for &mate in mates {
                    if seen.first(mate) {
                        space.prefetch(mate);
                        batch.push(mate);
                    }
                }
                insert_scored(kern, &space, id, batch, list, fresh);
            }
        }
    }
}

/// Step 2, one NN-descent round for items `first..`: each new list from the old lists.
struct DescentOp<'a> {
    space: Space<'a>,
    lists: &'a [Cand],
    fresh: &'a [u8],
    reverse: &'a Reverse,
    first: usize,
    k: usize,
    out: &'a mut [Cand],
    out_fresh: &'a mut [u8],
    seen: &'a mut Seen,
    /// The candidates from one list, prefetched before they are scored.
    batch: &'a mut Vec<u32>,
}

impl WithKernels for DescentOp<'_> {
    /// Entries that changed.
    type Output = usize;

    #[inline(always)]
    fn run<K: Kernels>(self, kern: K) -> usize {
        let DescentOp {
            space,
            lists,
            fresh,
            reverse,
            first,
            k,
            out,
            out_fresh,
            seen,
            batch,
        } = self;
        let list_of = |id: u32| {
            let start = (id as usize).saturating_mul(k);
            (
                lists.get(start..start + k).unwrap_or(&[]),
                fresh.get(start..start + k).unwrap_or(&[]),
            )
        };
        let mut changed = 0;
        for (offset, (list, list_fresh)) in out
            .chunks_exact_mut(k)
            .zip(out_fresh.chunks_exact_mut(k))
            .enumerate()
        {
            let id = (first + offset) as u32;
            let (old, old_fresh) = list_of(id);
            list.copy_from_slice(old);
            list_fresh.fill(0);
            if old.first().is_none_or(|c| c.id == EMPTY_SLOT) {
                continue;
            }
            seen.next();
            seen.first(id);
            for c in old {
                seen.first(c.id);
            }
            // The lists read below, before the first is needed.
            for c in old.iter().take_while(|c| c.id != EMPTY_SLOT) {
                copse_distance::prefetch_lines(list_of(c.id).0);
            }
            // A neighbour's neighbours.
            for (c, &c_fresh) in old.iter().zip(old_fresh) {
                if c.id == EMPTY_SLOT {
                    break;
                }
                let (theirs, their_fresh) = list_of(c.id);
                let wanted = |m_fresh: u8| (c_fresh | m_fresh) != 0;
                gather_unseen(&space, seen, theirs, their_fresh, wanted, batch);
                changed += insert_scored(kern, &space, id, batch, list, list_fresh);
            }
            // The items that list this one, and their neighbours.
            for &Listed {
                by: u,
                fresh: u_fresh,
            } in reverse.get(id)
            {
                if seen.first(u.id) {
                    changed += usize::from(insert(list, list_fresh, u));
                }
                let (theirs, their_fresh) = list_of(u.id);
                let wanted = |m_fresh: u8| (u_fresh | u32::from(m_fresh)) != 0;
                gather_unseen(&space, seen, theirs, their_fresh, wanted, batch);
                changed += insert_scored(kern, &space, id, batch, list, list_fresh);
            }
        }
        changed
    }
}

/// The α rule over `candidates` (nearest first) into `out`, at most `out.len()`; returns how
/// many were kept. A candidate is dropped if a kept neighbour is within `1 / α` of the
/// candidate's distance from the item (`alpha` is α², for squared distances).
#[inline(always)]
fn robust_prune<K: Kernels>(
    kern: K,
    space: &Space<'_>,
    candidates: impl Iterator<Item = Cand>,
    alpha: f32,
    out: &mut [Cand],
) -> usize {
    let mut kept = 0;
    // Plain loops, no closure: a closure is compiled without the level's target features, and
    // the distance kernel it calls would stop being inlined (measured: a third of the build).
    for c in candidates {
        if c.id == EMPTY_SLOT || kept == out.len() {
            break;
        }
        let mut occluded = false;
        for s in &out[..kept] {
            if alpha * space.dist(kern, s.id, c.id) <= c.dist {
                occluded = true;
                break;
            }
        }
        if !occluded {
            out[kept] = c;
            kept += 1;
        }
    }
    kept
}

/// Step 3 for items `first..`: each candidate list pruned to at most `degree`.
struct PruneOp<'a> {
    space: Space<'a>,
    lists: &'a [Cand],
    k: usize,
    first: usize,
    degree: usize,
    alpha: f32,
    out: &'a mut [Cand],
}

impl WithKernels for PruneOp<'_> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernels>(self, kern: K) {
        for (offset, out) in self.out.chunks_exact_mut(self.degree).enumerate() {
            let start = (self.first + offset) * self.k;
            let Some(list) = self.lists.get(start..start + self.k) else {
                continue;
            };
            robust_prune(kern, &self.space, list.iter().copied(), self.alpha, out);
        }
    }
}

/// Step 4 for items `first..`: the pruned list and the reverse edges, pruned again to
/// `degree` if they exceed it, written as file slots.
struct MergeOp<'a> {
    space: Space<'a>,
    pruned: &'a [Cand],
    reverse: &'a Reverse,
    first: usize,
    degree: usize,
    alpha: f32,
    out: &'a mut [u32],
}

impl WithKernels for MergeOp<'_> {
    type Output = ();

    #[inline(always)]
    fn run<K: Kernels>(self, kern: K) {
        let degree = self.degree;
        let mut merged: Vec<Cand> = Vec::new();
        let mut kept = vec![NONE; degree];
        for (offset, out) in self.out.chunks_exact_mut(degree).enumerate() {
            let id = (self.first + offset) as u32;
            let start = id as usize * degree;
            let Some(own) = self.pruned.get(start..start + degree) else {
                continue;
            };
            merged.clear();
            merged.extend(own.iter().copied().take_while(|c| c.id != EMPTY_SLOT));
            merged.extend(self.reverse.get(id).iter().map(|l| l.by));
            merged.sort_unstable_by_key(|c| c.order_key());
            merged.dedup_by_key(|c| c.id);
            let chosen: &[Cand] = if merged.len() <= degree {
                &merged
            } else {
                let n = robust_prune(
                    kern,
                    &self.space,
                    merged.iter().copied(),
                    self.alpha,
                    &mut kept,
                );
                &kept[..n]
            };
            for (slot, c) in out.iter_mut().zip(chosen) {
                *slot = c.id;
            }
        }
    }
}
