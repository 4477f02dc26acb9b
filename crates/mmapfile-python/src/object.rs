//! The `mmapfile` Python class: argument conversion around `mmapfile::MapFile`.
//!
//! Every method converts all of its arguments first (conversion can run
//! Python code, e.g. `__index__`, that might close the map), then locks the
//! object, then calls the core, which does every check.

use std::path::PathBuf;

use mmapfile::{Access, CreateMode, MapFile, MapOptions};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt};

use crate::errors::IntoPy;
use crate::fast::{new_bytes_uninit, PyLock, PyLockGuard};

/// Copies of at least this many bytes run with the GIL released.
const DETACH_THRESHOLD: usize = 64 * 1024;

pub(crate) const ACCESS_DEFAULT: u8 = 0;
pub(crate) const ACCESS_READ: u8 = 1;
pub(crate) const ACCESS_WRITE: u8 = 2;
pub(crate) const ACCESS_COPY: u8 = 3;

/// A mapped view of a file, a named block of shared memory, or an unnamed block.
#[pyclass(frozen, name = "mmapfile", module = "mmapfile")]
pub(crate) struct PyMapFile {
    inner: PyLock<MapFile>,
}

/// Bytes borrowed from a bytes-like Python object for the duration of a call.
enum Bytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyUntypedBuffer),
}

impl<'py> Bytes<'py> {
    fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
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

    fn as_slice(&self) -> &[u8] {
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

fn access_from_int(access: i64) -> PyResult<Access> {
    match access {
        x if x == i64::from(ACCESS_DEFAULT) || x == i64::from(ACCESS_WRITE) => Ok(Access::Write),
        x if x == i64::from(ACCESS_READ) => Ok(Access::Read),
        x if x == i64::from(ACCESS_COPY) => Ok(Access::Copy),
        _ => Err(PyValueError::new_err(
            "access must be ACCESS_DEFAULT, ACCESS_READ, ACCESS_WRITE or ACCESS_COPY",
        )),
    }
}

fn path_from_py(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    // os.fsdecode accepts str, bytes and os.PathLike, and decodes bytes the
    // way the rest of Python does.
    let os = obj.py().import("os")?;
    os.call_method1("fsdecode", (obj,))?.extract()
}

/// Converts `write_byte`'s argument: an int 0..=255 or a bytes-like object of length 1.
fn byte_from_py(obj: &Bound<'_, PyAny>) -> PyResult<u8> {
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .ok()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| PyValueError::new_err("byte must be in range(0, 256)"));
    }
    let bytes = Bytes::extract(obj).map_err(|_| {
        PyTypeError::new_err("write_byte() argument must be a byte string of length 1 or an int")
    })?;
    match bytes.as_slice() {
        [b] => Ok(*b),
        _ => Err(PyTypeError::new_err(
            "write_byte() argument must be a byte string of length 1 or an int",
        )),
    }
}

impl PyMapFile {
    /// Locks the object. Waiting, if another thread holds it, happens with
    /// the GIL released: the holder may itself be running without the GIL
    /// and need it back before it can unlock.
    fn lock<'a>(&'a self, py: Python<'a>) -> PyLockGuard<'a, MapFile> {
        self.inner.lock(py)
    }

    /// Reads `len` bytes at the position into a new bytes object, releasing
    /// the GIL for large copies.
    fn new_bytes<'py>(
        py: Python<'py>,
        file: &mut MapFile,
        len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        new_bytes_uninit(py, len, |buf| {
            if len >= DETACH_THRESHOLD {
                py.detach(|| file.read_into_uninit(buf)).py_err(py)
            } else {
                file.read_into_uninit(buf).py_err(py)
            }
        })
    }
}

