//! The `mmapfile` Python class: a `mmapfile::MapFile` behind the lock that
//! every call takes. Its Python methods are in `methods`, `m[...]` in
//! `item`, and the trampoline-free entry points in `fastpath`.
//!
//! Every method converts all of its arguments first (conversion can run
//! Python code, e.g. `__index__`, that might close the map), then locks the
//! object, then calls the core, which does every check.

use mmapfile::MapFile;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bytes::new_bytes_uninit;
use crate::errors::Failure;
use crate::pylock::{PyLock, PyLockGuard};

/// A mapped view of a file, a named block of shared memory, or an unnamed block.
#[pyclass(frozen, weakref, name = "mmapfile", module = "mmapfile")]
pub(crate) struct PyMapFile {
    inner: PyLock<MapFile>,
}

impl PyMapFile {
    /// The object for a map just opened.
    pub(crate) fn from_map(file: MapFile) -> Self {
        PyMapFile {
            inner: PyLock::new(file),
        }
    }

    /// Locks the object. Waiting, if another thread holds it, happens with
    /// the GIL released: the holder may itself be running without the GIL
    /// and need it back before it can unlock.
    pub(crate) fn lock<'a>(&'a self, py: Python<'a>) -> PyLockGuard<'a, MapFile> {
        self.inner.lock(py)
    }

    /// Runs `f` on the map as the lock's holder would, without the lock's
    /// stores when nobody holds it (see `PyLock::attached`).
    ///
    /// # Safety
    /// `f` must not detach nor run Python code.
    #[inline(always)]
    pub(crate) unsafe fn attached<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut MapFile) -> R,
    ) -> R {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.attached(py, f) }
    }

    /// `attached` when nobody holds the lock; None otherwise.
    ///
    /// # Safety
    /// As for `attached`.
    #[inline(always)]
    pub(crate) unsafe fn attached_if_free<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut MapFile) -> R,
    ) -> Option<R> {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.attached_if_free(py, f) }
    }

    /// Reads `len` bytes at the position into a new bytes object (large
    /// copies release the GIL: see `new_bytes_uninit`).
    /// Errors come back unconverted, for `fastcall`'s entry points.
    pub(crate) fn new_bytes<'py>(
        py: Python<'py>,
        file: &mut MapFile,
        len: usize,
    ) -> Result<Bound<'py, PyBytes>, Failure> {
        new_bytes_uninit(py, len, |buf| Ok(file.read_into_uninit(buf)?))
    }
}
