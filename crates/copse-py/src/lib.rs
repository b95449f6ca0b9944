//! The Python extension module `copse._copse`, re-exported by the `copse` Python package.
//!
//! `copse.AnnoyIndex` is a drop-in replacement for Annoy 1.17's `AnnoyIndex` (same methods,
//! arguments, defaults, return types and exception types), plus a numpy batch API
//! (`add_items`, `get_nns_by_vectors`). It wraps the `copse` crate and nothing else: this crate
//! owns argument conversion, the Annoy-style state machine and error mapping, never the index
//! itself. Build it with maturin (`pip install ./crates/copse-py`); see `README.md`.

mod batch;
mod collection;
mod convert;
mod errors;
mod index;

use pyo3::prelude::*;

/// The module: `AnnoyIndex`, `Collection`, their filters and the version.
#[pymodule]
fn _copse(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<index::AnnoyIndex>()?;
    m.add_class::<index::IdFilter>()?;
    m.add_class::<collection::Collection>()?;
    m.add_class::<collection::CollectionFilter>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
