//! `mmapfile._mmapfile`: the Python binding of the `mmapfile` crate.
//!
//! Only argument conversion, error mapping and the buffer protocol live
//! here; every rule about mappings is in the core crate.

#![deny(unsafe_op_in_unsafe_fn)]

mod blocks;
mod bytes;
mod convert;
mod errors;
mod fastcall;
mod fastpath;
mod indexing;
mod item;
mod maplock;
mod methods;
mod object;
mod pylock;

use pyo3::prelude::*;
use pyo3::types::PyList;

#[pymodule]
fn _mmapfile(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<object::PyMapFile>()?;
    fastpath::install(&m.py().get_type::<object::PyMapFile>())?;
    m.add_class::<maplock::PyMapLock>()?;
    maplock::install(&m.py().get_type::<maplock::PyMapLock>())?;
    m.add("error", m.py().get_type::<errors::error>())?;
    m.add("PAGESIZE", mmapfile::page_size())?;
    m.add("ALLOCATIONGRANULARITY", mmapfile::allocation_granularity())?;
    m.add("ACCESS_DEFAULT", convert::ACCESS_DEFAULT)?;
    m.add("ACCESS_READ", convert::ACCESS_READ)?;
    m.add("ACCESS_WRITE", convert::ACCESS_WRITE)?;
    m.add("ACCESS_COPY", convert::ACCESS_COPY)?;
    for &(name, value) in mmapfile::advice_values() {
        m.add(name, value)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // For tests and bug reports: how this build keeps named blocks.
    m.add("_backend", mmapfile::blocks::BACKEND)?;
    blocks::register(m)?;
    #[cfg(not(windows))]
    m.add_function(wrap_pyfunction!(errors::_winerror_of, m)?)?;
    m.add_function(wrap_pyfunction!(errors::_use_error_class, m)?)?;
    public_names_only(m)
}

/// Leaves in `__all__` (which PyO3 fills with every name added) only the
/// public names: `mmapfile/__init__.py` exports exactly this list, so the
/// `madvise` options of this OS come from the core's table alone.
fn public_names_only(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let public = PyList::empty(m.py());
    for name in m.index()?.iter() {
        let text = name.extract::<String>()?;
        if !text.starts_with('_') || text == "__version__" {
            public.append(name)?;
        }
    }
    m.setattr("__all__", public)
}
