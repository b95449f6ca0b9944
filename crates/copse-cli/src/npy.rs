//! A small `.npy` reader and writer: the header (versions 1 to 3), plain numeric dtypes in either
//! byte order, C or Fortran order. It owns only the file format; turning arrays into rows of
//! vectors is `input`'s job.

use std::io::{Read, Write};

use anyhow::{Context, Result, anyhow, bail, ensure};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What one element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// IEEE float (`f`).
    Float,
    /// Signed integer (`i`).
    Int,
    /// Unsigned integer (`u`).
    Uint,
}

/// A plain numeric dtype such as `<f4` or `|u1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    /// Float, signed or unsigned.
    pub kind: Kind,
    /// Bytes per element.
    pub size: usize,
    /// Most significant byte first.
    pub big_endian: bool,
}

impl DType {
    fn parse(descr: &str) -> Result<DType> {
        let mut chars = descr.chars();
        let (big_endian, rest) = match chars.next() {
            Some('<' | '|' | '=') => (false, chars.as_str()),
            Some('>') => (true, chars.as_str()),
            _ => (false, descr),
        };
        let mut chars = rest.chars();
        let kind = match chars.next() {
            Some('f') => Kind::Float,
            Some('i') => Kind::Int,
            Some('u') => Kind::Uint,
            _ => bail!("unsupported dtype {descr:?} (floats or integers only)"),
        };
        let size: usize = chars
            .as_str()
            .parse()
            .map_err(|_| anyhow!("unsupported dtype {descr:?}"))?;
        let ok = match kind {
            Kind::Float => matches!(size, 4 | 8),
            Kind::Int | Kind::Uint => matches!(size, 1 | 2 | 4 | 8),
        };
        ensure!(
            ok,
            "unsupported dtype {descr:?} (float32, float64 or 1 to 8 byte integers)"
        );
        Ok(DType {
            kind,
            size,
            big_endian,
        })
    }

    /// Bytes of one element in little-endian order (`bytes.len() == self.size`).
    fn le_bytes(self, bytes: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        let n = self.size.min(8).min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
        if self.big_endian {
            out[..n].reverse();
        }
        out
    }

    /// The element in `bytes` as f32 (integers are converted, rounding above 2^24).
    pub fn to_f32(self, bytes: &[u8]) -> f32 {
        let b = self.le_bytes(bytes);
        match (self.kind, self.size) {
            (Kind::Float, 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (Kind::Float, _) => f64::from_le_bytes(b) as f32,
            (Kind::Int, _) => self.signed(b) as f32,
            (Kind::Uint, _) => u64::from_le_bytes(b) as f32,
        }
    }

    /// The element in `bytes` as an integer, or `None` for floats and for unsigned values above
    /// `i64::MAX`.
    pub fn to_i64(self, bytes: &[u8]) -> Option<i64> {
        let b = self.le_bytes(bytes);
        match self.kind {
            Kind::Float => None,
            Kind::Int => Some(self.signed(b)),
            Kind::Uint => i64::try_from(u64::from_le_bytes(b)).ok(),
        }
    }

    /// Sign-extends the low `size` bytes of `b`.
    fn signed(self, b: [u8; 8]) -> i64 {
        let shift = 64 - 8 * self.size.clamp(1, 8) as u32;
        (i64::from_le_bytes(b) << shift) >> shift
    }
}

/// A parsed header: what the data is and where it starts.
#[derive(Debug, Clone)]
pub struct Header {
    /// Element type.
    pub dtype: DType,
    /// Column-major data.
    pub fortran: bool,
    /// Array shape.
    pub shape: Vec<u64>,
    /// Bytes before the data.
    pub data_offset: u64,
}

impl Header {
    /// `(rows, columns)` of a 1-D (one row) or 2-D array.
    pub fn matrix_shape(&self) -> Result<(u64, u64)> {
        match self.shape[..] {
            [cols] => Ok((1, cols)),
            [rows, cols] => Ok((rows, cols)),
            _ => bail!("expected a 1-D or 2-D array, found shape {:?}", self.shape),
        }
    }

