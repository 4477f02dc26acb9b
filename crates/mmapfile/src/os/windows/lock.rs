//! The mapping lock on Windows: an interlocked word in shared memory, owned
//! by a process, with a kernel event to sleep on under contention and the
//! holder's process handle to learn of its death (the Windows counterpart
//! of `unix/lock_linux.rs`).
//!
//! - **The word** (64 bits) lives in a companion section of a named block or
//!   of a file, or in this process's memory for an unnamed block
//!   (`lock_home.rs`), never in the user's bytes. 0 is free; otherwise it
//!   holds the holder's identity (`lock_owner.rs`: process id and creation
//!   time) and a [`WAITERS`] bit.
//! - **Taking it** is one compare-and-swap of 0 to this process's identity,
//!   and releasing it one swap back to 0: no system call and no thread
//!   unless someone waits. It used to be a named kernel mutex taken by an
//!   owner thread started per acquisition (a mutex belongs to a thread and
//!   is recursive, while this lock must contend even within one thread and
//!   may be released from any): 0.75 to 1.1 ms per acquire+release under
//!   Wine, against 17 ns now (docs/performance.md).
//! - **A waiter** spins a little, then marks the word ([`WAITERS`]) and
//!   sleeps in `WaitForMultipleObjects` on the lock's auto-reset event and on
//!   the holder's process handle; a release that finds [`WAITERS`] sets the
//!   event, which wakes one sleeper (or the next one to sleep: an event
//!   stays set until a waiter takes it, so no wake-up is lost between
//!   marking the word and sleeping; a wake-up that finds the lock taken
//!   again just sleeps again). That protocol, and the state of a `MapLock`,
//!   are the same on Linux and written once in `crate::lock::word`; this
//!   file is the event, the holder's liveness, and the word's bits
//!   ([`Shared`]'s `LockWord`).
//! - **A holder that dies** signals its process handle: the waiter wakes at
//!   once, finds the process ended (or its id given to another process, told
//!   apart by the creation time) and takes the lock over from it, and is told
//!   the lock was abandoned (the data may be half written), as a mutex's
//!   `WAIT_ABANDONED` told before. A holder Windows will not open
//!   (`ERROR_ACCESS_DENIED`: another user's process) counts as alive, and is
//!   asked again every [`LIVENESS_SLICE`].
//!
//! Ownership is a process's, not a thread's: two acquisitions contend even
//! in one thread, and any thread may release. Windows has no `fork`, so an
//! acquisition never reaches another process.
//!
//! Why the holder's death is learnt from its process handle rather than
//! from a mutex held beside the word (which Windows marks abandoned): a
//! mutex belongs to the thread that took it, so holding one for as long as
//! the lock would bring back a thread per acquisition, or tie the lock to
//! the acquiring thread. A process handle needs nothing from the holder, and
//! Windows signals it when the process ends however it ends. A thread that
//! ends while its process lives does not free the lock, as on Linux.
//!
//! The word's section lives while some process has a lock object of the
//! mapping (the mutex did too): if the holder that died was the only one,
//! the next `lock()` makes a fresh, free word and is not told.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HANDLE, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{SetEvent, WaitForMultipleObjects};

use super::sys::{check, Handle};
use crate::error::{Error, Result};
use crate::lock::word::{LockWord, WordLock, LONGEST_WAIT};

#[path = "lock_home.rs"]
mod home;
#[path = "lock_owner.rs"]
mod owner;

use home::Home;
use owner::{Holder, OWNER, WAITERS};

/// How long a waiter sleeps, at most, before it asks again about a holder
/// it cannot watch (another user's process). A holder it can watch wakes it
/// by dying.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// Where a mapping's lock lives (see the module's documentation): shared by
/// every `lock()` of one mapping in this process, and kept alive by each
/// `MapLock`, so it outlives closing the map.
#[derive(Debug, Clone)]
pub(crate) struct LockTarget {
    shared: Arc<Shared>,
}

/// This process's side of one lock (shared by its `MapLock`s): where the
/// word is, the event, the holder last watched; what Windows does with the
/// word is its `LockWord`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Where the word is.
    home: Home,
    /// The auto-reset event that waiters sleep on.
    wake: Handle,
    /// The last holder this process watched, and its process handle: a
    /// waiter that finds the same holder again (two processes handing the
    /// lock back and forth) sleeps at once, without asking Windows about it
    /// anew (three calls, each a round trip to the server under Wine). A
    /// holder that died since is found out by the sleep, which its handle
    /// ends at once.
    watched: Mutex<Option<(u64, Arc<Handle>)>>,
}

/// What ended a sleep.
enum Woken {
    /// The event: a release (or a wake-up nobody took before).
    Event,
    /// The holder's process ended.
    HolderEnded,
    /// The time ran out.
    Timeout,
}

/// The sleep's length in whole milliseconds, rounded up, so that a timed
/// wait never ends early.
fn millis(d: Duration) -> u32 {
    let ms = d.min(LONGEST_WAIT).as_nanos().div_ceil(1_000_000);
    // LONGEST_WAIT bounds it far below u32::MAX.
    u32::try_from(ms).unwrap_or(u32::MAX - 1)
}

impl Shared {
    fn new(home: Home, wake: Handle) -> Shared {
        Shared {
            home,
            wake,
            watched: Mutex::new(None),
        }
    }

