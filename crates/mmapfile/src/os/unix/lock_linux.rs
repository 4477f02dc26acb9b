//! The mapping lock on Linux: a futex word in shared memory, owned by a
//! process, whose death the kernel tells through a record lock.
//!
//! - **The word** lives in a page that every user of the lock maps, in its
//!   first 256 bytes (`control::LOCK_AREA`), and where depends on the object
//!   (`lock_home.rs`): an unnamed block's control page (`control.rs`), shared
//!   with forked children; a named block's trailer page, past the user's
//!   bytes in its System V segment (`segment.rs`), which dies with the block;
//!   and for a file mapping, or a named block kept in a `/dev/shm` file (where
//!   no segment can be had), whose objects other programs map from byte 0, a
//!   companion: a one-page shared-memory object named after the device and
//!   inode of the file or of the block's object
//!   (`/dev/shm/mmapfile-lock.<dev>.<ino>`), kept alive by the lifetime
//!   protocol of named blocks, so nothing is left next to the user's file.
//! - **Taking it** is one compare-and-swap of 0 to the taker's *slot*, and
//!   releasing it one swap back to 0: no system call unless someone waits.
//!   A waiter marks the word ([`WAITERS`]) and sleeps on it with
//!   `FUTEX_WAIT`; the release then wakes one waiter (`FUTEX_WAKE`). That
//!   protocol, and the state of a `MapLock`, are the same on Windows and
//!   written once in `crate::lock::word`; this file is the futex, the
//!   liveness asked of the kernel, and the word's bits ([`Shared`]'s
//!   `LockWord`).
//! - **A slot** (`lock_slots.rs`) is a number that stands for one user of
//!   the lock (one process's target), live as long as that user holds an OFD
//!   write lock on byte `SLOT_BASE + slot` of a file every user opens: the
//!   block's record for a segment block, else the object of the page. The
//!   kernel drops that record lock when the process dies (SIGKILL included),
//!   so a waiter whose sleep ran out ([`LIVENESS_SLICE`]) asks the kernel
//!   (`F_OFD_GETLK`) whether the holder's slot is still held; if not, the
//!   holder died and the waiter takes the lock over and is told it was
//!   abandoned (the data may be half written), as Windows tells
//!   `WAIT_ABANDONED`.
//!
//! Ownership is a process's, not a thread's (any thread may release, as
//! before): the robust futex lists of the kernel are per thread, and glibc
//! owns each thread's, so they are not used. A forked child shares its
//! parent's descriptors, which would keep the parent's slots alive after
//! the parent died: a `pthread_atfork` handler closes the child's copies
//! at once, and the child takes a slot of its own when it first acquires.

use std::ffi::CString;
use std::io;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::control::LOCK_AREA;
use super::{lifetime, page_size};
use crate::error::{Error, Result};
use crate::lock::word::{LockWord, WordLock};

#[path = "lock_home.rs"]
mod home;
#[path = "lock_slots.rs"]
mod slots;

pub(crate) use home::collect_companions;
use slots::{current_pid, SlotFd};

/// The slot of the holder, in the word; 0 when the lock is free.
const OWNER: u32 = (1 << 30) - 1;
/// In a free word: its last holder died holding it.
const ABANDONED: u32 = 1 << 30;
/// Someone may sleep on the word: the release must wake one.
const WAITERS: u32 = 1 << 31;

/// How long a waiter sleeps, at most, before it asks whether the holder is
/// still alive: how late a holder's death is noticed when nobody else wakes
/// the waiter. A wait starts with [`FIRST_SLICE`] and doubles it up to
/// this, so a holder that was already dead is found out at once, and a
/// live one is asked about a few times, then every 50 ms.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);
const FIRST_SLICE: Duration = Duration::from_millis(1);

/// What a `Backing` keeps of its lock: the target, made on first use.
pub(crate) type LockCache = Mutex<Option<LockTarget>>;

/// The lock's words, at the start of the lock area.
#[repr(C)]
struct Words {
    /// Owner slot | [`ABANDONED`] | [`WAITERS`].
    word: AtomicU32,
    /// The next slot number to try.
    next_slot: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Words>() <= LOCK_AREA.end - LOCK_AREA.start);

/// Where a mapping's lock lives (see the module's documentation): shared by
/// every `lock()` of one [`super::Backing`] in this process, and kept
/// alive by each `MapLock`, so it outlives closing the map.
#[derive(Debug, Clone)]
pub(crate) struct LockTarget {
    shared: Arc<Shared>,
}

/// This process's side of one lock (shared by its `MapLock`s): where the
/// word is and this process's slot; what Linux does with the word is its
/// `LockWord`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The object, through an open file description of our own that never
    /// holds a slot: slots are claimed through fresh ones, and this one
    /// asks whether a slot is held. For a companion, it is the holder's
    /// descriptor of the lifetime protocol.
    obj: OwnedFd,
    /// The mapped page whose lock area holds [`Words`].
    page: *mut u8,
    /// A companion's name, left as a holder when dropped by `creator`.
    companion: Option<CString>,
    creator: u32,
    /// `(pid << 32) | slot` of this process's slot, 0 before it has one.
    slot: AtomicU64,
    /// The descriptor holding the slot.
    slot_fd: Mutex<Option<SlotFd>>,
}

