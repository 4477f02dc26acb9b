//! The lock of a map object's state: it costs no atomic read-modify-write
//! when nobody waits.
//!
//! A call such as `tell()` does so little work that two locked CPU
//! instructions (a `std::sync::Mutex` lock and unlock) were a quarter of its
//! time; see `benches/` and docs/performance.md.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

/// Orderings for a release and its look for waiters. With a GIL, every
/// acquire and release runs while holding it, and the GIL orders them;
/// without one (the free-threaded build) the release's store and the
/// waiter count must be sequentially consistent so that a release cannot
/// miss a new waiter.
#[cfg(not(Py_GIL_DISABLED))]
const RELEASE: (Ordering, Ordering) = (Ordering::Release, Ordering::Relaxed);
#[cfg(Py_GIL_DISABLED)]
const RELEASE: (Ordering, Ordering) = (Ordering::SeqCst, Ordering::SeqCst);

/// A mutual-exclusion lock for a `#[pyclass(frozen)]` object's state, taken
/// only by threads attached to the interpreter.
///
/// A thread that finds it held waits with the GIL released (the holder may
/// be running detached and need the GIL back before it can finish), on a
/// condition variable, so waiting costs no CPU. A release that finds
/// waiters hands the lock to one of them directly: otherwise the releasing
/// thread, which keeps the GIL, would take the lock again before any woken
/// waiter got the GIL back, and a loop of long detached calls (a `find` in
/// a loop) would starve every other thread.
///
/// The guard carries the `Python` token, so it can neither be created nor
/// dropped by a detached thread (`Python::detach` refuses closures that
/// capture it): every acquire and release happens while attached. With a
/// GIL, attached means holding the GIL, so no other thread can run between
/// the acquire's load and store, and the uncontended path is a plain load
/// and two plain stores, with no locked instruction. The free-threaded
/// build uses a compare-and-swap instead.
pub(crate) struct PyLock<T> {
    locked: AtomicBool,
    /// Threads waiting (detached) for the lock.
    waiters: AtomicUsize,
    /// True while the lock is handed to a waiter that has not claimed it.
    handed: Mutex<bool>,
    wake: Condvar,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one guard at a time (see
// `try_acquire` and `wait`), so sharing the lock between threads only ever
// moves `T`'s use from thread to thread, which `T: Send` allows.
unsafe impl<T: Send> Sync for PyLock<T> {}

impl<T> PyLock<T> {
    pub(crate) fn new(value: T) -> Self {
        PyLock {
            locked: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            handed: Mutex::new(false),
            wake: Condvar::new(),
            value: UnsafeCell::new(value),
        }
    }

    #[cfg(not(Py_GIL_DISABLED))]
    fn try_acquire(&self, _attached: Python<'_>) -> bool {
        // This thread holds the GIL (it is attached, on a build with a GIL),
        // and so does every thread that acquires or releases (see above),
        // so nothing can happen between this load and store: together they
        // act as one compare-and-swap. Acquire pairs with the Release store
        // in `release`, making the last holder's writes visible.
        if self.locked.load(Ordering::Acquire) {
            return false;
        }
        self.locked.store(true, Ordering::Relaxed);
        true
    }

    #[cfg(Py_GIL_DISABLED)]
    fn try_acquire(&self, _attached: Python<'_>) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn release(&self, py: Python<'_>) {
        let (store, load) = RELEASE;
        self.locked.store(false, store);
        if self.waiters.load(load) != 0 {
            self.hand_off(py);
        }
    }

    /// Takes the lock back on behalf of a waiter and wakes one to claim it.
    #[cold]
    fn hand_off(&self, py: Python<'_>) {
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        // A waiter always comes back for the lock (see `lock`), so a
        // hand-off is claimed even if the woken thread already left.
        if !*handed && self.try_acquire(py) {
            *handed = true;
            self.wake.notify_one();
        }
    }
}

impl<T: Send> PyLock<T> {
    /// Takes the lock, waiting with the GIL released while another thread
    /// holds it.
    pub(crate) fn lock<'a>(&'a self, py: Python<'a>) -> PyLockGuard<'a, T> {
        loop {
            if self.try_acquire(py) || self.wait(py) {
                return PyLockGuard { lock: self, py };
            }
        }
    }

    /// Waits, detached, until the lock is handed to this thread (returns
    /// true: it now holds the lock) or looks free (false).
    #[cold]
    fn wait(&self, py: Python<'_>) -> bool {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let owned = py.detach(|| {
            let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked under `handed`, which a release takes before
            // notifying: a release after these checks cannot notify before
            // this thread waits.
            loop {
                if *handed {
                    *handed = false;
                    return true;
                }
                if !self.locked.load(Ordering::SeqCst) {
                    return false;
                }
                handed = self
                    .wake
                    .wait(handed)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        });
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        owned
    }
}

impl<T: Send> PyLock<T> {
    /// Runs `f` on the value as the lock's holder would, for a short access
    /// that stays attached throughout.
    ///
    /// With a GIL this needs no store: a thread can take the lock only while
    /// attached, that is while holding the GIL, and this thread keeps the
    /// GIL until `f` returns. So if nobody holds the lock now (a lock handed
    /// to a waiter counts as held), nobody can take it before `f` is done,
    /// and `f` has the value to itself, as a holder would. If somebody holds
    /// it, this takes it as [`PyLock::lock`] does. That leaves out the
    /// acquiring store, the releasing store and the look for waiters: about
    /// a tenth of a one-byte read. The free-threaded build takes the lock.
    ///
    /// # Safety
    /// `f` must not let another thread attach before it returns: it must not
    /// detach, nor run Python code or anything that may (the interpreter
    /// can switch threads there). Making bytes and int objects is fine: it
    /// runs no Python code.
    #[cfg(not(Py_GIL_DISABLED))]
    #[inline(always)]
    pub(crate) unsafe fn attached<R>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        if self.locked.load(Ordering::Acquire) {
            return f(&mut self.lock(py));
        }
        // SAFETY: nobody holds the lock, and nobody can take it before `f`
        // returns (see above and the caller's promise), so this is the only
        // access to the value meanwhile.
        f(unsafe { &mut *self.value.get() })
    }

