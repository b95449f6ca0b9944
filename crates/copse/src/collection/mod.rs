//! [`Collection`]: an index that takes adds, updates and deletes after build, made of static
//! index files, as Lucene and LSM stores are made of immutable segments.
//!
//! A collection is a directory:
//!
//! - `seg-<number>.copse`: segments, each an ordinary copse index (forest or graph) that
//!   `copse info` and `copse verify` read like any other;
//! - `MANIFEST`: which segments are live and which of their items are deleted (tombstones);
//! - `LOCK`: held by the one writer.
//!
//! A commit writes the new items as a new segment file, then replaces `MANIFEST` atomically
//! (a synced temporary file renamed over it, the directory synced). The rename is the commit:
//! before it nothing is visible, after it everything is. Files the new manifest no longer names
//! are removed afterwards; a process that has them mapped keeps reading them (on Unix an unlinked
//! file lives while it is mapped), so readers keep the snapshot they opened until they
//! [`Collection::refresh`]. Queries fan out over the segments, each searched with the caller's
//! `search_k` and with its deleted items filtered out inside the search, and the results are
//! merged.

mod manifest;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use copse_build::GraphOptions;
use copse_format::Metric;
use copse_query::Neighbor;

use crate::index::{Filter, save_atomically};
use crate::{Error, Index, IndexBuilder};
use manifest::{BuildSettings, Manifest, SegmentEntry, segment_file_name, segment_number};

/// The manifest's file name inside a collection directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The writer's lock file inside a collection directory.
pub const LOCK_FILE: &str = "LOCK";

/// Trees per segment when the options do not say (with the graph, as for a graph index).
const DEFAULT_TREES: usize = 8;

/// How a new collection's segments are built (fixed at creation, kept in the manifest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectionOptions {
    dims: usize,
    metric: Metric,
    build: BuildSettings,
}

impl CollectionOptions {
    /// Segments of `dims`-dimensional `metric` vectors, each a graph index over 8 trees (the
    /// graph defaults of [`GraphOptions::default`]).
    pub fn new(dims: usize, metric: Metric) -> Self {
        CollectionOptions {
            dims,
            metric,
            build: BuildSettings {
                n_trees: DEFAULT_TREES,
                leaf_capacity: 0,
                seed: copse_build::DEFAULT_SEED,
                graph: Some(GraphOptions::default()),
            },
        }
    }

    /// Trees per segment (at least 1).
    pub fn n_trees(mut self, n_trees: usize) -> Self {
        self.build.n_trees = n_trees;
        self
    }

    /// The graph each segment gets, or `None` for forests only.
    pub fn graph(mut self, graph: Option<GraphOptions>) -> Self {
        self.build.graph = graph;
        self
    }

    /// The seed segments are built from (each segment mixes in its number), so the same
    /// operations give the same files.
    pub fn seed(mut self, seed: u64) -> Self {
        self.build.seed = seed;
        self
    }

    /// Items per leaf (0: the default).
    pub fn leaf_capacity(mut self, capacity: usize) -> Self {
        self.build.leaf_capacity = capacity;
        self
    }
}

/// One segment of a snapshot.
#[derive(Debug, Clone)]
struct Segment {
    number: u64,
    index: Arc<Index>,
    /// Deleted ids, ascending.
    deleted: Arc<Vec<u64>>,
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

    fn has_live(&self, id: u64) -> bool {
        self.index.contains(id) && self.deleted.binary_search(&id).is_err()
    }

    fn n_live(&self) -> u64 {
        self.index.len() - self.deleted.len() as u64
    }
}

