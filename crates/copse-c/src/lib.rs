//! # copse's C API
//!
//! The functions, types and constants of `include/copse.h`, which cbindgen generates from this
//! crate (the `header_is_current` test fails when the checked-in header is stale). Built as
//! `libcopse_c.so` and `libcopse_c.a`; `cargo xtask c-api --prefix DIR` installs both with the
//! headers and a `copse.pc` for pkg-config.
//!
//! Conventions, the same for every function:
//! - Fallible calls return a [`CopseStatus`]; on failure [`copse_last_error`] gives the message,
//!   per thread. Outputs are written only on success.
//! - Handles ([`CopseBuilder`], [`CopseIndex`], [`CopseFilter`]) are opaque and registered:
//!   NULL, a freed handle, a handle of another type or any other pointer is
//!   `COPSE_STATUS_INVALID_HANDLE`, found without reading through the pointer.
//! - Array arguments come with their lengths; NULL (with a non-zero length), misaligned arrays
//!   and lengths whose byte size overflows are errors.
//! - No Rust panic crosses the boundary: one is caught and reported as
//!   `COPSE_STATUS_INTERNAL`.
//!
//! Thread safety: an index and a filter may be used from any number of threads at once; a
//! builder serialises calls made on it from several threads. A handle must not be freed while
//! another thread is using it.

mod builder;
mod handles;
mod index;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

pub use builder::*;
pub use index::*;

/// What a call did: `COPSE_STATUS_OK` (0), or why it failed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopseStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// A handle argument is not a live handle of the right type (NULL, freed, or foreign).
    InvalidHandle = 2,
    /// An argument is out of its range (a metric code, a count, a misaligned array, a string
    /// that is not UTF-8 where one must be).
    InvalidArgument = 3,
    /// A vector's length differs from the index's dimensions.
    WrongDimensions = 4,
    /// A vector holds NaN or an infinity.
    NotFinite = 5,
    /// An item id is beyond the largest id of the index.
    ItemOutOfRange = 6,
    /// An item id within range that was never added.
    ItemMissing = 7,
    /// A label already names another item.
    DuplicateLabel = 8,
    /// The builder has been built; call `copse_builder_unbuild` to add items or build again.
    AlreadyBuilt = 9,
    /// A vector or filter of the wrong kind for this index (e.g. a filter made for another
    /// index, or filtered search on a raw Annoy file).
    WrongKind = 10,
    /// The file has another metric or dimension than the caller gave.
    Mismatch = 11,
    /// Reading or writing a file failed.
    Io = 12,
    /// The bytes are not a usable index: truncated, corrupt, foreign or of another version.
    Format = 13,
    /// The build failed (too many trees, too large, out of memory, ...).
    Build = 14,
    /// A query could not run (the index is corrupt where the query read).
    Query = 15,
    /// An output buffer is too small; the message says how large it must be.
    BufferTooSmall = 16,
    /// A bug in copse: a panic was caught at the boundary. Please report the message.
    Internal = 17,
    /// Any other failure; the message says what.
    Other = 18,
}

impl CopseStatus {
    /// The variant's name as in the header.
    fn name(self) -> &'static CStr {
        match self {
            CopseStatus::Ok => c"COPSE_STATUS_OK",
            CopseStatus::NullPointer => c"COPSE_STATUS_NULL_POINTER",
            CopseStatus::InvalidHandle => c"COPSE_STATUS_INVALID_HANDLE",
            CopseStatus::InvalidArgument => c"COPSE_STATUS_INVALID_ARGUMENT",
            CopseStatus::WrongDimensions => c"COPSE_STATUS_WRONG_DIMENSIONS",
            CopseStatus::NotFinite => c"COPSE_STATUS_NOT_FINITE",
            CopseStatus::ItemOutOfRange => c"COPSE_STATUS_ITEM_OUT_OF_RANGE",
            CopseStatus::ItemMissing => c"COPSE_STATUS_ITEM_MISSING",
            CopseStatus::DuplicateLabel => c"COPSE_STATUS_DUPLICATE_LABEL",
            CopseStatus::AlreadyBuilt => c"COPSE_STATUS_ALREADY_BUILT",
            CopseStatus::WrongKind => c"COPSE_STATUS_WRONG_KIND",
            CopseStatus::Mismatch => c"COPSE_STATUS_MISMATCH",
            CopseStatus::Io => c"COPSE_STATUS_IO",
            CopseStatus::Format => c"COPSE_STATUS_FORMAT",
            CopseStatus::Build => c"COPSE_STATUS_BUILD",
            CopseStatus::Query => c"COPSE_STATUS_QUERY",
            CopseStatus::BufferTooSmall => c"COPSE_STATUS_BUFFER_TOO_SMALL",
            CopseStatus::Internal => c"COPSE_STATUS_INTERNAL",
            CopseStatus::Other => c"COPSE_STATUS_OTHER",
        }
    }
}

