//! `mmapfile._mmapfile`: the Python binding of the `mmapfile` crate.
//!
//! Only argument conversion, error mapping and the buffer protocol live
//! here; every rule about mappings is in the core crate.

#![deny(unsafe_op_in_unsafe_fn)]

mod blocks;
mod errors;
mod fast;
mod fastcall;
mod object;

use pyo3::prelude::*;

#[pymodule]
fn _mmapfile(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<object::PyMapFile>()?;
    fastcall::install(&m.py().get_type::<object::PyMapFile>())?;
    m.add_class::<object::PyMapLock>()?;
    fastcall::install_lock(&m.py().get_type::<object::PyMapLock>())?;
    m.add("error", m.py().get_type::<errors::error>())?;
    m.add("PAGESIZE", mmapfile::page_size())?;
    m.add("ALLOCATIONGRANULARITY", mmapfile::allocation_granularity())?;
    m.add("ACCESS_DEFAULT", object::ACCESS_DEFAULT)?;
    m.add("ACCESS_READ", object::ACCESS_READ)?;
    m.add("ACCESS_WRITE", object::ACCESS_WRITE)?;
    m.add("ACCESS_COPY", object::ACCESS_COPY)?;
    for &(name, value) in mmapfile::advice_values() {
        m.add(name, value)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // For tests and bug reports: how this build keeps named blocks.
    m.add("_backend", mmapfile::blocks::BACKEND)?;
    blocks::register(m)?;
    #[cfg(not(windows))]
    m.add_function(wrap_pyfunction!(errors::_winerror_of, m)?)?;
    Ok(())
}
