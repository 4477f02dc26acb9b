//! The methods of the `mmapfile` Python class, as Python sees them (names,
//! signatures, defaults): file-like I/O, search, the buffer protocol, the
//! context manager and the attributes. `m[...]` is in `item`; `tell()`,
//! `read_byte()` and `readline()` are entry points in `fastpath`.

use std::ffi::c_int;

use mmapfile::{Access, CreateMode, MapFile, MapOptions, Partial, Source};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::bytes::DETACH_THRESHOLD;
use crate::convert::{
    access_from_int, byte_from_py, path_from_py, space_from_str, timeout_from_py, Bytes,
};
use crate::errors::CoreResultExt;
use crate::maplock::PyMapLock;
use crate::object::PyMapFile;

/// A pointer into a Python buffer, carried into a section that runs without
/// the GIL.
struct SendPtr(*mut u8);

// SAFETY: the pointer is only used while the buffer it points into stays
// acquired by the thread that sends it, which waits for the section to end.
unsafe impl Send for SendPtr {}

/// `MapFile::find` or `MapFile::rfind`.
type SearchFn = fn(&MapFile, &[u8], Option<i64>, Option<i64>) -> mmapfile::Result<Option<usize>>;
type PartialFn = fn(&MapFile, &[u8], Option<i64>, Option<i64>, usize) -> mmapfile::Result<Partial>;

impl PyMapFile {
    /// `find`/`rfind`: the needle is converted first; the part of the range
    /// where the search starts is searched with the GIL held (a nearby match
    /// costs no release), and the rest, if any, with the GIL released.
    fn search(
        &self,
        py: Python<'_>,
        needle: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
        (partial, whole): (PartialFn, SearchFn),
    ) -> PyResult<i64> {
        // The needle first, then the bounds, as CPython's mmap converts them.
        let needle = Bytes::extract(needle)?;
        let needle = needle.as_slice();
        let bound = |b: Option<&Bound<'_, PyAny>>| -> PyResult<Option<i64>> {
            b.filter(|b| !b.is_none())
                .map(|b| b.extract::<i64>())
                .transpose()
        };
        let (start, end) = (bound(start)?, bound(end)?);
        let file = self.lock(py);
        let file: &MapFile = &file;
        let found = match partial(file, needle, start, end, DETACH_THRESHOLD).py_err(py)? {
            Partial::Done(found) => found,
            // Absolute indices of a view, so they fit an i64.
            Partial::Rest { start, end } => py
                .detach(|| whole(file, needle, Some(start as i64), Some(end as i64)))
                .py_err(py)?,
        };
        Ok(found.map_or(-1, |i| i as i64))
    }
}

