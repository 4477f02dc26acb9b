//! The `mmapfile` Python class: argument conversion around `mmapfile::MapFile`.
//!
//! Every method converts all of its arguments first (conversion can run
//! Python code, e.g. `__index__`, that might close the map), then locks the
//! object, then calls the core, which does every check.

use std::ffi::c_int;
use std::path::PathBuf;
use std::time::Duration;

use mmapfile::{Access, CreateMode, MapFile, MapLock, MapOptions, Partial, Source, Space};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PySlice, PyTuple};

use crate::bytes::{new_bytes_uninit, DETACH_THRESHOLD};
use crate::errors::{CoreResultExt, Failure};
use crate::pylock::{PyLock, PyLockGuard};

/// Item and slice assignment refuse a read-only map before anything else,
/// even before a closed one, as CPython 3.15's `mmap` does (docs/migrating.md).
#[inline(always)]
pub(crate) fn refuse_read_only(file: &MapFile) -> Result<(), mmapfile::Error> {
    if file.access() == Access::Read {
        return Err(mmapfile::Error::ReadOnly);
    }
    Ok(())
}

pub(crate) const ACCESS_DEFAULT: u8 = 0;
pub(crate) const ACCESS_READ: u8 = 1;
pub(crate) const ACCESS_WRITE: u8 = 2;
pub(crate) const ACCESS_COPY: u8 = 3;

/// A mapped view of a file, a named block of shared memory, or an unnamed block.
#[pyclass(frozen, weakref, name = "mmapfile", module = "mmapfile")]
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

fn space_from_str(space: &str) -> PyResult<Space> {
    match space {
        "check" => Ok(Space::Check),
        "reserve" => Ok(Space::Reserve),
        "sparse" => Ok(Space::Sparse),
        _ => Err(PyValueError::new_err(format!(
            "space must be 'check', 'reserve' or 'sparse', not {space:?}"
        ))),
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
fn has_index(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; PyIndex_Check only reads its type.
    obj.is_instance_of::<PyInt>() || unsafe { ffi::PyIndex_Check(obj.as_ptr()) } != 0
}

/// Converts a sequence index the way CPython's `mmap` does: anything with
/// `__index__`; an int too large for the view is simply out of range (it
/// saturates, so that the core reports a closed map first, as CPython's
/// `m[i]` does).
fn index_from_py(key: &Bound<'_, PyAny>) -> PyResult<i64> {
    let int = index_int(key)?;
    let mut overflow: c_int = 0;
    // SAFETY: `int` is a live int (PyNumber_Index returns one); the call
    // reports an overflow in `overflow` without setting an exception.
    let value = unsafe { ffi::PyLong_AsLongLongAndOverflow(int.as_ptr(), &mut overflow) };
    match overflow {
        0 if value == -1 => match PyErr::take(key.py()) {
            Some(err) => Err(err),
            None => Ok(-1),
        },
        0 => Ok(value),
        o if o > 0 => Ok(i64::MAX),
        _ => Ok(i64::MIN),
    }
}

/// Converts the index of `m[i] = value` as CPython 3.15's `mmap` does: an
/// int that does not fit an index-sized integer is an IndexError at once,
/// before the value, the closed map or the bounds are looked at.
fn assignment_index_from_py(key: &Bound<'_, PyAny>) -> PyResult<i64> {
    let int = index_int(key)?;
    let py = key.py();
    let value = int.extract::<isize>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(py) {
            PyIndexError::new_err("cannot fit 'int' into an index-sized integer")
        } else {
            err
        }
    })?;
    // isize is at most 64 bits on every target the binding builds for.
    i64::try_from(value)
        .map_err(|_| PyIndexError::new_err("cannot fit 'int' into an index-sized integer"))
}

/// `key` as an int: itself, or what its `__index__` returns.
fn index_int<'py>(key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if key.is_instance_of::<PyInt>() {
        return Ok(key.clone());
    }
    let py = key.py();
    // SAFETY: `key` is a live object; PyNumber_Index returns a new
    // reference, or NULL with an exception set, which
    // `from_owned_ptr_or_err` turns into the error.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(key.as_ptr())) }.map_err(|err| {
        if err.is_instance_of::<PyTypeError>(py) {
            PyTypeError::new_err("mmap indices must be integers")
        } else {
            err
        }
    })
}

