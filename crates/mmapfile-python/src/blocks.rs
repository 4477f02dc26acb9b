//! Private functions for the `python -m mmapfile` command line: thin
//! wrappers of `mmapfile::blocks`.

use std::time::UNIX_EPOCH;

use mmapfile::blocks::{self, BlockInfo};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::CoreResultExt;

fn info_dict<'py>(py: Python<'py>, info: &BlockInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &info.name)?;
    d.set_item("shm_name", &info.shm_name)?;
    d.set_item("segment", info.segment)?;
    d.set_item("path", info.path.as_ref().map(|p| p.as_os_str()))?;
    d.set_item("size", info.size)?;
    d.set_item("kind", if info.file.is_some() { "file" } else { "block" })?;
    // Decoded as os.fsdecode would, so it round-trips to the OS path.
    d.set_item("file", info.file.as_ref().map(|p| p.as_os_str()))?;
    d.set_item("holders", info.holders)?;
    d.set_item("owner", info.owner)?;
    d.set_item("mode", info.mode)?;
    let changed = info
        .changed
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    d.set_item("changed", changed)?;
    Ok(d)
}

/// _list_blocks() -> list[dict]: every named block of this user.
#[pyfunction]
fn _list_blocks(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let list = py.detach(blocks::list).py_err(py)?;
    list.iter().map(|info| info_dict(py, info)).collect()
}

/// _block_info(name) -> dict
#[pyfunction]
fn _block_info<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let info = py.detach(|| blocks::info(name)).py_err(py)?;
    info_dict(py, &info)
}

/// _read_block(name, offset=0, length=None) -> bytes, without holding the block.
#[pyfunction]
#[pyo3(signature = (name, offset = 0, length = None))]
fn _read_block<'py>(
    py: Python<'py>,
    name: &str,
    offset: u64,
    length: Option<u64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = py
        .detach(|| blocks::read(name, offset, length))
        .py_err(py)?;
    Ok(PyBytes::new(py, &data))
}

/// _remove_block(name) -> bool | None: removes the name whatever its
/// holders do; whether holders remained, where found out on the way.
#[pyfunction]
fn _remove_block(py: Python<'_>, name: &str) -> PyResult<Option<bool>> {
    py.detach(|| blocks::remove(name)).py_err(py)
}

/// _collect_garbage() -> list[str]: removes dead blocks, returns their names.
#[pyfunction]
fn _collect_garbage(py: Python<'_>) -> PyResult<Vec<String>> {
    py.detach(blocks::collect_garbage).py_err(py)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_list_blocks, m)?)?;
    m.add_function(wrap_pyfunction!(_block_info, m)?)?;
    m.add_function(wrap_pyfunction!(_read_block, m)?)?;
    m.add_function(wrap_pyfunction!(_remove_block, m)?)?;
    m.add_function(wrap_pyfunction!(_collect_garbage, m)?)?;
    Ok(())
}
