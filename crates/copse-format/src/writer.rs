//! Streaming writer: sections are written one after another to any `Write + Seek`, hashed as they
//! stream, and the header with the section table is written last, over the space reserved for
//! it at the start.

use std::io::{Seek, SeekFrom, Write};

use xxhash_rust::xxh3::Xxh3;

use crate::layout::{DENSE_VERSION, FORMAT_VERSION, Header, MAGIC, SECTION_ALIGN, SectionEntry};
use crate::{FormatError, IndexInfo, SectionKind};

/// Writes one index file. Call [`IndexWriter::section`] (or [`IndexWriter::write_section`]) once
/// per section, then [`IndexWriter::finish`].
pub struct IndexWriter<W: Write + Seek> {
    out: W,
    /// Stream position of the file's first byte.
    start: u64,
    info: IndexInfo,
    table: Vec<SectionEntry>,
    n_sections: usize,
    /// Bytes written so far, relative to `start`.
    pos: u64,
}

impl<W: Write + Seek> IndexWriter<W> {
    /// Starts a file of `n_sections` sections at the current position of `out`, reserving room
    /// for the header and section table.
    pub fn new(mut out: W, info: IndexInfo, n_sections: usize) -> Result<Self, FormatError> {
        info.check()?;
        let start = out.stream_position()?;
        let reserved = header_len(n_sections)?.max(HEADER_ROOM);
        out.write_all(&vec![0u8; reserved as usize])?;
        Ok(IndexWriter {
            out,
            start,
            info,
            table: Vec::with_capacity(n_sections),
            n_sections,
            pos: reserved,
        })
    }

    /// Records the next section without writing it: `bytes` are already in the output at
    /// `offset` (put there through a mapping of the same file, at the place
    /// [`planned_offsets`] gave). Hashes `bytes`, then moves the output past them. Only the
    /// padding before the section is written. An `offset` other than the section's is an
    /// error.
    pub fn adopt_section(
        &mut self,
        kind: SectionKind,
        bytes: &[u8],
        offset: u64,
    ) -> Result<(), FormatError> {
        let section = self.section(kind)?;
        if section.offset != offset {
            return Err(FormatError::BadHeader(format!(
                "section {} is in place at byte {offset}, but belongs at byte {}",
                kind.name(),
                section.offset
            )));
        }
        let mut hasher = Xxh3::new();
        hasher.update(bytes);
        let len = bytes.len() as u64;
        let (offset, parent) = (section.offset, section.parent);
        parent
            .out
            .seek(SeekFrom::Start(parent.start + offset + len))?;
        parent.table.push(SectionEntry {
            kind: kind.code(),
            flags: 0,
            offset,
            len,
            checksum: hasher.digest(),
        });
        parent.pos = offset + len;
        Ok(())
    }