// SAFETY: `page` is a shared mapping owned by this value (unmapped on
// drop) and only accessed through the atomics in `Words`.
unsafe impl Send for Shared {}
// SAFETY: as above; every access to the page is atomic.
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close_slot();
        // SAFETY: `page` is a mapping of one page made for this value
        // (`lock_home.rs`) and unmapped only here; a failure could only
        // leak address space.
        unsafe { libc::munmap(self.page.cast(), page_size()) };
        if let Some(key) = &self.companion {
            if self.creator == current_pid() {
                // An error cannot be reported from drop: at worst an unused
                // companion is left, which the next user's open removes.
                let _ = lifetime::release(&self.obj, key, true);
            }
        }
    }
}

/// `FUTEX_WAIT` on a word shared between processes: sleeps while it holds
/// `expected`, at most `timeout`.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> io::Result<()> {
    // At most 2**31 - 1 seconds fits every C library's time_t (waits here
    // are sliced far shorter anyway).
    let secs = timeout.as_secs().min(i32::MAX as u64);
    let ts = libc::timespec {
        tv_sec: secs.try_into().unwrap_or_default(),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: the word is a live, aligned u32 in a shared mapping; `ts` is a
    // valid timespec for the call; the other arguments are unused.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `FUTEX_WAKE`: wakes up to `count` sleepers on the word, in any process.
fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: the word is a live, aligned u32 in a shared mapping; the
    // other arguments are unused. A failure could only be EFAULT, which
    // the live mapping rules out.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
}

impl Shared {
    fn words(&self) -> &Words {
        // SAFETY: the page is mapped for as long as `self` lives, page
        // aligned (so aligned for `Words`), and only accessed atomically.
        unsafe { &*self.page.add(LOCK_AREA.start).cast::<Words>() }
    }
}

impl LockWord for Shared {
    type Bits = u32;
    type Word = AtomicU32;
    const OWNER: u32 = OWNER;
    const WAITERS: u32 = WAITERS;
    const ABANDONED: u32 = ABANDONED;
    const MARK_BEFORE_LOOKING: bool = true;

    /// How long the next sleep lasts at most before the waiter asks whether
    /// the holder is alive (see [`LIVENESS_SLICE`]).
    type Wait = Duration;
    const FIRST_WAIT: Duration = FIRST_SLICE;

    #[inline]
    fn word(&self) -> &AtomicU32 {
        &self.words().word
    }

    /// This process's slot.
    #[inline]
    fn me(&self) -> Result<u32> {
        self.slot()
    }

    /// The pid: a forked child does not hold what its parent acquired.
    #[inline]
    fn holder_token() -> u32 {
        current_pid()
    }

    fn try_lock(&self) -> Result<Option<bool>> {
        let me = self.slot()?;
        if let Some(abandoned) = self.take_if_free(me) {
            return Ok(Some(abandoned));
        }
        let word = self.word();
        loop {
            let w = word.load(Ordering::Relaxed);
            let owner = w & OWNER;
            let dead = owner != 0 && !self.alive(owner)?;
            if owner != 0 && !dead {
                return Ok(None);
            }
            if let Some(abandoned) = self.take(me, w, 0, dead) {
                return Ok(Some(abandoned));
            }
        }
    }

    /// Spins, then sleeps on the futex (see the module's documentation),
    /// at most `slice` at a time before asking whether the holder is alive
    /// (see [`LIVENESS_SLICE`]; `slice` grows for the next sleep, and a
    /// caller that waits again passes it on). A signal ends the wait with
    /// an error of kind [`io::ErrorKind::Interrupted`].
    fn lock_for(&self, timeout: Duration, slice: &mut Duration) -> Result<Option<bool>> {
        let me = self.slot()?;
        if let Some(abandoned) = self.spin(me) {
            return Ok(Some(abandoned));
        }
        let word = self.word();
        let start = Instant::now();
        let mut waiters = 0;
        loop {
            let w = word.load(Ordering::Relaxed);
            if let Some(abandoned) = self.take(me, w, waiters, false) {
                return Ok(Some(abandoned));
            }
            if w & OWNER == 0 || !self.mark_waiters(w) {
                continue;
            }
            let left = timeout.saturating_sub(start.elapsed());
            let slept = if left.is_zero() {
                Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
            } else {
                futex_wait(word, w | WAITERS, left.min(*slice))
            };
            // From now on, taking the lock keeps the wake-up duty: other
            // waiters may sleep behind us.
            waiters = WAITERS;
            match slept {
                Ok(()) => {}
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => {}
                    Some(libc::ETIMEDOUT) => {
                        *slice = (*slice * 2).min(LIVENESS_SLICE);
                        // Nobody woke us: is the holder still alive?
                        let w = word.load(Ordering::Relaxed);
                        let owner = w & OWNER;
                        if owner != 0 && !self.alive(owner)? {
                            if let Some(abandoned) = self.take(me, w, waiters, true) {
                                return Ok(Some(abandoned));
                            }
                            continue;
                        }
                        if left.is_zero() {
                            return Ok(None);
                        }
                    }
                    Some(libc::EINTR) => return Err(Error::io("futex", e)),
                    _ => return Err(Error::io("futex", e)),
                },
            }
        }
    }

    fn wake_one(&self) -> Result<()> {
        futex_wake(self.word(), 1);
        Ok(())
    }

    fn is_locked(&self) -> Result<bool> {
        let owner = self.word().load(Ordering::Acquire) & OWNER;
        Ok(owner != 0 && self.alive(owner)?)
    }
}

impl Deref for LockTarget {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// A `MapLock` on Linux. Two `MapLock`s of one process (of one map) share
/// a slot, so the word alone cannot tell them apart: the `WordLock`'s
/// holder (the pid) does.
pub(crate) type Lock = WordLock<LockTarget>;
