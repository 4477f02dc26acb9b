//! The cross-process lock that belongs to a mapping. Each backend makes
//! its own (`os::Lock`): Linux a futex word in shared memory
//! (`os/unix/lock_linux.rs`), Windows an interlocked word in shared memory
//! with an event to sleep on (`os/windows/lock.rs`), both a
//! [`word::WordLock`], which holds what the two do alike (the word's
//! protocol, a `MapLock`'s state, how a wait is cut into slices); the
//! portable backend, whose OS lock is a descriptor per acquisition, uses
//! [`desc::DescLock`].

use std::time::Duration;

use crate::error::{Error, Result};
use crate::os;

#[cfg_attr(not(portable_lifetime), allow(dead_code))]
pub(crate) mod desc;
#[cfg_attr(portable_lifetime, allow(dead_code))]
pub(crate) mod word;

/// A lock shared by every process that maps the same file or the same named
/// block (and by forked children, for an unnamed block): a mutex for
/// coordinating access to the shared bytes.
///
/// Obtained with [`MapFile::lock`](crate::MapFile::lock). It does not depend
/// on the view staying open. Threads contend for it as processes do, even
/// when they share one `MapLock`, and any thread of the holding process may
/// release it. It is not reentrant: acquiring it twice without a release
/// waits forever (or until the timeout). When the process holding it dies,
/// the next acquirer gets it, and learns (on Linux and Windows) that it was
/// abandoned: see [`MapLock::abandoned`].
///
/// ```
/// use mmapfile::MapOptions;
///
/// let m = MapOptions::new().maximum_size(4096).open()?;
/// let lock = m.lock()?;
/// assert!(lock.acquire(None)?);
/// assert!(lock.is_locked()?);
/// assert!(!m.lock()?.try_acquire()?, "another acquirer has to wait");
/// lock.release()?;
/// # Ok::<(), mmapfile::Error>(())
/// ```
#[derive(Debug)]
pub struct MapLock {
    inner: os::Lock,
}

impl MapLock {
    pub(crate) fn new(target: os::LockTarget) -> Self {
        MapLock {
            inner: os::Lock::new(target),
        }
    }

    /// Waits for the lock: for ever with `None`, else at most `timeout`.
    /// Returns whether it was acquired.
    ///
    /// An untimed wait that a signal interrupts returns an
    /// [`Error::Io`] of kind [`std::io::ErrorKind::Interrupted`]; call again
    /// to keep waiting (or use [`MapLock::acquire_checking`], which cannot
    /// miss a signal that arrives just before the wait). Timed waits sleep
    /// in the kernel on Linux and Windows, and poll with short pauses (up
    /// to 5 ms) elsewhere.
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        self.inner.acquire(timeout)
    }

    /// Waits for the lock like [`MapLock::acquire`], calling `check` before
    /// it starts waiting and then at least every `every` while it waits;
    /// an error from `check` ends the wait and is returned. This is how a
    /// caller lets signals (Ctrl-C) in: a signal that arrives just before
    /// the wait starts cannot be missed, since the wait wakes up to call
    /// `check` again.
    ///
    /// A free lock is taken without calling `check`. An untimed wait still
    /// ends as soon as the lock is released, not at the next `check`: on
    /// Linux and Windows it sleeps in the kernel in slices of `every`;
    /// elsewhere it runs
    /// in a helper thread while this thread wakes every `every` (if `check`
    /// ends such a wait, the helper is left waiting and gives the lock
    /// straight back if it gets it).
    pub fn acquire_checking<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        self.inner.acquire_checking(timeout, every, check)
    }

    /// [`MapLock::acquire_checking`] for a caller that has just called
    /// `check` itself (and found the lock held): the wait starts without
    /// calling it first. A binding that runs signal handlers with its
    /// interpreter's lock held, before releasing it to wait, saves taking
    /// that lock back only to find nothing.
    pub fn acquire_waiting<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        self.inner.acquire_waiting(timeout, every, check)
    }

    /// Takes the lock if it is free (or its holder died); returns whether
    /// it did.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire(Some(Duration::ZERO))
    }

    /// Takes the lock only if it is free right now, as cheaply as the OS
    /// allows: on Linux and Windows without a system call, and without
    /// asking whether
    /// a holder died (which [`MapLock::try_acquire`] does). For a caller
    /// that waits with [`MapLock::acquire_checking`] when this fails.
    pub fn acquire_if_free(&self) -> Result<bool> {
        self.inner.acquire_if_free()
    }

    /// Whether the last acquisition of this `MapLock` took the lock over
    /// from a holder that died holding it (Windows' `WAIT_ABANDONED`): what
    /// it guards may be half written. Linux and Windows tell; the portable
    /// backend (macOS, the BSDs), whose `flock` cannot, always says false.
    pub fn abandoned(&self) -> bool {
        self.inner.abandoned()
    }

    /// Releases the lock. Fails with [`Error::NotHeld`] unless this
    /// `MapLock` holds it in this process (any thread may release it).
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }

    /// Whether this `MapLock` holds the lock (in this process).
    pub fn is_held(&self) -> bool {
        self.inner.is_held()
    }

    /// Whether anyone, in any process, holds the lock (a holder that died
    /// does not, on Linux).
    pub fn is_locked(&self) -> Result<bool> {
        self.inner.is_locked()
    }
}
