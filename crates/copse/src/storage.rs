//! Where an open index's bytes live: a read-only memory map of a file, or an 8-byte-aligned
//! buffer in memory. The reader cannot tell them apart.

use std::fs::File;
use std::path::Path;

use crate::Error;

/// The bytes behind an [`crate::Index`].
#[derive(Debug)]
pub(crate) enum Storage {
    /// A read-only shared mapping of a file.
    Mapped(memmap2::Mmap),
    /// Bytes in memory, in a `u64` buffer so they are 8-byte aligned for the reader's casts.
    Owned { words: Vec<u64>, len: usize },
}

impl Storage {
    /// Maps `path` read-only (touching every page first if `populate`).
    pub(crate) fn map(path: &Path, populate: bool) -> Result<Storage, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            // An empty mapping is an error on Linux; an empty index is simply not an index.
            return Ok(Storage::copy(&[]));
        }
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        // SAFETY: the mapping is read-only and private to this process's view of the file. The
        // reader treats the bytes as untrusted and checks everything it reads, so any content
        // is safe. What a mapping cannot guard against is another process truncating the file
        // underneath it (a SIGBUS, as with any mmap); copse itself never modifies a saved file
        // in place: saves write a new file and rename it over the old one.
        let map = unsafe { options.map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Storage::Mapped(map))
    }

    /// Zeroed, writable anonymous memory of `len` bytes, advised to use huge pages, for an
    /// index to be written into and then [`Storage::seal`]ed.
    pub(crate) fn anonymous(len: usize) -> Result<memmap2::MmapMut, Error> {
        let map =
            memmap2::MmapMut::map_anon(len.max(1)).map_err(|e| Error::io("anonymous memory", e))?;
        if len >= HUGE_PAGE {
            // Advice only: without huge pages the mapping still works.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(map)
    }

    /// Makes written anonymous memory the read-only storage of an index.
    pub(crate) fn seal(map: memmap2::MmapMut) -> Result<Storage, Error> {
        let map = map
            .make_read_only()
            .map_err(|e| Error::io("anonymous memory", e))?;
        Ok(Storage::Mapped(map))
    }

    /// An aligned copy of `bytes`: in anonymous memory advised to use huge pages when large
    /// (random row reads then miss the TLB far less often), in a `u64` buffer otherwise.
    pub(crate) fn copy(bytes: &[u8]) -> Storage {
        if bytes.len() >= HUGE_PAGE
            && let Ok(mut map) = memmap2::MmapMut::map_anon(bytes.len())
        {
            // Advice only: without huge pages the mapping still works.
            let _ = map.advise(memmap2::Advice::HugePage);
            map.copy_from_slice(bytes);
            if let Ok(map) = map.make_read_only() {
                return Storage::Mapped(map);
            }
        }
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Storage::Owned {
            words,
            len: bytes.len(),
        }
    }
}

/// Bytes in a huge page; smaller buffers gain nothing from the advice.
const HUGE_PAGE: usize = 2 << 20;

impl AsRef<[u8]> for Storage {
    fn as_ref(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }
}
