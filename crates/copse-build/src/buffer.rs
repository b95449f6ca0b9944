//! Large build buffers: in anonymous memory for an in-memory build, in unnamed scratch files
//! mapped into memory for an on-disk build, whose anonymous memory must stay a few bytes per
//! item. A file-backed buffer's pages are the page cache's: the kernel writes them back and
//! evicts them under memory pressure, as it does the index file an on-disk build writes.

use std::fs::File;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::Path;

use bytemuck::Pod;

use crate::BuildError;

/// Where [`Buffers::filled`] puts its buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffers<'a> {
    /// Scratch directory of an on-disk build; `None` for anonymous memory.
    dir: Option<&'a Path>,
}

impl<'a> Buffers<'a> {
    /// Buffers in anonymous memory.
    pub(crate) fn in_memory() -> Self {
        Buffers { dir: None }
    }

    /// Buffers in unnamed files in `dir` (they vanish however the build ends).
    pub(crate) fn in_dir(dir: &'a Path) -> Self {
        Buffers { dir: Some(dir) }
    }

    /// `n` copies of `value`, or an error if the memory (or the disk) cannot be had.
    pub(crate) fn filled<T: Pod>(&self, value: T, n: usize) -> Result<Buffer<T>, BuildError> {
        let too_large = || BuildError::TooLarge(format!("a graph build buffer of {n} entries"));
        let bytes = n.checked_mul(size_of::<T>()).ok_or_else(too_large)?;
        let Some(dir) = self.dir.filter(|_| bytes > 0) else {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| too_large())?;
            v.resize(n, value);
            return Ok(Buffer(Store::Memory(v)));
        };
        let file: File = tempfile::tempfile_in(dir).map_err(BuildError::Io)?;
        file.set_len(bytes as u64).map_err(BuildError::Io)?;
        // SAFETY: the file is an unnamed temporary file that only this buffer has a handle to,
        // so nothing else can change or truncate it while it is mapped.
        let map = unsafe { memmap2::MmapOptions::new().len(bytes).map_mut(&file) }
            .map_err(BuildError::Io)?;
        let mut buffer = Buffer(Store::File {
            map,
            len: n,
            _items: PhantomData,
        });
        // A new file reads as zeros; other values are written.
        if bytemuck::bytes_of(&value).iter().any(|&b| b != 0) {
            buffer.fill(value);
        }
        Ok(buffer)
    }
}

/// A fixed-length array of `T` built in anonymous memory or in a mapped scratch file; it
/// dereferences to `[T]`.
pub struct Buffer<T>(Store<T>);

enum Store<T> {
    /// In anonymous memory.
    Memory(Vec<T>),
    /// In a mapped scratch file (page-aligned, so aligned for any `T`).
    File {
        map: memmap2::MmapMut,
        len: usize,
        _items: PhantomData<T>,
    },
}

impl<T: Pod> Deref for Buffer<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        match &self.0 {
            Store::Memory(v) => v,
            Store::File { map, len, .. } => bytemuck::cast_slice(&map[..len * size_of::<T>()]),
        }
    }
}

impl<T: Pod> DerefMut for Buffer<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            Store::Memory(v) => v,
            Store::File { map, len, .. } => {
                bytemuck::cast_slice_mut(&mut map[..*len * size_of::<T>()])
            }
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len())
            .field("in_file", &matches!(self.0, Store::File { .. }))
            .finish()
    }
}

impl<T: Pod> Default for Buffer<T> {
    fn default() -> Self {
        Buffer(Store::Memory(Vec::new()))
    }
}

impl<T: Pod> Clone for Buffer<T> {
    /// A copy in anonymous memory.
    fn clone(&self) -> Self {
        Buffer(Store::Memory(self.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_buffers_hold_what_memory_buffers_hold() {
        let dir = tempfile::tempdir().unwrap();
        for buffers in [Buffers::in_memory(), Buffers::in_dir(dir.path())] {
            let mut b = buffers.filled(7u32, 10_000).unwrap();
            assert_eq!(b.len(), 10_000);
            assert!(b.iter().all(|&x| x == 7));
            b[9_999] = 3;
            assert_eq!(b[9_999], 3);
            let zeros = buffers.filled(0u64, 5).unwrap();
            assert_eq!(&zeros[..], &[0; 5]);
            let empty = buffers.filled(1u8, 0).unwrap();
            assert!(empty.is_empty());
        }
        assert!(matches!(
            Buffers::in_dir(dir.path()).filled(1u8, 4).unwrap().0,
            Store::File { .. }
        ));
        assert!(Buffers::in_memory().filled(1u8, usize::MAX).is_err());
    }
}
