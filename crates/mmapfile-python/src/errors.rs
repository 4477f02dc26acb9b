//! The one place where core errors become Python exceptions.

use mmapfile::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyBufferError, PyIndexError, PyNotImplementedError, PyOSError, PyRuntimeError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;

#[allow(non_camel_case_types)]
mod exc {
    use super::*;
    create_exception!(
    mmapfile,
    error,
    PyOSError,
    "An operating-system call failed. A subclass of OSError: `errno` and `strerror` are set as \
     usual, `funcname` names the OS call that failed (e.g. \"shm_open\"), and on Windows \
     `winerror` holds the Windows error code."
    );
}
pub(crate) use exc::error;

/// The text of an OS error without Rust's " (os error N)" suffix.
fn strerror(source: &std::io::Error) -> String {
    let text = source.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Builds a `mmapfile.error` with `funcname` set.
fn os_error(py: Python<'_>, funcname: Option<&str>, source: &std::io::Error) -> PyErr {
    let message = strerror(source);
    let err = match source.raw_os_error() {
        #[cfg(windows)]
        Some(code) => error::new_err((py.None(), message, py.None(), code)),
        #[cfg(not(windows))]
        Some(code) => error::new_err((code, message)),
        None => error::new_err((py.None(), message)),
    };
    // Setting an attribute on a fresh exception instance cannot fail short of
    // memory exhaustion, in which case the exception without it is still right.
    let _ = err.value(py).setattr("funcname", funcname);
    err
}

/// Maps a core error to the Python exception the API documents.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::Io { op, ref source } => os_error(py, Some(op), source),
        Error::ReadOnly => PyTypeError::new_err("mmapfile is read-only (opened with ACCESS_READ)"),
        Error::Exported(_) => PyBufferError::new_err(err.to_string()),
        Error::Index(what) => PyIndexError::new_err(what),
        Error::NotHeld => PyRuntimeError::new_err(err.to_string()),
        Error::Unsupported(what) => PyNotImplementedError::new_err(what),
        // An OS error whose whole explanation is ours: the errno (and
        // everything os_error derives from it) with our message as strerror.
        Error::Storage(storage) => {
            let err = os_error(py, storage.op, &storage.source);
            let _ = err.value(py).setattr("strerror", storage.message);
            err
        }
        // No errno describes this; a plain message keeps str() free of
        // "[Errno None]".
        Error::Truncated(what) => {
            let err = error::new_err(what);
            let _ = err.value(py).setattr("funcname", py.None());
            err
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A failure not yet turned into a Python exception: a core error, or an
/// exception already built.
///
/// The entry points of `fastcall` run without telling PyO3 that the thread
/// is attached, so they must not build exceptions (which creates and drops
/// Python objects); they carry a `Failure` out and convert it under
/// `Python::attach`.
pub(crate) enum Failure {
    Core(Error),
    Py(PyErr),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Core(err)
    }
}

impl From<PyErr> for Failure {
    fn from(err: PyErr) -> Self {
        Failure::Py(err)
    }
}

impl Failure {
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Core(err) => to_py(py, err),
            Failure::Py(err) => err,
        }
    }
}

/// Extension to turn core results into Python results.
pub(crate) trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    #[inline]
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
