//! The mapping lock of the backends whose lock is a word in shared memory
//! (Linux: a futex word, `os/unix/lock_linux.rs`; Windows: an interlocked
//! word with an event to sleep on, `os/windows/lock.rs`): what is the same
//! on both, written once here.
//!
//! - **The word protocol**: the word is 0 when free, else it holds the
//!   holder's mark ([`LockWord::OWNER`]) and a [`LockWord::WAITERS`] bit.
//!   Taking it is one compare-and-swap of 0 to the taker's mark, releasing
//!   it one swap back to 0; a waiter looks at the word [`SPINS`] times,
//!   then marks it [`LockWord::WAITERS`] and sleeps, and a release that
//!   finds that bit wakes one sleeper. The word's width (a futex is 32
//!   bits, a Windows holder's identity takes 64), how to sleep and wake,
//!   how a holder's death is learnt and where the word lives are the
//!   backend's ([`LockWord`]).
//! - **A `MapLock`'s state** ([`WordLock`]): whether this process holds the
//!   lock through it (two `MapLock`s of one process put the same mark in
//!   the word, so the word alone cannot tell them apart), whether its last
//!   acquisition found the holder dead, and how `acquire`,
//!   `acquire_checking` and `acquire_waiting` turn into the backend's timed
//!   waits.

use std::ops::{BitAnd, BitOr, Deref};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How many times a waiter looks at the word before it sleeps: a holder
/// often releases within a microsecond or two (a short critical section on
/// another core), and spinning that long is cheaper than sleeping and being
/// woken by a system call on each side.
const SPINS: u32 = 40;

/// How many of this process's coming waits mark the word before they look
/// (where [`LockWord::MARK_BEFORE_LOOKING`]): set to [`MARKED_AFTER_A_MISS`]
/// when a wait's looks, unmarked, missed the release, and counted down by
/// each marked wait; the first unmarked wait after that tries looking
/// alone again. Whether looks alone catch a release depends on how far
/// apart the two processes' cores are, which is the machine's doing and
/// the same for every lock (on this project's 2-vCPU machines a cache
/// line's round trip took 100 ns in some minutes and 400 ns in others), so
/// one count serves the process.
static MARKED_WAITS: AtomicU32 = AtomicU32::new(0);

/// See [`MARKED_WAITS`]: enough that a failed unmarked try costs little
/// (about 1 us in 256 waits) while the cores stay far apart.
const MARKED_AFTER_A_MISS: u32 = 256;

/// The longest single wait of an untimed acquisition, which then waits
/// again: an hour (well below Windows' `INFINITE`, `u32::MAX` ms).
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// A value of a lock word: `u32` (what a futex holds) or `u64`.
pub(crate) trait Bits: Copy + Eq + BitAnd<Output = Self> + BitOr<Output = Self> {
    /// A free word, or no bit.
    const ZERO: Self;
}

/// What a compare-and-swap returns: the value it found, as `Ok` if it
/// swapped.
type Swap<B> = std::result::Result<B, B>;

/// An atomic `B` that a lock word can be: `AtomicU32` or `AtomicU64`.
pub(crate) trait Atomic<B> {
    fn load(&self, order: Ordering) -> B;
    fn compare_exchange(&self, old: B, new: B, success: Ordering, failure: Ordering) -> Swap<B>;
    fn compare_exchange_weak(
        &self,
        old: B,
        new: B,
        success: Ordering,
        failure: Ordering,
    ) -> Swap<B>;
}

/// [`Bits`] and [`Atomic`] for an integer and its atomic, each method the
/// atomic's own.
macro_rules! atomic {
    ($atomic:ty, $bits:ty) => {
        impl Bits for $bits {
            const ZERO: $bits = 0;
        }
        impl Atomic<$bits> for $atomic {
            #[inline]
            fn load(&self, order: Ordering) -> $bits {
                <$atomic>::load(self, order)
            }
            atomic!(@swap $atomic, $bits, compare_exchange);
            atomic!(@swap $atomic, $bits, compare_exchange_weak);
        }
    };
    (@swap $atomic:ty, $bits:ty, $swap:ident) => {
        #[inline]
        fn $swap(&self, old: $bits, new: $bits, success: Ordering, failure: Ordering) -> Swap<$bits> {
            <$atomic>::$swap(self, old, new, success, failure)
        }
    };
}

