//! The cross-process lock of a mapping as a Python object (`MapLock`,
//! returned by `mmapfile.lock()`), and its `acquire()`, `release()`,
//! `__enter__` and `__exit__` as entry points that CPython calls directly
//! (see `fastcall`) when the lock is free: no system call on Linux, so the
//! call is the whole cost, as for `multiprocessing.Lock`. A lock that is
//! held goes to PyO3's method, which waits with the GIL released.

use std::ffi::{c_int, CStr};
use std::sync::OnceLock;
use std::time::Duration;

use mmapfile::MapLock;
use pyo3::exceptions::PyTimeoutError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

use crate::convert::timeout_from_py;
use crate::errors::{CoreResultExt, Failure};
use crate::fastcall::run;

/// The cross-process lock of a mapping (returned by `mmapfile.lock()`).
#[pyclass(frozen, weakref, name = "MapLock", module = "mmapfile")]
pub(crate) struct PyMapLock {
    inner: MapLock,
    /// The timeout `with` uses.
    timeout: Option<Duration>,
}

/// How often a waiting `acquire` wakes up to run Python's signal handlers,
/// so that Ctrl-C reaches Python within about this time.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

impl PyMapLock {
    /// The object for a lock just made; `timeout` is what `with` waits.
    pub(crate) fn new(inner: MapLock, timeout: Option<Duration>) -> Self {
        PyMapLock { inner, timeout }
    }

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

/// PyO3's methods of `MapLock`, called for whatever the entry points below
/// do not take themselves (a held lock, a timeout, an error).
struct LockMethods {
    acquire: ffi::PyCFunctionFastWithKeywords,
    enter: ffi::PyCFunction,
}

static LOCK_METHODS: OnceLock<LockMethods> = OnceLock::new();

/// The `PyMapLock` that `slf` is.
///
/// # Safety
/// `slf` must be a live instance of `PyMapLock` (CPython binds a method
/// descriptor only to instances of its type, and the class has no
/// subclasses), borrowed for `'a`.
#[inline(always)]
unsafe fn this_lock<'a>(py: Python<'a>, slf: *mut ffi::PyObject) -> &'a PyMapLock {
    // SAFETY: the caller guarantees `slf` is a live `PyMapLock` borrowed
    // for `'a`; the class is frozen, so `get` needs no borrow flag.
    let bound = unsafe { pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<PyMapLock>() };
    bound.get()
}

/// A new reference to `obj`.
///
/// # Safety
/// The thread must be attached and `obj` live.
unsafe fn new_ref(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // Py_NewRef would do, but CPython 3.9 has none.
    // SAFETY: as the caller guarantees.
    unsafe { ffi::Py_INCREF(obj) };
    obj
}

unsafe extern "C" fn lock_acquire(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method attached,
    // with `slf` an instance of the type and `args` holding `nargs`
    // positional arguments (then the keyword values).
    unsafe {
        // `acquire()` and `acquire(None)`: wait for ever, so a free lock
        // is simply taken. Anything else goes to PyO3's method.
        let untimed = kwnames.is_null() && (nargs == 0 || (nargs == 1 && *args == ffi::Py_None()));
        if untimed {
            let taken = run(None, |py| {
                let taken = this_lock(py, slf).inner.acquire_if_free()?;
                Ok(taken.then(|| new_ref(ffi::Py_True())))
            });
            if let Some(result) = taken {
                return result;
            }
            if !ffi::PyErr_Occurred().is_null() {
                return std::ptr::null_mut();
            }
        }
        (LOCK_METHODS.get().expect("installed").acquire)(slf, args, nargs, kwnames)
    }
}

unsafe extern "C" fn lock_enter(
    slf: *mut ffi::PyObject,
    unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_NOARGS method attached, with `slf` an
    // instance of the type.
    unsafe {
        let taken = run(None, |py| {
            let taken = this_lock(py, slf).inner.acquire_if_free()?;
            Ok(taken.then(|| new_ref(slf)))
        });
        if let Some(result) = taken {
            return result;
        }
        if !ffi::PyErr_Occurred().is_null() {
            return std::ptr::null_mut();
        }
        (LOCK_METHODS.get().expect("installed").enter)(slf, unused)
    }
}

