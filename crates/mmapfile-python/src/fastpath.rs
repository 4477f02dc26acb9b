//! The mapping object's entry points that CPython calls directly (the rules
//! they keep are in `fastcall`), for the per-call operations whose whole
//! cost is the call itself: `tell()`, `read_byte()`, `readline()`, and the
//! simple cases of `m[i]`, `m[i:j]`, `m[i] = v` and `m[i:j] = b`; and the
//! sequence item slot, which gives iteration its 1-byte bytes items as in
//! CPython's `mmap`.
//!
//! For the mapping slots, only arguments that no Python code can run for
//! (exact `int`s, slices of exact `int`s without a step, exact `bytes`) take
//! the fast path; everything else is handed to the slot function PyO3 made,
//! which stays the one reference implementation of indexing.

use std::ffi::{c_char, c_int, c_long, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use mmapfile::Error;

use crate::bytes::DETACH_THRESHOLD;
use crate::errors::Failure;
use crate::fastcall::{raise_panic, run};
use crate::indexing::refuse_read_only;
use crate::object::PyMapFile;

/// The `PyMapFile` that `slf` is.
///
/// # Safety
/// `slf` must be a live instance of `PyMapFile` (see `fastcall` for why
/// CPython only ever passes one), borrowed for `'a`.
#[inline(always)]
unsafe fn this<'a>(py: Python<'a>, slf: *mut ffi::PyObject) -> &'a PyMapFile {
    // SAFETY: the caller guarantees `slf` is a live `PyMapFile` borrowed for
    // `'a`; the class is frozen, so `get` needs no borrow flag.
    let bound = unsafe { pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<PyMapFile>() };
    bound.get()
}

/// A new reference (or NULL) made while the thread is attached, released if
/// it is dropped rather than handed out (e.g. when the read that filled it
/// reports a fault).
struct New(*mut ffi::PyObject);

impl New {
    fn into_ptr(self) -> *mut ffi::PyObject {
        std::mem::ManuallyDrop::new(self).0
    }
}

impl Drop for New {
    fn drop(&mut self) {
        // SAFETY: the entry points run attached (see `fastcall`), and
        // this holds a new reference or NULL; a bytes object's deallocation
        // runs no Python code.
        unsafe { ffi::Py_XDECREF(self.0) }
    }
}

// ---- methods (METH_NOARGS) ----

unsafe extern "C" fn tell(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_NOARGS method attached, with `slf` an
    // instance of the descriptor's type (PyMapFile). `tell` cannot panic.
    unsafe {
        let py = Python::assume_attached();
        // SAFETY (attached_if_free): `tell` runs no Python code.
        match this(py, slf).attached_if_free(py, |file| file.tell().ok()) {
            // A new reference, or NULL with the exception set: CPython
            // takes either as the method's result.
            Some(Some(pos)) => ffi::PyLong_FromSize_t(pos),
            _ => tell_slow(slf),
        }
    }
}

/// `tell` when another thread holds the lock, or to raise its error.
#[cold]
#[inline(never)]
unsafe fn tell_slow(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as in `tell` (called from it).
    unsafe {
        run(std::ptr::null_mut(), |py| {
            // SAFETY (attached): `tell` runs no Python code.
            let pos = this(py, slf).attached(py, |file| file.tell())?;
            Ok(ffi::PyLong_FromSize_t(pos))
        })
    }
}

unsafe extern "C" fn read_byte(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as in `tell`. (Here `attached`, which waits in place, measured
    // fewer instructions than a fast path with a separate slow one.)
    unsafe {
        run(std::ptr::null_mut(), |py| {
            // SAFETY (attached): `read_byte` runs no Python code.
            let byte = this(py, slf).attached(py, |file| file.read_byte())?;
            one_byte(byte)
        })
    }
}

/// The 256 one-byte bytes objects, made at module init and never freed, so
/// that `read_byte` returns one with an increment (CPython caches them too,
/// but reaching its cache is a call into `PyBytes_FromStringAndSize`). An
/// array indexed by a `u8` needs no bounds check; a null entry (not made)
/// falls back to the call.
static ONE_BYTE: [AtomicPtr<ffi::PyObject>; 256] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; 256];

