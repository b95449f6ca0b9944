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
mod merge;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use copse_build::GraphOptions;
use copse_format::{Element, Metric};

use crate::index::save_atomically;
use crate::{Error, Index, IndexBuilder};
pub use manifest::BuildSettings;
use manifest::{Manifest, SegmentEntry, segment_number};
pub use merge::MergePolicy;
use merge::{Sources, build_segment};
use snapshot::check_vector;
pub use snapshot::{CollectionFilter, SegmentInfo, Snapshot};

/// The manifest's file name inside a collection directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The writer's lock file inside a collection directory.
pub const LOCK_FILE: &str = "LOCK";

/// Most segment numbers a writer holds reserved and unattached at once.
const MAX_RESERVED: usize = 1 << 20;

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
                element: metric.element(),
            },
        }
    }

    /// How segments store their rows: f32 (the default), f16, bf16 or int8, as
    /// [`IndexBuilder::dtype`] (hamming stores bits). Vectors are rounded to it when a segment
    /// is built, and searches and [`Snapshot::item_vector`] see the stored values; a merge
    /// rebuilds from them, so f16 and bf16 values never change again (int8 rows keep their
    /// codes; the scale may move by an ulp).
    pub fn dtype(mut self, element: Element) -> Self {
        self.build.element = element;
        self
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

    /// Dimensions of every vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// How each segment is built.
    pub fn settings(&self) -> BuildSettings {
        self.build
    }
}

/// Items waiting for the next commit.
#[derive(Debug, Default)]
struct Pending {
    /// New items and new versions of items, by id (ascending, so builds are reproducible).
    adds: BTreeMap<u64, Vec<f32>>,
    /// Committed items to delete (deleted or replaced).
    deletes: HashSet<u64>,
    /// Bytes to store with the commit.
    user_data: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.deletes.is_empty() && self.user_data.is_none()
    }
}

/// A merge building on another thread.
#[derive(Debug)]
struct RunningMerge {
    sources: Sources,
    handle: JoinHandle<Result<(SegmentEntry, Arc<Index>), Error>>,
}

/// The writer's state: the lock, the changes not yet committed, and the merge under way.
#[derive(Debug)]
struct Writer {
    _lock: File,
    pending: Pending,
    threads: usize,
    policy: MergePolicy,
    /// The number the next segment gets (merges take theirs before the manifest names them).
    next_segment: u64,
    /// Numbers handed out by [`Collection::reserve_segments`] and not attached yet: their
    /// files, written by other processes, are not leftovers.
    reserved: BTreeSet<u64>,
    merge: Option<RunningMerge>,
}

impl Writer {
    fn new(lock: File, manifest: &Manifest) -> Writer {
        Writer {
            _lock: lock,
            pending: Pending::default(),
            threads: 0,
            policy: MergePolicy::default(),
            next_segment: manifest.next_segment,
            reserved: BTreeSet::new(),
            merge: None,
        }
    }

    fn take_number(&mut self) -> u64 {
        let number = self.next_segment;
        // Manifests with numbers past 2^62 are refused, so this never saturates.
        self.next_segment = number.saturating_add(1);
        number
    }
}

/// A collection of static index files that takes adds, updates and deletes: see the module
/// docs. Opened for writing ([`Collection::create`], [`Collection::open`]) it holds the
/// directory's lock, so there is one writer at a time; any number of processes may open it
/// read-only ([`Collection::open_readonly`]).
///
/// Searches (through [`Snapshot`], which a collection derefs to) see the last commit: changes
/// become visible to this handle at [`Collection::commit`], to other readers at their
/// [`Collection::refresh`].
///
/// Segments are merged in the background as [`MergePolicy`] says: a commit starts a merge when
/// one is due and installs one that has finished (a new generation with the same items).
/// Dropping a writer waits for a merge under way and installs it.
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