unsafe extern "C" fn lock_release(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_NOARGS method attached, with `slf` an
    // instance of the type.
    unsafe {
        run(std::ptr::null_mut(), |py| {
            this_lock(py, slf).inner.release()?;
            Ok(new_ref(ffi::Py_None()))
        })
    }
}

unsafe extern "C" fn lock_exit(
    slf: *mut ffi::PyObject,
    _args: *mut *mut ffi::PyObject,
    _nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a METH_FASTCALL method attached, with `slf` an
    // instance of the type. `__exit__` ignores its arguments.
    unsafe {
        run(std::ptr::null_mut(), |py| {
            this_lock(py, slf).inner.release()?;
            Ok(new_ref(ffi::Py_False()))
        })
    }
}

/// The C function of PyO3's method `name` of `ty`, with its flags.
fn pyo3_method(ty: &Bound<'_, PyType>, name: &str) -> PyResult<(ffi::PyMethodDefPointer, c_int)> {
    let descr = ty.getattr(name)?;
    // SAFETY: a method that PyO3 defined on the class is a method
    // descriptor (the check below makes sure), whose `d_method` points to
    // PyO3's leaked, immutable method definition.
    unsafe {
        if ffi::Py_TYPE(descr.as_ptr()) != std::ptr::addr_of_mut!(ffi::PyMethodDescr_Type) {
            return Err(pyo3::exceptions::PySystemError::new_err(format!(
                "MapLock.{name} is not a method descriptor"
            )));
        }
        let def = (*descr.as_ptr().cast::<ffi::PyMethodDescrObject>()).d_method;
        Ok(((*def).ml_meth, (*def).ml_flags))
    }
}

/// Installs the lock's entry points into its class, keeping PyO3's
/// methods for the cases they leave. Runs once, at module init.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let tp = ty.as_type_ptr();
    let (acquire, acquire_flags) = pyo3_method(ty, "acquire")?;
    let (enter, enter_flags) = pyo3_method(ty, "__enter__")?;
    if acquire_flags & (ffi::METH_FASTCALL | ffi::METH_KEYWORDS)
        != ffi::METH_FASTCALL | ffi::METH_KEYWORDS
        || enter_flags & ffi::METH_NOARGS == 0
    {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "MapLock's methods have unexpected calling conventions",
        ));
    }
    // SAFETY: the flags were checked above, so these are the members of
    // the union that PyO3 filled in.
    let methods = unsafe {
        LockMethods {
            acquire: acquire.PyCFunctionFastWithKeywords,
            enter: enter.PyCFunction,
        }
    };
    if LOCK_METHODS.set(methods).is_err() {
        return Ok(()); // installed by an earlier init
    }
    let defs: [(&'static CStr, ffi::PyMethodDefPointer, c_int, &'static CStr); 4] = [
        (
            c"acquire",
            ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: lock_acquire,
            },
            ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            c"acquire($self, /, timeout=None)\n--\n\n",
        ),
        (
            c"release",
            ffi::PyMethodDefPointer {
                PyCFunction: lock_release,
            },
            ffi::METH_NOARGS,
            c"release($self)\n--\n\n",
        ),
        (
            c"__enter__",
            ffi::PyMethodDefPointer {
                PyCFunction: lock_enter,
            },
            ffi::METH_NOARGS,
            c"__enter__($self)\n--\n\n",
        ),
        (
            c"__exit__",
            ffi::PyMethodDefPointer {
                PyCFunctionFast: lock_exit,
            },
            ffi::METH_FASTCALL,
            c"__exit__($self, *_args)\n--\n\n",
        ),
    ];
    for (name, meth, flags, doc) in defs {
        // Leaked: the definition must outlive the type (four small structs,
        // once).
        let def = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: `tp` is a live type and `def` a valid, leaked method
        // definition; the result is a new reference or NULL with an
        // exception set.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(tp, def)) }?;
        ty.setattr(name.to_str().expect("ASCII name"), descr)?;
    }
    Ok(())
}
