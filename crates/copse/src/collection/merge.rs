//! Merging segments: the tiered policy that picks what to merge, and the merge itself, which
//! builds one segment from the live items of several.
//!
//! A query searches every segment, so its cost grows with their number (each graph search
//! costs about the same whatever the segment's size). The policy therefore keeps few segments:
//! sizes fall into tiers a factor `factor` apart, and as soon as a tier holds `factor`
//! segments they merge into one of the next tier. Items are rebuilt about log_factor(n / floor)
//! times over their life, as in any log-structured store. Tiers alone still leave one segment
//! per tier (10 equal commits end in 2 segments, 8 + 2), so once the segments besides the
//! largest hold `merge_all_at` (20%) of its items, everything merges into one (RocksDB's
//! universal compaction bounds its size amplification the same way).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::manifest::{BuildSettings, SegmentEntry, segment_file_name};
use super::snapshot::Segment;
use crate::{Error, Index, IndexBuilder};

/// Past this many segments, a merge takes a whole tier instead of `factor` segments of it.
const CATCH_UP_SEGMENTS: usize = 6;

/// When a collection merges its segments in the background of commits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergePolicy {
    factor: usize,
    floor: u64,
    max_deleted: f64,
    merge_all_at: f64,
}

impl Default for MergePolicy {
    /// Tiers a factor 2 apart above 10,000 items; everything merges into one segment once the
    /// others hold 20% of the largest's items; segments more than 30% deleted are rewritten.
    fn default() -> Self {
        MergePolicy {
            factor: 2,
            floor: 10_000,
            max_deleted: 0.3,
            merge_all_at: 0.2,
        }
    }
}

impl MergePolicy {
    /// No merging but by [`super::Collection::compact`].
    pub fn never() -> Self {
        MergePolicy {
            factor: 0,
            ..MergePolicy::default()
        }
    }

    /// Segments per tier before they merge (at least 2; 0 never merges).
    pub fn factor(mut self, factor: usize) -> Self {
        self.factor = if factor == 1 { 2 } else { factor };
        self
    }

    /// Segments of at most this many live items share the lowest tier.
    pub fn floor(mut self, items: u64) -> Self {
        self.floor = items.max(1);
        self
    }

    /// Every segment merges into one once the segments other than the largest hold this share
    /// of the largest's live items (0: never; tiers alone then). A query pays a whole graph
    /// search per segment whatever its size, so this bounds the search cost to about one
    /// segment's plus a tail under `share` of the items, for more background merge work: the
    /// largest segment is rebuilt each time the tail reaches `share` of it, about (1 + share) /
    /// share times over the items' growth (6 at 0.2, against log2(n / floor) for tiers alone).
    pub fn merge_all_at(mut self, share: f64) -> Self {
        self.merge_all_at = if share.is_finite() {
            share.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// A segment with more than this share of its items deleted is rewritten without them.
    pub fn max_deleted(mut self, share: f64) -> Self {
        self.max_deleted = share.clamp(0.0, 1.0);
        self
    }

    /// The tier of a segment with `live` items.
    fn tier(&self, live: u64) -> u32 {
        let mut tier = 0;
        let mut bound = self.floor;
        while live > bound {
            tier += 1;
            bound = bound.saturating_mul(self.factor as u64);
        }
        tier
    }

    /// The positions of the segments to merge next, if any: all of them once the rest hold
    /// `merge_all_at` of the largest's items (the largest past the floor); else the `factor`
    /// smallest of the lowest tier holding that many (all of that tier past
    /// `CATCH_UP_SEGMENTS` segments); else the most deleted segment past `max_deleted`, alone.
    pub(super) fn select(&self, segments: &[Segment]) -> Option<Vec<usize>> {
        if self.factor < 2 {
            return None;
        }
        let largest = segments.iter().map(Segment::n_live).max().unwrap_or(0);
        let rest = segments.iter().map(Segment::n_live).sum::<u64>() - largest;
        if self.merge_all_at > 0.0
            && segments.len() >= 2
            && largest > self.floor
            && rest as f64 >= self.merge_all_at * largest as f64
        {
            return Some((0..segments.len()).collect());
        }
        let mut tiers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (at, s) in segments.iter().enumerate() {
            tiers.entry(self.tier(s.n_live())).or_default().push(at);
        }
        // Exactly `factor` of them, the smallest: a merge then lands in the next tier, so
        // segment sizes stay powers of the factor (the fewest segments for the items). When
        // commits outrun the merges and segments pile up, the whole tier at once, to catch up.
        if let Some((_, mut full)) = tiers.into_iter().find(|(_, t)| t.len() >= self.factor) {
            if segments.len() <= CATCH_UP_SEGMENTS {
                full.sort_by_key(|&at| (segments[at].n_live(), at));
                full.truncate(self.factor);
                full.sort_unstable();
            }
            return Some(full);
        }
        segments
            .iter()
            .enumerate()
            .map(|(at, s)| (at, s.deleted.len() as f64 / s.index.len().max(1) as f64))
            .filter(|&(_, share)| share > self.max_deleted)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(at, _)| vec![at])
    }
}

/// What a merge reads: the sources as the snapshot it started from had them.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    pub segments: Vec<Segment>,
}

impl Sources {
    /// The ids deleted from the sources since the merge started, given the sources now
    /// (`None` for a source dropped since, every item of which is then deleted): the merged
    /// segment's tombstones.
    pub fn deleted_since(&self, now: &[Option<&SegmentEntry>]) -> Vec<u64> {
        let mut deleted = Vec::new();
        for (then, now) in self.segments.iter().zip(now) {
            match now {
                Some(now) => deleted.extend(
                    now.deleted
                        .iter()
                        .filter(|id| then.deleted.binary_search(id).is_err()),
                ),
                None => deleted.extend(
                    then.index
                        .ids()
                        .filter(|id| then.deleted.binary_search(id).is_err()),
                ),
            }
        }
        deleted.sort_unstable();
        deleted.dedup();
        deleted
    }

    /// The live items of the sources, by id.
    pub fn live_items(&self) -> Result<BTreeMap<u64, Vec<f32>>, Error> {
        let mut items = BTreeMap::new();
        for s in &self.segments {
            for id in s.index.ids() {
                if s.deleted.binary_search(&id).is_err() {
                    items.insert(id, s.index.item_vector(id)?);
                }
            }
        }
        Ok(items)
    }
}

/// Builds `items` into segment `number` of the collection in `dir` and saves it (atomically,
/// under its final name, which no manifest names yet); returns its entry and the open index.
pub(super) fn build_segment<'a>(
    dir: &Path,
    dims: usize,
    metric: copse_format::Metric,
    settings: BuildSettings,
    number: u64,
    items: impl Iterator<Item = (u64, &'a [f32])>,
    threads: usize,
) -> Result<(SegmentEntry, Arc<Index>), Error> {
    let mut builder = IndexBuilder::new(dims, metric)?
        .dtype(settings.element)?
        .seed(settings.seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .graph(settings.graph);
    if settings.leaf_capacity > 0 {
        builder = builder.leaf_capacity(settings.leaf_capacity);
    }
    for (id, vector) in items {
        builder.add_item(id, vector)?;
    }
    let index = builder.build_with_threads(settings.n_trees, threads)?;
    index.save(dir.join(segment_file_name(number)))?;
    let entry = SegmentEntry {
        number,
        n_items: index.len(),
        header_checksum: index.header_checksum(),
        deleted: Vec::new(),
    };
    Ok((entry, Arc::new(index)))
}
