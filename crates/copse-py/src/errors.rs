//! copse's [`copse::Error`] as the Python exceptions Annoy raises for the same mistakes.

use copse::{BuildError, Error};
use pyo3::exceptions::{
    PyBlockingIOError, PyIndexError, PyMemoryError, PyOSError, PyPermissionError, PyRuntimeError,
    PyTypeError, PyValueError,
};
use pyo3::prelude::*;

/// The Python exception for a library error: `IndexError` for a bad id or a vector of the wrong
/// length, `ValueError` for a bad value, `OSError` for anything about files (with `errno` and
/// `filename` set, so a missing file is a `FileNotFoundError`), `MemoryError` when memory runs
/// out.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::WrongDimensions { expected, found } => PyIndexError::new_err(format!(
            "Vector has wrong length (expected {expected}, got {found})"
        )),
        Error::ItemOutOfRange { .. } | Error::ItemMissing { .. } => PyIndexError::new_err(message),
        Error::NotFinite { .. } | Error::Query(copse::QueryError::NormOverflow) => {
            PyValueError::new_err(message)
        }
        Error::AlreadyBuilt => PyRuntimeError::new_err(message),
        Error::DuplicateLabel { .. } => PyValueError::new_err(message),
        Error::WrongKind(_) => PyTypeError::new_err(message),
        Error::Io { path, source } => os_error(&path, &source),
        Error::Mismatch { .. } | Error::Format(_) | Error::Collection { .. } => {
            PyOSError::new_err(message)
        }
        Error::Locked { .. } => PyBlockingIOError::new_err(message),
        Error::ReadOnly => PyPermissionError::new_err(message),
        Error::DuplicateId { .. } => PyValueError::new_err(message),
        Error::Build(build) => match build {
            BuildError::OutOfMemory { .. } => PyMemoryError::new_err(message),
            BuildError::ZeroTrees
            | BuildError::BadLeafCapacity(_)
            | BuildError::BadGraph(_)
            | BuildError::NormOverflow { .. }
            | BuildError::OutOfRange { .. }
            | BuildError::CodesFixed { .. }
            | BuildError::ElementForMetric { .. }
            | BuildError::TooLarge(_) => PyValueError::new_err(message),
            _ => PyRuntimeError::new_err(message),
        },
        _ => PyRuntimeError::new_err(message),
    }
}

/// An `OSError` with `errno`, `strerror` and `filename` set when the OS reported an error
/// number (Python then raises the matching subclass, such as `FileNotFoundError`).
fn os_error(path: &std::path::Path, source: &std::io::Error) -> PyErr {
    let path = path.display().to_string();
    // The OS error may be wrapped (a temporary file's error carries its own path).
    let mut errno = source.raw_os_error();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match source.get_ref() {
        Some(inner) => Some(inner),
        None => None,
    };
    while let (None, Some(inner)) = (errno, cause) {
        errno = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        cause = inner.source();
    }
    // A wrapper that hides its cause still keeps the kind.
    let errno = errno.or_else(|| errno_of_kind(source.kind()));
    match errno {
        Some(errno) => {
            let text = std::io::Error::from_raw_os_error(errno).to_string();
            let text = match text.rfind(" (os error") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            PyOSError::new_err((errno, text, path))
        }
        None => PyOSError::new_err(format!("{path}: {source}")),
    }
}

/// The POSIX error number for common error kinds (the same numbers on Linux, macOS and BSDs).
fn errno_of_kind(kind: std::io::ErrorKind) -> Option<i32> {
    use std::io::ErrorKind;
    Some(match kind {
        ErrorKind::NotFound => 2,
        ErrorKind::PermissionDenied => 13,
        ErrorKind::AlreadyExists => 17,
        ErrorKind::NotADirectory => 20,
        ErrorKind::IsADirectory => 21,
        ErrorKind::StorageFull => 28,
        ErrorKind::ReadOnlyFilesystem => 30,
        _ => return None,
    })
}

/// [`to_py`] for a path-less load or save failure, prefixed with the file's name.
pub(crate) fn with_path(error: Error, path: &std::path::Path) -> PyErr {
    match error {
        Error::Mismatch { .. } | Error::Format(_) | Error::Annoy(_) => {
            PyOSError::new_err(format!("{}: {error}", path.display()))
        }
        other => to_py(other),
    }
}

/// The state errors (building twice, adding to a loaded index, ...). Annoy raises a bare
/// `Exception` for these; a `RuntimeError` is one, so `except Exception` code keeps working.
pub(crate) fn state(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}
