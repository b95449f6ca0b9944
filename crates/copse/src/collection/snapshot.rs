//! [`Snapshot`]: the segments one manifest names, with their deletes applied; every search of
//! a collection runs here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use copse_format::Metric;
use copse_query::Neighbor;

use super::MANIFEST_FILE;
use super::manifest::{Manifest, SegmentEntry, segment_file_name};
use crate::index::Filter;
use crate::{Error, Index};

/// One segment of a snapshot.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub number: u64,
    pub index: Arc<Index>,
    /// Deleted ids, ascending.
    pub deleted: Arc<Vec<u64>>,
    /// The items not deleted, when some are.
    live: Option<Arc<Filter>>,
}

impl Segment {
    fn new(number: u64, index: Arc<Index>, deleted: Vec<u64>) -> Segment {
        let live = (!deleted.is_empty()).then(|| {
            Arc::new(index.filter(index.ids().filter(|id| deleted.binary_search(id).is_err())))
        });
        Segment {
            number,
            index,
            deleted: Arc::new(deleted),
            live,
        }
    }

    pub fn has_live(&self, id: u64) -> bool {
        self.index.contains(id) && self.deleted.binary_search(&id).is_err()
    }

    pub fn n_live(&self) -> u64 {
        self.index.len() - self.deleted.len() as u64
    }
}

/// What a [`Collection`](super::Collection) reads: the segments one manifest names, with their
/// deletes applied. Searches may run from many threads at once. A snapshot never changes: hold
/// one ([`Collection::snapshot`](super::Collection::snapshot)) to keep searching it while the
/// collection commits.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    pub(super) manifest: Manifest,
    /// In the manifest's order.
    pub(super) segments: Vec<Segment>,
}

/// One segment as [`Snapshot::segments`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's file.
    pub path: PathBuf,
    /// Items in the file.
    pub n_items: u64,
    /// Of those, how many are deleted.
    pub n_deleted: u64,
}

/// An allow-list for the filtered searches of one snapshot ([`Snapshot::filter`]).
#[derive(Debug, Clone)]
pub struct CollectionFilter {
    generation: u64,
    /// One per segment, in the snapshot's order, deleted items already left out.
    parts: Vec<Filter>,
    allowed: u64,
}

impl CollectionFilter {
    /// Number of live items the filter allows.
    pub fn len(&self) -> u64 {
        self.allowed
    }

    /// True if it allows no item.
    pub fn is_empty(&self) -> bool {
        self.allowed == 0
    }
}

impl Snapshot {
    /// Opens what `MANIFEST` names, reusing `previous`'s open segments where the files are the
    /// same. A segment removed by a commit between reading the manifest and opening it sends
    /// the open round again with the newer manifest.
    pub(super) fn open(dir: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, Error> {
        let mut manifest = read_manifest(dir)?;
        // Each round follows a newer commit; a writer committing faster than a reader can open
        // its segments would keep it here, so the rounds are bounded.
        for _ in 0..1000 {
            if let Some(prev) = previous
                && prev.manifest == manifest
            {
                return Ok(Snapshot {
                    dir: dir.to_path_buf(),
                    manifest,
                    segments: prev.segments.clone(),
                });
            }
            match Snapshot::from_manifest(dir, manifest.clone(), previous, Vec::new()) {
                Err(Error::Io { path, source })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // Removed by a commit since the manifest was read, or really missing.
                    let now = read_manifest(dir)?;
                    if now.generation <= manifest.generation {
                        return Err(Error::Collection {
                            path,
                            reason: "segment file named by the manifest is missing".into(),
                        });
                    }
                    manifest = now;
                }
                other => return other,
            }
        }
        Err(Error::Collection {
            path: dir.join(MANIFEST_FILE),
            reason: "the collection changed faster than its segments could be opened".into(),
        })
    }

