//! Search on an index with a graph: the trees give the starting points, then a best-first beam
//! search follows the graph's edges towards the query, and the best of what it found are
//! re-ranked exactly.
//!
//! The beam keeps the `ef` best items scored so far in one sorted array, each marked once its
//! neighbours have been looked at. Each step takes the nearest unexpanded item, scores its
//! unvisited neighbours in one batch (from the item codes where the metric has them, with the
//! query's own i8 code; each code prefetched before the batch is scored), and inserts those
//! that beat the beam's worst. The search ends when every item in the beam has been expanded
//! (nothing left can improve it) or `search_k` items have been scored.
//!
//! The visited set is the same bitset the tree walk uses, cleared through the list of visited
//! ids, so its reset costs what the query visited. Every id read from the graph is checked to
//! be in range before it is used, and holes (which only a corrupt graph links to) are dropped
//! before the results: a corrupt graph (ids out of range, self loops, cycles, holes) can only
//! give in-range answers, and the search ends because each item is scored at most once.

use copse_distance::{Kernels, prefetch_lines};
use copse_format::{EMPTY_SLOT, View};

use crate::filter::{All, Allow};
use crate::metric::{Prepared, QueryMetric};
use crate::walk::{Plan, Prefetch, Ranked, Scratch, emit, gather, keep_best, shortlist_len};
use crate::{Neighbor, QueryError};

/// A graph search's beam width for `n` results and an effort of `search_k`: `search_k` bounds
/// the items scored, and a beam of `ef` scores about `SCORED_PER_BEAM_SLOT * ef` of them.
pub(crate) fn beam_width(n: usize, search_k: usize) -> usize {
    (search_k / SCORED_PER_BEAM_SLOT).max(n).max(1)
}

/// Items scored per slot of beam width: a beam of `ef` scores about 16 times `ef` items
/// before it converges on GloVe, more at 384 dimensions; with 24, a budget rarely cuts a
/// search short, and the narrower beam gave the better recall for the time on both datasets
/// (see `docs/performance.md`, "Graph search").
pub(crate) const SCORED_PER_BEAM_SLOT: usize = 24;

/// The beam width of a graph search that names no `search_k` (see `docs/performance.md`,
/// "Graph search": on a 50,000-word GloVe sample, recall@10 about 0.85).
pub(crate) const DEFAULT_BEAM: usize = 128;

/// The `search_k` of a graph search that names none.
pub(crate) fn default_search_k(n: usize) -> usize {
    n.max(DEFAULT_BEAM).saturating_mul(SCORED_PER_BEAM_SLOT)
}