/// What a [`Collection`] reads: the segments one manifest names, with their deletes applied.
/// Searches may run from many threads at once. A snapshot never changes: hold one
/// ([`Collection::snapshot`]) to keep searching it while the collection commits.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    manifest: Manifest,
    /// In the manifest's order.
    segments: Vec<Segment>,
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
    fn open(dir: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, Error> {
        let mut manifest = read_manifest(dir)?;
        loop {
            if let Some(prev) = previous
                && prev.manifest == manifest
            {
                return Ok(Snapshot {
                    dir: dir.to_path_buf(),
                    manifest,
                    segments: prev.segments.clone(),
                });
            }
            match Snapshot::from_manifest(dir, manifest.clone(), previous, None) {
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
    }

    /// Opens `manifest`'s segments (`fresh` is a just-built segment, already open).
    fn from_manifest(
        dir: &Path,
        manifest: Manifest,
        previous: Option<&Snapshot>,
        fresh: Option<(u64, Arc<Index>)>,
    ) -> Result<Snapshot, Error> {
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for entry in &manifest.segments {
            let path = dir.join(segment_file_name(entry.number));
            let reused = previous
                .and_then(|p| p.segments.iter().find(|s| s.number == entry.number))
                .map(|s| Arc::clone(&s.index));
            let index = match (reused, &fresh) {
                (Some(index), _) => index,
                (None, Some((number, index))) if *number == entry.number => Arc::clone(index),
                (None, _) => Arc::new(Index::load(&path)?),
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

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.manifest.metric
    }

    /// Commits so far: each commit and compaction that changed something adds one.
    pub fn generation(&self) -> u64 {
        self.manifest.generation
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
fn check_vector(dims: usize, vector: &[f32]) -> Result<(), Error> {
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
    if index.dims() != manifest.dims || index.metric() != manifest.metric {
        return Err(bad(format!(
            "segment is {} with {} dimensions, the collection {} with {}",
            index.metric(),
            index.dims(),
            manifest.metric,
            manifest.dims
        )));
    }
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

/// Reads and checks `dir`'s manifest.
fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
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

/// Items waiting for the next commit.
#[derive(Debug, Default)]
struct Pending {
    /// New items and new versions of items, by id (ascending, so builds are reproducible).
    adds: BTreeMap<u64, Vec<f32>>,
    /// Committed items to delete (deleted or replaced).
    deletes: HashSet<u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.deletes.is_empty()
    }
}

/// The writer's state: the lock and the changes not yet committed.
#[derive(Debug)]
struct Writer {
    _lock: File,
    pending: Pending,
    threads: usize,
}

/// A collection of static index files that takes adds, updates and deletes: see the module
/// docs. Opened for writing ([`Collection::create`], [`Collection::open`]) it holds the
/// directory's lock, so there is one writer at a time; any number of processes may open it
/// read-only ([`Collection::open_readonly`]).
///
/// Searches (through [`Snapshot`], which a collection derefs to) see the last commit: changes
/// become visible to this handle at [`Collection::commit`], to other readers at their
/// [`Collection::refresh`].
#[derive(Debug)]
pub struct Collection {
    dir: PathBuf,
    snapshot: Arc<Snapshot>,
    writer: Option<Writer>,
}

impl Deref for Collection {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Collection {
    /// Creates an empty collection in directory `dir` (created if missing; it must not hold a
    /// collection already) and opens it for writing.
    pub fn create(dir: impl AsRef<Path>, options: CollectionOptions) -> Result<Collection, Error> {
        let dir = dir.as_ref();
        if options.dims == 0 || options.dims > u32::MAX as usize {
            return Err(Error::WrongKind(format!(
                "a collection needs 1 to {} dimensions, not {}",
                u32::MAX,
                options.dims
            )));
        }
        if options.build.n_trees == 0 || options.build.n_trees > copse_build::MAX_TREES {
            return Err(Error::WrongKind(format!(
                "segments need 1 to {} trees, not {}",
                copse_build::MAX_TREES,
                options.build.n_trees
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock(dir)?;
        let path = dir.join(MANIFEST_FILE);
        if path.exists() {
            return Err(Error::Collection {
                path,
                reason: "a collection already exists here (open it instead)".into(),
            });
        }
        let manifest = Manifest {
            dims: options.dims,
            metric: options.metric,
            build: options.build,
            generation: 0,
            next_segment: 0,
            segments: Vec::new(),
        };
        write_manifest(dir, &manifest)?;
        Ok(Collection {
            dir: dir.to_path_buf(),
            snapshot: Arc::new(Snapshot::from_manifest(dir, manifest, None, None)?),
            writer: Some(Writer {
                _lock: lock,
                pending: Pending::default(),
                threads: 0,
            }),
        })
    }

    /// Opens the collection in `dir` for writing. Fails with [`Error::Locked`] while another
    /// handle (in any process) has it open for writing. Leftovers of an interrupted commit
    /// (files no manifest names) are removed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Collection, Error> {
        let dir = dir.as_ref();
        let lock = lock(dir)?;
        let snapshot = Snapshot::open(dir, None)?;
        remove_unnamed_files(dir, &snapshot.manifest);
        Ok(Collection {
            dir: dir.to_path_buf(),
            snapshot: Arc::new(snapshot),
            writer: Some(Writer {
                _lock: lock,
                pending: Pending::default(),
                threads: 0,
            }),
        })
    }

    /// Opens the collection in `dir` to read the last commit, whatever writer is at work.
    pub fn open_readonly(dir: impl AsRef<Path>) -> Result<Collection, Error> {
        let dir = dir.as_ref();
        Ok(Collection {
            dir: dir.to_path_buf(),
            snapshot: Arc::new(Snapshot::open(dir, None)?),
            writer: None,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// True if this handle can change the collection.
    pub fn is_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// The current snapshot, to keep searching while this handle commits or refreshes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot)
    }

    /// Moves to the latest commit (a writer is always at its own latest). Returns the
    /// generation now read.
    pub fn refresh(&mut self) -> Result<u64, Error> {
        if self.writer.is_none() {
            self.snapshot = Arc::new(Snapshot::open(&self.dir, Some(&self.snapshot))?);
        }
        Ok(self.snapshot.generation())
    }

    /// Threads that build segments (0, the default: one per core).
    pub fn set_build_threads(&mut self, threads: usize) -> Result<(), Error> {
        self.writer_mut()?.threads = threads;
        Ok(())
    }

    /// Number of changes waiting for [`Collection::commit`]: items to add plus items to delete.
    pub fn n_pending(&self) -> usize {
        self.writer
            .as_ref()
            .map_or(0, |w| w.pending.adds.len() + w.pending.deletes.len())
    }

    fn writer_mut(&mut self) -> Result<&mut Writer, Error> {
        self.writer.as_mut().ok_or(Error::ReadOnly)
    }

    /// Adds items: `vectors` holds one vector per id, back to back. An id the collection
    /// already has (committed, or added since) is [`Error::DuplicateId`]: use
    /// [`Collection::upsert`] to replace items. All or nothing: on any error nothing is added.
    pub fn add(&mut self, ids: &[u64], vectors: &[f32]) -> Result<(), Error> {
        self.put(ids, vectors, false)
    }

    /// Adds items, replacing those whose ids the collection already has.
    pub fn upsert(&mut self, ids: &[u64], vectors: &[f32]) -> Result<(), Error> {
        self.put(ids, vectors, true)
    }

    fn put(&mut self, ids: &[u64], vectors: &[f32], replace: bool) -> Result<(), Error> {
        let dims = self.snapshot.dims();
        let snapshot = Arc::clone(&self.snapshot);
        let writer = self.writer_mut()?;
        if vectors.len() != ids.len().saturating_mul(dims) {
            return Err(Error::WrongDimensions {
                expected: dims,
                found: if ids.is_empty() {
                    vectors.len()
                } else {
                    vectors.len() / ids.len()
                },
            });
        }
        let mut seen = HashSet::with_capacity(ids.len());
        for (&id, vector) in ids.iter().zip(vectors.chunks_exact(dims.max(1))) {
            check_vector(dims, vector)?;
            let exists = writer.pending.adds.contains_key(&id)
                || (snapshot.contains(id) && !writer.pending.deletes.contains(&id));
            if !seen.insert(id) || (exists && !replace) {
                return Err(Error::DuplicateId { id });
            }
        }
        for (&id, vector) in ids.iter().zip(vectors.chunks_exact(dims.max(1))) {
            if snapshot.contains(id) {
                writer.pending.deletes.insert(id);
            }
            writer.pending.adds.insert(id, vector.to_vec());
        }
        Ok(())
    }

    /// Deletes items (committed ones and ones added since); ids that are not items are
    /// ignored. Returns how many were items.
    pub fn delete(&mut self, ids: &[u64]) -> Result<usize, Error> {
        let snapshot = Arc::clone(&self.snapshot);
        let writer = self.writer_mut()?;
        let mut deleted = 0;
        for &id in ids {
            // An upserted item is both pending and marked: it counts once.
            let pending = writer.pending.adds.remove(&id).is_some();
            let marked = snapshot.contains(id) && writer.pending.deletes.insert(id);
            deleted += usize::from(pending || marked);
        }
        Ok(deleted)
    }

    /// Drops the changes made since the last commit.
    pub fn rollback(&mut self) -> Result<(), Error> {
        self.writer_mut()?.pending = Pending::default();
        Ok(())
    }

    /// Makes the changes since the last commit durable and visible, all or nothing: the new
    /// items become a new segment file, the deletes tombstones, and the manifest naming them is
    /// replaced atomically. Returns the new generation (unchanged if there was nothing to
    /// commit). If it fails, the collection is as it was and the changes are still pending.
    pub fn commit(&mut self) -> Result<u64, Error> {
        let threads = self.writer_mut()?.threads;
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        if writer.pending.is_empty() {
            return Ok(self.snapshot.generation());
        }
        let mut manifest = self.snapshot.manifest.clone();
        for id in &writer.pending.deletes {
            let at = self.snapshot.segments.iter().rposition(|s| s.has_live(*id));
            if let Some(at) = at {
                manifest.segments[at].deleted.push(*id);
            }
        }
        for entry in &mut manifest.segments {
            entry.deleted.sort_unstable();
        }
        let items = writer
            .pending
            .adds
            .iter()
            .map(|(&id, v)| (id, v.as_slice()));
        let fresh = self.write_segment(&mut manifest, items, threads)?;
        self.install(manifest, fresh)?;
        if let Some(writer) = self.writer.as_mut() {
            writer.pending = Pending::default();
        }
        Ok(self.snapshot.generation())
    }

    /// Commits the pending changes and merges every segment into one without the deleted
    /// items, in one new generation, so searches touch one file. Readers keep their snapshot's
    /// files until they refresh. Returns the generation (unchanged if there was nothing to do).
    pub fn compact(&mut self) -> Result<u64, Error> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let snapshot = Arc::clone(&self.snapshot);
        let tidy =
            snapshot.segments.len() <= 1 && snapshot.segments.iter().all(|s| s.deleted.is_empty());
        if tidy && writer.pending.is_empty() {
            return Ok(snapshot.generation());
        }
        let mut items: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
        for s in &snapshot.segments {
            for id in s.index.ids() {
                let gone =
                    s.deleted.binary_search(&id).is_ok() || writer.pending.deletes.contains(&id);
                if !gone {
                    items.insert(id, s.index.item_vector(id)?);
                }
            }
        }
        let threads = writer.threads;
        items.extend(writer.pending.adds.iter().map(|(&id, v)| (id, v.clone())));
        let mut manifest = snapshot.manifest.clone();
        manifest.segments.clear();
        let all = items.iter().map(|(&id, v)| (id, v.as_slice()));
        let fresh = self.write_segment(&mut manifest, all, threads)?;
        self.install(manifest, fresh)?;
        if let Some(writer) = self.writer.as_mut() {
            writer.pending = Pending::default();
        }
        Ok(self.snapshot.generation())
    }

    /// Builds `items` (if any) into a new segment file, appended to `manifest`; returns it open.
    fn write_segment<'a>(
        &self,
        manifest: &mut Manifest,
        items: impl ExactSizeIterator<Item = (u64, &'a [f32])>,
        threads: usize,
    ) -> Result<Option<(u64, Arc<Index>)>, Error> {
        if items.len() == 0 {
            return Ok(None);
        }
        let number = manifest.next_segment;
        let settings = manifest.build;
        let mut builder = IndexBuilder::new(manifest.dims, manifest.metric)?
            .seed(settings.seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .graph(settings.graph);
        if settings.leaf_capacity > 0 {
            builder = builder.leaf_capacity(settings.leaf_capacity);
        }
        for (id, vector) in items {
            builder.add_item(id, vector)?;
        }
        let index = builder.build_with_threads(settings.n_trees, threads)?;
        let path = self.dir.join(segment_file_name(number));
        index.save(&path)?;
        manifest.next_segment = number + 1;
        manifest.segments.push(SegmentEntry {
            number,
            n_items: index.len(),
            header_checksum: index.header_checksum(),
            deleted: Vec::new(),
        });
        Ok(Some((number, Arc::new(index))))
    }

    /// Commits `manifest` (one generation on from the snapshot's, with segments whose every
    /// item is deleted dropped), then moves this handle to it and removes the files it no
    /// longer names.
    fn install(
        &mut self,
        mut manifest: Manifest,
        fresh: Option<(u64, Arc<Index>)>,
    ) -> Result<(), Error> {
        manifest
            .segments
            .retain(|s| (s.deleted.len() as u64) < s.n_items);
        manifest.generation += 1;
        write_manifest(&self.dir, &manifest)?;
        let snapshot = Snapshot::from_manifest(&self.dir, manifest, Some(&self.snapshot), fresh)?;
        self.snapshot = Arc::new(snapshot);
        remove_unnamed_files(&self.dir, &self.snapshot.manifest);
        Ok(())
    }
}

/// Takes the writer's lock on `dir`, or fails with [`Error::Locked`].
fn lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// Replaces `dir`'s manifest atomically: the commit point.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), Error> {
    let bytes = manifest.encode();
    save_atomically(&dir.join(MANIFEST_FILE), |file| file.write_all(&bytes))
}

/// Removes segment files `manifest` does not name and temporary files of interrupted saves.
/// Only the writer calls it, under the lock. Best effort: a file that cannot be removed now is
/// removed by a later commit.
fn remove_unnamed_files(dir: &Path, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let named: HashSet<u64> = manifest.segments.iter().map(|s| s.number).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = match segment_number(&name) {
            Some(number) => !named.contains(&number),
            None => name.starts_with(crate::index::TEMP_PREFIX),
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
