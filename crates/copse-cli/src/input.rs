//! Reading vectors (and word labels) from the files people have: `.npy`, `.fvecs`, `.bvecs`,
//! GloVe and word2vec text; and id matrices (`.npy` integers, `.ivecs`) for ground truth.
//!
//! Rows are streamed, except Fortran-order `.npy`, which is read whole (its rows are scattered).
//! Every error names the file, and for text the line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::npy;

/// How an input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// NumPy .npy: a 2-D float or integer array, C or Fortran order.
    Npy,
    /// .fvecs: per vector, a little-endian i32 dimension then that many f32.
    Fvecs,
    /// .bvecs: per vector, a little-endian i32 dimension then that many bytes.
    Bvecs,
    /// Word-vector text: GloVe, or word2vec text when the first line is "count dims".
    Text,
    /// GloVe text: a label then the numbers, per line.
    Glove,
    /// word2vec text: a "count dims" line, then a label and the numbers per line.
    Word2vec,
}

impl InputFormat {
    /// The format a file's extension names; anything unknown is word-vector text.
    pub fn from_path(path: &Path) -> InputFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("npy") => InputFormat::Npy,
            Some("fvecs") => InputFormat::Fvecs,
            Some("bvecs") => InputFormat::Bvecs,
            _ => InputFormat::Text,
        }
    }

    /// True for the formats that carry a label on each line.
    pub fn has_labels(self) -> bool {
        matches!(
            self,
            InputFormat::Text | InputFormat::Glove | InputFormat::Word2vec
        )
    }
}

/// Opens `path` for reading, with the error naming it.
fn open(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    ensure!(!meta.is_dir(), "{}: is a directory", path.display());
    Ok((file, meta.len()))
}

/// A stream of vectors from one file.
pub struct VectorReader {
    path: PathBuf,
    dims: usize,
    rows: Option<u64>,
    /// Rows handed out so far.
    done: u64,
    source: Source,
}

enum Source {
    /// C-order `.npy`: the elements in row order.
    NpyRows(npy::Values<f32>),
    /// Fortran-order `.npy`, read whole: column `j` is `data[j * rows..(j + 1) * rows]`.
    NpyColumns { data: Vec<f32> },
    /// `.fvecs` / `.bvecs` records.
    Vecs {
        reader: Box<dyn Read>,
        bytes: bool,
        buf: Vec<u8>,
    },
    /// Word-vector text.
    Text(TextSource),
}

struct TextSource {
    reader: Box<dyn BufRead>,
    line_no: u64,
    /// The first data line, read at open to learn the dimensions.
    pending: Option<(String, Vec<f32>, u64)>,
    /// The count a word2vec header promises.
    promised: Option<u64>,
    line: Vec<u8>,
}

impl VectorReader {
    /// Opens `path` as `format` (or the format its extension names), reporting bytes read to
    /// `progress` (whose length it sets to the file size).
    pub fn open(
        path: &Path,
        format: Option<InputFormat>,
        progress: &indicatif::ProgressBar,
    ) -> Result<VectorReader> {
        let format = format.unwrap_or_else(|| InputFormat::from_path(path));
        let (file, len) = open(path)?;
        ensure!(len > 0, "{}: the file is empty", path.display());
        progress.set_length(len);
        let reader = BufReader::with_capacity(1 << 20, progress.wrap_read(file));
        let at = |e: anyhow::Error| e.context(path.display().to_string());
        match format {
            InputFormat::Npy => open_npy(path, reader, len).map_err(at),
            InputFormat::Fvecs | InputFormat::Bvecs => {
                open_vecs(path, reader, len, format == InputFormat::Bvecs).map_err(at)
            }
            InputFormat::Text | InputFormat::Glove | InputFormat::Word2vec => {
                open_text(path, Box::new(reader), format, len)
            }
        }
    }

    /// Dimensions of every vector.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of vectors, when the file says so up front.
    pub fn rows(&self) -> Option<u64> {
        self.rows
    }

    /// True if each vector comes with a label.
    pub fn has_labels(&self) -> bool {
        matches!(self.source, Source::Text(_))
    }

    /// Where the last vector came from, for messages: `line 12` or `vector 11`.
    pub fn position(&self) -> String {
        match &self.source {
            Source::Text(t) => format!("line {}", t.line_no),
            _ => format!("vector {}", self.done.saturating_sub(1)),
        }
    }