/// A slice's start, stop and step as `PySlice_Unpack` gives them: converted
/// (running any `__index__`), clamped to the index-sized range, not yet
/// resolved against a length.
fn unpack_slice(slice: &Bound<'_, PySlice>) -> PyResult<(isize, isize, isize)> {
    let (mut start, mut stop, mut step): (ffi::Py_ssize_t, ffi::Py_ssize_t, ffi::Py_ssize_t) =
        (0, 0, 0);
    // SAFETY: `slice` is a live slice object and the three out-pointers are
    // valid locals; the call returns -1 with an exception set on error.
    let rc = unsafe { ffi::PySlice_Unpack(slice.as_ptr(), &mut start, &mut stop, &mut step) };
    if rc < 0 {
        return Err(PyErr::fetch(slice.py()));
    }
    Ok((start, stop, step))
}

/// Converts an item value for `m[i] = value` as CPython's `mmap` does.
fn item_value_from_py(value: &Bound<'_, PyAny>) -> PyResult<u8> {
    let py = value.py();
    if !has_index(value) {
        return Err(PyTypeError::new_err("mmap item value must be an int"));
    }
    // As CPython: an int too large for an index is a TypeError, one
    // outside a byte's range a ValueError. Errors raised by the value's
    // own __index__ pass through.
    let value = value.extract::<isize>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(py) {
            PyTypeError::new_err("cannot fit 'int' into an index-sized integer")
        } else {
            err
        }
    })?;
    u8::try_from(value)
        .map_err(|_| PyValueError::new_err("mmap item value must be in range(0, 256)"))
}

/// Converts a lock timeout: `None` waits for ever; a negative or NaN value
/// is refused; one too large to represent also waits for ever.
fn timeout_from_py(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok()),
    }
}

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
        Ok(PyMapFile {
            inner: PyLock::new(file),
        })
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
    fn __setitem__(
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
        Ok(PyMapLock {
            inner: lock,
            timeout,
        })
    }
}

/// The cross-process lock of a mapping (returned by `mmapfile.lock()`).
#[pyclass(frozen, weakref, name = "MapLock", module = "mmapfile")]
pub(crate) struct PyMapLock {
    pub(crate) inner: MapLock,
    /// The timeout `with` uses.
    pub(crate) timeout: Option<Duration>,
}

/// How often a waiting `acquire` wakes up to run Python's signal handlers,
/// so that Ctrl-C reaches Python within about this time.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

impl PyMapLock {
    fn acquire_for(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<bool> {
        // A free lock is taken without releasing the GIL (on Linux, without
        // a system call), as multiprocessing.Lock does.
        if self.inner.acquire_if_free().py_err(py)? {
            return Ok(true);
        }
        // Handlers run here, with the GIL held, so the wait need not take
        // it back to run them before it starts.
        py.check_signals()?;
        // Signals are checked before the wait starts and then every
        // SIGNAL_CHECK (the core wakes up for it), so a SIGINT whose C
        // handler ran just before the wait is still seen: CPython's handler
        // only sets a flag, which nothing else would look at until the wait
        // ends.
        py.detach(|| {
            self.inner.acquire_waiting(timeout, SIGNAL_CHECK, || {
                Python::attach(|py| py.check_signals()).map_err(Failure::Py)
            })
        })
        .map_err(|failure| failure.into_py(py))
    }
}

#[pymethods]
impl PyMapLock {
    /// acquire(timeout=None) -> bool
    #[pyo3(signature = (timeout = None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout_from_py(timeout)?;
        self.acquire_for(py, timeout)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.release().py_err(py)
    }

    fn locked(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.is_locked().py_err(py)
    }

    /// Whether the last acquisition took the lock over from a holder that
    /// died holding it.
    #[getter]
    fn abandoned(&self) -> bool {
        self.inner.abandoned()
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        if !this.acquire_for(slf.py(), this.timeout)? {
            return Err(PyTimeoutError::new_err(format!(
                "the mapping's lock was not acquired within {} seconds",
                this.timeout.unwrap_or_default().as_secs_f64()
            )));
        }
        Ok(slf.clone())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let held = if self.inner.is_held() {
            "True"
        } else {
            "False"
        };
        format!("<mmapfile.MapLock held={held}>")
    }
}