/// A new reference to the bytes object `bytes([byte])`.
///
/// # Safety
/// The thread must be attached.
#[inline(always)]
unsafe fn one_byte(byte: u8) -> Result<*mut ffi::PyObject, Failure> {
    // SAFETY: the thread is attached; a cached object is never freed (the
    // cache owns a reference it never gives up), and incrementing a live
    // object's count is always allowed. PyBytes_FromStringAndSize reads
    // the one byte at the pointer (a local).
    unsafe {
        let obj = ONE_BYTE[usize::from(byte)].load(Ordering::Relaxed);
        if obj.is_null() {
            // As in `tell`, NULL carries its exception out.
            return Ok(ffi::PyBytes_FromStringAndSize(
                std::ptr::addr_of!(byte).cast::<c_char>(),
                1,
            ));
        }
        ffi::Py_INCREF(obj);
        Ok(obj)
    }
}

unsafe extern "C" fn readline(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    /// The fast path did not make the line; nothing changed.
    struct Declined;
    impl From<mmapfile::Error> for Declined {
        #[cold]
        fn from(_: mmapfile::Error) -> Self {
            Declined
        }
    }
    // The fast path reads a short line and makes its bytes in one access,
    // when nobody holds the lock; its result is small enough to stay in
    // registers. Anything else (a held lock, a long line, an error) goes to
    // `readline_slow`, which starts over: a declined or failed
    // `readline_raw` leaves the position alone.
    //
    // SAFETY: as in `tell`.
    unsafe {
        let fast = catch_unwind(AssertUnwindSafe(|| {
            let py = Python::assume_attached();
            // SAFETY (attached_if_free): making a bytes object runs no
            // Python code.
            this(py, slf).attached_if_free(py, |file| {
                // SAFETY (readline_raw): PyBytes_FromStringAndSize copies
                // exactly `n` bytes from `src` and keeps no pointer; `n`
                // fits a Py_ssize_t (it is below DETACH_THRESHOLD).
                file.readline_raw(|src, n| {
                    if n >= DETACH_THRESHOLD {
                        return Err(Declined);
                    }
                    let made =
                        ffi::PyBytes_FromStringAndSize(src.cast::<c_char>(), n as ffi::Py_ssize_t);
                    if made.is_null() {
                        // Out of memory: decline, so the position stays;
                        // the slow path tries again and raises its own.
                        ffi::PyErr_Clear();
                        return Err(Declined);
                    }
                    Ok(New(made))
                })
            })
        }));
        match fast {
            Ok(Some(Ok(made))) => made.into_ptr(),
            Ok(None | Some(Err(Declined))) => readline_slow(slf),
            Err(payload) => {
                raise_panic(payload);
                std::ptr::null_mut()
            }
        }
    }
}

/// `readline` when another thread holds the lock, for a line too long to
/// copy with the GIL held, or to raise the error that made the fast path
/// decline.
#[cold]
#[inline(never)]
unsafe fn readline_slow(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as in `tell` (called from `readline`).
    unsafe {
        run(std::ptr::null_mut(), |py| {
            let mut file = this(py, slf).lock(py);
            let len = file.readline_len()?;
            Ok(PyMapFile::new_bytes(py, &mut file, len)?.into_ptr())
        })
    }
}

// ---- mapping slots ----

/// PyO3's slot functions, which handle every case the fast paths leave.
static SUBSCRIPT: OnceLock<ffi::binaryfunc> = OnceLock::new();
static ASS_SUBSCRIPT: OnceLock<ffi::objobjargproc> = OnceLock::new();

