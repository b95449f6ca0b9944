//! Turning Python arguments into Rust values: item ids, counts, vectors and matrices.
//!
//! Every conversion here runs with the GIL held and finishes before the binding takes its state
//! lock or releases the GIL, because converting an arbitrary object may run Python code (an
//! `__index__`, a `__float__`, a sequence's `__getitem__`). The errors are Annoy's types: a bad
//! id or a vector of the wrong length is an `IndexError`, a non-number a `TypeError`.

use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList, PyTuple};

/// An item id from a Python integer, any in `[0, 2^64)`: negative ids are an `IndexError` (as
/// in Annoy), ids from 2^64 on an `OverflowError`, anything but an integer a `TypeError`.
pub(crate) fn item_id(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(id) => Ok(id),
        // Not a u64: say whether it is negative, too large, or not an integer at all.
        Err(not_u64) => match obj.extract::<i128>() {
            Ok(id) if id < 0 => Err(negative(id)),
            Ok(id) => Err(too_large(id)),
            Err(_) if obj.is_instance_of::<PyInt>() => {
                let negative = obj.lt(0)?;
                let text = obj.str()?.to_string();
                Err(if negative {
                    PyIndexError::new_err(format!("Item index can not be negative (got {text})"))
                } else {
                    too_large(text)
                })
            }
            Err(_) => Err(not_u64),
        },
    }
}

fn negative(id: impl std::fmt::Display) -> PyErr {
    PyIndexError::new_err(format!("Item index can not be negative (got {id})"))
}

fn too_large(id: impl std::fmt::Display) -> PyErr {
    PyOverflowError::new_err(format!(
        "item id {id} is too large: ids go from 0 to 2**64 - 1"
    ))
}

/// A result count `n` (non-negative).
pub(crate) fn count(n: i64) -> PyResult<usize> {
    usize::try_from(n).map_err(|_| PyValueError::new_err(format!("n must be >= 0, not {n}")))
}

/// `search_k`: -1 means Annoy's default (`n * n_trees`).
pub(crate) fn search_k(k: i64) -> PyResult<Option<usize>> {
    match k {
        -1 => Ok(None),
        k => usize::try_from(k).map(Some).map_err(|_| {
            PyValueError::new_err(format!(
                "search_k must be -1 (the default, n * n_trees) or >= 0, not {k}"
            ))
        }),
    }
}

/// A truth value as Annoy takes it: a bool or an integer (`include_distances=1` works), but not
/// `None` or a string.
pub(crate) fn flag(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<bool> {
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(b.is_true());
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.is_truthy();
    }
    if let Ok(b) = obj.extract::<bool>() {
        // numpy.bool_
        return Ok(b);
    }
    Err(PyTypeError::new_err(format!(
        "{name} must be a bool, not {}",
        type_name(obj)
    )))
}

/// `type(obj).__name__`, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// A vector borrowed from a contiguous float32 numpy array, or converted into a new buffer.
pub(crate) enum Vector<'py> {
    /// A contiguous float32 array: read in place, never copied.
    Borrowed(PyReadonlyArray1<'py, f32>),
    /// Anything else, converted.
    Owned(Vec<f32>),
}

impl Vector<'_> {
    /// The values.
    pub(crate) fn as_slice(&self) -> &[f32] {
        match self {
            // A `Borrowed` vector is only made from a contiguous array.
            Vector::Borrowed(array) => array.as_slice().unwrap_or(&[]),
            Vector::Owned(values) => values,
        }
    }
}

fn wrong_length(expected: usize, found: usize) -> PyErr {
    PyIndexError::new_err(format!(
        "Vector has wrong length (expected {expected}, got {found})"
    ))
}

/// True for numpy dtype kinds that hold real numbers: bool, signed, unsigned, float.
fn numeric_kind(kind: u8) -> bool {
    matches!(kind, b'b' | b'i' | b'u' | b'f')
}

