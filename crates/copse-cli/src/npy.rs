//! `.npy` files through the `npyz` crate. This module only decides what the CLI accepts (a 1-D
//! or 2-D array of float32, float64 or 1 to 8 byte integers, either byte order, C or Fortran
//! order) and turns npyz's errors into messages that name the problem; turning arrays into rows
//! of vectors is `input`'s job.

use std::cell::Cell;
use std::io::{self, Read, Seek, Write};

use anyhow::{Result, anyhow, bail, ensure};
use npyz::{DType, Deserialize, NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};

/// Elements of an array, in file order.
pub type Values<T> = Box<dyn Iterator<Item = io::Result<T>>>;

/// A `.npy` whose header has been checked and whose file holds all the data it promises.
pub struct Array<R: Read> {
    file: NpyFile<R>,
    /// The element type: float, int or uint, and its size in bytes.
    element: (TypeChar, u64),
    /// Rows (1 for a 1-D array).
    pub rows: u64,
    /// Columns.
    pub cols: u64,
    /// Column-major data.
    pub fortran: bool,
}

thread_local! {
    /// True while npyz parses a header. npyz 0.9 multiplies the shape's dimensions unchecked,
    /// which panics in builds with overflow checks (release builds wrap, and `open` then rejects
    /// the shape); the panic hook leaves such a panic to `parse_header`.
    static PARSING: Cell<bool> = const { Cell::new(false) };
}

/// True while a panic is a header that `parse_header` will report as an error.
pub fn parsing_header() -> bool {
    PARSING.get()
}

fn parse_header(reader: impl Read) -> io::Result<NpyHeader> {
    PARSING.set(true);
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        NpyHeader::from_reader(reader)
    }));
    PARSING.set(false);
    parsed.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the shape is too large (more elements than fit in 64 bits)",
        ))
    })
}

/// Reads and checks the header at the start of `reader`, a file of `file_len` bytes.
pub fn open<R: Read + Seek>(mut reader: R, file_len: u64) -> Result<Array<R>> {
    let header = parse_header(&mut reader).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => anyhow!("truncated .npy header"),
        io::ErrorKind::InvalidData => anyhow!("not a .npy file ({e})"),
        _ => anyhow!("reading the .npy header: {e}"),
    })?;
    let element = element(&header.dtype())?;
    let (rows, cols) = match *header.shape() {
        [cols] => (1, cols),
        [rows, cols] => (rows, cols),
        ref shape => bail!("expected a 1-D or 2-D array, found shape {shape:?}"),
    };
    let data_len = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(element.1))
        .ok_or_else(|| anyhow!("shape {:?} is too large", header.shape()))?;
    let found = file_len.saturating_sub(reader.stream_position()?);
    // Checked up front so that a truncated file fails before a long build, not at its end.
    ensure!(
        found >= data_len,
        "truncated: shape {:?} needs {data_len} bytes of data, the file has {found}",
        header.shape()
    );
    Ok(Array {
        element,
        rows,
        cols,
        fortran: header.order() == Order::Fortran,
        file: NpyFile::with_header(header, reader),
    })
}

/// The kind and size of a dtype the CLI reads, or why it does not read it.
fn element(dtype: &DType) -> Result<(TypeChar, u64)> {
    let DType::Plain(t) = dtype else {
        bail!(
            "unsupported dtype {} (structured arrays are not supported)",
            dtype.descr()
        );
    };
    let ok = match t.type_char() {
        TypeChar::Float => matches!(t.size_field(), 4 | 8),
        TypeChar::Int | TypeChar::Uint => matches!(t.size_field(), 1 | 2 | 4 | 8),
        _ => false,
    };
    ensure!(
        ok,
        "unsupported dtype '{t}' (float32, float64 or 1 to 8 byte integers)"
    );
    Ok((t.type_char(), t.size_field()))
}

/// The elements of `file` read as `T` (which its dtype must be) and converted by `f`.
fn convert<R: Read + 'static, T: Deserialize + 'static, U: 'static>(
    file: NpyFile<R>,
    f: fn(T) -> U,
) -> Result<Values<U>> {
    Ok(Box::new(file.data::<T>()?.map(move |x| x.map(f))))
}

impl<R: Read + 'static> Array<R> {
    /// The elements as f32 (integers are rounded above 2^24).
    pub fn f32_values(self) -> Result<Values<f32>> {
        match self.element {
            (TypeChar::Float, 4) => convert(self.file, |x: f32| x),
            (TypeChar::Float, _) => convert(self.file, |x: f64| x as f32),
            (TypeChar::Int, 1) => convert(self.file, |x: i8| f32::from(x)),
            (TypeChar::Int, 2) => convert(self.file, |x: i16| f32::from(x)),
            (TypeChar::Int, 4) => convert(self.file, |x: i32| x as f32),
            (TypeChar::Int, _) => convert(self.file, |x: i64| x as f32),
            (TypeChar::Uint, 1) => convert(self.file, |x: u8| f32::from(x)),
            (TypeChar::Uint, 2) => convert(self.file, |x: u16| f32::from(x)),
            (TypeChar::Uint, 4) => convert(self.file, |x: u32| x as f32),
            (_, _) => convert(self.file, |x: u64| x as f32),
        }
    }

    /// The elements as ids: `None` for unsigned values above `i64::MAX`; an error for floats.
    pub fn id_values(self) -> Result<Values<Option<i64>>> {
        match self.element {
            (TypeChar::Float, _) => bail!("expected integer ids, found a float array"),
            (TypeChar::Int, 1) => convert(self.file, |x: i8| Some(i64::from(x))),
            (TypeChar::Int, 2) => convert(self.file, |x: i16| Some(i64::from(x))),
            (TypeChar::Int, 4) => convert(self.file, |x: i32| Some(i64::from(x))),
            (TypeChar::Int, _) => convert(self.file, |x: i64| Some(x)),
            (TypeChar::Uint, 1) => convert(self.file, |x: u8| Some(i64::from(x))),
            (TypeChar::Uint, 2) => convert(self.file, |x: u16| Some(i64::from(x))),
            (TypeChar::Uint, 4) => convert(self.file, |x: u32| Some(i64::from(x))),
            (_, _) => convert(self.file, |x: u64| i64::try_from(x).ok()),
        }
    }
}