/// An exact `int` key as an index, or None for anything else (including an
/// int too large for i64, which PyO3's slot reports).
///
/// # Safety
/// `key` must be a live object; the thread must be attached.
#[inline(always)]
unsafe fn simple_index(key: *mut ffi::PyObject) -> Option<i64> {
    // SAFETY: `key` is live; an exact int's conversion runs no Python code
    // and fails only by overflow, which is reported in `overflow` without
    // setting an exception.
    unsafe {
        if ffi::PyLong_CheckExact(key) == 0 {
            return None;
        }
        let mut overflow = 0;
        let value = ffi::PyLong_AsLongLongAndOverflow(key, &mut overflow);
        (overflow == 0).then_some(value)
    }
}

/// One bound of a slice: an exact int (clamped to `Py_ssize_t`, as CPython
/// clamps slice indices), or None (`none`); None for any other object.
///
/// # Safety
/// `obj` must be a live object; the thread must be attached.
#[inline(always)]
unsafe fn slice_bound(obj: *mut ffi::PyObject, none: ffi::Py_ssize_t) -> Option<ffi::Py_ssize_t> {
    // SAFETY: `obj` is live; an exact int's conversion runs no Python code
    // and reports overflow in `overflow` without setting an exception.
    unsafe {
        if obj == ffi::Py_None() {
            return Some(none);
        }
        if ffi::PyLong_CheckExact(obj) == 0 {
            return None;
        }
        let mut overflow = 0;
        let value = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        Some(match overflow {
            0 => ffi::Py_ssize_t::try_from(value).unwrap_or(if value < 0 {
                ffi::Py_ssize_t::MIN
            } else {
                ffi::Py_ssize_t::MAX
            }),
            o if o < 0 => ffi::Py_ssize_t::MIN,
            _ => ffi::Py_ssize_t::MAX,
        })
    }
}

/// The start and stop of a slice whose start and stop are exact ints or
/// None and whose step is None, unadjusted (as `PySlice_Unpack` gives them
/// for step 1, read here without its calls through the number protocol);
/// None for any other key.
///
/// # Safety
/// `key` must be a live object; the thread must be attached.
#[inline(always)]
unsafe fn simple_slice(key: *mut ffi::PyObject) -> Option<(ffi::Py_ssize_t, ffi::Py_ssize_t)> {
    // SAFETY: `key` is live; after `PySlice_Check` it is a slice object
    // (`slice` cannot be subclassed), whose members are live objects.
    unsafe {
        if ffi::PySlice_Check(key) == 0 {
            return None;
        }
        let slice = key.cast::<ffi::PySliceObject>();
        if (*slice).step != ffi::Py_None() {
            return None;
        }
        let start = slice_bound((*slice).start, 0)?;
        let stop = slice_bound((*slice).stop, ffi::Py_ssize_t::MAX)?;
        Some((start, stop))
    }
}

/// Resolves a step-1 slice against the view's length: `(start, count)`,
/// as `PySlice_AdjustIndices` does for step 1.
fn resolve(len: usize, (start, stop): (ffi::Py_ssize_t, ffi::Py_ssize_t)) -> (usize, usize) {
    // Negative bounds count from the end; both end up in 0..=len.
    let start = mmapfile::clamp_index(start as i64, len);
    let stop = mmapfile::clamp_index(stop as i64, len);
    (start, stop.saturating_sub(start))
}