    /// Starts the next section; write its bytes into the returned writer and call
    /// [`SectionWriter::finish`].
    pub fn section(&mut self, kind: SectionKind) -> Result<SectionWriter<'_, W>, FormatError> {
        if self.table.len() == self.n_sections {
            return Err(FormatError::BadHeader(format!(
                "more than the {} sections announced",
                self.n_sections
            )));
        }
        let padding = self.pos.next_multiple_of(SECTION_ALIGN) - self.pos;
        self.out
            .write_all(&[0u8; SECTION_ALIGN as usize][..padding as usize])?;
        self.pos += padding;
        Ok(SectionWriter {
            offset: self.pos,
            parent: self,
            kind,
            hasher: Xxh3::new(),
            len: 0,
        })
    }

    /// Writes a whole section from memory.
    pub fn write_section(&mut self, kind: SectionKind, bytes: &[u8]) -> Result<(), FormatError> {
        let mut section = self.section(kind)?;
        section.write_all(bytes)?;
        section.finish()
    }

    /// Writes the header and section table, and returns the output positioned at the end of
    /// the file.
    pub fn finish(mut self) -> Result<W, FormatError> {
        if self.table.len() != self.n_sections {
            return Err(FormatError::BadHeader(format!(
                "{} sections written of the {} announced",
                self.table.len(),
                self.n_sections
            )));
        }
        let header_bytes = encode_header(&self.info, &self.table, self.pos)?;
        self.out.seek(SeekFrom::Start(self.start))?;
        self.out.write_all(&header_bytes)?;
        self.out.seek(SeekFrom::Start(self.start + self.pos))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The length of a file whose sections have `lengths`, in writing order: the header and
/// table, then each section at the next 64-byte boundary.
pub fn planned_len(lengths: &[u64]) -> u64 {
    let mut pos = first_free(lengths.len());
    for &len in lengths {
        pos = pos.next_multiple_of(SECTION_ALIGN) + len;
    }
    pos
}

/// Where each section starts, in writing order, for sections of `lengths`: what
/// [`IndexWriter::section`] will use. A builder uses it to put a section's bytes in place
/// before writing the file (see [`IndexWriter::adopt_section`]).
pub fn planned_offsets(lengths: &[u64]) -> Vec<u64> {
    let mut pos = first_free(lengths.len());
    lengths
        .iter()
        .map(|&len| {
            let start = pos.next_multiple_of(SECTION_ALIGN);
            pos = start + len;
            start
        })
        .collect()
}

/// Bytes kept for the header and table at the start of every file: room for a table of 16
/// entries, so the first section's place does not depend on how many sections follow (an
/// on-disk build puts rows there before it knows whether a graph will be added).
pub const HEADER_ROOM: u64 = (size_of::<Header>() + 16 * size_of::<SectionEntry>()) as u64;

/// Where the bytes after the header and a table of `n_sections` entries start.
fn first_free(n_sections: usize) -> u64 {
    ((size_of::<Header>() + n_sections * size_of::<SectionEntry>()) as u64).max(HEADER_ROOM)
}

/// Bytes of header plus a table of `n_sections` entries.
fn header_len(n_sections: usize) -> Result<u64, FormatError> {
    if n_sections > crate::reader::MAX_SECTIONS {
        return Err(FormatError::TooLarge(format!("{n_sections} sections")));
    }
    Ok((size_of::<Header>() + n_sections * size_of::<SectionEntry>()) as u64)
}

/// The header and table as they go on disk, checksum included.
fn encode_header(
    info: &IndexInfo,
    table: &[SectionEntry],
    file_len: u64,
) -> Result<Vec<u8>, FormatError> {
    let header_len = header_len(table.len())?;
    let header = Header {
        magic: MAGIC,
        version: if table.iter().any(|e| e.kind == SectionKind::IdMap.code()) {
            FORMAT_VERSION
        } else {
            DENSE_VERSION
        },
        header_len: header_len as u32,
        file_len,
        metric: info.metric.code(),
        element: info.element().code(),
        dims: info.dims as u32,
        row_len: info.row_len() as u32,
        n_items: info.n_items,
        n_present: info.n_present,
        n_trees: info.n_trees as u32,
        leaf_capacity: info.leaf_capacity as u32,
        seed: info.seed,
        n_sections: table.len() as u32,
        id_bits: info.id_bits(),
        reserved: [0; 5],
        checksum: 0,
    };
    let mut bytes = Vec::with_capacity(header_len as usize);
    bytes.extend_from_slice(bytemuck::bytes_of(&header));
    bytes.extend_from_slice(bytemuck::cast_slice(table));
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    let at = core::mem::offset_of!(Header, checksum);
    bytes[at..at + 8].copy_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
}

/// One section being written; bytes are hashed as they pass.
pub struct SectionWriter<'a, W: Write + Seek> {
    parent: &'a mut IndexWriter<W>,
    kind: SectionKind,
    offset: u64,
    hasher: Xxh3,
    len: u64,
}

impl<W: Write + Seek> SectionWriter<'_, W> {
    /// Writes plain-old-data values (in their little-endian memory form).
    pub fn write_pod<T: bytemuck::NoUninit>(&mut self, values: &[T]) -> Result<(), FormatError> {
        self.write_all(bytemuck::cast_slice(values))?;
        Ok(())
    }

    /// Records the section in the table.
    pub fn finish(self) -> Result<(), FormatError> {
        self.parent.table.push(SectionEntry {
            kind: self.kind.code(),
            flags: 0,
            offset: self.offset,
            len: self.len,
            checksum: self.hasher.digest(),
        });
        self.parent.pos = self.offset + self.len;
        Ok(())
    }
}

impl<W: Write + Seek> Write for SectionWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.parent.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.parent.out.flush()
    }
}