atomic!(AtomicU32, u32);
atomic!(AtomicU64, u64);

/// What a backend does for a lock word: where it is, who this process is in
/// it, how a waiter sleeps and learns of a holder's death, and how a
/// release wakes a sleeper. The protocol on the word itself is written
/// here once (the provided methods).
pub(crate) trait LockWord {
    /// What the word holds.
    type Bits: Bits;
    /// The atomic integer the word is.
    type Word: Atomic<Self::Bits>;
    /// The holder's mark, in the word (0 when the lock is free).
    const OWNER: Self::Bits;
    /// Someone may sleep on the word: the release must wake one.
    const WAITERS: Self::Bits;
    /// In a free word: its last holder died holding it (0 where the
    /// backend has no such bit and learns of a death only by looking).
    const ABANDONED: Self::Bits;

    /// Whether a waiter whose looks missed lately ([`MARKED_WAITS`]) marks
    /// the word [`LockWord::WAITERS`] before it starts looking, not only
    /// before it sleeps. The release then takes its slow path (a wake-up,
    /// which finds nobody asleep) and the word stays free for that long:
    /// time for a waiter on a far core to see it free and take it. Without
    /// the mark, a holder that releases and takes the lock again in a loop
    /// takes it back before such a waiter sees it free, and the waiter
    /// looks in vain, then sleeps. Worth it where a wake-up that finds
    /// nobody costs a system call and nothing more (a futex), not where it
    /// leaves a state behind.
    const MARK_BEFORE_LOOKING: bool;

    /// What one acquisition's wait carries from one [`LockWord::lock_for`]
    /// to the next (Linux: how long to sleep before asking whether the
    /// holder lives), starting from [`LockWord::FIRST_WAIT`].
    type Wait;
    const FIRST_WAIT: Self::Wait;

    /// The word, in memory that every user of the lock maps.
    fn word(&self) -> &Self::Word;
    /// This process's mark in the word (never 0, never a flag bit).
    fn me(&self) -> Result<Self::Bits>;
    /// What a [`WordLock`] records as its holder: never 0; the process id
    /// where a forked child must not hold its parent's acquisition (which
    /// the child sees in its copy of the `WordLock`), any constant where
    /// there is no `fork`.
    fn holder_token() -> u32;
    /// Takes the lock if it is free, or if its holder died; returns
    /// `Some(abandoned)` if taken.
    fn try_lock(&self) -> Result<Option<bool>>;
    /// Waits at most `timeout` for the lock, taking it over from a holder
    /// that dies; returns `Some(abandoned)` if taken. A signal may end the
    /// wait with an error of kind [`std::io::ErrorKind::Interrupted`].
    fn lock_for(&self, timeout: Duration, wait: &mut Self::Wait) -> Result<Option<bool>>;
    /// Wakes one sleeper (or the next one to sleep), after a release that
    /// found [`LockWord::WAITERS`].
    fn wake_one(&self) -> Result<()>;
    /// Whether anyone, in any process, holds the lock. A holder that died
    /// does not.
    fn is_locked(&self) -> Result<bool>;

