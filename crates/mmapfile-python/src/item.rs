//! `m[key]` and `m[key] = value` on the object: PyO3's mapping slots, which
//! take every key the fast paths in `fastpath` leave, checked in the order
//! CPython's `mmap` uses (`indexing`).

use mmapfile::MapFile;
use pyo3::exceptions::PyIndexError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PySlice};

use crate::bytes::{new_bytes_uninit, DETACH_THRESHOLD};
use crate::convert::Bytes;
use crate::errors::{CoreResultExt, Failure};
use crate::indexing::{
    assignment_index_from_py, index_from_py, item_value_from_py, refuse_read_only, unpack_slice,
};
use crate::object::PyMapFile;

impl PyMapFile {
    /// Resolves a slice against the view's current length. The lock is not
    /// held meanwhile: the slice's `__index__` methods may run Python code
    /// (even code that closes the map); the core checks the result again
    /// when it touches memory. Returns `(start, step, count)`.
    fn resolve_slice(
        &self,
        py: Python<'_>,
        slice: &Bound<'_, PySlice>,
    ) -> PyResult<(usize, isize, usize)> {
        let len = self.lock(py).len().py_err(py)?;
        // The core never maps a view longer than isize::MAX.
        let len = isize::try_from(len).map_err(|_| PyIndexError::new_err("view too large"))?;
        let ix = slice.indices(len)?;
        // An empty slice may start at -1 (negative step); it touches nothing.
        let start = usize::try_from(ix.start).unwrap_or(0);
        Ok((start, ix.step, ix.slicelength))
    }

    /// `m[key]`: a byte as an int for an index, a bytes object for a slice.
    #[inline]
    pub(crate) fn get_item<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let (start, step, count) = self.resolve_slice(py, slice)?;
            let file = self.lock(py);
            let file: &MapFile = &file;
            let bytes = new_bytes_uninit(py, count, |buf| {
                Ok::<_, Failure>(file.read_slice_uninit(start, step, buf)?)
            })
            .map_err(|f| f.into_py(py))?;
            return Ok(bytes.into_any());
        }
        if !key.is_instance_of::<PyInt>() {
            // As CPython's mmap: a closed map is reported before the key is
            // converted (its __index__ is not called).
            self.lock(py).len().py_err(py)?;
        }
        let index = index_from_py(key)?;
        let byte = self.lock(py).byte_at(index).py_err(py)?;
        Ok(byte.into_pyobject(py)?.into_any())
    }

    /// `m[i] = value` and `m[i:j:k] = data`, checked in CPython 3.15's order
    /// on every Python (docs/migrating.md): a read-only map; the key; the
    /// value; a closed map; then the bounds (or the slice's size).
    #[inline]
    pub(crate) fn set_item(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        refuse_read_only(&self.lock(py)).py_err(py)?;
        if let Ok(slice) = key.cast::<PySlice>() {
            let (start, stop, step) = unpack_slice(slice)?;
            let data = Bytes::extract(value)?;
            let src = data.as_slice();
            // A strided write goes byte by byte; copy first so that a source
            // that is a view of this map is read before any of it changes.
            let owned;
            let src = if step == 1 {
                src
            } else {
                owned = src.to_vec();
                &owned
            };
            let mut file = self.lock(py);
            let file: &mut MapFile = &mut file;
            // The view never exceeds isize::MAX bytes.
            let len = isize::try_from(file.len().py_err(py)?)
                .map_err(|_| PyIndexError::new_err("view too large"))?;
            let (mut start, mut stop) = (start, stop);
            // SAFETY: plain arithmetic on the three locals (step is not 0:
            // PySlice_Unpack refused that); it cannot fail.
            let count = unsafe { ffi::PySlice_AdjustIndices(len, &mut start, &mut stop, step) };
            // An empty slice may start at -1 (negative step); it touches nothing.
            let start = usize::try_from(start).unwrap_or(0);
            let count = usize::try_from(count).unwrap_or(0);
            return if count >= DETACH_THRESHOLD {
                py.detach(|| file.write_slice(start, step, count, src))
                    .py_err(py)
            } else {
                file.write_slice(start, step, count, src).py_err(py)
            };
        }
        let index = assignment_index_from_py(key)?;
        let value = item_value_from_py(value)?;
        self.lock(py).set_byte_at(index, value).py_err(py)
    }
}