#[pymethods]
impl PyMapFile {
    #[new]
    #[pyo3(signature = (
        File, Name, MaximumSize = 0, FileOffset = 0, NumberOfBytesToMap = 0,
        *, access = ACCESS_DEFAULT as i64, create = None, mode = None, allow_other_owner = false
    ))]
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        File: Option<&Bound<'_, PyAny>>,
        Name: Option<String>,
        MaximumSize: u64,
        FileOffset: u64,
        NumberOfBytesToMap: u64,
        access: i64,
        create: Option<bool>,
        mode: Option<u32>,
        allow_other_owner: bool,
    ) -> PyResult<Self> {
        let mut opts = MapOptions::new()
            .maximum_size(MaximumSize)
            .offset(FileOffset)
            .len(NumberOfBytesToMap)
            .access(access_from_int(access)?)
            .create(match create {
                None => CreateMode::OpenOrCreate,
                Some(true) => CreateMode::CreateOnly,
                Some(false) => CreateMode::OpenOnly,
            })
            .allow_other_owner(allow_other_owner);
        if let Some(mode) = mode {
            opts = opts.mode(mode);
        }
        if let Some(file) = File {
            opts = opts.file(path_from_py(file)?);
        }
        if let Some(name) = Name {
            opts = opts.name(name);
        }
        let file = py.detach(|| opts.open()).py_err(py)?;
        Ok(PyMapFile {
            inner: PyLock::new(file),
        })
    }

    /// read(n=-1) -> bytes
    #[pyo3(signature = (n = None))]
    fn read<'py>(&self, py: Python<'py>, n: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let mut file = self.lock(py);
        let len = file.read_len(n.unwrap_or(-1)).py_err(py)?;
        Self::new_bytes(py, &mut file, len)
    }

    fn read_byte<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let byte = self.lock(py).read_byte().py_err(py)?;
        Ok(PyBytes::new(py, &[byte]))
    }

    fn readline<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut file = self.lock(py);
        let len = file.readline_len().py_err(py)?;
        Self::new_bytes(py, &mut file, len)
    }

    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = Bytes::extract(data)?;
        let data = data.as_slice();
        let mut file = self.lock(py);
        if data.len() >= DETACH_THRESHOLD {
            let file: &mut MapFile = &mut file;
            py.detach(|| file.write(data)).py_err(py)
        } else {
            file.write(data).py_err(py)
        }
    }

    fn write_byte(&self, py: Python<'_>, byte: &Bound<'_, PyAny>) -> PyResult<()> {
        let byte = byte_from_py(byte)?;
        self.lock(py).write_byte(byte).py_err(py)
    }

    #[pyo3(signature = (dist, how = 0))]
    fn seek(&self, py: Python<'_>, dist: i64, how: i64) -> PyResult<()> {
        // Any `how` outside i32 is as unknown as 3 is.
        let how = i32::try_from(how).unwrap_or(i32::MAX);
        self.lock(py).seek(dist, how).py_err(py).map(drop)
    }

    fn tell(&self, py: Python<'_>) -> PyResult<usize> {
        self.lock(py).tell().py_err(py)
    }

    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        self.lock(py).len().py_err(py)
    }

    #[pyo3(signature = (needle, start = None, end = None))]
    fn find(
        &self,
        py: Python<'_>,
        needle: &Bound<'_, PyAny>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> PyResult<i64> {
        let needle = Bytes::extract(needle)?;
        let needle = needle.as_slice();
        let file = self.lock(py);
        let file: &MapFile = &file;
        let found = py.detach(|| file.find(needle, start, end)).py_err(py)?;
        Ok(found.map_or(-1, |i| i as i64))
    }

    #[pyo3(signature = (needle, start = None, end = None))]
    fn rfind(
        &self,
        py: Python<'_>,
        needle: &Bound<'_, PyAny>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> PyResult<i64> {
        let needle = Bytes::extract(needle)?;
        let needle = needle.as_slice();
        let file = self.lock(py);
        let file: &MapFile = &file;
        let found = py.detach(|| file.rfind(needle, start, end)).py_err(py)?;
        Ok(found.map_or(-1, |i| i as i64))
    }

    #[pyo3(name = "move")]
    fn move_(&self, py: Python<'_>, dest: i64, src: i64, count: i64) -> PyResult<()> {
        let mut file = self.lock(py);
        let file: &mut MapFile = &mut file;
        py.detach(|| file.move_within(dest, src, count)).py_err(py)
    }

    /// flush(offset=0, size=0) -> 1
    #[pyo3(signature = (offset = 0, size = 0))]
    fn flush(&self, py: Python<'_>, offset: i64, size: i64) -> PyResult<i32> {
        let file = self.lock(py);
        let file: &MapFile = &file;
        py.detach(|| file.flush(offset, size)).py_err(py)?;
        Ok(1)
    }

    #[pyo3(signature = (MaximumSize, FileOffset = 0, NumberOfBytesToMap = 0))]
    #[allow(non_snake_case)]
    fn resize(
        &self,
        py: Python<'_>,
        MaximumSize: u64,
        FileOffset: u64,
        NumberOfBytesToMap: u64,
    ) -> PyResult<()> {
        let mut file = self.lock(py);
        let file: &mut MapFile = &mut file;
        py.detach(|| file.resize(MaximumSize, FileOffset, NumberOfBytesToMap))
            .py_err(py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut file = self.lock(py);
        let file: &mut MapFile = &mut file;
        py.detach(|| file.close()).py_err(py)
    }
}