    /// Takes the word from its free state `w`, or from a dead holder's;
    /// `waiters` keeps the wake-up duty of a waiter that slept. Returns
    /// `Some(abandoned)` if taken.
    #[inline]
    fn take(&self, me: Self::Bits, w: Self::Bits, waiters: Self::Bits, dead: bool) -> Option<bool> {
        let zero = Self::Bits::ZERO;
        if w & Self::OWNER != zero && !dead {
            return None;
        }
        let new = me | waiters | (w & Self::WAITERS);
        self.word()
            .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| dead || w & Self::ABANDONED != zero)
    }

    /// Takes the lock only if the word is free right now: one load and one
    /// compare-and-swap, without asking whether a holder died.
    #[inline]
    fn take_if_free(&self, me: Self::Bits) -> Option<bool> {
        let w = self.word().load(Ordering::Relaxed);
        self.take(me, w, Self::Bits::ZERO, false)
    }

    /// Looks at the word [`SPINS`] times, taking it if it is seen free:
    /// what a waiter does before it sleeps. Where
    /// [`LockWord::MARK_BEFORE_LOOKING`] and this process's looks missed
    /// lately ([`MARKED_WAITS`]), it first marks a held word
    /// [`LockWord::WAITERS`].
    fn spin(&self, me: Self::Bits) -> Option<bool> {
        let word = self.word();
        let marked = Self::MARK_BEFORE_LOOKING && {
            // Counted down without a read-modify-write: two threads that
            // race here only make one marked wait more or fewer.
            let left = MARKED_WAITS.load(Ordering::Relaxed);
            if left > 0 {
                MARKED_WAITS.store(left - 1, Ordering::Relaxed);
            }
            left > 0
        };
        if marked {
            let w = word.load(Ordering::Relaxed);
            if w & Self::OWNER != Self::Bits::ZERO {
                self.mark_waiters(w);
            }
        }
        for _ in 0..SPINS {
            std::hint::spin_loop();
            let w = word.load(Ordering::Relaxed);
            if w & Self::OWNER == Self::Bits::ZERO {
                if let Some(abandoned) = self.take(me, w, Self::Bits::ZERO, false) {
                    return Some(abandoned);
                }
            }
        }
        if Self::MARK_BEFORE_LOOKING && !marked {
            MARKED_WAITS.store(MARKED_AFTER_A_MISS, Ordering::Relaxed);
        }
        None
    }

    /// Marks the held word `w` as slept on ([`LockWord::WAITERS`]), before
    /// the caller sleeps on it; false if the word changed meanwhile (look
    /// at it again).
    fn mark_waiters(&self, w: Self::Bits) -> bool {
        w & Self::WAITERS != Self::Bits::ZERO
            || self
                .word()
                .compare_exchange(w, w | Self::WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Releases the lock held by `me`, waking a sleeper if one marked the
    /// word.
    #[inline]
    fn unlock(&self, me: Self::Bits) -> Result<()> {
        let word = self.word();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & Self::OWNER != me {
                return Err(Error::NotHeld);
            }
            match word.compare_exchange_weak(
                w,
                Self::Bits::ZERO,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if w & Self::WAITERS != Self::Bits::ZERO {
            self.wake_one()?;
        }
        Ok(())
    }
}

/// A `MapLock` whose lock is a word (`os::Lock` on Linux and Windows):
/// which process holds the lock through it, if any, and whether its last
/// acquisition found the holder dead. `T` is the backend's `LockTarget`,
/// which leads to its [`LockWord`].
#[derive(Debug)]
pub(crate) struct WordLock<T: Deref<Target: LockWord>> {
    target: T,
    /// The [`LockWord::holder_token`] of the process that holds the lock
    /// through this `MapLock`, 0 if none. A forked child sees its parent's
    /// here, which is not its own: it does not hold the lock.
    holder: AtomicU32,
    /// Whether the last acquisition found its holder dead.
    abandoned: AtomicBool,
}

impl<T: Deref<Target: LockWord>> WordLock<T> {
    pub(crate) fn new(target: T) -> Self {
        WordLock {
            target,
            holder: AtomicU32::new(0),
            abandoned: AtomicBool::new(false),
        }
    }

    /// Records an acquisition (`Some(abandoned)`); returns whether there
    /// was one.
    #[inline]
    fn hold(&self, taken: Option<bool>) -> bool {
        let Some(abandoned) = taken else {
            return false;
        };
        self.abandoned.store(abandoned, Ordering::Relaxed);
        self.holder
            .store(T::Target::holder_token(), Ordering::Relaxed);
        true
    }

    #[inline]
    pub(crate) fn acquire_if_free(&self) -> Result<bool> {
        let me = self.target.me()?;
        Ok(self.hold(self.target.take_if_free(me)))
    }

    pub(crate) fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        // A free lock costs no clock reading either.
        if self.acquire_if_free()? {
            return Ok(true);
        }
        let word = &*self.target;
        match timeout {
            Some(Duration::ZERO) => Ok(self.hold(word.try_lock()?)),
            Some(timeout) => Ok(self.hold(word.lock_for(timeout, &mut { T::Target::FIRST_WAIT })?)),
            None => {
                let mut wait = T::Target::FIRST_WAIT;
                loop {
                    if let Some(abandoned) = word.lock_for(LONGEST_WAIT, &mut wait)? {
                        return Ok(self.hold(Some(abandoned)));
                    }
                }
            }
        }
    }

    /// Waits in timed sleeps of the kernel, calling `check` between them,
    /// at least every `every`. A release (or, where the backend watches
    /// the holder, its death) wakes the sleeper at once; the slices only
    /// bound how late `check` runs.
    pub(crate) fn acquire_checking<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.acquire_if_free()? {
            return Ok(true);
        }
        check()?;
        self.acquire_waiting(timeout, every, check)
    }

    /// [`WordLock::acquire_checking`] without the first `check`, which the
    /// caller has just made.
    pub(crate) fn acquire_waiting<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut wait = T::Target::FIRST_WAIT;
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(every),
                None => every,
            };
            match self.target.lock_for(slice, &mut wait) {
                Ok(Some(abandoned)) => return Ok(self.hold(Some(abandoned))),
                Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
                Ok(None) => {}
                // A signal: `check` runs its handlers.
                Err(Error::Io { ref source, .. })
                    if source.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            check()?;
        }
    }

    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn release(&self) -> Result<()> {
        if self
            .holder
            .compare_exchange(
                T::Target::holder_token(),
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(Error::NotHeld);
        }
        self.target.unlock(self.target.me()?)
    }

    pub(crate) fn is_held(&self) -> bool {
        self.holder.load(Ordering::Relaxed) == T::Target::holder_token()
    }

    pub(crate) fn is_locked(&self) -> Result<bool> {
        Ok(self.is_held() || self.target.is_locked()?)
    }
}