unsafe extern "C" fn subscript(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls mp_subscript attached, with `slf` an instance of
    // the type and `key` a live object. PyO3's slot takes the same arguments.
    unsafe {
        // Some(result) when a fast path took the call, None when it declined.
        let done = if let Some(index) = simple_index(key) {
            run(Some(std::ptr::null_mut()), |py| {
                // SAFETY (attached): `byte_at` runs no Python code.
                let byte = this(py, slf).attached(py, |file| file.byte_at(index))?;
                Ok(Some(ffi::PyLong_FromLong(c_long::from(byte))))
            })
        } else if let Some(bounds) = simple_slice(key) {
            run(Some(std::ptr::null_mut()), |py| {
                // (The lock itself, not `attached`: here that measured fewer
                // instructions.)
                let file = this(py, slf).lock(py);
                let (start, count) = resolve(file.len()?, bounds);
                if count >= DETACH_THRESHOLD {
                    // Long copies release the GIL; PyO3's slot does that.
                    return Ok(None);
                }
                // The bytes object is made straight from the mapped bytes.
                // `count` fits a Py_ssize_t: it is at most the view's length.
                // SAFETY (read_at_with): PyBytes_FromStringAndSize copies
                // exactly `count` bytes from `src` and keeps no pointer.
                let made = file.read_at_with(start, count, |src| {
                    New(ffi::PyBytes_FromStringAndSize(
                        src.cast::<c_char>(),
                        count as ffi::Py_ssize_t,
                    ))
                })?;
                Ok(Some(made.into_ptr()))
            })
        } else {
            None
        };
        match done {
            Some(result) => result,
            None => (SUBSCRIPT.get().expect("installed"))(slf, key),
        }
    }
}

unsafe extern "C" fn ass_subscript(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int {
    // SAFETY: CPython calls mp_ass_subscript attached, with `slf` an
    // instance of the type, `key` live and `value` live or NULL (deletion).
    // PyO3's slot takes the same arguments.
    unsafe {
        // Some(status) when a fast path took the call, None when it declined.
        let done = if value.is_null() {
            None
        } else if let Some(index) = simple_index(key) {
            run(Some(-1), |py| {
                // Only an exact int in range(0, 256) is simple; PyO3's slot
                // reports everything else.
                let mut overflow = 0;
                let v = if ffi::PyLong_CheckExact(value) != 0 {
                    ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow)
                } else {
                    -1
                };
                let Ok(v) = u8::try_from(v) else {
                    return Ok(None);
                };
                // SAFETY (attached): `set_byte_at` runs no Python code.
                this(py, slf).attached(py, |file| {
                    refuse_read_only(file)?;
                    file.set_byte_at(index, v)
                })?;
                Ok(Some(0))
            })
        } else if ffi::PyBytes_CheckExact(value) != 0 {
            simple_slice(key).and_then(|bounds| {
                // SAFETY (attached): the copy runs no Python code; long ones,
                // which release the GIL, are left to PyO3's slot.
                run(Some(-1), |py| {
                    this(py, slf).attached(py, |file| {
                        refuse_read_only(file)?;
                        let (start, count) = resolve(file.len()?, bounds);
                        if count >= DETACH_THRESHOLD {
                            return Ok(None);
                        }
                        // SAFETY: `value` is a bytes object, whose storage holds
                        // Py_SIZE bytes, never changes, and lives while the
                        // caller holds `value` (to the end of this call).
                        let src = std::slice::from_raw_parts(
                            ffi::PyBytes_AS_STRING(value).cast::<u8>(),
                            ffi::Py_SIZE(value).max(0) as usize,
                        );
                        if src.len() == count {
                            // A resolved slice lies inside the view, so this is
                            // `write_slice` with nothing left to check but the
                            // view itself (closed, read-only, poisoned).
                            file.write_at(start, src)?;
                        } else {
                            // Reports the size mismatch as CPython does.
                            file.write_slice(start, 1, count, src)?;
                        }
                        Ok(Some(0))
                    })
                })
            })
        } else {
            None
        };
        match done {
            Some(status) => status,
            None => (ASS_SUBSCRIPT.get().expect("installed"))(slf, key, value),
        }
    }
}