/// A vector of `dims` numbers from a list, a tuple, any sequence with a length, or a numpy
/// array of any real dtype. Contiguous float32 arrays are borrowed without a copy (the library
/// rejects NaN in them); everything else goes through f64 and [`narrow`].
///
/// Anything else is read as Annoy reads it, through the sequence protocol: `len(v)`, then
/// `float(v[0])`, ..., `float(v[dims - 1])`. So the errors are CPython's own, word for word
/// (`object of type 'X' has no len()`, `'X' object is not subscriptable`, `must be real
/// number, not str`), a dict is read by key, and a set or a generator is refused.
pub(crate) fn vector<'py>(obj: &Bound<'py, PyAny>, dims: usize) -> PyResult<Vector<'py>> {
    if let Ok(array) = obj.cast::<PyArray1<f32>>() {
        if array.len() != dims {
            return Err(wrong_length(dims, array.len()));
        }
        let array = array.try_readonly()?;
        if array.as_slice().is_ok() {
            return Ok(Vector::Borrowed(array));
        }
        return Ok(Vector::Owned(array.as_array().iter().copied().collect()));
    }
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        if array.ndim() == 0 {
            // numpy's own `TypeError: len() of unsized object`, as Annoy raises.
            obj.len()?;
        }
        if array.ndim() != 1 {
            return Err(PyValueError::new_err(format!(
                "expected a 1-dimensional vector of {dims} numbers, got an array of shape {:?}",
                array.shape()
            )));
        }
        if array.len() != dims {
            return Err(wrong_length(dims, array.len()));
        }
        let dtype = array.dtype();
        if !numeric_kind(dtype.kind()) {
            return Err(PyTypeError::new_err(format!(
                "vector must hold real numbers, not {}",
                dtype.str().map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        // Through f64, so a value beyond f32's range is reported rather than made infinite.
        let converted = array.call_method1("astype", ("float64",))?;
        let converted = converted.cast::<PyArray1<f64>>()?;
        let values: Vec<f64> = converted
            .try_readonly()?
            .as_array()
            .iter()
            .copied()
            .collect();
        return Ok(Vector::Owned(narrow(&values)?));
    }
    // Exact lists and tuples are read directly (the same values as `v[i]`, faster); a subclass
    // may override `__getitem__`, so it takes the general path.
    let values = if let Ok(list) = obj.cast_exact::<PyList>() {
        if list.len() != dims {
            return Err(wrong_length(dims, list.len()));
        }
        let mut values = Vec::with_capacity(dims);
        for item in list.iter() {
            values.push(item.extract::<f64>()?);
        }
        values
    } else if let Ok(tuple) = obj.cast_exact::<PyTuple>() {
        if tuple.len() != dims {
            return Err(wrong_length(dims, tuple.len()));
        }
        let mut values = Vec::with_capacity(dims);
        for item in tuple.iter() {
            values.push(item.extract::<f64>()?);
        }
        values
    } else {
        // `PyObject_Size`, then `PyObject_GetItem` per position: Annoy's protocol and CPython's
        // messages.
        let len = obj.len()?;
        if len != dims {
            return Err(wrong_length(dims, len));
        }
        // Grown as values come: `dims` (up to 2**31 and more) is not reserved for an object
        // whose `__len__` may lie.
        let mut values = Vec::new();
        for z in 0..dims {
            values.push(obj.get_item(z)?.extract::<f64>()?);
        }
        values
    };
    Ok(Vector::Owned(narrow(&values)?))
}

/// Narrows f64 values to f32, rejecting NaN, infinities and values beyond f32's range.
pub(crate) fn narrow(values: &[f64]) -> PyResult<Vec<f32>> {
    values
        .iter()
        .enumerate()
        .map(|(position, &v)| {
            let x = v as f32;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(not_finite(position, v))
            }
        })
        .collect()
}

/// The error for a NaN or infinite value (or one too large for float32).
pub(crate) fn not_finite(position: usize, value: f64) -> PyErr {
    if value.is_finite() {
        PyValueError::new_err(format!(
            "value {value:?} at position {position} is too large for float32"
        ))
    } else {
        PyValueError::new_err(format!(
            "value {value} at position {position} is not a finite number"
        ))
    }
}

/// A 2-D matrix with `dims` columns, as a C-contiguous float32 array: borrowed when it already
/// is one, converted (with numpy) otherwise.
pub(crate) fn matrix<'py>(
    obj: &Bound<'py, PyAny>,
    dims: usize,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let py = obj.py();
    let array = match obj.cast::<PyArray2<f32>>() {
        Ok(array) if array.is_c_contiguous() => array.clone(),
        _ => {
            let numpy = py.import("numpy")?;
            let array = numpy.call_method1("asarray", (obj,))?;
            let untyped = array.cast::<PyUntypedArray>()?;
            if untyped.ndim() != 2 {
                return Err(PyValueError::new_err(format!(
                    "{what} must be a 2-dimensional array (one row per vector), got shape {:?}",
                    untyped.shape()
                )));
            }
            let dtype = untyped.dtype();
            if !numeric_kind(dtype.kind()) {
                return Err(PyTypeError::new_err(format!(
                    "{what} must hold real numbers, not {}",
                    dtype.str().map(|s| s.to_string()).unwrap_or_default()
                )));
            }
            let converted = numpy.call_method1("ascontiguousarray", (array, "float32"))?;
            converted.cast_into::<PyArray2<f32>>()?
        }
    };
    let cols = array.shape()[1];
    if cols != dims {
        return Err(PyIndexError::new_err(format!(
            "{what} has rows of wrong length (expected {dims}, got {cols})"
        )));
    }
    Ok(array.try_readonly()?)
}

/// Item ids for `add_items`: a 1-D sequence or array of integers in `[0, 2^64)`.
pub(crate) fn id_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let py = obj.py();
    let numpy = py.import("numpy")?;
    let array = numpy.call_method1("asarray", (obj,))?;
    let untyped = array.cast::<PyUntypedArray>()?;
    if untyped.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "ids must be a 1-dimensional sequence of integers, got shape {:?}",
            untyped.shape()
        )));
    }
    let kind = untyped.dtype().kind();
    let is_array = obj.is_instance_of::<PyUntypedArray>();
    if kind == b'O' || (kind == b'f' && !is_array) {
        // A list with ints beyond int64 (numpy makes it objects, or floats when some are
        // beyond uint64 too): each converted as `add_item` converts it.
        return obj.try_iter()?.map(|id| item_id(&id?)).collect();
    }
    if !matches!(kind, b'i' | b'u') && untyped.len() > 0 {
        return Err(PyTypeError::new_err(format!(
            "ids must be integers, not {}",
            untyped
                .dtype()
                .str()
                .map(|s| s.to_string())
                .unwrap_or_default()
        )));
    }
    if kind == b'u' {
        let as_u64 = numpy.call_method1("ascontiguousarray", (array, "uint64"))?;
        let as_u64 = as_u64.cast_into::<PyArray1<u64>>()?;
        return Ok(as_u64.try_readonly()?.as_array().to_vec());
    }
    let as_i64 = numpy.call_method1("ascontiguousarray", (array, "int64"))?;
    let as_i64 = as_i64.cast_into::<PyArray1<i64>>()?;
    let readonly = as_i64.try_readonly()?;
    readonly
        .as_array()
        .iter()
        .map(|&id| u64::try_from(id).map_err(|_| negative(id)))
        .collect()
}
