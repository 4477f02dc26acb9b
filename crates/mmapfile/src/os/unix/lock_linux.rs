//! The mapping lock on Linux: a futex word in shared memory, owned by a
//! process, whose death the kernel tells through a record lock.
//!
//! - **The word** lives in the lock area of an unnamed block's control
//!   page (`control.rs`), shared with forked children. For a file mapping
//!   or a named block, whose objects other programs map from byte 0, it
//!   lives in a companion: a one-page shared-memory object named after the
//!   device and inode of the file or of the block's object
//!   (`/dev/shm/mmapfile-lock.<dev>.<ino>`), made by the first `lock()` of
//!   any process and kept alive by the lifetime protocol of named blocks
//!   (every user holds it; the last one removes it), so nothing is left next
//!   to the user's file, nor behind once the last user is gone. A file's
//!   companion is owner-only, and one owned by another user is refused; a
//!   block's has the block's permission bits, and must belong to the block's
//!   owner or to this user.
//! - **Taking it** is one compare-and-swap of 0 to the taker's *slot*, and
//!   releasing it one swap back to 0: no system call unless someone waits.
//!   A waiter marks the word ([`WAITERS`]) and sleeps on it with
//!   `FUTEX_WAIT`; the release then wakes one waiter (`FUTEX_WAKE`).
//! - **A slot** is a number that stands for one user of the lock (one
//!   process's target), live as long as that user holds an OFD write lock
//!   on byte [`SLOT_BASE`]` + slot` of the object. The kernel drops that
//!   record lock when the process dies (SIGKILL included), so a waiter whose
//!   sleep ran out ([`LIVENESS_SLICE`]) asks the kernel (`F_OFD_GETLK`)
//!   whether the holder's slot is still held; if not, the holder died and
//!   the waiter takes the lock over and is told it was abandoned (the data
//!   may be half written), as Windows tells `WAIT_ABANDONED`.
//!
//! Ownership is a process's, not a thread's (any thread may release, as
//! before): the robust futex lists of the kernel are per thread, and glibc
//! owns each thread's, so they are not used. A forked child shares its
//! parent's descriptors, which would keep the parent's slots alive after
//! the parent died: a `pthread_atfork` handler closes the child's copies
//! at once ([`fork_fds`]), and the child takes a slot of its own when it
//! first acquires.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use super::control::LOCK_AREA;
use super::{
    cstring, fchmod, fstat, ftruncate, lifetime, open_path, page_size, shm_open, Backing, Kind,
};
use crate::error::{Error, Result};

/// The slot of the holder, in the word; 0 when the lock is free.
const OWNER: u32 = (1 << 30) - 1;
/// In a free word: its last holder died holding it.
const ABANDONED: u32 = 1 << 30;
/// Someone may sleep on the word: the release must wake one.
const WAITERS: u32 = 1 << 31;

/// The record-lock byte of slot 1 (slot `n` is at `SLOT_BASE + n`). Byte 0
/// is the liveness byte of named blocks and companions; byte 1 was the
/// lock of earlier versions.
const SLOT_BASE: libc::off_t = 16;

/// How long a waiter sleeps, at most, before it asks whether the holder is
/// still alive: how late a holder's death is noticed when nobody else wakes
/// the waiter. A wait starts with [`FIRST_SLICE`] and doubles it up to
/// this, so a holder that was already dead is found out at once, and a
/// live one is asked about a few times, then every 50 ms.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);
const FIRST_SLICE: Duration = Duration::from_millis(1);

/// How many times a waiter looks at the word before it sleeps.
const SPINS: u32 = 40;

/// What a [`Backing`] keeps of its lock: the target, made on first use.
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