/// `sq_item`: what iteration, `reversed()` and `in` use. As in CPython's
/// `mmap`, an item here is a bytes object of length 1 (while `m[i]`, through
/// `mp_subscript`, is an int), so `b"h" in m` works; past the end it raises
/// the IndexError that ends the iteration, and a closed map raises
/// ValueError.
unsafe extern "C" fn seq_item(slf: *mut ffi::PyObject, i: ffi::Py_ssize_t) -> *mut ffi::PyObject {
    // SAFETY: CPython calls sq_item attached, with `slf` an instance of the
    // type.
    unsafe {
        run(std::ptr::null_mut(), |py| {
            // CPython has already added the length to a negative index; one
            // still negative is out of range (not counted from the end again).
            let index = i64::try_from(i).unwrap_or(-1);
            // SAFETY (attached): `byte_at` runs no Python code.
            let byte = this(py, slf).attached(py, |file| {
                if index < 0 {
                    // The closed check comes first, as for any index.
                    file.len()?;
                    return Err(Error::Index("mmap index out of range"));
                }
                file.byte_at(index)
            })?;
            one_byte(byte)
        })
    }
}

// ---- installation ----

/// A method to install: name, C function, text signature and doc.
struct Method {
    name: &'static CStr,
    meth: ffi::PyCFunction,
    /// What PyO3 would put in `ml_doc`: `name($self)\n--\n\n` then the doc.
    doc: &'static CStr,
}

const METHODS: [Method; 3] = [
    Method {
        name: c"tell",
        meth: tell,
        doc: c"tell($self)\n--\n\n",
    },
    Method {
        name: c"read_byte",
        meth: read_byte,
        doc: c"read_byte($self)\n--\n\n",
    },
    Method {
        name: c"readline",
        meth: readline,
        doc: c"readline($self)\n--\n\n",
    },
];

/// Installs the entry points into the class. Runs once, at module init.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let tp = ty.as_type_ptr();
    for (b, slot) in (0..=u8::MAX).zip(&ONE_BYTE) {
        if slot.load(Ordering::Relaxed).is_null() {
            // The cache keeps this reference for the life of the process.
            slot.store(PyBytes::new(py, &[b]).into_ptr(), Ordering::Relaxed);
        }
    }
    for method in &METHODS {
        // The definition must outlive the type, which lives as long as the
        // process: leak it (three small structs, once).
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: method.name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: method.meth,
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: method.doc.as_ptr(),
        }));
        // SAFETY: `tp` is a live type and `def` a valid, leaked method
        // definition; the result is a new reference or NULL with an
        // exception set.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(tp, def)) }?;
        // The class is a mutable heap type; setattr also invalidates the
        // type's attribute cache.
        ty.setattr(method.name.to_str().expect("ASCII name"), descr)?;
    }
    // SAFETY: `tp` is a heap type (PyO3 creates classes with
    // PyType_FromSpec), so `tp_as_mapping` points at the mapping methods
    // inside its own heap object, which this type alone uses. No Python code
    // runs meanwhile (module init holds the GIL), and PyType_Modified
    // invalidates anything cached about the type.
    unsafe {
        let mapping = (*tp).tp_as_mapping;
        if mapping.is_null() {
            return Err(pyo3::exceptions::PySystemError::new_err(
                "mmapfile has no mapping slots",
            ));
        }
        let (Some(get), Some(set)) = ((*mapping).mp_subscript, (*mapping).mp_ass_subscript) else {
            return Err(pyo3::exceptions::PySystemError::new_err(
                "mmapfile has no subscript slots",
            ));
        };
        if SUBSCRIPT.set(get).is_ok() && ASS_SUBSCRIPT.set(set).is_ok() {
            (*mapping).mp_subscript = Some(subscript);
            (*mapping).mp_ass_subscript = Some(ass_subscript);
        }
        // Set whether or not PyO3 made one (it makes one that calls
        // `mp_subscript`, which would iterate as ints).
        let sequence = (*tp).tp_as_sequence;
        if sequence.is_null() {
            return Err(pyo3::exceptions::PySystemError::new_err(
                "mmapfile has no sequence slots",
            ));
        }
        (*sequence).sq_item = Some(seq_item);
        // `reversed()` asks the sequence slots for the length; PyO3 filled
        // only the mapping one (the same `__len__`).
        if (*sequence).sq_length.is_none() {
            (*sequence).sq_length = (*mapping).mp_length;
        }
        ffi::PyType_Modified(tp);
    }
    Ok(())
}
