//! The mapping lock for backends whose OS lock is a descriptor per
//! acquisition (`flock` in the portable backend; Windows used it with a
//! mutex handle and its owner thread before its lock became a word in
//! shared memory): whoever holds the descriptor holds the lock,
//! dropping it releases the lock, and the OS releases it when the holding
//! process dies. Waits that must wake up to check for signals run in a
//! helper thread, and timed waits poll, as these OS calls cannot be timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How many times an untimed wait yields and tries again before it starts
/// its helper thread.
const SPINS_BEFORE_HELPER: u32 = 4;

/// Longest pause between two attempts of a timed acquisition.
const MAX_PAUSE: Duration = Duration::from_millis(5);

/// Where a lock lives: makes descriptors that each contend with every
/// other one, in this process or another.
pub(crate) trait DescTarget: std::fmt::Debug {
    type Desc: Desc;
    /// A fresh descriptor to acquire the lock through.
    fn description(&self) -> Result<Self::Desc>;
    /// Whether anyone, in any process, holds the lock.
    fn is_locked(&self) -> Result<bool>;
}

/// One acquisition.
pub(crate) trait Desc: std::fmt::Debug + Send + 'static {
    /// Takes the lock if it is free; returns whether it did.
    fn try_lock(&self) -> Result<bool>;
    /// Waits for the lock. A signal may interrupt the wait with an error of
    /// kind [`std::io::ErrorKind::Interrupted`].
    fn lock(&self) -> Result<()>;
    /// Releases the lock, reporting errors (dropping also releases it).
    fn unlock(self) -> Result<()>;
    /// Whether this process made it (false in a forked child).
    fn belongs_to_this_process(&self) -> bool;
    /// Whether taking the lock found that its holder had died.
    fn abandoned(&self) -> bool;
}

/// A [`crate::MapLock`] made of descriptors.
#[derive(Debug)]
pub(crate) struct DescLock<T: DescTarget> {
    target: T,
    held: Mutex<Option<T::Desc>>,
    /// Whether the last acquisition took the lock over from a holder that died.
    abandoned: AtomicBool,
}

impl<T: DescTarget> DescLock<T> {
    pub(crate) fn new(target: T) -> Self {
        DescLock {
            target,
            held: Mutex::new(None),
            abandoned: AtomicBool::new(false),
        }
    }

    fn held(&self) -> MutexGuard<'_, Option<T::Desc>> {
        // The guarded value is replaced in single statements, so a panic
        // elsewhere cannot leave it half-updated.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
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

    pub(crate) fn acquire_checking<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        let desc = self.target.description()?;
        if desc.try_lock()? {
            return Ok(self.hold(Some(desc)));
        }
        check()?;
        self.wait_checking(desc, timeout, every, check)
    }

    pub(crate) fn acquire_waiting<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        let desc = self.target.description()?;
        self.wait_checking(desc, timeout, every, check)
    }

    fn wait_checking<E: From<Error>>(
        &self,
        desc: T::Desc,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
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
    fn hold(&self, desc: Option<T::Desc>) -> bool {
        let Some(desc) = desc else {
            return false;
        };
        self.abandoned.store(desc.abandoned(), Ordering::Relaxed);
        let mut held = self.held();
        // A holding inherited through `fork` is the parent's: forget it
        // (dropping it closes only the child's copy).
        let previous = held.take_if(|desc| !desc.belongs_to_this_process());
        debug_assert!(held.is_none(), "the OS let two holders in");
        *held = Some(desc);
        drop(held);
        drop(previous);
        true
    }

    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    pub(crate) fn acquire_if_free(&self) -> Result<bool> {
        self.acquire(Some(Duration::ZERO))
    }

    pub(crate) fn release(&self) -> Result<()> {
        let desc = self.held().take();
        match desc {
            Some(desc) if desc.belongs_to_this_process() => desc.unlock(),
            // A forked child's copy: dropping it closes the child's
            // descriptor without touching the parent's lock.
            Some(_) | None => Err(Error::NotHeld),
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        self.held()
            .as_ref()
            .is_some_and(Desc::belongs_to_this_process)
    }

    pub(crate) fn is_locked(&self) -> Result<bool> {
        if self.is_held() {
            return Ok(true);
        }
        self.target.is_locked()
    }
}

/// Polls `desc` with growing pauses (up to [`MAX_PAUSE`]) until it is
/// taken (`Some`) or `deadline` passes (`None`), calling `check` at least
/// every `every`.
fn poll_until<D: Desc, E: From<Error>>(
    desc: D,
    deadline: Instant,
    every: Duration,
    check: &mut impl FnMut() -> Result<(), E>,
) -> Result<Option<D>, E> {
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
fn wait_in_helper<D: Desc, E: From<Error>>(
    desc: D,
    every: Duration,
    check: &mut impl FnMut() -> Result<(), E>,
) -> Result<D, E> {
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