#[derive(Debug)]
struct Shared {
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

#[derive(Debug)]
struct SlotFd {
    fd: RawFd,
    /// Its entry in the list a forked child closes.
    node: &'static fork_fds::Node,
    pid: u32,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let slot = self
            .slot_fd
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slot.take() {
            // A forked child's copy was closed by the fork handler (and its
            // number may name something else now).
            if slot.pid == current_pid() && slot.node.forget(slot.fd) {
                // SAFETY: the descriptor is ours and closed once; a failure
                // could only leak it.
                unsafe { libc::close(slot.fd) };
            }
        }
        // SAFETY: `page` is a mapping of one page made in `Shared::map`
        // and unmapped only here; a failure could only leak address space.
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

/// The path that reopens `fd` as a new open file description.
fn proc_path(fd: &OwnedFd) -> Result<CString> {
    cstring(
        "open",
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes(),
    )
}

fn reopen(fd: &OwnedFd) -> Result<OwnedFd> {
    open_path(&proc_path(fd)?, libc::O_RDWR, 0).map_err(|e| Error::io("open", e))
}

/// `fcntl(fd, cmd, ...)` on the one byte `at`; returns the filled-in
/// `flock`.
fn record_lock(
    fd: RawFd,
    cmd: libc::c_int,
    kind: libc::c_int,
    at: libc::off_t,
) -> io::Result<libc::flock> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes is a
    // valid value (it also zeroes l_pid, which OFD locks require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = at;
    fl.l_len = 1;
    // SAFETY: `fd` is open and `fl` is a valid, writable flock for the
    // duration of the call.
    if unsafe { libc::fcntl(fd, cmd, &mut fl) } == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl)
    }
}

fn slot_byte(slot: u32) -> libc::off_t {
    SLOT_BASE + libc::off_t::from(slot)
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

/// This process's id, without a system call on every use (glibc no longer
/// caches it): kept here and renewed in a forked child by the fork handler.
pub(crate) fn current_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    fork_fds::install(&PID);
    std::process::id()
}

/// Descriptors that a forked child must not keep: slot descriptors, which
/// would keep the parent's slots (hence its locks) alive after the parent
/// died. The list is lock-free, so that the handler that runs in the child
/// right after `fork` never waits for a lock another thread of the parent
/// held. Its nodes are never freed, only reused.
mod fork_fds {
    use super::*;

    #[derive(Debug)]
    pub(super) struct Node {
        fd: AtomicI32,
        next: AtomicPtr<Node>,
    }

    static HEAD: AtomicPtr<Node> = AtomicPtr::new(std::ptr::null_mut());
    static PID: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

    impl Node {
        /// Takes `fd` off the list; false if a fork handler closed it.
        pub(super) fn forget(&self, fd: RawFd) -> bool {
            self.fd
                .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// Puts `fd` on the list.
    pub(super) fn remember(fd: RawFd) -> &'static Node {
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes are leaked, never freed.
            let node = unsafe { &*at };
            if node
                .fd
                .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return node;
            }
            at = node.next.load(Ordering::Acquire);
        }
        let node: &'static Node = Box::leak(Box::new(Node {
            fd: AtomicI32::new(fd),
            next: AtomicPtr::new(std::ptr::null_mut()),
        }));
        let mut head = HEAD.load(Ordering::Acquire);
        loop {
            node.next.store(head, Ordering::Relaxed);
            let new = node as *const Node as *mut Node;
            match HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return node,
                Err(now) => head = now,
            }
        }
    }

    /// Runs in a forked child (only async-signal-safe calls): closes the
    /// child's copies of the slot descriptors, and renews the cached pid.
    extern "C" fn in_child() {
        let pid = PID.load(Ordering::Acquire);
        if !pid.is_null() {
            // SAFETY: PID points to a static; getpid has no preconditions.
            unsafe { (*pid).store(libc::getpid() as u32, Ordering::Relaxed) };
        }
        let mut at = HEAD.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: nodes are leaked, never freed.
            let node = unsafe { &*at };
            let fd = node.fd.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the child's copy of a descriptor of ours; closing
                // it leaves the parent's open.
                unsafe { libc::close(fd) };
            }
            at = node.next.load(Ordering::Acquire);
        }
    }

    /// Installs the fork handler once, and caches the pid in `pid`.
    pub(super) fn install(pid: &'static AtomicU32) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            PID.store(pid as *const AtomicU32 as *mut AtomicU32, Ordering::Release);
            // SAFETY: `in_child` is a valid handler for the life of the
            // process (a static function); the others are none.
            unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
        // Stored after the handler exists, so a child never keeps a stale one.
        // SAFETY: getpid has no preconditions.
        pid.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
    }
}