#[pymethods]
impl PyMapFile {
    // `access = 0` is ACCESS_DEFAULT, spelled as a literal so that the
    // signature Python sees (and stubtest checks) shows the value.
    #[new]
    #[pyo3(signature = (
        File, Name, MaximumSize = 0, FileOffset = 0, NumberOfBytesToMap = 0,
        *, access = 0, create = None, mode = None, allow_other_owner = false, space = "check"
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
        space: &str,
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
            .allow_other_owner(allow_other_owner)
            .space(space_from_str(space)?);
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
        Ok(PyMapFile::from_map(file))
    }

    /// read(n=-1) -> bytes
    #[pyo3(signature = (n = None))]
    fn read<'py>(&self, py: Python<'py>, n: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let mut file = self.lock(py);
        let len = file.read_len(n.unwrap_or(-1)).py_err(py)?;
        Self::new_bytes(py, &mut file, len).map_err(|f| f.into_py(py))
    }

    // read_byte(), readline() and tell() are in `fastcall`.

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

    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        self.lock(py).len().py_err(py)
    }

    #[pyo3(signature = (needle, start = None, end = None))]
    fn find(
        &self,
        py: Python<'_>,
        needle: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        self.search(
            py,
            needle,
            start,
            end,
            (MapFile::find_partial, MapFile::find),
        )
    }

    #[pyo3(signature = (needle, start = None, end = None))]
    fn rfind(
        &self,
        py: Python<'_>,
        needle: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        end: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        self.search(
            py,
            needle,
            start,
            end,
            (MapFile::rfind_partial, MapFile::rfind),
        )
    }

    #[pyo3(name = "move")]
    fn move_(&self, py: Python<'_>, dest: i64, src: i64, count: i64) -> PyResult<()> {
        let mut file = self.lock(py);
        let file: &mut MapFile = &mut file;
        py.detach(|| file.move_within(dest, src, count)).py_err(py)
    }

    /// flush(offset=0, size=0) -> 1. A size of 0 (pywin32) or -1 (CPython
    /// 3.15's default) means to the end of the view.
    #[pyo3(signature = (offset = 0, size = 0))]
    fn flush(&self, py: Python<'_>, offset: i64, size: i64) -> PyResult<i32> {
        let size = if size == -1 { 0 } else { size };
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

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let py = slf.py();
        let mut file = slf.get().lock(py);
        let readonly = c_int::from(file.access() == Access::Read);
        let (ptr, len) = file.export().py_err(py)?;
        // The core never maps a view longer than isize::MAX.
        let len = len as ffi::Py_ssize_t;
        // SAFETY: `view` is the Py_buffer that Python asked us to fill;
        // `ptr..ptr + len` stays mapped while the export is counted (close
        // and resize refuse until `__releasebuffer__`), and FillInfo takes
        // a reference to `slf`, so the object outlives the buffer.
        let rc =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast(), len, readonly, flags) };
        if rc == -1 {
            // Refused (e.g. a writable buffer of a read-only map): undo the count.
            file.release_export();
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, py: Python<'_>, _view: *mut ffi::Py_buffer) {
        self.lock(py).release_export();
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.lock(py).len().py_err(py)
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.get_item(py, key)
    }

    /// `m[i] = value` and `m[i:j:k] = data` (see `item`).
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set_item(py, key, value)
    }

    fn __delitem__(&self, _key: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "mmap object doesn't support item deletion",
        ))
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        // As CPython's mmap: entering a closed map is an error.
        slf.get().lock(py).len().py_err(py)?;
        Ok(slf.clone())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.lock(py).is_closed()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let file = self.lock(py);
        let kind = match file.source() {
            Source::File(path) => {
                let path = path.as_os_str().into_pyobject(py)?.repr()?;
                format!("kind=file, file={path}")
            }
            Source::Named(_) => {
                let name = file.name().unwrap_or_default().into_pyobject(py)?.repr()?;
                format!("kind=named, name={name}")
            }
            Source::NamedFile { path, .. } => {
                let name = file.name().unwrap_or_default().into_pyobject(py)?.repr()?;
                let path = path.as_os_str().into_pyobject(py)?.repr()?;
                format!("kind=named file, name={name}, file={path}")
            }
            Source::Anonymous => "kind=unnamed".to_owned(),
        };
        if file.is_closed() {
            return Ok(format!("<mmapfile.mmapfile closed=True, {kind}>"));
        }
        let access = match file.access() {
            Access::Read => "ACCESS_READ",
            Access::Copy => "ACCESS_COPY",
            _ => "ACCESS_WRITE",
        };
        let size = file.len().py_err(py)?;
        let pos = file.tell().py_err(py)?;
        let offset = file.offset().py_err(py)?;
        Ok(format!(
            "<mmapfile.mmapfile closed=False, {kind}, access={access}, size={size}, pos={pos}, offset={offset}>"
        ))
    }

    /// readinto(buffer) -> int
    fn readinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buf = PyUntypedBuffer::get(buffer)?;
        if buf.readonly() {
            return Err(PyTypeError::new_err(
                "readinto() argument must be read-write bytes-like object",
            ));
        }
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("the buffer must be C-contiguous"));
        }
        let len = buf.len_bytes();
        let dst = SendPtr(buf.buf_ptr().cast());
        let mut file = self.lock(py);
        let file: &mut MapFile = &mut file;
        let copy = move || {
            let dst = dst;
            // SAFETY: the buffer is writable, C-contiguous and `len` bytes
            // long, and stays acquired (`buf` lives to the end of this
            // function) while the copy runs; it may be a view of a mapping,
            // which `read_into_raw` allows.
            unsafe { file.read_into_raw(dst.0, len) }
        };
        if len >= DETACH_THRESHOLD {
            py.detach(copy).py_err(py)
        } else {
            copy().py_err(py)
        }
    }

    fn seekable(&self) -> bool {
        true
    }

    /// madvise(option, start=0, length=0)
    #[pyo3(signature = (option, start = 0, length = 0))]
    fn madvise(&self, py: Python<'_>, option: i64, start: i64, length: i64) -> PyResult<()> {
        let option = i32::try_from(option).unwrap_or(i32::MIN);
        let file = self.lock(py);
        let file: &MapFile = &file;
        py.detach(|| file.madvise(option, start, length)).py_err(py)
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> Option<String> {
        self.lock(py).name().map(str::to_owned)
    }

    #[getter]
    fn filename<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let file = self.lock(py);
        file.path().map(|p| {
            // Decoded as os.fsdecode would, so it round-trips to the OS path.
            let Ok(path) = p.as_os_str().into_pyobject(py);
            path.into_any()
        })
    }

    #[getter]
    fn offset(&self, py: Python<'_>) -> PyResult<u64> {
        self.lock(py).offset().py_err(py)
    }

    #[getter]
    fn created(&self, py: Python<'_>) -> bool {
        self.lock(py).created()
    }

    /// lock(timeout=None) -> MapLock
    #[pyo3(name = "lock", signature = (timeout = None))]
    fn map_lock(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyMapLock> {
        let timeout = timeout_from_py(timeout)?;
        let lock = self.lock(py).lock().py_err(py)?;
        Ok(PyMapLock::new(lock, timeout))
    }
}
