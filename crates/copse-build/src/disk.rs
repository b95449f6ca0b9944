//! On-disk builds (Annoy's `on_disk_build`): the index is built in its file, and anonymous
//! memory holds only what the trees being built need, a few bytes per item, never the vectors.
//!
//! The store's rows already sit in the file where the items section goes
//! ([`crate::items_offset`]). The build then lays out the rest around them: item codes are
//! encoded straight into their section's place (where the file keeps no 8-bit codes, the ones
//! the build reads go to a scratch file); each finished tree is appended to an unnamed spill
//! file instead of being kept; and the last step writes the remaining sections through the file
//! handle, copying the trees out of the spill in tree order, so the file is byte-identical to
//! the one an in-memory build of the same items and seed produces.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use copse_format::{CodeWidth, Metric, NodeRef, SectionKind};

use crate::codes;
use crate::tree::EncodedTree;
use crate::{
    After, BuildError, BuildOptions, Placed, Progress, TreeParts, VectorStore, build_trees,
    check_options, section_lengths, section_plan, write_index,
};

/// Builds `options.n_trees` trees over the items of `store`, whose rows live in a file
/// ([`VectorStore::move_to_file`] at [`crate::items_offset`]), and completes the index in that
/// file. Scratch files go in `scratch_dir` (unnamed: they vanish however the build ends).
/// Returns the index's length in bytes; the file is synced to disk.
pub fn build_on_disk(
    store: &mut VectorStore,
    options: BuildOptions,
    progress: &(dyn Fn(Progress) + Sync),
    scratch_dir: &Path,
    labels: Option<&[u8]>,
) -> Result<u64, BuildError> {
    check_options(&options)?;
    store.arrange()?;
    store.fit_rows_to_items()?;
    let file = store
        .file()
        .ok_or_else(|| BuildError::Internal("an on-disk build needs rows in a file".into()))?
        .try_clone()
        .map_err(BuildError::Io)?;
    let store = &*store;
    let pool = crate::pool(options.threads)?;
    let metric = store.metric();

    // Where the sections before the trees go: their lengths do not depend on the trees.
    // (The header's room does not depend on the section count, so a graph changes nothing here.)
    let plan = section_plan(metric, store.code_width(), false, false, false);
    let lengths = section_lengths(store, &[], After::default());
    let offsets = copse_format::planned_offsets(&lengths);
    let offset_of = |kind: SectionKind| {
        plan.iter()
            .position(|&k| k == kind)
            .map(|i| offsets[i])
            .ok_or_else(|| BuildError::Internal(format!("no {} section", kind.name())))
    };
    // The build reads 8-bit codes: in their section's place where the file keeps them, in a
    // scratch file otherwise; 4-bit codes a file keeps instead go to their own place.
    let codes = match (metric, store.code_width()) {
        (Metric::Hamming, _) => codes::encode(store, CodeWidth::Eight)?,
        (_, Some(CodeWidth::Eight)) => {
            let at = offset_of(SectionKind::ItemCodes)?;
            pool.install(|| codes::encode_to_file(store, CodeWidth::Eight, &file, at))?
        }
        _ => {
            let scratch = tempfile::tempfile_in(scratch_dir).map_err(BuildError::Io)?;
            pool.install(|| codes::encode_to_file(store, CodeWidth::Eight, &scratch, 0))?
        }
    };
    let narrow_codes = match store.code_width() {
        Some(CodeWidth::Four) => {
            let at = offset_of(SectionKind::ItemCodes4)?;
            Some(pool.install(|| codes::encode_to_file(store, CodeWidth::Four, &file, at))?)
        }
        _ => None,
    };

    let spill = Mutex::new(Spill::new(scratch_dir)?);
    let spans = build_trees(store, &codes, &options, &pool, progress, &|tree| {
        spill
            .lock()
            .map_err(|_| BuildError::Internal("a build thread panicked".into()))?
            .append(&tree)
    })?;
    let spill = spill
        .into_inner()
        .map_err(|_| BuildError::Internal("a build thread panicked".into()))?;
    let spilled = spill.finish()?;
    let trees = spans
        .iter()
        .map(|span| span.parts(&spilled))
        .collect::<Result<Vec<_>, _>>()?;

    let graph = match &options.graph {
        // The graph's buffers (hundreds of bytes per item) go to scratch files too.
        Some(graph_options) => Some(crate::graph::build_graph(
            store,
            codes.view(store),
            &trees,
            graph_options,
            &pool,
            progress,
            crate::buffer::Buffers::in_dir(scratch_dir),
        )?),
        None => None,
    };

    codes.flush()?;
    store.flush()?;
    let codes_placed = match (store.code_width(), &narrow_codes) {
        // Half rows' 8-bit codes are those of the vectors as given, in their scratch file.
        (Some(CodeWidth::Eight), _) if store.given_codes().is_some() => {
            Placed::Write(codes.view(store).bytes())
        }
        (Some(CodeWidth::Eight), _) => {
            Placed::InPlace(codes.as_bytes(), offset_of(SectionKind::ItemCodes)?)
        }
        (Some(CodeWidth::Four), Some(narrow)) => {
            narrow.flush()?;
            Placed::InPlace(narrow.as_bytes(), offset_of(SectionKind::ItemCodes4)?)
        }
        _ => Placed::Write(&[]),
    };
    let mut out = BufWriter::with_capacity(1 << 20, file.try_clone().map_err(BuildError::Io)?);
    out.seek(SeekFrom::Start(0)).map_err(BuildError::Io)?;
    let items = Placed::InPlace(store.row_bytes(), offset_of(SectionKind::Items)?);
    let mut out = write_index(
        out,
        store,
        &options,
        &trees,
        items,
        codes_placed,
        After {
            graph: graph.as_ref(),
            labels,
        },
    )?;
    let len = out.stream_position().map_err(BuildError::Io)?;
    out.flush().map_err(BuildError::Io)?;
    drop(out);
    // The file may have grown past the index while rows were added (mappings grow by doubling).
    file.set_len(len).map_err(BuildError::Io)?;
    file.sync_all().map_err(BuildError::Io)?;
    Ok(len)
}

