//! The cross-process lock that belongs to a mapping.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os;

/// How many times an untimed wait yields and tries again before it starts
/// its helper thread.
const SPINS_BEFORE_HELPER: u32 = 4;

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
    /// to keep waiting (or use [`MapLock::acquire_checking`], which cannot
    /// miss a signal that arrives just before the wait). Timed waits poll
    /// with short pauses (up to 5 ms).
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        self.forget_inherited();
        let desc = self.target.description()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let desc = match (timeout, deadline) {
            (Some(_), Some(deadline)) => {
                poll_until(desc, deadline, Duration::MAX, &mut || Ok::<(), Error>(()))?
            }
            // No timeout, or one too long to represent: wait in the kernel.
            _ => desc.lock().map(|()| Some(desc))?,
        };
        Ok(self.hold(desc))
    }

    /// Waits for the lock like [`MapLock::acquire`], calling `check` before
    /// it starts waiting and then at least every `every` while it waits;
    /// an error from `check` ends the wait and is returned. This is how a
    /// caller lets signals (Ctrl-C) in: a signal that arrives just before
    /// the wait starts cannot be missed, since the wait wakes up to call
    /// `check` again.
    ///
    /// A free lock is taken without calling `check`. An untimed wait still
    /// waits in the kernel, so it ends as soon as the lock is released, not
    /// at the next poll: it runs in a helper thread while this thread wakes
    /// every `every`. If `check` ends such a wait, the helper is left
    /// waiting and gives the lock straight back if it gets it. Timed waits
    /// poll as in [`MapLock::acquire`].
    pub fn acquire_checking<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        self.forget_inherited();
        let desc = self.target.description()?;
        if desc.try_lock()? {
            return Ok(self.hold(Some(desc)));
        }
        check()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let desc = match (timeout, deadline) {
            (Some(_), Some(deadline)) => poll_until(desc, deadline, every, &mut check)?,
            // No timeout, or one too long to represent.
            _ => {
                // A lock held for a moment is often free again after a few
                // yields: cheaper than starting the helper thread.
                let mut spins = 0;
                while spins < SPINS_BEFORE_HELPER && !desc.try_lock()? {
                    std::thread::yield_now();
                    spins += 1;
                }
                if spins < SPINS_BEFORE_HELPER {
                    Some(desc)
                } else {
                    Some(wait_in_helper(desc, every, &mut check)?)
                }
            }
        };
        Ok(self.hold(desc))
    }

    /// Records an acquisition (`Some`); returns whether there was one.
    fn hold(&self, desc: Option<os::LockDesc>) -> bool {
        let Some(desc) = desc else {
            return false;
        };
        let previous = self.held().replace(desc);
        debug_assert!(previous.is_none(), "the OS let two holders in");
        true
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

/// Polls `desc` with growing pauses (up to [`MAX_PAUSE`]) until it is
/// taken (`Some`) or `deadline` passes (`None`), calling `check` at least
/// every `every`.
fn poll_until<E: From<Error>>(
    desc: os::LockDesc,
    deadline: Instant,
    every: Duration,
    check: &mut impl FnMut() -> Result<(), E>,
) -> Result<Option<os::LockDesc>, E> {
    let mut pause = Duration::from_micros(50);
    let mut next_check = Instant::now().checked_add(every);
    while !desc.try_lock()? {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        if next_check.is_some_and(|at| now >= at) {
            check()?;
            next_check = now.checked_add(every);
        }
        let until = next_check.map_or(deadline, |at| at.min(deadline));
        std::thread::sleep(pause.min(until.saturating_duration_since(now)));
        pause = (pause * 2).min(MAX_PAUSE);
    }
    Ok(Some(desc))
}

/// Waits for `desc` in the kernel in a helper thread, waking every `every`
/// to call `check`. If `check` fails, the helper is abandoned: when it gets
/// the lock, nobody receives it and dropping it releases the lock.
fn wait_in_helper<E: From<Error>>(
    desc: os::LockDesc,
    every: Duration,
    check: &mut impl FnMut() -> Result<(), E>,
) -> Result<os::LockDesc, E> {
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("mmapfile-lock-wait".into())
        .spawn(move || {
            let taken = loop {
                match desc.lock() {
                    // A signal that lands on this thread: the caller's
                    // thread calls `check` on its own schedule.
                    Err(Error::Io { ref source, .. })
                        if source.kind() == std::io::ErrorKind::Interrupted => {}
                    other => break other.map(|()| desc),
                };
            };
            // An abandoned wait has no receiver: the lock (if taken) is
            // released by dropping it with the unsent message.
            let _ = sender.send(taken);
        })
        .map_err(|e| Error::io("spawn", e))?;
    loop {
        match receiver.recv_timeout(every) {
            Ok(taken) => return Ok(taken?),
            Err(mpsc::RecvTimeoutError::Timeout) => check()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::io(
                    "mmapfile-lock-wait thread",
                    std::io::Error::other("the lock's waiting thread ended unexpectedly"),
                )
                .into())
            }
        }
    }
}
