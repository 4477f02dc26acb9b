//! The one place where core errors become Python exceptions.

use mmapfile::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyBufferError, PyIndexError, PyNotImplementedError, PyOSError, PyRuntimeError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

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

/// The class `mmapfile.error` exceptions are made of: the extension's own
/// `error`, or a subclass of it registered by `mmapfile/__init__.py` with
/// `_use_error_class`. Where pywin32's `pywintypes` is importable that is a
/// subclass of `pywintypes.error` as well, so that `except pywintypes.error`
/// (what code written for pywin32 catches) catches ours too; its instances
/// then carry pywin32's `args`, `(winerror, funcname, strerror)`.
static ERROR_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// _use_error_class(cls): makes the extension raise `cls`, a subclass of
/// `mmapfile._mmapfile.error` that also derives from `pywintypes.error`,
/// with pywin32's `args`. Private; called once by `mmapfile/__init__.py`.
#[pyfunction]
pub(crate) fn _use_error_class(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let py = cls.py();
    if !cls.is_subclass_of::<error>()? {
        return Err(PyTypeError::new_err(
            "the error class must derive from mmapfile._mmapfile.error",
        ));
    }
    ERROR_CLASS
        .set(py, cls.clone().unbind())
        .map_err(|_| PyRuntimeError::new_err("the error class is already set"))
}

/// A new `mmapfile.error` (or the registered subclass) made from OSError's
/// constructor arguments; with the pywin32 subclass, `args` becomes
/// pywin32's `(winerror, funcname, strerror)` once OSError has set `errno`,
/// `strerror` and `winerror` from the constructor's.
fn new_error<A>(
    py: Python<'_>,
    args: A,
    pywin32_args: impl FnOnce() -> (Option<i32>, Option<String>, String),
) -> PyErr
where
    A: for<'py> IntoPyObject<'py, Target = PyTuple> + Send + Sync + 'static,
{
    let Some(cls) = ERROR_CLASS.get(py) else {
        return error::new_err(args);
    };
    let err = PyErr::from_type(cls.bind(py).clone(), args);
    // Setting an attribute on a fresh exception cannot fail short of memory
    // exhaustion, in which case OSError's own args are still meaningful.
    let _ = err.value(py).setattr("args", pywin32_args());
    err
}