fn slot_fds(shared: &Shared) -> MutexGuard<'_, Option<SlotFd>> {
    shared
        .slot_fd
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Maps the first page of `obj` (which must be at least a page long).
    fn map(obj: OwnedFd, companion: Option<CString>) -> Result<Shared> {
        // SAFETY: a fresh shared mapping at an address the kernel chooses
        // overlaps nothing; `obj` is open read-write; checked below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                obj.as_raw_fd(),
                0,
            )
        };
        if page == libc::MAP_FAILED {
            let err = Error::last_os("mmap");
            if let Some(key) = &companion {
                let _ = lifetime::release(&obj, key, true);
            }
            return Err(err);
        }
        Ok(Shared {
            obj,
            page: page.cast(),
            companion,
            creator: current_pid(),
            slot: AtomicU64::new(0),
            slot_fd: Mutex::new(None),
        })
    }

    fn words(&self) -> &Words {
        // SAFETY: the page is mapped for as long as `self` lives, page
        // aligned (so aligned for `Words`), and only accessed atomically.
        unsafe { &*self.page.add(LOCK_AREA.start).cast::<Words>() }
    }

    fn word(&self) -> &AtomicU32 {
        &self.words().word
    }

    /// This process's slot, claimed on first use.
    fn slot(&self) -> Result<u32> {
        let pid = current_pid();
        let slot = self.slot.load(Ordering::Acquire);
        if slot >> 32 == u64::from(pid) {
            return Ok(slot as u32);
        }
        self.claim(pid)
    }

    #[cold]
    fn claim(&self, pid: u32) -> Result<u32> {
        let mut held = slot_fds(self);
        match held.as_ref() {
            Some(slot) if slot.pid == pid => {
                return Ok(self.slot.load(Ordering::Acquire) as u32);
            }
            // Inherited through fork: the fork handler closed our copy.
            Some(_) => *held = None,
            None => {}
        }
        let fd = reopen(&self.obj)?;
        let node = fork_fds::remember(fd.as_raw_fd());
        let fd = std::mem::ManuallyDrop::new(fd);
        let raw = fd.as_raw_fd();
        let give_up = |err: Error| {
            if node.forget(raw) {
                // SAFETY: our descriptor, closed once.
                unsafe { libc::close(raw) };
            }
            err
        };
        let slot = loop {
            let n = self.words().next_slot.fetch_add(1, Ordering::Relaxed);
            let slot = n % OWNER + 1;
            match record_lock(raw, libc::F_OFD_SETLK, libc::F_WRLCK, slot_byte(slot)) {
                Ok(_) => break slot,
                // A live user's slot (the counter wrapped): the next one.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
                Err(e) => return Err(give_up(Error::io("fcntl", e))),
            }
        };
        // A user that died with this slot may have died holding the lock:
        // free it for the waiters, telling them it was abandoned.
        let word = self.word();
        let w = word.load(Ordering::Acquire);
        if w & OWNER == slot
            && word
                .compare_exchange(w, ABANDONED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            futex_wake(word, i32::MAX);
        }
        *held = Some(SlotFd { fd: raw, node, pid });
        self.slot
            .store((u64::from(pid) << 32) | u64::from(slot), Ordering::Release);
        Ok(slot)
    }

    /// Whether the user of `slot` is alive (holds its slot's record lock).
    fn alive(&self, slot: u32) -> Result<bool> {
        let fl = record_lock(
            self.obj.as_raw_fd(),
            libc::F_OFD_GETLK,
            libc::F_WRLCK,
            slot_byte(slot),
        )
        .map_err(|e| Error::io("fcntl", e))?;
        Ok(i32::from(fl.l_type) != libc::F_UNLCK)
    }

    /// Takes the word from its free state `w`, or from a dead holder's;
    /// `waiters` keeps the wake-up duty of a waiter that slept. Returns
    /// `Some(abandoned)` if taken.
    fn take(&self, me: u32, w: u32, waiters: u32, dead: bool) -> Option<bool> {
        if w & OWNER != 0 && !dead {
            return None;
        }
        let new = me | waiters | (w & WAITERS);
        self.word()
            .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| dead || w & ABANDONED != 0)
    }

    /// Takes the lock if it is free, or if its holder died.
    fn try_lock(&self) -> Result<Option<bool>> {
        let me = self.slot()?;
        let word = self.word();
        if word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Some(false));
        }
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

    /// Waits at most `timeout` for the lock (see the module's
    /// documentation), sleeping at most `slice` before asking whether the
    /// holder is alive (see [`LIVENESS_SLICE`]; a caller that waits again
    /// passes it on). A signal ends the wait with an error of kind
    /// [`io::ErrorKind::Interrupted`].
    fn lock_for(&self, timeout: Duration, slice: &mut Duration) -> Result<Option<bool>> {
        let me = self.slot()?;
        let word = self.word();
        // A holder often releases within a microsecond or two (a short
        // critical section on another core): spinning that long is cheaper
        // than sleeping and being woken by a system call on each side.
        for _ in 0..SPINS {
            std::hint::spin_loop();
            let w = word.load(Ordering::Relaxed);
            if w & OWNER == 0 {
                if let Some(abandoned) = self.take(me, w, 0, false) {
                    return Ok(Some(abandoned));
                }
            }
        }
        let start = Instant::now();
        let mut waiters = 0;
        loop {
            let w = word.load(Ordering::Relaxed);
            if let Some(abandoned) = self.take(me, w, waiters, false) {
                return Ok(Some(abandoned));
            }
            if w & OWNER == 0 {
                continue;
            }
            if w & WAITERS == 0
                && word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
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

    /// Releases the lock held by `me`.
    fn unlock(&self, me: u32) -> Result<()> {
        let word = self.word();
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & OWNER != me {
                return Err(Error::NotHeld);
            }
            match word.compare_exchange_weak(w, 0, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        if w & WAITERS != 0 {
            futex_wake(word, 1);
        }
        Ok(())
    }
}

/// Removes the companions whose users all died (they are removed by the
/// next user otherwise, which may never come): the leftovers `gc` removes.
pub(crate) fn collect_companions() -> Result<()> {
    let dir = match std::fs::read_dir(super::SHM_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("opendir", e)),
    };
    for entry in dir {
        let entry = entry.map_err(|e| Error::io("readdir", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(COMPANION_PREFIX)) else {
            continue;
        };
        // Not ours to remove (another user's), or removed meanwhile: skip.
        let _ = lifetime::collect(&cstring("shm_open", format!("/{name}").as_bytes())?);
    }
    Ok(())
}

/// The start of a companion's file name in `/dev/shm`.
const COMPANION_PREFIX: &str = "mmapfile-lock.";

/// The name of the companion of the file or block object `st` (see the
/// module's documentation).
fn companion_key(st: &libc::stat) -> Result<CString> {
    cstring(
        "shm_open",
        format!("/{COMPANION_PREFIX}{:x}.{:x}", st.st_dev, st.st_ino).as_bytes(),
    )
}

/// Joins (or makes, with the permission bits `mode`) the companion `key`
/// as a holder, by the lifetime protocol of named blocks (a shared OFD lock
/// on its liveness byte; the last holder to leave removes it, see
/// `lifetime_linux.rs`), except that a companion whose holders all died is
/// joined, not replaced: its word still tells the next acquirer that the
/// lock was abandoned. Such a companion is left until then, or until `gc`.
/// It must belong to this user or to `owner`.
fn join_companion(key: &CString, mode: u32, owner: libc::uid_t) -> Result<OwnedFd> {
    let page = page_size() as libc::off_t;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let fd = match shm_open(key, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600) {
            Ok(fd) => {
                // Exactly `mode`, whatever the umask.
                fchmod(&fd, mode)?;
                fd
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match shm_open(key, libc::O_RDWR, 0) {
                    Ok(fd) => fd,
                    // Removed by its last holder meanwhile: start over.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("shm_open", e)),
                }
            }
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        let st = fstat(&fd)?;
        if st.st_uid != me && st.st_uid != owner {
            return Err(Error::io(
                "shm_open",
                io::Error::from_raw_os_error(libc::EACCES),
            ));
        }
        // Hold it; this waits while a last holder removes it.
        record_lock(fd.as_raw_fd(), libc::F_OFD_SETLKW, libc::F_RDLCK, 0)
            .map_err(|e| Error::io("fcntl", e))?;
        let st = fstat(&fd)?;
        if st.st_nlink == 0 {
            continue; // removed while we waited: start over
        }
        // A page of zeros (its maker may not have sized it yet; growing an
        // object to a size it has is harmless, and it never shrinks).
        if st.st_size < page {
            ftruncate(&fd, page as u64)?;
        }
        return Ok(fd);
    }
}

impl Backing {
    /// The lock of this backing object (see the module's documentation),
    /// made on first use and then shared by every `lock()` of this object.
    /// A block's lock needs permission to open the block for writing.
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let mut cached = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(target) = cached.as_ref() {
            return Ok(target.clone());
        }
        let shared = match self.kind {
            Kind::Anonymous => Shared::map(reopen(&self.fd)?, None)?,
            _ => {
                let st = fstat(&self.fd)?;
                let key = companion_key(&st)?;
                // SAFETY: geteuid has no preconditions.
                let me = unsafe { libc::geteuid() };
                let (mode, owner) = if self.is_file() {
                    (0o600, me)
                } else {
                    (st.st_mode & 0o666, st.st_uid)
                };
                Shared::map(join_companion(&key, mode, owner)?, Some(key))?
            }
        };
        let target = LockTarget {
            shared: Arc::new(shared),
        };
        *cached = Some(target.clone());
        Ok(target)
    }

    /// Lets go of this object's share of the lock target (`MapLock`s keep
    /// theirs), as the object closes.
    pub(crate) fn forget_lock(&self) {
        let target = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(target);
    }
}

impl LockTarget {
    /// Whether anyone (in any process) holds the lock. A holder that died
    /// does not.
    pub(crate) fn is_locked(&self) -> Result<bool> {
        let owner = self.shared.word().load(Ordering::Acquire) & OWNER;
        Ok(owner != 0 && self.shared.alive(owner)?)
    }
}

/// A `MapLock` on Linux: which process holds the lock through it, if any.
/// Two `MapLock`s of one process (of one map) share a slot, so the word
/// alone cannot tell them apart: `holder` does.
#[derive(Debug)]
pub(crate) struct Lock {
    target: LockTarget,
    /// The pid of the process that holds the lock through this `MapLock`,
    /// 0 if none. A forked child sees its parent's pid here, which is not
    /// its own: it does not hold the lock.
    holder: AtomicU32,
    /// Whether the last acquisition found its holder dead.
    abandoned: AtomicBool,
}

impl Lock {
    pub(crate) fn new(target: LockTarget) -> Lock {
        Lock {
            target,
            holder: AtomicU32::new(0),
            abandoned: AtomicBool::new(false),
        }
    }

    fn shared(&self) -> &Shared {
        &self.target.shared
    }

    /// Records an acquisition (`Some(abandoned)`); returns whether there
    /// was one.
    fn hold(&self, taken: Option<bool>) -> bool {
        let Some(abandoned) = taken else {
            return false;
        };
        self.abandoned.store(abandoned, Ordering::Relaxed);
        self.holder.store(current_pid(), Ordering::Relaxed);
        true
    }

    pub(crate) fn acquire_if_free(&self) -> Result<bool> {
        let shared = self.shared();
        let me = shared.slot()?;
        let w = shared.word().load(Ordering::Relaxed);
        Ok(self.hold(shared.take(me, w, 0, false)))
    }

    pub(crate) fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        // A free lock costs no clock reading either.
        if self.acquire_if_free()? {
            return Ok(true);
        }
        match timeout {
            Some(Duration::ZERO) => Ok(self.hold(self.shared().try_lock()?)),
            Some(timeout) => Ok(self.hold(self.shared().lock_for(timeout, &mut { FIRST_SLICE })?)),
            None => {
                let mut slice = FIRST_SLICE;
                loop {
                    let waited = self
                        .shared()
                        .lock_for(Duration::from_secs(3600), &mut slice)?;
                    if let Some(abandoned) = waited {
                        return Ok(self.hold(Some(abandoned)));
                    }
                }
            }
        }
    }

    /// Waits in timed sleeps of the kernel, calling `check` between them,
    /// at least every `every`. A release wakes the sleeper at once; the
    /// slices only bound how late `check` runs.
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

    /// [`Lock::acquire_checking`] without the first `check`, which the
    /// caller has just made.
    pub(crate) fn acquire_waiting<E: From<Error>>(
        &self,
        timeout: Option<Duration>,
        every: Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<bool, E> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut slice = FIRST_SLICE;
        loop {
            let wait = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(every),
                None => every,
            };
            match self.shared().lock_for(wait, &mut slice) {
                Ok(Some(abandoned)) => return Ok(self.hold(Some(abandoned))),
                Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
                Ok(None) => {}
                // A signal: `check` runs its handlers.
                Err(Error::Io { ref source, .. })
                    if source.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            check()?;
        }
    }

    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    pub(crate) fn release(&self) -> Result<()> {
        let pid = current_pid();
        if self
            .holder
            .compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Err(Error::NotHeld);
        }
        let shared = self.shared();
        shared.unlock(shared.slot()?)
    }

    pub(crate) fn is_held(&self) -> bool {
        self.holder.load(Ordering::Relaxed) == current_pid()
    }

    pub(crate) fn is_locked(&self) -> Result<bool> {
        Ok(self.is_held() || self.target.is_locked()?)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Dropping a held lock releases it; an error (the lock was not ours
        // any more) has nobody to go to.
        if self.is_held() {
            let _ = self.release();
        }
    }
}