/// Finished trees, appended in the order they finish to an unnamed scratch file.
struct Spill {
    out: BufWriter<File>,
    len: u64,
}

/// Where one spilled tree's parts are.
struct SpillSpan {
    root: NodeRef,
    n_splits: u64,
    n_ids: u64,
    records: Range<u64>,
    leaf_offsets: Range<u64>,
    packed_ids: Range<u64>,
}

/// Parts start 8-byte aligned in the spill, so leaf offsets can be cast in place.
const SPILL_ALIGN: u64 = 8;

impl Spill {
    fn new(dir: &Path) -> Result<Spill, BuildError> {
        let file = tempfile::tempfile_in(dir).map_err(BuildError::Io)?;
        Ok(Spill {
            out: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        })
    }

    fn append(&mut self, tree: &EncodedTree) -> Result<SpillSpan, BuildError> {
        let records = self.put(&tree.records)?;
        let leaf_offsets = self.put(bytemuck::cast_slice(&tree.leaf_offsets))?;
        let packed_ids = self.put(&tree.packed_ids)?;
        Ok(SpillSpan {
            root: tree.root,
            n_splits: tree.n_splits,
            n_ids: tree.n_ids,
            records,
            leaf_offsets,
            packed_ids,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<Range<u64>, BuildError> {
        let start = self.len;
        self.out.write_all(bytes).map_err(BuildError::Io)?;
        let end = start + bytes.len() as u64;
        let padding = end.next_multiple_of(SPILL_ALIGN) - end;
        self.out
            .write_all(&[0u8; SPILL_ALIGN as usize][..padding as usize])
            .map_err(BuildError::Io)?;
        self.len = end + padding;
        Ok(start..end)
    }

    /// The spilled bytes, mapped read-only.
    fn finish(self) -> Result<Spilled, BuildError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| BuildError::Io(e.into_error()))?;
        if self.len == 0 {
            return Ok(Spilled(None));
        }
        // SAFETY: the spill is an unnamed temporary file that only this build has a handle
        // to, and nothing writes it once mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(BuildError::Io)?;
        Ok(Spilled(Some(map)))
    }
}

/// The spill file's bytes.
struct Spilled(Option<memmap2::Mmap>);

impl SpillSpan {
    fn parts<'a>(&self, spilled: &'a Spilled) -> Result<TreeParts<'a>, BuildError> {
        let bytes: &[u8] = spilled.0.as_deref().unwrap_or(&[]);
        let get = |range: &Range<u64>| {
            bytes
                .get(range.start as usize..range.end as usize)
                .ok_or_else(|| BuildError::Internal("spilled tree out of range".into()))
        };
        Ok(TreeParts {
            root: self.root,
            n_splits: self.n_splits,
            n_ids: self.n_ids,
            records: get(&self.records)?,
            leaf_offsets: bytemuck::try_cast_slice(get(&self.leaf_offsets)?)
                .map_err(|e| BuildError::Internal(format!("spilled leaf offsets: {e}")))?,
            packed_ids: get(&self.packed_ids)?,
        })
    }
}
