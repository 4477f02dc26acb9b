//! What every entry point that CPython calls directly, without PyO3's
//! trampoline, needs: the mapping object's per-call operations (`fastpath`)
//! and the mapping lock's methods when the lock is free (`maplock`).
//!
//! PyO3 wraps every method in a trampoline that counts the thread as
//! attached (two thread-local accesses, which in a shared library are calls
//! to `__tls_get_addr`), checks its deferred-reference pool, type-checks
//! `self` and catches panics. On a call that does 2 ns of work that is most
//! of the difference to CPython's `mmap` (see docs/performance.md). The
//! entry points keep only what such a call needs:
//!
//! - CPython calls methods and slots with the thread attached (holding the
//!   GIL on builds that have one), so the token is `Python::assume_attached`.
//!   Nothing in them lets PyO3 see that the thread is attached, so nothing
//!   in them may drop a `Py<T>` (PyO3 would defer the decrement) or build an
//!   exception: errors are carried out as [`Failure`]s and become Python
//!   exceptions in [`raise`], under `Python::attach`.
//! - `self` needs no type check: CPython binds a method descriptor only to
//!   instances of its type, and calls a type's slots only for its instances
//!   (the class has no subclasses: it is not a `subclass` pyclass).
//! - A panic is caught and raised as PyO3's `PanicException`, as PyO3 does.
//!
//! Each such entry point is installed, at module init, as a method
//! descriptor (or slot) of its class with the same name and text signature
//! PyO3 would give it, and hands every case it does not take to the method
//! or slot PyO3 made.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::panic::PanicException;
use pyo3::prelude::*;

use crate::errors::Failure;

/// Runs the body of an entry point: returns what it returns, or raises its
/// error or panic and returns `failed`.
///
/// # Safety
/// The thread must be attached (as it is when CPython calls a method or a
/// slot). `body` must not drop a `Py<T>` nor build a `PyErr` other than a
/// lazy one (see the module docs).
#[inline(always)]
pub(crate) unsafe fn run<T>(failed: T, body: impl FnOnce(Python<'_>) -> Result<T, Failure>) -> T {
    // SAFETY: the caller guarantees the thread is attached; the token does
    // not outlive this call.
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(value)) => value,
        Ok(Err(failure)) => {
            raise(failure);
            failed
        }
        Err(payload) => {
            raise_panic(payload);
            failed
        }
    }
}

/// Sets the Python exception for `failure`.
#[cold]
#[inline(never)]
fn raise(failure: Failure) {
    Python::attach(|py| failure.into_py(py).restore(py));
}

/// Raises a panic's payload as `PanicException`, with the panic's message.
#[cold]
#[inline(never)]
pub(crate) fn raise_panic(payload: Box<dyn std::any::Any + Send>) {
    let message = if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "panic from Rust code".to_owned()
    };
    Python::attach(|py| PanicException::new_err((message,)).restore(py));
}
