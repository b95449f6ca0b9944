//! [`Index`]: an open, immutable, thread-safe index over a mapped file or bytes in memory.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use copse_format::{IndexFile, IndexInfo, Metric, SectionKind, View};
use copse_query::{Neighbor, Query, Scratch};

use crate::Error;
use crate::storage::Storage;

/// How to open an index file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    populate: bool,
    expect: Option<(usize, Metric)>,
}

impl LoadOptions {
    /// Default options: map lazily, accept any metric and dimension.
    pub fn new() -> Self {
        LoadOptions::default()
    }

    /// Reads every page of the file into memory at load (Annoy's `prefault`).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Fails unless the index has this metric and these dimensions (the error names both).
    pub fn expect(mut self, dims: usize, metric: Metric) -> Self {
        self.expect = Some((dims, metric));
        self
    }
}

/// An open index. Queries may run from many threads at once; each takes a reusable scratch
/// buffer from a small pool, so steady-state queries do not allocate beyond their result.
#[derive(Debug)]
pub struct Index {
    file: IndexFile<Storage>,
    scratch: Mutex<Vec<Scratch>>,
}

impl Index {
    /// Memory-maps the index at `path`. Opening checks the header and section table only; it
    /// costs the same for any file size.
    pub fn load(path: impl AsRef<Path>) -> Result<Index, Error> {
        Index::load_with(path, &LoadOptions::new())
    }

    /// Memory-maps the index at `path` with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Index, Error> {
        let storage = Storage::map(path.as_ref(), options.populate)?;
        let index = Index::open(storage)?;
        if let Some((dims, metric)) = options.expect {
            index.expect(dims, metric)?;
        }
        Ok(index)
    }

    /// Opens an index from bytes in memory (copied into an aligned buffer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, Error> {
        Index::open(Storage::copy(bytes))
    }

    pub(crate) fn open(storage: Storage) -> Result<Index, Error> {
        Ok(Index {
            file: IndexFile::open(storage)?,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// Fails with [`Error::Mismatch`] unless the index has `metric` and `dims`.
    pub fn expect(&self, dims: usize, metric: Metric) -> Result<(), Error> {
        let info = self.file.info();
        if info.dims != dims || info.metric != metric {
            return Err(Error::Mismatch {
                expected_metric: metric,
                expected_dims: dims,
                found_metric: info.metric,
                found_dims: info.dims,
            });
        }
        Ok(())
    }

    /// Writes the index to `path` atomically: to a temporary file in the same directory, synced,
    /// then renamed over `path`. If anything fails, `path` keeps its previous contents, and
    /// processes that have the previous file mapped keep reading it unchanged.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        save_atomically(path.as_ref(), |file| file.write_all(self.as_bytes()))
    }

    /// The index's bytes, exactly as saved.
    pub fn as_bytes(&self) -> &[u8] {
        self.file.bytes()
    }

    /// Checks every section's checksum (reads the whole file); the error names the section that
    /// fails.
    pub fn verify(&self) -> Result<(), Error> {
        Ok(self.file.verify()?)
    }

    /// The header.
    pub fn info(&self) -> &IndexInfo {
        self.file.info()
    }

    /// Each section and its size in bytes.
    pub fn sections(&self) -> Vec<(SectionKind, u64)> {
        self.file.sections()
    }

    /// Largest item id plus one.
    pub fn n_items(&self) -> u64 {
        self.info().n_items
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.info().n_trees
    }

    /// Dimensions (bits, for hamming).
    pub fn dims(&self) -> usize {
        self.info().dims
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.info().metric
    }

    /// True if `id` was added to the index.
    pub fn contains(&self, id: u64) -> bool {
        self.file.view().is_present(id)
    }

    fn check_item(&self, id: u64) -> Result<(), Error> {
        let n_items = self.n_items();
        if id >= n_items {
            return Err(Error::ItemOutOfRange { id, n_items });
        }
        if !self.contains(id) {
            return Err(Error::ItemMissing { id });
        }
        Ok(())
    }

    /// The `n` items nearest to item `id` (itself first), gathering `search_k` candidates
    /// (default `n * n_trees`, as in Annoy).
    pub fn nns_by_item(
        &self,
        id: u64,
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        self.check_item(id)?;
        let view = self.file.view();
        let mut out = Vec::with_capacity(n.min(1024));
        let at = id as usize;
        let query = match view.info.metric {
            Metric::Hamming => Query::Bits(view.item_bits(at).unwrap_or(&[])),
            _ => Query::F32(view.item_f32(at).unwrap_or(&[])),
        };
        self.search(&view, query, n, search_k, &mut out)?;
        Ok(out)
    }

    /// The `n` items nearest to `vector` (floats; 0/1 values for hamming).
    pub fn nns_by_vector(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        let mut out = Vec::with_capacity(n.min(1024));
        self.nns_by_vector_into(vector, n, search_k, &mut out)?;
        Ok(out)
    }

    /// [`Index::nns_by_vector`] into a caller's buffer (cleared first), which lets a query loop
    /// run without allocating.
    pub fn nns_by_vector_into(
        &self,
        vector: &[f32],
        n: usize,
        search_k: Option<usize>,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        let view = self.file.view();
        if view.info.metric == Metric::Hamming {
            if vector.len() != view.info.dims {
                return Err(Error::WrongDimensions {
                    expected: view.info.dims,
                    found: vector.len(),
                });
            }
            let words = pack_bits(vector)?;
            return self.search(&view, Query::Bits(&words), n, search_k, out);
        }
        self.search(&view, Query::F32(vector), n, search_k, out)
    }

    /// The `n` items nearest to a packed bit vector (hamming).
    pub fn nns_by_bits(
        &self,
        words: &[u64],
        n: usize,
        search_k: Option<usize>,
    ) -> Result<Vec<Neighbor>, Error> {
        let view = self.file.view();
        let mut out = Vec::with_capacity(n.min(1024));
        self.search(&view, Query::Bits(words), n, search_k, &mut out)?;
        Ok(out)
    }

    fn search(
        &self,
        view: &View<'_>,
        query: Query<'_>,
        n: usize,
        search_k: Option<usize>,
        out: &mut Vec<Neighbor>,
    ) -> Result<(), Error> {
        let mut scratch = self.take_scratch();
        let result = copse_query::search(view, query, n, search_k, &mut scratch, out);
        self.return_scratch(scratch);
        Ok(result?)
    }

    fn take_scratch(&self) -> Scratch {
        let pooled = match self.scratch.lock() {
            Ok(mut pool) => pool.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        pooled.unwrap_or_default()
    }

    fn return_scratch(&self, scratch: Scratch) {
        let mut pool = match self.scratch.lock() {
            Ok(pool) => pool,
            Err(poisoned) => poisoned.into_inner(),
        };
        pool.push(scratch);
    }

    /// The vector of item `id` (bits as 0.0/1.0 for hamming).
    pub fn item_vector(&self, id: u64) -> Result<Vec<f32>, Error> {
        self.check_item(id)?;
        let view = self.file.view();
        let at = id as usize;
        Ok(match view.info.metric {
            Metric::Hamming => unpack_bits(view.item_bits(at).unwrap_or(&[]), view.info.dims),
            _ => view.item_f32(at).unwrap_or(&[]).to_vec(),
        })
    }

    /// The packed bits of hamming item `id`.
    pub fn item_bits(&self, id: u64) -> Result<Vec<u64>, Error> {
        self.check_item(id)?;
        let view = self.file.view();
        view.item_bits(id as usize)
            .map(<[u64]>::to_vec)
            .ok_or_else(|| {
                Error::WrongKind(format!("a {} index has no bit vectors", self.metric()))
            })
    }

    /// The distance between items `a` and `b`, in Annoy's convention for the metric.
    pub fn distance(&self, a: u64, b: u64) -> Result<f32, Error> {
        self.check_item(a)?;
        self.check_item(b)?;
        let view = self.file.view();
        let (a, b) = (a as u32, b as u32);
        copse_query::item_distance(&view, a, b)?.ok_or(Error::Query(
            copse_query::QueryError::Corrupt("item rows out of range"),
        ))
    }
}

/// Packs 0/1 floats into words (values above 0.5 are set bits, as in Annoy).
pub(crate) fn pack_bits(vector: &[f32]) -> Result<Vec<u64>, Error> {
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite {
            position,
            value: vector[position],
        });
    }
    let mut words = vec![0u64; vector.len().div_ceil(64)];
    for (i, &v) in vector.iter().enumerate() {
        if v > 0.5 {
            words[i / 64] |= 1 << (i % 64);
        }
    }
    Ok(words)
}