    /// Reads the next vector into `row` (and its label into `label`, for text); false at the end.
    pub fn next(&mut self, row: &mut Vec<f32>, label: &mut String) -> Result<bool> {
        let path = &self.path;
        let dims = self.dims;
        let more = match &mut self.source {
            Source::NpyRows(values) => {
                if Some(self.done) == self.rows {
                    false
                } else {
                    row.clear();
                    for value in values.by_ref().take(dims) {
                        row.push(value.map_err(|e| {
                            anyhow!("{}: reading vector {}: {e}", path.display(), self.done)
                        })?);
                    }
                    ensure!(
                        row.len() == dims,
                        "{}: reading vector {}: the data ends early",
                        path.display(),
                        self.done
                    );
                    true
                }
            }
            Source::NpyColumns { data } => {
                let rows = self.rows.unwrap_or(0) as usize;
                let i = self.done as usize;
                if i >= rows {
                    false
                } else {
                    row.clear();
                    row.extend((0..dims).map(|j| data.get(j * rows + i).copied().unwrap_or(0.0)));
                    true
                }
            }
            Source::Vecs { reader, bytes, buf } => {
                if Some(self.done) == self.rows {
                    false
                } else {
                    reader.read_exact(buf).map_err(|e| {
                        anyhow!("{}: reading vector {}: {e}", path.display(), self.done)
                    })?;
                    let d = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    ensure!(
                        usize::try_from(d).ok() == Some(dims),
                        "{}: vector {} has dimension {d}, the first has {dims}",
                        path.display(),
                        self.done
                    );
                    row.clear();
                    if *bytes {
                        row.extend(buf[4..].iter().map(|&b| f32::from(b)));
                    } else {
                        row.extend(
                            buf[4..]
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                    true
                }
            }
            Source::Text(text) => text.next(path, dims, row, label, self.done)?,
        };
        if more {
            self.done += 1;
        }
        Ok(more)
    }
}

fn open_npy(path: &Path, reader: impl Read + Seek + 'static, len: u64) -> Result<VectorReader> {
    let array = npy::open(reader, len)?;
    let (rows, dims, fortran) = (array.rows, array.cols, array.fortran);
    ensure!(dims > 0, "the vectors have zero dimensions");
    let dims = usize::try_from(dims).context("too many dimensions")?;
    let values = array.f32_values()?;
    // Fortran order scatters each row over the file: read it whole.
    let source = if fortran && rows > 1 {
        let n = usize::try_from(rows * dims as u64).context("array too large for memory")?;
        let mut data = Vec::new();
        data.try_reserve_exact(n)
            .map_err(|_| anyhow!("cannot allocate memory for {n} values"))?;
        for value in values {
            data.push(value.map_err(|e| anyhow!("reading data: {e}"))?);
        }
        Source::NpyColumns { data }
    } else {
        Source::NpyRows(values)
    };
    Ok(VectorReader {
        path: path.to_owned(),
        dims,
        rows: Some(rows),
        done: 0,
        source,
    })
}

fn open_vecs(
    path: &Path,
    mut reader: impl Read + 'static,
    len: u64,
    bytes: bool,
) -> Result<VectorReader> {
    let mut first = [0u8; 4];
    reader
        .read_exact(&mut first)
        .map_err(|_| anyhow!("truncated: shorter than one record"))?;
    let d = i32::from_le_bytes(first);
    ensure!(
        d > 0,
        "the first record's dimension is {d}; not a .{}",
        if bytes { "bvecs" } else { "fvecs" }
    );
    let dims = d as usize;
    let record = 4 + dims as u64 * if bytes { 1 } else { 4 };
    ensure!(
        len.is_multiple_of(record),
        "{len} bytes is not a whole number of {record}-byte records of dimension {dims} \
         (truncated, or vectors of different dimensions)"
    );
    // Put the first dimension back in front of the rest.
    let reader = std::io::Cursor::new(first).chain(reader);
    Ok(VectorReader {
        path: path.to_owned(),
        dims,
        rows: Some(len / record),
        done: 0,
        source: Source::Vecs {
            reader: Box::new(reader),
            bytes,
            buf: vec![0u8; record as usize],
        },
    })
}

fn open_text(
    path: &Path,
    reader: Box<dyn BufRead>,
    format: InputFormat,
    len: u64,
) -> Result<VectorReader> {
    let mut text = TextSource {
        reader,
        line_no: 0,
        pending: None,
        promised: None,
        line: Vec::new(),
    };
    let Some(first) = text.next_line(path)? else {
        bail!("{}: no vectors (the file has no lines)", path.display());
    };
    let fields: Vec<&str> = first.split_ascii_whitespace().collect();
    let header = match (fields.as_slice(), format) {
        (_, InputFormat::Glove) => None,
        ([count, dims], _) => match (count.parse::<u64>(), dims.parse::<usize>()) {
            (Ok(count), Ok(dims)) => Some((count, dims)),
            _ => None,
        },
        _ => None,
    };
    let dims = match header {
        Some((count, dims)) => {
            // Each number takes at least two bytes: a larger claim cannot be true.
            ensure!(
                dims > 0 && dims as u64 <= len / 2,
                "{}: line {}: the word2vec header says {dims} dimensions, impossible for a \
                 {len}-byte file",
                path.display(),
                text.line_no
            );
            text.promised = Some(count);
            dims
        }
        None => {
            ensure!(
                format != InputFormat::Word2vec,
                "{}: line {}: expected a word2vec header \"count dims\"",
                path.display(),
                text.line_no
            );
            ensure!(
                fields.len() >= 2,
                "{}: line {}: expected a label followed by numbers",
                path.display(),
                text.line_no
            );
            let dims = fields.len() - 1;
            let mut row = Vec::with_capacity(dims);
            let label = parse_line(&first, dims, &mut row)
                .map_err(|e| anyhow!("{}: line {}: {e}", path.display(), text.line_no))?;
            text.pending = Some((label.to_owned(), row, text.line_no));
            dims
        }
    };
    Ok(VectorReader {
        path: path.to_owned(),
        dims,
        rows: text.promised,
        done: 0,
        source: Source::Text(text),
    })
}

impl TextSource {
    /// The next line that is not blank, as text.
    fn next_line(&mut self, path: &Path) -> Result<Option<String>> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| anyhow!("{}: line {}: {e}", path.display(), self.line_no + 1))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let mut bytes = &self.line[..];
            if self.line_no == 1 {
                bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
            }
            let line = std::str::from_utf8(bytes).map_err(|_| {
                anyhow!(
                    "{}: line {}: not valid UTF-8 text",
                    path.display(),
                    self.line_no
                )
            })?;
            if !line.trim().is_empty() {
                return Ok(Some(line.to_owned()));
            }
        }
    }

    fn next(
        &mut self,
        path: &Path,
        dims: usize,
        row: &mut Vec<f32>,
        label: &mut String,
        done: u64,
    ) -> Result<bool> {
        if let Some((l, r, line_no)) = self.pending.take() {
            *label = l;
            *row = r;
            self.line_no = self.line_no.max(line_no);
            return Ok(true);
        }
        let Some(line) = self.next_line(path)? else {
            if let Some(promised) = self.promised {
                ensure!(
                    promised == done,
                    "{}: the word2vec header promises {promised} vectors, the file has {done}",
                    path.display()
                );
            }
            return Ok(false);
        };
        let l = parse_line(&line, dims, row)
            .map_err(|e| anyhow!("{}: line {}: {e}", path.display(), self.line_no))?;
        label.clear();
        label.push_str(l);
        Ok(true)
    }
}