/// Metric code of angular distance, `sqrt(2 - 2 cos)` (Annoy's "angular").
pub const COPSE_METRIC_ANGULAR: u32 = 0;
/// Metric code of euclidean distance.
pub const COPSE_METRIC_EUCLIDEAN: u32 = 1;
/// Metric code of manhattan distance.
pub const COPSE_METRIC_MANHATTAN: u32 = 2;
/// Metric code of the inner product (larger is closer; the distance is the product).
pub const COPSE_METRIC_DOT: u32 = 3;
/// Metric code of hamming distance over 0/1 vectors.
pub const COPSE_METRIC_HAMMING: u32 = 4;

/// Row type code of float32 rows (the default, for every metric but hamming).
pub const COPSE_DTYPE_FLOAT32: u32 = 0;
/// Row type code of IEEE half-precision rows (half the bytes; values beyond 65504 are refused).
pub const COPSE_DTYPE_FLOAT16: u32 = 1;
/// Row type code of bfloat16 rows (half the bytes, float32's range, 8 bits of precision).
pub const COPSE_DTYPE_BFLOAT16: u32 = 2;
/// Row type code of int8 rows: a byte a value and a float32 scale a row (for angular, of the
/// unit vector: the direction is kept, not the length).
pub const COPSE_DTYPE_INT8: u32 = 3;
/// Row type code of packed bits (hamming's only type).
pub const COPSE_DTYPE_BITS: u32 = 4;

/// Every row type and its code.
const DTYPES: [(u32, copse::Element); 5] = [
    (COPSE_DTYPE_FLOAT32, copse::Element::F32),
    (COPSE_DTYPE_FLOAT16, copse::Element::F16),
    (COPSE_DTYPE_BFLOAT16, copse::Element::Bf16),
    (COPSE_DTYPE_INT8, copse::Element::I8),
    (COPSE_DTYPE_BITS, copse::Element::Bits),
];

/// The row type of a code, or an error naming the codes.
pub(crate) fn dtype_of(code: u32) -> Result<copse::Element, Failure> {
    DTYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|&(_, element)| element)
        .ok_or_else(|| {
            Failure::invalid(format!(
                "row type code {code} is not one of COPSE_DTYPE_FLOAT32 (0), _FLOAT16 (1), \
                 _BFLOAT16 (2), _INT8 (3), _BITS (4)"
            ))
        })
}

/// The code of a row type.
pub(crate) fn dtype_code(element: copse::Element) -> u32 {
    DTYPES
        .iter()
        .find(|(_, e)| *e == element)
        .map_or(COPSE_DTYPE_FLOAT32, |&(code, _)| code)
}

/// Pass as `search_k` for the default: `n` times the number of trees, as in Annoy.
pub const COPSE_SEARCH_K_DEFAULT: i64 = -1;

/// The id written to result slots a query did not fill (their distance is NaN).
pub const COPSE_NO_ITEM: u64 = u64::MAX;

/// The metric of a code, or an error naming the codes.
pub(crate) fn metric_of(code: u32) -> Result<copse::Metric, Failure> {
    Ok(match code {
        COPSE_METRIC_ANGULAR => copse::Metric::Angular,
        COPSE_METRIC_EUCLIDEAN => copse::Metric::Euclidean,
        COPSE_METRIC_MANHATTAN => copse::Metric::Manhattan,
        COPSE_METRIC_DOT => copse::Metric::Dot,
        COPSE_METRIC_HAMMING => copse::Metric::Hamming,
        other => {
            return Err(Failure::invalid(format!(
                "metric code {other} is not one of COPSE_METRIC_ANGULAR (0), _EUCLIDEAN (1), \
                 _MANHATTAN (2), _DOT (3), _HAMMING (4)"
            )));
        }
    })
}

/// The code of a metric.
pub(crate) fn metric_code(metric: copse::Metric) -> u32 {
    match metric {
        copse::Metric::Angular => COPSE_METRIC_ANGULAR,
        copse::Metric::Euclidean => COPSE_METRIC_EUCLIDEAN,
        copse::Metric::Manhattan => COPSE_METRIC_MANHATTAN,
        copse::Metric::Dot => COPSE_METRIC_DOT,
        copse::Metric::Hamming => COPSE_METRIC_HAMMING,
    }
}

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: CopseStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: CopseStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(CopseStatus::InvalidArgument, message)
    }

    pub(crate) fn null(what: &str) -> Failure {
        Failure::new(CopseStatus::NullPointer, format!("{what} is NULL"))
    }
}