/// The text of an OS error without Rust's " (os error N)" suffix.
fn strerror(source: &std::io::Error) -> String {
    let text = source.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The Windows error code that says what the POSIX `errno` says, for
/// handlers written for pywin32 (which test `e.winerror`). Only codes with a
/// clear counterpart are translated; the rest get `None`.
#[cfg(not(windows))]
fn winerror_of(errno: i32) -> Option<i32> {
    use std::io::ErrorKind as K;
    // Matched through io::ErrorKind where it is precise, so that this needs
    // no libc; the rest by the raw Linux/BSD numbers that POSIX fixes.
    Some(match std::io::Error::from_raw_os_error(errno).kind() {
        K::NotFound => 2,                  // ERROR_FILE_NOT_FOUND
        K::PermissionDenied => 5,          // ERROR_ACCESS_DENIED
        K::AlreadyExists => 183,           // ERROR_ALREADY_EXISTS
        K::StorageFull => 112,             // ERROR_DISK_FULL
        K::OutOfMemory => 8,               // ERROR_NOT_ENOUGH_MEMORY
        K::InvalidInput => 87,             // ERROR_INVALID_PARAMETER
        K::InvalidFilename => 206,         // ERROR_FILENAME_EXCED_RANGE
        K::NotADirectory => 3,             // ERROR_PATH_NOT_FOUND
        K::IsADirectory => 5,              // ERROR_ACCESS_DENIED, as CreateFile says
        K::ReadOnlyFilesystem => 19,       // ERROR_WRITE_PROTECT
        K::FileTooLarge => 223,            // ERROR_FILE_TOO_LARGE
        K::StaleNetworkFileHandle => 1006, // ERROR_FILE_INVALID
        K::ResourceBusy => 170,            // ERROR_BUSY
        _ => match errno {
            9 => 6,    // EBADF: ERROR_INVALID_HANDLE
            24 => 4,   // EMFILE: ERROR_TOO_MANY_OPEN_FILES
            5 => 1117, // EIO: ERROR_IO_DEVICE
            _ => return None,
        },
    })
}

/// _winerror_of(errno) -> int | None: the Windows code that `mmapfile.error`
/// carries as `winerror` for a POSIX `errno`. Private; for the tests of the
/// table, whose errors (ENOSPC, ENOMEM, ...) cannot all be caused at will.
#[cfg(not(windows))]
#[pyfunction]
pub(crate) fn _winerror_of(errno: i32) -> Option<i32> {
    winerror_of(errno)
}

/// Builds a `mmapfile.error` with `funcname` and `winerror` set.
fn os_error(py: Python<'_>, funcname: Option<&str>, code: Option<i32>, message: String) -> PyErr {
    #[cfg(windows)]
    let winerror = code;
    #[cfg(not(windows))]
    let winerror = code.and_then(winerror_of);
    let pywin32_args = {
        let (funcname, message) = (funcname.map(str::to_owned), message.clone());
        move || (winerror, funcname, message)
    };
    let err = match code {
        #[cfg(windows)]
        Some(code) => new_error(py, (py.None(), message, py.None(), code), pywin32_args),
        #[cfg(not(windows))]
        Some(code) => new_error(py, (code, message), pywin32_args),
        None => new_error(py, (py.None(), message), pywin32_args),
    };
    // Setting an attribute on a fresh exception instance cannot fail short of
    // memory exhaustion, in which case the exception without it is still right.
    let value = err.value(py);
    let _ = value.setattr("funcname", funcname);
    // On Windows OSError sets `winerror` itself from the fourth argument.
    #[cfg(not(windows))]
    let _ = value.setattr("winerror", winerror);
    #[cfg(windows)]
    if code.is_none() {
        let _ = value.setattr("winerror", py.None());
    }
    err
}

/// Maps a core error to the Python exception the API documents.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    match err {
        Error::Io { op, ref source } => {
            os_error(py, Some(op), source.raw_os_error(), strerror(source))
        }
        Error::FileChanged { message, code } => os_error(py, Some("open"), Some(code), message),
        Error::Refused { op, code, message } => os_error(py, Some(op), Some(code), message),
        Error::ReadOnly => PyTypeError::new_err("mmapfile is read-only (opened with ACCESS_READ)"),
        Error::NotResizable => PyTypeError::new_err(err.to_string()),
        Error::Exported(_) => PyBufferError::new_err(err.to_string()),
        Error::Index(what) => PyIndexError::new_err(what),
        Error::NotHeld => PyRuntimeError::new_err(err.to_string()),
        Error::Unsupported(what) => PyNotImplementedError::new_err(what),
        // An OS error whose whole explanation is ours: the errno (and
        // everything os_error derives from it) with our message as strerror.
        Error::Storage(storage) => {
            let code = storage.source.raw_os_error();
            os_error(py, storage.op, code, storage.message)
        }
        // No errno describes this; a plain message keeps str() free of
        // "[Errno None]".
        Error::Truncated(what) => {
            let text = what.clone();
            let err = new_error(py, (what,), move || (None, None, text));
            let value = err.value(py);
            let _ = value.setattr("funcname", py.None());
            let _ = value.setattr("winerror", py.None());
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

/// `.py_err(py)`: a core result as a Python result, its error mapped by
/// [`to_py`]. (Not PyO3's former `IntoPy` trait, whose name it had.)
pub(crate) trait CoreResultExt<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> CoreResultExt<T> for Result<T, Error> {
    #[inline]
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