/// Splits `label n1 n2 ...` into the label and exactly `dims` finite numbers.
fn parse_line<'a>(line: &'a str, dims: usize, row: &mut Vec<f32>) -> Result<&'a str> {
    let mut fields = line.split_ascii_whitespace();
    let label = fields.next().unwrap_or("");
    row.clear();
    for (i, field) in fields.enumerate() {
        ensure!(
            i < dims,
            "expected a label and {dims} numbers, found more than {dims} numbers"
        );
        let value: f32 = field
            .parse()
            .map_err(|_| anyhow!("{field:?} (number {}) is not a number", i + 1))?;
        ensure!(
            value.is_finite(),
            "{field:?} (number {}) is not a finite number",
            i + 1
        );
        row.push(value);
    }
    ensure!(
        row.len() == dims,
        "expected a label and {dims} numbers, found {} numbers",
        row.len()
    );
    Ok(label)
}

/// A whole file of vectors in memory, row-major.
pub struct Matrix {
    /// `rows * dims` values.
    pub data: Vec<f32>,
    /// Number of vectors.
    pub rows: usize,
    /// Dimensions of each.
    pub dims: usize,
}

impl Matrix {
    /// Vector `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        self.data
            .get(i * self.dims..(i + 1) * self.dims)
            .unwrap_or(&[])
    }
}