impl Drop for Collection {
    fn drop(&mut self) {
        // A merge left running could write its file after the lock is released, under a
        // number the next writer may also take.
        let _ = self.finish_merge(true);
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
        validate(&options)?;
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
            user_data: Vec::new(),
            segments: Vec::new(),
        };
        write_manifest(dir, &manifest)?;
        let writer = Writer::new(lock, &manifest);
        Ok(Collection {
            dir: dir.to_path_buf(),
            snapshot: Arc::new(Snapshot::from_manifest(dir, manifest, None, Vec::new())?),
            writer: Some(writer),
        })
    }

    /// Opens the collection in `dir` for writing. Fails with [`Error::Locked`] while another
    /// handle (in any process) has it open for writing. Leftovers of an interrupted commit or
    /// merge (files no manifest names) are removed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Collection, Error> {
        let dir = dir.as_ref();
        let lock = lock(dir)?;
        let snapshot = Snapshot::open(dir, None)?;
        remove_unnamed_files(dir, &snapshot.manifest, &BTreeSet::new());
        let writer = Writer::new(lock, &snapshot.manifest);
        Ok(Collection {
            dir: dir.to_path_buf(),
            snapshot: Arc::new(snapshot),
            writer: Some(writer),
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

    /// Moves to the latest commit: a reader re-reads the manifest; a writer installs a merge
    /// that has finished. Returns the generation now read.
    pub fn refresh(&mut self) -> Result<u64, Error> {
        if self.writer.is_none() {
            self.snapshot = Arc::new(Snapshot::open(&self.dir, Some(&self.snapshot))?);
        } else {
            self.finish_merge(false)?;
        }
        Ok(self.snapshot.generation())
    }

    /// Threads that build segments, in commits and merges (0, the default: one per core).
    pub fn set_build_threads(&mut self, threads: usize) -> Result<(), Error> {
        self.writer_mut()?.threads = threads;
        Ok(())
    }

    /// How this writer merges segments in the background (not stored: each writer sets its
    /// own; the default is [`MergePolicy::default`]).
    pub fn set_merge_policy(&mut self, policy: MergePolicy) -> Result<(), Error> {
        self.writer_mut()?.policy = policy;
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
        let (metric, element) = (snapshot.metric(), snapshot.manifest.build.element);
        let mut seen = HashSet::with_capacity(ids.len());
        for (&id, vector) in ids.iter().zip(vectors.chunks_exact(dims.max(1))) {
            check_vector(dims, vector)?;
            // Refused now, not at the commit that would build the segment.
            copse_build::VectorStore::check_item(metric, element, id, vector)?;
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
    /// replaced atomically. Returns the generation (unchanged if there was nothing to commit
    /// and no merge to install). If it fails, the collection is as it was and the changes are
    /// still pending.
    pub fn commit(&mut self) -> Result<u64, Error> {
        self.writer_mut()?;
        // A failed background merge loses nothing; the policy tries again.
        let _ = self.finish_merge(false);
        self.commit_pending(false)?;
        self.start_merge();
        Ok(self.snapshot.generation())
    }

    /// [`Collection::commit`], storing `user_data` in the manifest with the changes (for
    /// example the position in a stream the changes came from), so both commit together or
    /// neither does. [`Snapshot::user_data`] reads it back; merges keep it.
    pub fn commit_with_data(&mut self, user_data: &[u8]) -> Result<u64, Error> {
        if user_data.len() > u32::MAX as usize {
            return Err(Error::WrongKind("user data is limited to 4 GiB".into()));
        }
        self.writer_mut()?.pending.user_data = Some(user_data.to_vec());
        let committed = self.commit();
        if committed.is_err()
            && let Some(w) = self.writer.as_mut()
        {
            w.pending.user_data = None;
        }
        committed
    }

    /// Commits the pending changes and merges every segment into one without the deleted
    /// items, in one new generation, so searches touch one file. Readers keep their snapshot's
    /// files until they refresh. Returns the generation (unchanged if there was nothing to do).
    pub fn compact(&mut self) -> Result<u64, Error> {
        self.writer_mut()?;
        // The merge under way covers part of what compaction rewrites: finish it first.
        let _ = self.finish_merge(true);
        self.commit_pending(true)?;
        Ok(self.snapshot.generation())
    }

    /// Waits for background merges until the policy wants no more, installing each. Returns
    /// the generation; a merge that failed is an error (the collection is unchanged by it).
    pub fn wait_for_merges(&mut self) -> Result<u64, Error> {
        self.writer_mut()?;
        loop {
            self.finish_merge(true)?;
            if !self.start_merge() {
                return Ok(self.snapshot.generation());
            }
        }
    }

    /// Hands out `n` segment numbers for segments that other threads or processes build with
    /// [`Collection::build_segment`] (a Spark task per shard, say) and this writer then commits
    /// with [`Collection::attach_segments`]. Until then their files are not taken for leftovers
    /// of an interrupted commit; a writer that stops without attaching them leaves them to the
    /// next writer, which removes them.
    pub fn reserve_segments(&mut self, n: usize) -> Result<Range<u64>, Error> {
        let writer = self.writer_mut()?;
        let start = writer.next_segment;
        let end = Some(n)
            .filter(|&n| n <= MAX_RESERVED - writer.reserved.len())
            .and_then(|n| start.checked_add(n as u64))
            .filter(|&end| end <= manifest::MAX_SEGMENT_NUMBER)
            .ok_or_else(|| {
                Error::WrongKind(format!(
                    "cannot reserve {n} more segments ({} are reserved; at most {MAX_RESERVED})",
                    writer.reserved.len()
                ))
            })?;
        writer.next_segment = end;
        writer.reserved.extend(start..end);
        Ok(start..end)
    }

    /// Builds segment `number` of the collection in `dir` from `ids` and `vectors` (one vector
    /// per id, back to back) with `options` (the collection's, [`Snapshot::options`]) on
    /// `threads` threads (0: one per core), and saves it atomically under its final name. Any
    /// process may call it, without the writer's lock: the segment joins the collection when
    /// the writer that reserved `number` attaches it. Building the same number again (a
    /// retried task) replaces the file. An id given twice is [`Error::DuplicateId`].
    pub fn build_segment(
        dir: impl AsRef<Path>,
        options: &CollectionOptions,
        number: u64,
        ids: &[u64],
        vectors: &[f32],
        threads: usize,
    ) -> Result<(), Error> {
        let dims = options.dims;
        if vectors.len() != ids.len().saturating_mul(dims) {
            return Err(Error::WrongDimensions {
                expected: dims,
                found: vectors
                    .len()
                    .checked_div(ids.len())
                    .unwrap_or(vectors.len()),
            });
        }
        if number >= manifest::MAX_SEGMENT_NUMBER {
            return Err(Error::WrongKind(format!(
                "segment number {number} is out of range"
            )));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        if let Some(&id) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(Error::DuplicateId { id });
        }
        let items = ids.iter().copied().zip(vectors.chunks_exact(dims.max(1)));
        build_segment(
            dir.as_ref(),
            dims,
            options.metric,
            options.build,
            number,
            items,
            threads,
        )?;
        Ok(())
    }

    /// Commits the segments `numbers` (reserved by [`Collection::reserve_segments`], built by
    /// [`Collection::build_segment`]) in one new generation, all or nothing. Each must be a
    /// segment of this collection's dimensions, metric and kind (graph or forest), and no id
    /// may be in two segments or already in the collection (committed, or added since): an id
    /// found twice is [`Error::DuplicateId`]. Pending changes stay pending. Returns the generation.
    pub fn attach_segments(&mut self, numbers: &[u64]) -> Result<u64, Error> {
        let snapshot = Arc::clone(&self.snapshot);
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let manifest = &snapshot.manifest;
        let mut entries = Vec::with_capacity(numbers.len());
        let mut opened = Vec::with_capacity(numbers.len());
        let mut seen_numbers = HashSet::new();
        let mut seen_ids = HashSet::new();
        for &number in numbers {
            let path = self.dir.join(manifest::segment_file_name(number));
            let bad = |reason: String| Error::Collection {
                path: path.clone(),
                reason,
            };
            if !writer.reserved.contains(&number) || !seen_numbers.insert(number) {
                return Err(bad(format!(
                    "segment {number} is not reserved by this writer (or is given twice)"
                )));
            }
            let index = Index::load(&path)?;
            snapshot::check_fits(&index, manifest).map_err(bad)?;
            for id in index.ids() {
                // A committed id stays refused while a delete of it is pending: the delete
                // would otherwise land on the newer, attached copy.
                let taken = snapshot.contains(id) || writer.pending.adds.contains_key(&id);
                if taken || !seen_ids.insert(id) {
                    return Err(Error::DuplicateId { id });
                }
            }
            entries.push(SegmentEntry {
                number,
                n_items: index.len(),
                header_checksum: index.header_checksum(),
                deleted: Vec::new(),
            });
            opened.push((number, Arc::new(index)));
        }
        if entries.is_empty() {
            return Ok(snapshot.generation());
        }
        let mut next = manifest.clone();
        next.segments.extend(entries);
        next.segments.sort_by_key(|s| s.number);
        self.install(next, opened)?;
        if let Some(writer) = self.writer.as_mut() {
            for number in numbers {
                writer.reserved.remove(number);
            }
        }
        Ok(self.snapshot.generation())
    }

    /// Commits the pending changes as one new segment plus tombstones; with `compact`, every
    /// live item goes into that one segment instead and the others are dropped.
    fn commit_pending(&mut self, compact: bool) -> Result<(), Error> {
        let snapshot = Arc::clone(&self.snapshot);
        let writer = self.writer.as_mut().ok_or(Error::ReadOnly)?;
        let tidy =
            snapshot.segments.len() <= 1 && snapshot.segments.iter().all(|s| s.deleted.is_empty());
        if writer.pending.is_empty() && (!compact || tidy) {
            return Ok(());
        }
        let mut manifest = snapshot.manifest.clone();
        let mut items: BTreeMap<u64, Vec<f32>>;
        let added = if compact {
            let all = Sources {
                segments: snapshot.segments.clone(),
            };
            items = all.live_items()?;
            items.retain(|id, _| !writer.pending.deletes.contains(id));
            items.extend(writer.pending.adds.iter().map(|(&id, v)| (id, v.clone())));
            manifest.segments.clear();
            &items
        } else {
            for id in &writer.pending.deletes {
                if let Some(at) = snapshot.segments.iter().rposition(|s| s.has_live(*id)) {
                    manifest.segments[at].deleted.push(*id);
                }
            }
            for entry in &mut manifest.segments {
                entry.deleted.sort_unstable();
            }
            &writer.pending.adds
        };
        let mut fresh = Vec::new();
        let number = writer.next_segment;
        if !added.is_empty() {
            let vectors = added.iter().map(|(&id, v)| (id, v.as_slice()));
            let (entry, index) = build_segment(
                &self.dir,
                manifest.dims,
                manifest.metric,
                manifest.build,
                number,
                vectors,
                writer.threads,
            )?;
            manifest.segments.push(entry);
            fresh.push((number, index));
            writer.next_segment = number.saturating_add(1);
        }
        if let Some(data) = &writer.pending.user_data {
            manifest.user_data.clone_from(data);
        }
        self.install(manifest, fresh)?;
        if let Some(writer) = self.writer.as_mut() {
            writer.pending = Pending::default();
        }
        Ok(())
    }

    /// Starts the merge the policy picks, if none is running; true if one started.
    fn start_merge(&mut self) -> bool {
        let snapshot = Arc::clone(&self.snapshot);
        let dir = self.dir.clone();
        let Some(writer) = self.writer.as_mut() else {
            return false;
        };
        if writer.merge.is_some() {
            return false;
        }
        let Some(picked) = writer.policy.select(&snapshot.segments) else {
            return false;
        };
        let sources = Sources {
            segments: picked
                .iter()
                .map(|&at| snapshot.segments[at].clone())
                .collect(),
        };
        let number = writer.take_number();
        let (job, threads, manifest) = (sources.clone(), writer.threads, &snapshot.manifest);
        let (dims, metric, settings) = (manifest.dims, manifest.metric, manifest.build);
        let handle = std::thread::spawn(move || {
            let items = job.live_items()?;
            let vectors = items.iter().map(|(&id, v)| (id, v.as_slice()));
            build_segment(&dir, dims, metric, settings, number, vectors, threads)
        });
        writer.merge = Some(RunningMerge { sources, handle });
        true
    }

    /// Installs the merge under way if it has finished (or, with `wait`, once it has): its
    /// sources are replaced by the merged segment, which inherits the deletes made since it
    /// started. A merge whose sources a compaction replaced is dropped.
    fn finish_merge(&mut self, wait: bool) -> Result<(), Error> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let finished = writer
            .merge
            .as_ref()
            .is_some_and(|m| wait || m.handle.is_finished());
        if !finished {
            return Ok(());
        }
        let Some(merge) = writer.merge.take() else {
            return Ok(());
        };
        let built = merge.handle.join().unwrap_or_else(|_| {
            Err(Error::Query(copse_query::QueryError::Corrupt(
                "a merge thread failed",
            )))
        });
        let (mut entry, index) = match built {
            Ok(built) => built,
            Err(e) => {
                remove_unnamed_files(&self.dir, &self.snapshot.manifest, &writer.reserved);
                return Err(e);
            }
        };
        let mut manifest = self.snapshot.manifest.clone();
        let now: Vec<Option<&SegmentEntry>> = merge
            .sources
            .segments
            .iter()
            .map(|s| manifest.segments.iter().find(|e| e.number == s.number))
            .collect();
        // Every source is gone (a compaction replaced them, or all their items were deleted):
        // so is the point of the merge.
        if now.iter().all(Option::is_none) {
            remove_unnamed_files(&self.dir, &self.snapshot.manifest, &writer.reserved);
            return Ok(());
        }
        entry.deleted = merge.sources.deleted_since(&now);
        let numbers: HashSet<u64> = merge.sources.segments.iter().map(|s| s.number).collect();
        manifest.segments.retain(|e| !numbers.contains(&e.number));
        let at = manifest
            .segments
            .partition_point(|e| e.number < entry.number);
        let number = entry.number;
        manifest.segments.insert(at, entry);
        self.install(manifest, vec![(number, index)])
    }

    /// Commits `manifest` (one generation on from the snapshot's, with segments whose every
    /// item is deleted dropped), then moves this handle to it and removes the files it no
    /// longer names (unless a merge is writing one).
    fn install(
        &mut self,
        mut manifest: Manifest,
        fresh: Vec<(u64, Arc<Index>)>,
    ) -> Result<(), Error> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        manifest
            .segments
            .retain(|s| (s.deleted.len() as u64) < s.n_items);
        manifest.generation += 1;
        manifest.next_segment = writer.next_segment;
        let merging = writer.merge.is_some();
        write_manifest(&self.dir, &manifest)?;
        // Committed. Files the new manifest drops are removed only once the rename is durable:
        // after a power loss the old manifest may come back, naming them.
        let durable = File::open(&self.dir).and_then(|d| d.sync_all()).is_ok();
        match Snapshot::from_manifest(&self.dir, manifest, Some(&self.snapshot), fresh) {
            Ok(snapshot) => self.snapshot = Arc::new(snapshot),
            Err(e) => {
                // The commit is on disk but this handle cannot follow it: it stops writing
                // (reopen the collection) rather than commit again from a stale state.
                let _ = self.finish_merge(true);
                self.writer = None;
                return Err(e);
            }
        }
        if durable
            && !merging
            && let Some(writer) = &self.writer
        {
            remove_unnamed_files(&self.dir, &self.snapshot.manifest, &writer.reserved);
        }
        Ok(())
    }
}

/// Dimensions of [`validate`]'s one-item probe build at most: no setting's check depends on
/// the dimensions past the builder's own (which run at the real size, allocating nothing), and
/// a collection of 2^32 - 1 dimensions must not cost 16 GiB to create.
const PROBE_DIMS: usize = 64;

/// Checks that segments can be built with `options` (by building one of a single item, so
/// the builder's own checks apply) and that the manifest can hold them.
fn validate(options: &CollectionOptions) -> Result<(), Error> {
    let build = options.build;
    let graph = build.graph.unwrap_or_default();
    let fields = [
        build.leaf_capacity,
        graph.degree,
        graph.candidates,
        graph.rounds,
        graph.search_beam,
    ];
    if fields.iter().any(|&v| v > u32::MAX as usize) {
        return Err(Error::WrongKind(
            "collection options above 2^32 - 1 cannot be stored".into(),
        ));
    }
    IndexBuilder::new(options.dims, options.metric)?;
    let dims = options.dims.min(PROBE_DIMS);
    let mut vector = vec![0.0; dims];
    vector[0] = 1.0;
    let mut builder = IndexBuilder::new(dims, options.metric)?
        .dtype(build.element)?
        .graph(build.graph);
    if build.leaf_capacity > 0 {
        builder = builder.leaf_capacity(build.leaf_capacity);
    }
    builder.add_item(0, &vector)?;
    builder.build_with_threads(build.n_trees, 1)?;
    Ok(())
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
fn remove_unnamed_files(dir: &Path, manifest: &Manifest, keep: &BTreeSet<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let named: HashSet<u64> = manifest.segments.iter().map(|s| s.number).collect();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = match segment_number(&name) {
            Some(number) => !named.contains(&number) && !keep.contains(&number),
            None => name.starts_with(crate::index::TEMP_PREFIX),
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
