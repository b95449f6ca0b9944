//! The registry of live handles. Every handle the API gives out is a boxed value whose address
//! is recorded here with its type until it is freed, so a call can tell a live handle of the
//! right type from NULL, a freed (or twice-freed) handle, a handle of another type or any other
//! pointer, without reading through it.

use std::collections::HashSet;
use std::sync::{LazyLock, RwLock};

use crate::{CopseStatus, Failure};

/// The types of handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Builder,
    Index,
    Filter,
}

/// A type the API hands out as an opaque handle.
pub(crate) trait Handle: Sized {
    /// Its type in the registry.
    const KIND: Kind;
    /// Its name in messages.
    const NAME: &'static str;
}

static LIVE: LazyLock<RwLock<HashSet<(usize, Kind)>>> =
    LazyLock::new(|| RwLock::new(HashSet::new()));

fn live() -> std::sync::RwLockReadGuard<'static, HashSet<(usize, Kind)>> {
    LIVE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn live_mut() -> std::sync::RwLockWriteGuard<'static, HashSet<(usize, Kind)>> {
    LIVE.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Boxes `value` and records it as a live handle.
pub(crate) fn register<T: Handle>(value: T) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    live_mut().insert((ptr as usize, T::KIND));
    ptr
}

/// The value behind a live handle of type `T`.
///
/// # Safety
/// No other thread frees the handle while the returned reference is in use.
pub(crate) unsafe fn get<'a, T: Handle>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            CopseStatus::InvalidHandle,
            format!("{what} is NULL"),
        ));
    }
    if !live().contains(&(ptr as usize, T::KIND)) {
        return Err(Failure::new(
            CopseStatus::InvalidHandle,
            format!(
                "{what} is not a live {} (freed already, or never made by copse)",
                T::NAME
            ),
        ));
    }
    // SAFETY: the registry holds exactly the addresses `register` got from `Box::into_raw`
    // for a `T` and `release` has not yet removed; the caller promises no concurrent free.
    Ok(unsafe { &*ptr })
}

/// Frees a handle of type `T`; NULL is allowed and does nothing.
pub(crate) fn release<T: Handle>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    if !live_mut().remove(&(ptr as usize, T::KIND)) {
        return Err(Failure::new(
            CopseStatus::InvalidHandle,
            format!(
                "{what} is not a live {} (freed already, or never made by copse)",
                T::NAME
            ),
        ));
    }
    // SAFETY: the address was live in the registry, so it came from `Box::into_raw` of a `T`
    // in `register`; removing it first means no second free can reach it.
    drop(unsafe { Box::from_raw(ptr) });
    Ok(())
}