    /// [`owner::holder`], through the last watched holder.
    fn holder(&self, holder: u64, me: u64) -> Result<Holder> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((who, process)) = watched.as_ref() {
            if *who == holder {
                return Ok(Holder::Alive(Some(Arc::clone(process))));
            }
        }
        let found = owner::holder(holder, me)?;
        if let Holder::Alive(Some(process)) = &found {
            *watched = Some((holder, Arc::clone(process)));
        }
        Ok(found)
    }

    /// Sleeps at most `timeout` on the event and, if given, the holder's
    /// process handle.
    fn sleep(&self, process: Option<&Handle>, timeout: Duration) -> Result<Woken> {
        let handles: [HANDLE; 2] = [self.wake.0, process.map_or(self.wake.0, |p| p.0)];
        let count = if process.is_some() { 2 } else { 1 };
        // SAFETY: the first `count` handles are open (the event and a
        // process handle with SYNCHRONIZE), and the array outlives the call.
        let woken = unsafe { WaitForMultipleObjects(count, handles.as_ptr(), 0, millis(timeout)) };
        match woken {
            WAIT_OBJECT_0 => Ok(Woken::Event),
            w if w == WAIT_OBJECT_0 + 1 => Ok(Woken::HolderEnded),
            WAIT_TIMEOUT => Ok(Woken::Timeout),
            WAIT_FAILED => Err(Error::last_os("WaitForMultipleObjects")),
            other => Err(Error::io(
                "WaitForMultipleObjects",
                std::io::Error::other(format!("unexpected result {other:#x}")),
            )),
        }
    }
}

impl LockWord for Shared {
    type Bits = u64;
    type Word = AtomicU64;
    const OWNER: u64 = OWNER;
    const WAITERS: u64 = WAITERS;
    /// None: a waiter learns of a holder's death from its process handle.
    const ABANDONED: u64 = 0;
    /// No: a wake-up sets an auto-reset event, which stays set when nobody
    /// sleeps (the next sleeper then wakes for nothing). Under Wine the
    /// hand-off measured the same either way, within its noise (10,000
    /// turns, 4 rounds each: 1.4 to 25.8 us a turn looking alone, 1.6 to
    /// 14.6 marking first, `multiprocessing.Lock` 38 to 55 us), and Wine's
    /// timings say little about Windows: so it stays as first measured.
    const MARK_BEFORE_LOOKING: bool = false;

    /// Nothing: a wait asks about the holder anew each time.
    type Wait = ();
    const FIRST_WAIT: () = ();

    #[inline]
    fn word(&self) -> &AtomicU64 {
        self.home.word()
    }

    /// This process's identity.
    #[inline]
    fn me(&self) -> Result<u64> {
        owner::me()
    }

    /// A constant: without `fork`, an acquisition never reaches another
    /// process.
    #[inline]
    fn holder_token() -> u32 {
        1
    }

    fn try_lock(&self) -> Result<Option<bool>> {
        self.lock_for(Duration::ZERO, &mut ())
    }

    /// Spins, then sleeps on the event and the holder's process handle
    /// (see the module's documentation); a zero `timeout` only tries, and
    /// takes the lock over from a holder that died.
    fn lock_for(&self, timeout: Duration, _: &mut ()) -> Result<Option<bool>> {
        let me = owner::me()?;
        if !timeout.is_zero() {
            if let Some(abandoned) = self.spin(me) {
                return Ok(Some(abandoned));
            }
        }
        let word = self.word();
        let start = Instant::now();
        let mut waiters = 0;
        // The holder last asked about, and what Windows said of it.
        let mut asked: Option<(u64, Holder)> = None;
        loop {
            let w = word.load(Ordering::Relaxed);
            if let Some(abandoned) = self.take(me, w, waiters, false) {
                return Ok(Some(abandoned));
            }
            let holder = w & OWNER;
            if holder == 0 {
                continue;
            }
            if asked.as_ref().is_none_or(|(who, _)| *who != holder) {
                asked = Some((holder, self.holder(holder, me)?));
            }
            let process = match asked.as_ref().map(|(_, what)| what) {
                Some(Holder::Dead) => {
                    if let Some(abandoned) = self.take(me, w, waiters, true) {
                        return Ok(Some(abandoned));
                    }
                    continue;
                }
                Some(Holder::Alive(process)) => process.as_deref(),
                Some(Holder::Me) | None => None,
            };
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            if !self.mark_waiters(w) {
                continue;
            }
            // From now on, taking the lock keeps the wake-up duty: other
            // waiters may sleep behind us.
            waiters = WAITERS;
            // A holder whose handle Windows refused is asked about again
            // after a slice; one in this process cannot die while we wait.
            let unwatched = matches!(asked, Some((_, Holder::Alive(None))));
            let slice = if unwatched {
                left.min(LIVENESS_SLICE)
            } else {
                left
            };
            match self.sleep(process, slice)? {
                Woken::Event => {}
                Woken::HolderEnded => {
                    // Its handle would keep the ended process's object.
                    let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
                    watched.take_if(|(who, _)| *who == holder);
                    asked = Some((holder, Holder::Dead));
                }
                Woken::Timeout if unwatched => asked = None,
                Woken::Timeout => {}
            }
        }
    }

    fn wake_one(&self) -> Result<()> {
        // SAFETY: `wake` is an open event handle.
        check("SetEvent", unsafe { SetEvent(self.wake.0) })
    }

    fn is_locked(&self) -> Result<bool> {
        let holder = self.word().load(Ordering::Acquire) & OWNER;
        if holder == 0 {
            return Ok(false);
        }
        Ok(!matches!(
            owner::holder(holder, owner::me()?)?,
            Holder::Dead
        ))
    }
}

impl LockTarget {
    fn new(shared: Shared) -> LockTarget {
        LockTarget {
            shared: Arc::new(shared),
        }
    }
}

impl Deref for LockTarget {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// A `MapLock` on Windows. Two `MapLock`s of one process share its
/// identity, so the word alone cannot tell them apart: the `WordLock`'s
/// holder does.
pub(crate) type Lock = WordLock<LockTarget>;
