//! The cross-process lock that belongs to a mapping.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os;

/// Longest pause between two attempts of a timed acquisition.
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// A lock shared by every process that maps the same file or the same named
/// block (and by forked children, for an unnamed block): a mutex for
/// coordinating access to the shared bytes.
///
/// Obtained with [`MapFile::lock`](crate::MapFile::lock). It does not depend
/// on the view staying open. Threads contend for it as processes do, even
/// when they share one `MapLock`. It is not reentrant: acquiring it twice
/// without a release waits forever (or until the timeout). When the process
/// holding it dies, the OS releases it.
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
    target: os::LockTarget,
    held: Mutex<Option<os::LockDesc>>,
}

impl MapLock {
    pub(crate) fn new(target: os::LockTarget) -> Self {
        MapLock {
            target,
            held: Mutex::new(None),
        }
    }

    fn held(&self) -> MutexGuard<'_, Option<os::LockDesc>> {
        // The guarded value is replaced in single statements, so a panic
        // elsewhere cannot leave it half-updated.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the lock: for ever with `None`, else at most `timeout`.
    /// Returns whether it was acquired.
    ///
    /// An untimed wait that a signal interrupts returns an
    /// [`Error::Io`] of kind [`std::io::ErrorKind::Interrupted`]; call again
    /// to keep waiting. Timed waits poll with short pauses (up to 5 ms).
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        self.forget_inherited();
        let desc = self.target.description()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        match (timeout, deadline) {
            (Some(_), Some(deadline)) => {
                let mut pause = Duration::from_micros(50);
                while !desc.try_lock()? {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
            // No timeout, or one too long to represent: wait in the kernel.
            _ => desc.lock()?,
        }
        let previous = self.held().replace(desc);
        debug_assert!(previous.is_none(), "the OS let two holders in");
        Ok(true)
    }

    /// Takes the lock if it is free; returns whether it did.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire(Some(Duration::ZERO))
    }

    /// Releases the lock. Fails with [`Error::NotHeld`] unless this
    /// `MapLock` holds it in this process (any thread may release it).
    pub fn release(&self) -> Result<()> {
        let desc = self.held().take();
        match desc {
            Some(desc) if desc.belongs_to_this_process() => desc.unlock(),
            // A forked child's copy: dropping it closes the child's
            // descriptor without touching the parent's lock.
            Some(_) | None => Err(Error::NotHeld),
        }
    }

    /// Whether this `MapLock` holds the lock (in this process).
    pub fn is_held(&self) -> bool {
        self.held()
            .as_ref()
            .is_some_and(os::LockDesc::belongs_to_this_process)
    }

    /// Whether anyone, in any process, holds the lock.
    pub fn is_locked(&self) -> Result<bool> {
        if self.is_held() {
            return Ok(true);
        }
        self.target.is_locked()
    }

    /// Drops a holding inherited through `fork`: it belongs to the parent,
    /// and the child must contend like any other process.
    fn forget_inherited(&self) {
        let mut held = self.held();
        if held
            .as_ref()
            .is_some_and(|desc| !desc.belongs_to_this_process())
        {
            *held = None;
        }
    }
}