    /// Bytes of data the header promises, if that fits in a u64.
    pub fn data_len(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(self.dtype.size as u64, |acc, &d| acc.checked_mul(d))
    }
}

/// Reads the header from the start of `reader`, leaving it at the first data byte.
pub fn read_header(reader: &mut impl Read) -> Result<Header> {
    let mut start = [0u8; 10];
    reader
        .read_exact(&mut start)
        .map_err(|_| anyhow!("not a .npy file (too short for a header)"))?;
    ensure!(
        &start[..6] == MAGIC,
        "not a .npy file (no \\x93NUMPY magic)"
    );
    let major = start[6];
    let (header_len, prefix) = match major {
        1 => (u64::from(u16::from_le_bytes([start[8], start[9]])), 10u64),
        2 | 3 => {
            let mut more = [0u8; 2];
            reader
                .read_exact(&mut more)
                .map_err(|_| anyhow!("truncated .npy header"))?;
            let len = u32::from_le_bytes([start[8], start[9], more[0], more[1]]);
            (u64::from(len), 12u64)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    ensure!(
        header_len <= 1 << 20,
        "implausible .npy header length {header_len}"
    );
    let mut text = vec![0u8; header_len as usize];
    reader
        .read_exact(&mut text)
        .map_err(|_| anyhow!("truncated .npy header"))?;
    let text = std::str::from_utf8(&text).context("the .npy header is not text")?;
    let mut parser = DictParser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let (descr, fortran, shape) = parser.header().context("malformed .npy header")?;
    Ok(Header {
        dtype: DType::parse(&descr)?,
        fortran,
        shape,
        data_offset: prefix + header_len,
    })
}

/// The header dict, a tiny subset of a Python literal:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct DictParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl DictParser<'_> {
    fn header(&mut self) -> Result<(String, bool, Vec<u64>)> {
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        self.expect(b'{')?;
        loop {
            self.skip_space();
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            self.skip_space();
            self.expect(b':')?;
            self.skip_space();
            match key.as_str() {
                "descr" => {
                    ensure!(
                        self.peek() != Some(b'['),
                        "structured dtypes are not supported"
                    );
                    descr = Some(self.string()?);
                }
                "fortran_order" => fortran = Some(self.boolean()?),
                "shape" => shape = Some(self.tuple()?),
                other => bail!("unexpected key {other:?}"),
            }
            self.skip_space();
            if !self.eat(b',') {
                self.skip_space();
                self.expect(b'}')?;
                break;
            }
        }
        Ok((
            descr.ok_or_else(|| anyhow!("no 'descr'"))?,
            fortran.ok_or_else(|| anyhow!("no 'fortran_order'"))?,
            shape.ok_or_else(|| anyhow!("no 'shape'"))?,
        ))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        ensure!(self.eat(b), "expected {:?} at byte {}", b as char, self.at);
        Ok(())
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn string(&mut self) -> Result<String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => bail!("expected a string at byte {}", self.at),
        };
        self.at += 1;
        let start = self.at;
        while self.peek().is_some_and(|b| b != quote) {
            self.at += 1;
        }
        let s = self.bytes.get(start..self.at).unwrap_or(&[]);
        self.expect(quote)?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn boolean(&mut self) -> Result<bool> {
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self
                .bytes
                .get(self.at..)
                .is_some_and(|r| r.starts_with(word))
            {
                self.at += word.len();
                return Ok(value);
            }
        }
        bail!("expected True or False at byte {}", self.at)
    }

    fn tuple(&mut self) -> Result<Vec<u64>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(out);
            }
            let start = self.at;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
            let digits = std::str::from_utf8(self.bytes.get(start..self.at).unwrap_or(&[]))?;
            out.push(
                digits
                    .parse()
                    .map_err(|_| anyhow!("expected a dimension at byte {start}"))?,
            );
            // Python may write `3L` in very old files.
            self.eat(b'L');
            self.skip_space();
            if !self.eat(b',') {
                self.skip_space();
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

/// Writes a C-order 2-D `.npy` whose elements are `descr` (`<i8`, `<f4`), each encoded by `put`.
fn write_matrix<T: Copy>(
    out: &mut impl Write,
    descr: &str,
    rows: usize,
    cols: usize,
    data: &[T],
    put: impl Fn(T) -> Vec<u8>,
) -> std::io::Result<()> {
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Pad so the data starts on a 64-byte boundary; the header ends with a newline.
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(64) - unpadded,
    ));
    dict.push('\n');
    let len = u16::try_from(dict.len()).map_err(std::io::Error::other)?;
    out.write_all(MAGIC)?;
    out.write_all(&[1, 0])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(dict.as_bytes())?;
    for &x in data {
        out.write_all(&put(x))?;
    }
    Ok(())
}