impl<T: Deref<Target: LockWord>> Drop for WordLock<T> {
    fn drop(&mut self) {
        // Dropping a held lock releases it; an error (the lock was not ours
        // any more) has nobody to go to.
        if self.is_held() {
            let _ = self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word in this test's memory, held by mark 1, and how many wake-ups
    /// its releases made; `MARK` is the backend's
    /// [`LockWord::MARK_BEFORE_LOOKING`].
    struct Held<const MARK: bool>(AtomicU32, AtomicU32);

    impl<const MARK: bool> Held<MARK> {
        fn new() -> Self {
            Held(AtomicU32::new(1), AtomicU32::new(0))
        }
    }

    impl<const MARK: bool> LockWord for Held<MARK> {
        type Bits = u32;
        type Word = AtomicU32;
        const OWNER: u32 = 0xff;
        const WAITERS: u32 = 0x100;
        const ABANDONED: u32 = 0;
        const MARK_BEFORE_LOOKING: bool = MARK;
        type Wait = ();
        const FIRST_WAIT: () = ();

        fn word(&self) -> &AtomicU32 {
            &self.0
        }
        fn me(&self) -> Result<u32> {
            Ok(2)
        }
        fn holder_token() -> u32 {
            1
        }
        fn try_lock(&self) -> Result<Option<bool>> {
            Ok(self.take_if_free(2))
        }
        fn lock_for(&self, _: Duration, _: &mut ()) -> Result<Option<bool>> {
            Ok(self.spin(2))
        }
        fn wake_one(&self) -> Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn is_locked(&self) -> Result<bool> {
            Ok(self.0.load(Ordering::Relaxed) & Self::OWNER != 0)
        }
    }

    #[test]
    fn a_wait_after_a_miss_marks_the_word_before_it_looks() {
        // The first wait may find the count at 0 (then it misses, unmarked,
        // and sets it) or above (it marks): either way the second marks.
        let held = Held::<true>::new();
        assert_eq!(held.spin(2), None);
        assert_eq!(held.spin(2), None);
        assert_eq!(held.0.load(Ordering::Relaxed), 1 | 0x100);
        assert!(MARKED_WAITS.load(Ordering::Relaxed) > 0);
        // The release finds the mark, so it wakes; the word is free after.
        assert!(matches!(held.unlock(2), Err(Error::NotHeld)));
        held.unlock(1).unwrap();
        assert_eq!(held.0.load(Ordering::Relaxed), 0);
        assert_eq!(held.1.load(Ordering::Relaxed), 1);
        assert_eq!(held.spin(2), Some(false));
        assert_eq!(held.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_backend_that_does_not_mark_before_looking_never_does() {
        let held = Held::<false>::new();
        for _ in 0..3 {
            assert_eq!(held.spin(2), None);
        }
        assert_eq!(held.0.load(Ordering::Relaxed), 1);
        held.unlock(1).unwrap();
        assert_eq!(held.1.load(Ordering::Relaxed), 0);
    }
}