/// The `plan.n` nearest by a best-first beam search of the graph, started from the items of
/// the first leaves the tree walk reaches, into `out`. With a filter, the beam still goes
/// through every item (the way to the allowed ones may pass others), and the allowed items
/// scored on the way are the results.
#[inline(always)]
pub(crate) fn search<K: Kernels, M: QueryMetric, A: Allow>(
    k: K,
    plan: Plan<'_>,
    allow: A,
    s: &mut Scratch,
    out: &mut Vec<Neighbor>,
) -> Result<(), QueryError> {
    let Plan {
        view,
        query: q,
        n,
        search_k,
        prefetch: prefetch_kind,
    } = plan;
    let ef = beam_width(n, search_k);
    let rough = matches!(prefetch_kind, Prefetch::Codes);

    // Starting points: the items of the first leaves the tree walk reaches (for inner
    // products, half the budget: see `QueryMetric::GRAPH_NEEDS_TREES`).
    let entry = if M::GRAPH_NEEDS_TREES {
        search_k / 2
    } else {
        ef.min(search_k)
    };
    gather::<K, M, All>(k, view, q, entry, All, s, prefetch_kind)?;
    s.candidates.retain(|&id| view.is_present(u64::from(id)));
    s.scores.clear();
    s.scores.resize(s.candidates.len(), 0.0);
    score::<K, M>(k, view, q, rough, &s.candidates, &mut s.scores)?;
    let mut scored = s.candidates.len();
    s.beam.clear();
    s.found.clear();
    s.found_scores.clear();
    for (&score, &id) in s.scores.iter().zip(&s.candidates) {
        s.beam.offer(ef, Ranked { score, id });
        if !A::ALL && allow.allows(id) {
            s.found.push(id);
            s.found_scores.push(score);
        }
    }

    let graph = view.graph;
    while let Some(nearest) = s.beam.next_unexpanded() {
        if scored >= search_k {
            break;
        }
        let slots = graph
            .slots(nearest.id)
            .ok_or(QueryError::Corrupt("graph item out of range"))?;
        // The next item to expand is likely the beam's next: start loading its list.
        if let Some(next) = s.beam.peek_unexpanded()
            && let Some(next_slots) = graph.slots(next.id)
        {
            prefetch_lines(next_slots);
        }
        s.shortlist.clear();
        for &next in slots {
            if next == EMPTY_SLOT {
                break;
            }
            let Some(word) = s.visited.get_mut(next as usize / 64) else {
                continue;
            };
            let bit = 1u64 << (next % 64);
            if *word & bit != 0 {
                continue;
            }
            *word |= bit;
            s.candidates.push(next);
            s.shortlist.push(next);
            prefetch_kind.item(view, next);
        }
        if s.shortlist.is_empty() {
            continue;
        }
        s.scores.clear();
        s.scores.resize(s.shortlist.len(), 0.0);
        score::<K, M>(k, view, q, rough, &s.shortlist, &mut s.scores)?;
        scored += s.shortlist.len();
        for (&score, &id) in s.scores.iter().zip(&s.shortlist) {
            s.beam.offer(ef, Ranked { score, id });
            if !A::ALL && allow.allows(id) {
                s.found.push(id);
                s.found_scores.push(score);
            }
        }
    }

    // The beam holds the best found (filtered: `found` holds every allowed item scored).
    // Scored from the codes, the best of them are re-ranked exactly; otherwise their scores
    // are exact already.
    s.shortlist.clear();
    s.scores.clear();
    if A::ALL {
        for r in s.beam.entries.drain(..) {
            s.shortlist.push(r.ranked.id);
            s.scores.push(r.ranked.score);
        }
    } else {
        std::mem::swap(&mut s.shortlist, &mut s.found);
        std::mem::swap(&mut s.scores, &mut s.found_scores);
    }
    // A valid graph links present items only; a corrupt one's holes end here, before the
    // results, rather than costing a test for every edge followed.
    let mut kept = 0;
    for i in 0..s.shortlist.len() {
        if view.is_present(u64::from(s.shortlist[i])) {
            s.shortlist[kept] = s.shortlist[i];
            s.scores[kept] = s.scores[i];
            kept += 1;
        }
    }
    s.shortlist.truncate(kept);
    s.scores.truncate(kept);
    if rough {
        keep_best(&s.scores, &s.shortlist, shortlist_len(n), &mut s.best);
        s.shortlist.clear();
        s.shortlist.extend(s.best.drain().map(|r| r.id));
        s.scores.clear();
        s.scores.resize(s.shortlist.len(), 0.0);
        M::score(k, view, q, &s.shortlist, &mut s.scores)?;
    }
    keep_best(&s.scores, &s.shortlist, n, &mut s.best);
    emit::<M>(&mut s.best, out);
    Ok(())
}

/// Scores `ids` into `out`: from the item codes if `rough`, else exactly.
#[inline(always)]
fn score<K: Kernels, M: QueryMetric>(
    k: K,
    view: &View<'_>,
    q: &Prepared<'_>,
    rough: bool,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), QueryError> {
    if rough {
        M::approximate(k, view, q, ids, out)
    } else {
        M::score(k, view, q, ids, out)
    }
}

/// The beam: the best `ef` items scored so far, sorted nearest first, each marked once its
/// neighbours have been looked at. One sorted array serves as both the result set and the
/// frontier (the unexpanded entries): at the beam widths used, an insertion's move of a few
/// dozen entries costs less than two heaps' sifting.
#[derive(Debug, Default)]
pub(crate) struct Beam {
    entries: Vec<BeamEntry>,
    /// No unexpanded entry before this index.
    cursor: usize,
}

#[derive(Debug, Clone, Copy)]
struct BeamEntry {
    ranked: Ranked,
    expanded: bool,
}

impl Beam {
    fn clear(&mut self) {
        self.entries.clear();
        self.cursor = 0;
    }

    /// Inserts `ranked` in order if the beam has room or it beats the worst entry.
    #[inline(always)]
    fn offer(&mut self, ef: usize, ranked: Ranked) {
        if self.entries.len() >= ef
            && self
                .entries
                .last()
                .is_some_and(|worst| ranked >= worst.ranked)
        {
            return;
        }
        let at = self.entries.partition_point(|e| e.ranked < ranked);
        if self.entries.len() >= ef {
            self.entries.pop();
        }
        self.entries.insert(
            at,
            BeamEntry {
                ranked,
                expanded: false,
            },
        );
        self.cursor = self.cursor.min(at);
    }

    /// The nearest entry not expanded yet, now marked expanded.
    #[inline(always)]
    fn next_unexpanded(&mut self) -> Option<Ranked> {
        while let Some(entry) = self.entries.get_mut(self.cursor) {
            self.cursor += 1;
            if !entry.expanded {
                entry.expanded = true;
                return Some(entry.ranked);
            }
        }
        None
    }

    /// The entry [`Beam::next_unexpanded`] would give, left as it is.
    #[inline(always)]
    fn peek_unexpanded(&self) -> Option<Ranked> {
        self.entries
            .get(self.cursor..)?
            .iter()
            .find(|e| !e.expanded)
            .map(|e| e.ranked)
    }
}
