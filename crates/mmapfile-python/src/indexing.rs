//! The keys and values of `m[...]`, converted and checked in the order
//! CPython's `mmap` uses, so that the same bad call raises the same
//! exception (docs/migrating.md): shared by the object's methods and the
//! trampoline-free slots.

use std::ffi::c_int;

use mmapfile::{Access, MapFile};
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PySlice};

use crate::convert::has_index;

/// Item and slice assignment refuse a read-only map before anything else,
/// even before a closed one, as CPython 3.15's `mmap` does (docs/migrating.md).
#[inline(always)]
pub(crate) fn refuse_read_only(file: &MapFile) -> Result<(), mmapfile::Error> {
    if file.access() == Access::Read {
        return Err(mmapfile::Error::ReadOnly);
    }
    Ok(())
}

/// Converts a sequence index the way CPython's `mmap` does: anything with
/// `__index__`; an int too large for the view is simply out of range (it
/// saturates, so that the core reports a closed map first, as CPython's
/// `m[i]` does).
pub(crate) fn index_from_py(key: &Bound<'_, PyAny>) -> PyResult<i64> {
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
pub(crate) fn assignment_index_from_py(key: &Bound<'_, PyAny>) -> PyResult<i64> {
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
pub(crate) fn unpack_slice(slice: &Bound<'_, PySlice>) -> PyResult<(isize, isize, isize)> {
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
pub(crate) fn item_value_from_py(value: &Bound<'_, PyAny>) -> PyResult<u8> {
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