    /// Opens `manifest`'s segments (`fresh`: segments this handle has open already, by number:
    /// just built, or just checked by an attach).
    pub(super) fn from_manifest(
        dir: &Path,
        manifest: Manifest,
        previous: Option<&Snapshot>,
        fresh: Vec<(u64, Arc<Index>)>,
    ) -> Result<Snapshot, Error> {
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for entry in &manifest.segments {
            let path = dir.join(segment_file_name(entry.number));
            let reused = previous
                .and_then(|p| p.segments.iter().find(|s| s.number == entry.number))
                .map(|s| Arc::clone(&s.index));
            let opened = || fresh.iter().find(|(n, _)| *n == entry.number);
            let index = match reused.or_else(|| opened().map(|(_, index)| Arc::clone(index))) {
                Some(index) => index,
                None => Arc::new(Index::load(&path)?),
            };
            check_segment(&path, entry, &index, &manifest)?;
            let unchanged = previous.and_then(|p| {
                p.segments
                    .iter()
                    .find(|s| s.number == entry.number && *s.deleted == entry.deleted)
            });
            segments.push(match unchanged {
                Some(s) => s.clone(),
                None => Segment::new(entry.number, index, entry.deleted.clone()),
            });
        }
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            manifest,
            segments,
        })
    }

    /// Dimensions of every vector.
    pub fn dims(&self) -> usize {
        self.manifest.dims
    }

    /// How the collection's segments are built: what [`super::Collection::build_segment`]
    /// takes.
    pub fn options(&self) -> super::CollectionOptions {
        super::CollectionOptions {
            dims: self.manifest.dims,
            metric: self.manifest.metric,
            build: self.manifest.build,
        }
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.manifest.metric
    }

    /// Manifests written so far: each commit, compaction and merge that changed something
    /// adds one.
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }

    /// The bytes stored by the last [`super::Collection::commit_with_data`] (empty if none).
    pub fn user_data(&self) -> &[u8] {
        &self.manifest.user_data
    }

    /// Live items (added, not deleted).
    pub fn len(&self) -> u64 {
        self.segments.iter().map(Segment::n_live).sum()
    }

    /// True if there is no live item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                path: self.dir.join(segment_file_name(s.number)),
                n_items: s.index.len(),
                n_deleted: s.deleted.len() as u64,
            })
            .collect()
    }

    /// The ids of the live items (segment by segment, each ascending).
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments.iter().flat_map(|s| {
            s.index
                .ids()
                .filter(move |id| s.deleted.binary_search(id).is_err())
        })
    }

    /// True if `id` is a live item.
    pub fn contains(&self, id: u64) -> bool {
        self.segment_of(id).is_some()
    }

    /// The segment holding live item `id`.
    fn segment_of(&self, id: u64) -> Option<&Segment> {
        self.segments.iter().rev().find(|s| s.has_live(id))
    }

    /// The vector of live item `id` (bits as 0.0/1.0 for hamming).
    pub fn item_vector(&self, id: u64) -> Result<Vec<f32>, Error> {
        match self.segment_of(id) {
            Some(s) => s.index.item_vector(id),
            None => Err(Error::ItemMissing { id }),
        }
    }

    /// The distance between live items `a` and `b`, in the metric's convention (as
    /// [`Index::distance`]; the items may be in different segments).
    pub fn distance(&self, a: u64, b: u64) -> Result<f32, Error> {
        let vector = self.item_vector(a)?;
        let holder = self.segment_of(b).ok_or(Error::ItemMissing { id: b })?;
        // `b` alone allowed: the filtered search scores it exactly with `a`'s vector.
        let only_b = holder.index.filter([b]);
        let found = holder
            .index
            .nns_by_vector_filtered(&vector, 1, None, &only_b)?;
        found
            .first()
            .map(|n| n.distance)
            .ok_or(Error::ItemMissing { id: b })
    }

    /// Checks every segment file in full (checksums, references) and that each agrees with
    /// the manifest.
    pub fn verify(&self) -> Result<(), Error> {
        for s in &self.segments {
            let path = self.dir.join(segment_file_name(s.number));
            s.index.verify().map_err(|e| Error::Collection {
                path,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// An allow-list of `ids` (those that are live items; others are left out) for this
    /// snapshot's filtered searches.
    pub fn filter(&self, ids: impl IntoIterator<Item = u64>) -> CollectionFilter {
        let mut per_segment: Vec<Vec<u64>> = vec![Vec::new(); self.segments.len()];
        for id in ids {
            if let Some(at) = self.segments.iter().rposition(|s| s.has_live(id)) {
                per_segment[at].push(id);
            }
        }
        let parts: Vec<Filter> = self
            .segments
            .iter()
            .zip(per_segment)
            .map(|(s, ids)| s.index.filter(ids))
            .collect();
        let allowed = parts.iter().map(|f| f.len() as u64).sum();
        CollectionFilter {
            generation: self.generation(),
            parts,
            allowed,
        }
    }

    /// The `n` live items nearest to `vector`, nearest first, each segment searched with
    /// `search_k` (default: each segment's own default for `n`).
    pub fn nns_by_vector(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        self.search(vector, n, search_k, None)
    }

    /// [`Snapshot::nns_by_vector`] among the items `filter` allows.
    pub fn nns_by_vector_filtered(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: &CollectionFilter,
    ) -> Result<Vec<Neighbor>, Error> {
        self.search(vector, n, search_k, Some(filter))
    }

    /// The `n` live items nearest to live item `id` (itself first).
    pub fn nns_by_item(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        let vector = self.item_vector(id)?;
        self.search(&vector, n, search_k, None)
    }

    /// [`Snapshot::nns_by_item`] among the items `filter` allows (`id` itself only if allowed).
    pub fn nns_by_item_filtered(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
        filter: &CollectionFilter,
    ) -> Result<Vec<Neighbor>, Error> {
        let vector = self.item_vector(id)?;
        self.search(&vector, n, search_k, Some(filter))
    }

    /// Searches a batch: `queries` holds `queries.len() / dims` vectors back to back; the
    /// answers come in the same order. `threads` 0 uses one per core.
    pub fn nns_by_vectors(
        &self,
        queries: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: Option<&CollectionFilter>,
        threads: usize,
    ) -> Result<Vec<Vec<Neighbor>>, Error> {
        let dims = self.dims();
        if dims == 0 || !queries.len().is_multiple_of(dims) {
            return Err(Error::WrongDimensions {
                expected: dims,
                found: queries.len(),
            });
        }
        let rows: Vec<&[f32]> = queries.chunks_exact(dims).collect();
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        }
        .clamp(1, rows.len().max(1));
        let chunk = rows.len().div_ceil(threads).max(1);
        let mut out: Vec<Result<Vec<Neighbor>, Error>> = Vec::with_capacity(rows.len());
        std::thread::scope(|scope| {
            let handles: Vec<_> = rows
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|q| self.search(q, n, search_k, filter))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part),
                    Err(_) => out.push(Err(Error::Query(copse_query::QueryError::Corrupt(
                        "a search thread failed",
                    )))),
                }
            }
        });
        out.into_iter().collect()
    }

    /// The fan-out: every segment searched (deleted items and `filter`'s exclusions filtered
    /// inside each search), the answers merged.
    fn search(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        filter: Option<&CollectionFilter>,
    ) -> Result<Vec<Neighbor>, Error> {
        check_vector(self.dims(), vector)?;
        if let Some(f) = filter
            && (f.generation != self.generation() || f.parts.len() != self.segments.len())
        {
            return Err(Error::WrongKind(format!(
                "this filter was made for generation {} of the collection, which is at {}: \
                 make it again with this snapshot's filter()",
                f.generation,
                self.generation()
            )));
        }
        let mut found = Vec::new();
        let mut part = Vec::new();
        for (at, s) in self.segments.iter().enumerate() {
            let allow = match filter {
                Some(f) => Some(&f.parts[at]),
                None => s.live.as_deref(),
            };
            match allow {
                Some(f) if f.is_empty() => continue,
                Some(f) => s
                    .index
                    .nns_by_vector_filtered_into(vector, n, search_k, f, &mut part)?,
                None => s.index.nns_by_vector_into(vector, n, search_k, &mut part)?,
            }
            found.append(&mut part);
        }
        let larger_is_closer = self.metric() == Metric::Dot;
        found.sort_by(|a, b| {
            let by_distance = if larger_is_closer {
                b.distance.total_cmp(&a.distance)
            } else {
                a.distance.total_cmp(&b.distance)
            };
            by_distance.then(a.id.cmp(&b.id))
        });
        found.truncate(n);
        Ok(found)
    }
}