    /// [`PyLock::attached`] without the wait: None if somebody holds the
    /// lock. With no call left in it, an entry point's fast path needs no
    /// stack frame; the caller's slow path waits.
    ///
    /// # Safety
    /// As for [`PyLock::attached`].
    #[cfg(not(Py_GIL_DISABLED))]
    #[inline(always)]
    pub(crate) unsafe fn attached_if_free<R>(
        &self,
        _attached: Python<'_>,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        if self.locked.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: as in `attached`.
        Some(f(unsafe { &mut *self.value.get() }))
    }

    /// The free-threaded build: None (the caller's slow path locks).
    ///
    /// # Safety
    /// As for [`PyLock::attached`].
    #[cfg(Py_GIL_DISABLED)]
    #[inline(always)]
    pub(crate) unsafe fn attached_if_free<R>(
        &self,
        _attached: Python<'_>,
        _f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        None
    }

    /// The free-threaded build: takes the lock (see the build with a GIL).
    ///
    /// # Safety
    /// As with a GIL.
    #[cfg(Py_GIL_DISABLED)]
    #[inline(always)]
    pub(crate) unsafe fn attached<R>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock(py))
    }
}

/// Access to the value of a [`PyLock`]; releases it on drop.
pub(crate) struct PyLockGuard<'a, T> {
    lock: &'a PyLock<T>,
    /// Keeps the guard on attached threads (see [`PyLock`]).
    py: Python<'a>,
}

impl<T> Deref for PyLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the lock's only holder until it drops.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for PyLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the lock's only holder until it drops, and
        // `&mut self` makes this the only borrow through it.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for PyLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(self.py);
    }
}