impl From<copse::Error> for Failure {
    fn from(error: copse::Error) -> Failure {
        use copse::Error as E;
        let status = match &error {
            E::WrongDimensions { .. } => CopseStatus::WrongDimensions,
            E::NotFinite { .. } => CopseStatus::NotFinite,
            E::ItemOutOfRange { .. } => CopseStatus::ItemOutOfRange,
            E::ItemMissing { .. } => CopseStatus::ItemMissing,
            E::DuplicateLabel { .. } => CopseStatus::DuplicateLabel,
            E::AlreadyBuilt => CopseStatus::AlreadyBuilt,
            E::WrongKind(_) => CopseStatus::WrongKind,
            E::Mismatch { .. } => CopseStatus::Mismatch,
            E::Io { .. } => CopseStatus::Io,
            E::Format(_) | E::Annoy(_) => CopseStatus::Format,
            E::Build(_) => CopseStatus::Build,
            E::Query(_) => CopseStatus::Query,
            _ => CopseStatus::Other,
        };
        Failure::new(status, error.to_string())
    }
}

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error (interior NULs become spaces).
fn set_last_error(message: String) {
    let bytes: Vec<u8> = message
        .into_bytes()
        .into_iter()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    let message = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// Runs a call's body: its failure or panic becomes a status and this thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> CopseStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CopseStatus::Ok,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            set_last_error(format!("internal error in copse (please report): {what}"));
            CopseStatus::Internal
        }
    }
}

/// The message of the last call on this thread that failed, or "" if none has: a
/// NUL-terminated UTF-8 string owned by the library, valid until the next failing call on
/// this thread. Never NULL. Thread-safe (each thread has its own).
#[unsafe(no_mangle)]
pub extern "C" fn copse_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

// The header declares the status as a C enum: it must be an `int`.
const _: () = assert!(size_of::<CopseStatus>() == size_of::<i32>());

/// The name of a status code ("COPSE_STATUS_OK", ...), or "COPSE_STATUS_UNKNOWN" for a value
/// that is none. A static string. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn copse_status_name(status: i32) -> *const c_char {
    const ALL: [CopseStatus; 19] = [
        CopseStatus::Ok,
        CopseStatus::NullPointer,
        CopseStatus::InvalidHandle,
        CopseStatus::InvalidArgument,
        CopseStatus::WrongDimensions,
        CopseStatus::NotFinite,
        CopseStatus::ItemOutOfRange,
        CopseStatus::ItemMissing,
        CopseStatus::DuplicateLabel,
        CopseStatus::AlreadyBuilt,
        CopseStatus::WrongKind,
        CopseStatus::Mismatch,
        CopseStatus::Io,
        CopseStatus::Format,
        CopseStatus::Build,
        CopseStatus::Query,
        CopseStatus::BufferTooSmall,
        CopseStatus::Internal,
        CopseStatus::Other,
    ];
    ALL.iter()
        .find(|s| **s as i32 == status)
        .map_or(c"COPSE_STATUS_UNKNOWN", |s| s.name())
        .as_ptr()
}

/// The library's version, e.g. "0.1.0": a static string. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn copse_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// A caller's array of `len` elements as a slice: NULL is an error unless `len` is 0, and the
/// pointer must be aligned and the byte size fit.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` initialised elements that stay valid and unchanged
/// for `'a`.
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    what: &str,
) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    check_array(ptr, len, what)?;
    // SAFETY: non-null, aligned and of a size that fits (checked above); the caller promises
    // `len` valid elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// [`slice`] for an output array.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` writable elements that nothing else uses for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_array(ptr, len, what)?;
    // SAFETY: as in `slice`; the caller promises the elements are writable and unaliased.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_array<T>(ptr: *const T, len: usize, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!(
            "{what} is not aligned to {} bytes",
            align_of::<T>()
        )));
    }
    if len
        .checked_mul(size_of::<T>())
        .is_none_or(|bytes| bytes > isize::MAX as usize)
    {
        return Err(Failure::invalid(format!(
            "{what}: a length of {len} is too large"
        )));
    }
    Ok(())
}

/// Writes a call's output through `out` (which must be non-NULL and aligned).
///
/// # Safety
/// Unless NULL, `out` points to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    // SAFETY: passed on from the caller.
    let slot = unsafe { slice_mut(out, 1, what) }?;
    slot[0] = value;
    Ok(())
}

/// Checks an output pointer before the work that fills it.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    check_array(out.cast_const(), 1, what)
}

/// A caller's NUL-terminated path (any bytes but NUL, as Unix paths are).
///
/// # Safety
/// Unless NULL, `ptr` points to a NUL-terminated string that stays valid during the call.
pub(crate) unsafe fn path_arg(ptr: *const c_char, what: &str) -> Result<PathBuf, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null; the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes)
            .map(PathBuf::from)
            .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
    }
}

/// A caller's NUL-terminated UTF-8 string.
///
/// # Safety
/// As for [`path_arg`].
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-null; the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// `search_k` as the API takes it: -1 for the default, otherwise a non-negative count.
pub(crate) fn search_k_arg(search_k: i64) -> Result<Option<usize>, Failure> {
    match search_k {
        -1 => Ok(None),
        k if k >= 0 => Ok(Some(usize::try_from(k).unwrap_or(usize::MAX))),
        k => Err(Failure::invalid(format!(
            "search_k must be -1 (the default) or at least 0, not {k}"
        ))),
    }
}