/// Writes row-major data as a C-order `(rows, cols)` `.npy` of `T`'s dtype.
pub fn write<T: npyz::AutoSerialize + Copy>(
    out: &mut impl Write,
    rows: usize,
    cols: usize,
    data: &[T],
) -> io::Result<()> {
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&[rows as u64, cols as u64])
        .writer(out)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((dict.len() as u16).to_le_bytes());
        bytes.extend(dict.as_bytes());
        bytes.extend(data);
        bytes
    }

    fn open_bytes(bytes: &[u8]) -> Result<Array<io::Cursor<Vec<u8>>>> {
        open(io::Cursor::new(bytes.to_vec()), bytes.len() as u64)
    }

    fn error(dict: &str, data: &[u8]) -> String {
        match open_bytes(&bytes_of(dict, data)) {
            Ok(_) => panic!("{dict} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn reads_orders_byte_orders_and_1d_arrays() {
        let a = open_bytes(&bytes_of(
            "{'descr': '>i2', 'fortran_order': False, 'shape': (3,)}\n",
            &[0xff, 0xfe, 0x01, 0x00, 0x00, 0x07],
        ))
        .unwrap();
        assert_eq!((a.rows, a.cols, a.fortran), (1, 3, false));
        let v: Vec<f32> = a.f32_values().unwrap().map(Result::unwrap).collect();
        assert_eq!(v, [-2.0, 256.0, 7.0]);
        let a = open_bytes(&bytes_of(
            "{'descr': '<u8', 'fortran_order': True, 'shape': (2, 1), }",
            &[[0xff; 8], 5u64.to_le_bytes()].concat(),
        ))
        .unwrap();
        assert_eq!((a.rows, a.cols, a.fortran), (2, 1, true));
        let v: Vec<Option<i64>> = a.id_values().unwrap().map(Result::unwrap).collect();
        assert_eq!(v, [None, Some(5)]);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = error(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}",
            &[0; 8],
        );
        assert!(e.contains("unsupported dtype '<c8'"), "{e}");
        let e = error(
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1,)}",
            &[0; 2],
        );
        assert!(e.contains("unsupported dtype '<f2'"), "{e}");
        let e = error(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}",
            &[0; 4],
        );
        assert!(e.contains("structured"), "{e}");
        let e = error("{'descr': '<f4', 'shape': (1, 2), }", &[0; 8]);
        assert!(
            e.contains("not a .npy file") && e.contains("fortran_order"),
            "{e}"
        );
        let e = error(
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
            &[0; 4],
        );
        assert!(e.contains("not a .npy file"), "{e}");
        let e = error(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2)}",
            &[0; 32],
        );
        assert!(e.contains("1-D or 2-D") && e.contains("[2, 2, 2]"), "{e}");
        let e = error(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
            &[0; 23],
        );
        assert!(e.contains("truncated") && e.contains("24 bytes"), "{e}");
        let huge = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, 2)}}",
            u64::MAX / 2
        );
        let e = error(&huge, &[]);
        assert!(e.contains("too large"), "{e}");
        let e = error(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776)}",
            &[],
        );
        assert!(e.contains("shape") && e.contains("too large"), "{e}");
        let e = open_bytes(b"\x93NUMP").err().unwrap().to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let e = open_bytes(b"PK\x03\x04 not numpy at all")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let mut short = bytes_of(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
            &[],
        );
        short.truncate(20);
        let e = open_bytes(&short).err().unwrap().to_string();
        assert!(e.contains("truncated .npy header"), "{e}");
    }

    #[test]
    fn floats_are_not_ids() {
        let a = open_bytes(&bytes_of(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
            &[0; 4],
        ))
        .unwrap();
        let e = a.id_values().err().unwrap().to_string();
        assert!(e.contains("integer ids"), "{e}");
    }

    #[test]
    fn written_files_read_back() {
        let mut bytes = Vec::new();
        write(&mut bytes, 2, 3, &[1i64, -2, 3, 4, 5, i64::MAX]).unwrap();
        let a = open_bytes(&bytes).unwrap();
        assert_eq!((a.rows, a.cols, a.fortran), (2, 3, false));
        let v: Vec<Option<i64>> = a.id_values().unwrap().map(Result::unwrap).collect();
        assert_eq!(v, [1, -2, 3, 4, 5, i64::MAX].map(Some));
    }
}