/// A vector's length and values, checked before any segment sees it (an empty collection
/// refuses a bad vector too).
pub(super) fn check_vector(dims: usize, vector: &[f32]) -> Result<(), Error> {
    if vector.len() != dims {
        return Err(Error::WrongDimensions {
            expected: dims,
            found: vector.len(),
        });
    }
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite {
            position,
            value: vector[position],
        });
    }
    Ok(())
}

/// Checks that an open segment is the file `entry` names and fits the collection.
fn check_segment(
    path: &Path,
    entry: &SegmentEntry,
    index: &Index,
    manifest: &Manifest,
) -> Result<(), Error> {
    let bad = |reason: String| Error::Collection {
        path: path.to_path_buf(),
        reason,
    };
    if index.header_checksum() != entry.header_checksum {
        return Err(bad(
            "the file is not the segment the manifest names (its header checksum differs)".into(),
        ));
    }
    check_fits(index, manifest).map_err(bad)?;
    if index.len() != entry.n_items {
        return Err(bad(format!(
            "segment has {} items, the manifest says {}",
            index.len(),
            entry.n_items
        )));
    }
    if let Some(id) = entry.deleted.iter().find(|&&id| !index.contains(id)) {
        return Err(bad(format!(
            "the manifest deletes item {id}, which the segment does not have"
        )));
    }
    Ok(())
}

/// Checks that a segment file holds the collection's kind of vectors: its dimensions, metric,
/// row type and index kind (graph or forest).
pub(super) fn check_fits(index: &Index, manifest: &Manifest) -> Result<(), String> {
    if index.dims() != manifest.dims || index.metric() != manifest.metric {
        return Err(format!(
            "segment is {} with {} dimensions, the collection {} with {}",
            index.metric(),
            index.dims(),
            manifest.metric,
            manifest.dims
        ));
    }
    if index.info().element != manifest.build.element {
        return Err(format!(
            "segment rows are {}, the collection's {}",
            index.info().element,
            manifest.build.element
        ));
    }
    if index.graph_stats().is_some() != manifest.build.graph.is_some() {
        return Err("segment and collection differ in kind (graph or forest)".into());
    }
    Ok(())
}

/// Reads and checks `dir`'s manifest.
pub(super) fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Collection {
                path,
                reason: "no manifest: not a copse collection (or its MANIFEST was removed)".into(),
            });
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    Manifest::decode(&bytes).map_err(|reason| Error::Collection { path, reason })
}
