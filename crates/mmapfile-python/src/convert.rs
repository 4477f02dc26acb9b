//! Converting a call's Python arguments to what the core takes: bytes-like
//! objects, the access and space options, paths, the byte of `write_byte`
//! and lock timeouts.

use std::path::PathBuf;
use std::time::Duration;

use mmapfile::{Access, Space};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt};

pub(crate) const ACCESS_DEFAULT: u8 = 0;
pub(crate) const ACCESS_READ: u8 = 1;
pub(crate) const ACCESS_WRITE: u8 = 2;
pub(crate) const ACCESS_COPY: u8 = 3;

/// Bytes borrowed from a bytes-like Python object for the duration of a call.
pub(crate) enum Bytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyUntypedBuffer),
}

impl<'py> Bytes<'py> {
    pub(crate) fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Bytes::Bytes(bytes.clone()));
        }
        let buffer = PyUntypedBuffer::get(obj).map_err(|_| {
            PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        if !buffer.is_c_contiguous() {
            return Err(PyValueError::new_err("the buffer must be C-contiguous"));
        }
        Ok(Bytes::Buffer(buffer))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Bytes(b) => b.as_bytes(),
            Bytes::Buffer(buf) => {
                let len = buf.len_bytes();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the buffer is C-contiguous and stays acquired while
                // `self` lives; it spans `len_bytes()` bytes from `buf_ptr()`.
                // Its contents may change under us (it may even be a view of
                // a mapping), which only makes the copied bytes stale; the
                // copies that read it are `memmove`s.
                unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), len) }
            }
        }
    }
}

pub(crate) fn access_from_int(access: i64) -> PyResult<Access> {
    match access {
        x if x == i64::from(ACCESS_DEFAULT) || x == i64::from(ACCESS_WRITE) => Ok(Access::Write),
        x if x == i64::from(ACCESS_READ) => Ok(Access::Read),
        x if x == i64::from(ACCESS_COPY) => Ok(Access::Copy),
        _ => Err(PyValueError::new_err(
            "access must be ACCESS_DEFAULT, ACCESS_READ, ACCESS_WRITE or ACCESS_COPY",
        )),
    }
}

pub(crate) fn space_from_str(space: &str) -> PyResult<Space> {
    match space {
        "check" => Ok(Space::Check),
        "reserve" => Ok(Space::Reserve),
        "sparse" => Ok(Space::Sparse),
        _ => Err(PyValueError::new_err(format!(
            "space must be 'check', 'reserve' or 'sparse', not {space:?}"
        ))),
    }
}

pub(crate) fn path_from_py(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    // os.fsdecode accepts str, bytes and os.PathLike, and decodes bytes the
    // way the rest of Python does.
    let os = obj.py().import("os")?;
    os.call_method1("fsdecode", (obj,))?.extract()
}

/// Converts `write_byte`'s argument: an int 0..=255 or a bytes-like object of length 1.
pub(crate) fn byte_from_py(obj: &Bound<'_, PyAny>) -> PyResult<u8> {
    const WRONG_TYPE: &str = "write_byte() argument must be a byte string of length 1 or an int";
    if has_index(obj) {
        // Anything with __index__ is an int here, as for CPython's mmap.
        let value = obj.extract::<i64>().map_err(|err| {
            if err.is_instance_of::<PyOverflowError>(obj.py()) {
                PyValueError::new_err("byte must be in range(0, 256)")
            } else {
                err
            }
        })?;
        return u8::try_from(value)
            .map_err(|_| PyValueError::new_err("byte must be in range(0, 256)"));
    }
    let bytes = Bytes::extract(obj).map_err(|_| PyTypeError::new_err(WRONG_TYPE))?;
    match bytes.as_slice() {
        [b] => Ok(*b),
        _ => Err(PyTypeError::new_err(WRONG_TYPE)),
    }
}

/// Whether `obj` is an int or has `__index__` (`PyIndex_Check`).
pub(crate) fn has_index(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; PyIndex_Check only reads its type.
    obj.is_instance_of::<PyInt>() || unsafe { ffi::PyIndex_Check(obj.as_ptr()) } != 0
}

/// Converts a lock timeout: `None` waits for ever; a negative or NaN value
/// is refused; one too large to represent also waits for ever.
pub(crate) fn timeout_from_py(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok()),
    }
}