/// Reads every vector of `path` (labels, if any, are dropped).
pub fn read_matrix(path: &Path, format: Option<InputFormat>) -> Result<Matrix> {
    let mut reader = VectorReader::open(path, format, &indicatif::ProgressBar::hidden())?;
    let dims = reader.dims();
    let mut data = Vec::new();
    let (mut row, mut label) = (Vec::with_capacity(dims), String::new());
    let mut rows = 0;
    while reader.next(&mut row, &mut label)? {
        data.extend_from_slice(&row);
        rows += 1;
    }
    ensure!(rows > 0, "{}: no vectors", path.display());
    Ok(Matrix { data, rows, dims })
}

/// A matrix of item ids (ground truth), row-major.
pub struct IdMatrix {
    /// `rows * cols` ids.
    pub data: Vec<i64>,
    /// Number of rows.
    pub rows: usize,
    /// Ids per row.
    pub cols: usize,
}

impl IdMatrix {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[i64] {
        self.data
            .get(i * self.cols..(i + 1) * self.cols)
            .unwrap_or(&[])
    }
}

/// Reads ids from an integer `.npy` or an `.ivecs` file.
pub fn read_ids(path: &Path) -> Result<IdMatrix> {
    let (file, len) = open(path)?;
    ensure!(len > 0, "{}: the file is empty", path.display());
    let mut reader = BufReader::new(file);
    let is_npy = InputFormat::from_path(path) == InputFormat::Npy;
    let at = |e: anyhow::Error| e.context(path.display().to_string());
    if is_npy {
        read_ids_npy(reader, len).map_err(at)
    } else {
        read_ivecs(&mut reader, len).map_err(at)
    }
}

fn read_ids_npy(reader: impl Read + Seek + 'static, len: u64) -> Result<IdMatrix> {
    let array = npy::open(reader, len)?;
    let (rows, cols, fortran) = (array.rows, array.cols, array.fortran);
    let (rows, cols) = (
        usize::try_from(rows).context("array too large")?,
        usize::try_from(cols).context("array too large")?,
    );
    let values = array
        .id_values()?
        .map(|id| id.context("reading data")?.context("id too large"))
        .collect::<Result<Vec<i64>>>()?;
    let data = if fortran && rows > 1 {
        let mut out = vec![0i64; values.len()];
        for (j, column) in values.chunks_exact(rows).enumerate() {
            for (i, &x) in column.iter().enumerate() {
                out[i * cols + j] = x;
            }
        }
        out
    } else {
        values
    };
    Ok(IdMatrix { data, rows, cols })
}

fn read_ivecs(reader: &mut impl Read, len: u64) -> Result<IdMatrix> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).context("reading")?;
    let first = bytes
        .get(..4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .context("truncated: shorter than one record")?;
    ensure!(
        first > 0,
        "the first record's dimension is {first}; not an .ivecs"
    );
    let cols = first as usize;
    let record = 4 + 4 * cols;
    ensure!(
        len.is_multiple_of(record as u64),
        "{len} bytes is not a whole number of {record}-byte records"
    );
    let mut data = Vec::with_capacity(bytes.len() / record * cols);
    for (r, rec) in bytes.chunks_exact(record).enumerate() {
        let d = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        ensure!(
            d == first,
            "record {r} has dimension {d}, the first has {first}"
        );
        data.extend(
            rec[4..]
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        );
    }
    Ok(IdMatrix {
        rows: bytes.len() / record,
        data,
        cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_line_checks_count_and_numbers() {
        let mut row = Vec::new();
        assert_eq!(parse_line("king 1 2.5 -3", 3, &mut row).unwrap(), "king");
        assert_eq!(row, [1.0, 2.5, -3.0]);
        assert!(parse_line("king 1 2.5", 3, &mut row).is_err());
        assert!(parse_line("king 1 2.5 3 4", 3, &mut row).is_err());
        assert!(parse_line("king 1 x 3", 3, &mut row).is_err());
        assert!(parse_line("king 1 nan 3", 3, &mut row).is_err());
        assert!(parse_line("king 1 inf 3", 3, &mut row).is_err());
    }

    #[test]
    fn formats_follow_extensions() {
        assert_eq!(InputFormat::from_path(Path::new("a.NPY")), InputFormat::Npy);
        assert_eq!(
            InputFormat::from_path(Path::new("a.fvecs")),
            InputFormat::Fvecs
        );
        assert_eq!(
            InputFormat::from_path(Path::new("a.bvecs")),
            InputFormat::Bvecs
        );
        assert_eq!(
            InputFormat::from_path(Path::new("glove.6B.50d.txt")),
            InputFormat::Text
        );
    }
}