/// The first `dims` bits of `words` as 0.0/1.0.
pub(crate) fn unpack_bits(words: &[u64], dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            let word = words.get(i / 64).copied().unwrap_or(0);
            (word >> (i % 64) & 1) as f32
        })
        .collect()
}

/// Writes a file atomically: `write` fills a temporary file in `path`'s directory, which is
/// synced and then renamed over `path`. On any failure the temporary file is removed and
/// `path` is untouched.
fn save_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e| Error::io(path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".copse-save-")
        .tempfile_in(dir)
        .map_err(io)?;
    write(tmp.as_file_mut()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // Make the rename itself durable (best effort: not every platform can sync a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::IndexBuilder;

    fn small() -> Index {
        let mut b = IndexBuilder::new(3, Metric::Euclidean).unwrap();
        for i in 0..50u32 {
            let x = i as f32;
            b.add_item(i, &[x, (x * 0.7).sin(), -x]).unwrap();
        }
        b.build(3).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A save that fails half way (an injected I/O error) leaves the previous file as it was,
    /// removes its temporary file, and a process with the previous file mapped keeps answering.
    #[test]
    fn a_failed_save_leaves_the_previous_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.copse");
        let first = small();
        first.save(&path).unwrap();
        let saved = std::fs::read(&path).unwrap();
        let mapped = Index::load(&path).unwrap();
        let answer = mapped.nns_by_item(7, 5, None).unwrap();

        let err = save_atomically(&path, |file| {
            file.write_all(&saved[..saved.len() / 2])?;
            Err(std::io::Error::other("injected failure"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), saved);
        assert_eq!(entries(dir.path()), ["index.copse"]);
        assert_eq!(mapped.nns_by_item(7, 5, None).unwrap(), answer);
        mapped.verify().unwrap();

        // A rename that fails (the destination is a directory) is an error too, and cleans up.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("keep"), b"x").unwrap();
        assert!(first.save(&blocked).is_err());
        assert_eq!(entries(dir.path()), ["blocked", "index.copse"]);
        assert_eq!(entries(&blocked), ["keep"]);

        // A successful save over the mapped file replaces it; the mapping keeps the old bytes.
        let mut b = IndexBuilder::new(3, Metric::Euclidean).unwrap();
        for i in 0..20u32 {
            b.add_item(i, &[i as f32, 1.0, 2.0]).unwrap();
        }
        b.build(2).unwrap().save(&path).unwrap();
        assert_eq!(Index::load(&path).unwrap().n_items(), 20);
        assert_eq!(mapped.nns_by_item(7, 5, None).unwrap(), answer);
        mapped.verify().unwrap();
        assert_eq!(entries(dir.path()), ["blocked", "index.copse"]);
    }
}