/// Writes row-major i64 data as a C-order `<i8` `.npy`.
pub fn write_i64(
    out: &mut impl Write,
    rows: usize,
    cols: usize,
    data: &[i64],
) -> std::io::Result<()> {
    write_matrix(out, "<i8", rows, cols, data, |x| x.to_le_bytes().to_vec())
}

/// Writes row-major f32 data as a C-order `<f4` `.npy`.
pub fn write_f32(
    out: &mut impl Write,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> std::io::Result<()> {
    write_matrix(out, "<f4", rows, cols, data, |x| x.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(dict: &str) -> Result<Header> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((dict.len() as u16).to_le_bytes());
        bytes.extend(dict.as_bytes());
        read_header(&mut &bytes[..])
    }

    #[test]
    fn parses_numpy_headers() {
        let h = header_of("{'descr': '<f4', 'fortran_order': True, 'shape': (400000, 50), }  \n")
            .unwrap();
        assert_eq!(h.dtype.kind, Kind::Float);
        assert_eq!(h.dtype.size, 4);
        assert!(h.fortran);
        assert_eq!(h.shape, [400000, 50]);
        assert_eq!(h.matrix_shape().unwrap(), (400000, 50));
        let h = header_of("{'descr': '>i2', 'fortran_order': False, 'shape': (7,)}").unwrap();
        assert_eq!(h.shape, [7]);
        assert!(h.dtype.big_endian);
        assert_eq!(h.matrix_shape().unwrap(), (1, 7));
        assert_eq!(h.dtype.to_i64(&[0xff, 0xfe]), Some(-2));
        assert_eq!(h.dtype.to_f32(&[0x01, 0x00]), 256.0);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(header_of("{'descr': '<c8', 'fortran_order': False, 'shape': (1, 2), }").is_err());
        assert!(header_of("{'descr': '<f4', 'shape': (1, 2), }").is_err());
        assert!(
            header_of("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}").is_err()
        );
        assert!(header_of("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}").is_err());
        assert!(read_header(&mut &b"\x93NUMP"[..]).is_err());
        assert!(read_header(&mut &b"PK\x03\x04 not numpy at all"[..]).is_err());
        let h =
            header_of("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }").unwrap();
        assert!(h.matrix_shape().is_err());
    }

    #[test]
    fn written_files_read_back() {
        let mut bytes = Vec::new();
        write_i64(&mut bytes, 2, 3, &[1, -2, 3, 4, 5, i64::MAX]).unwrap();
        let mut reader = &bytes[..];
        let h = read_header(&mut reader).unwrap();
        assert_eq!(h.data_offset % 64, 0);
        assert_eq!(h.shape, [2, 3]);
        assert_eq!(reader.len(), 48);
        let values: Vec<i64> = reader.chunks(8).filter_map(|c| h.dtype.to_i64(c)).collect();
        assert_eq!(values, [1, -2, 3, 4, 5, i64::MAX]);
    }
}
