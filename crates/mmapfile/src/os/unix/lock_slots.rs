//! The slots of the mapping lock on Linux (see `lock_linux.rs`): which user
//! of a lock owns its word, and whether that user is alive, told by an OFD
//! write lock on byte [`SLOT_BASE`]` + slot` of a file every user opens;
//! and the fork handler that keeps a forked child from holding its parent's
//! slots alive.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::sync::{MutexGuard, Once, PoisonError};

use super::super::sys::getpid;
use super::super::{cstring, open_path};
use super::{futex_wake, Shared, ABANDONED, OWNER};
use crate::error::{Error, Result};
use crate::lock::word::LockWord;

/// The record-lock byte of slot 1 (slot `n` is at `SLOT_BASE + n`). Byte 0
/// is the liveness byte of named blocks and companions; byte 1 was the
/// lock of earlier versions.
pub(super) const SLOT_BASE: libc::off_t = 16;

#[derive(Debug)]
pub(super) struct SlotFd {
    fd: RawFd,
    /// Its entry in the list a forked child closes.
    node: &'static fork_fds::Node,
    pid: u32,
}

/// The path that reopens `fd` as a new open file description.
fn proc_path(fd: &OwnedFd) -> Result<CString> {
    cstring(
        "open",
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes(),
    )
}

pub(super) fn reopen(fd: &OwnedFd) -> Result<OwnedFd> {
    open_path(&proc_path(fd)?, libc::O_RDWR, 0).map_err(|e| Error::io("open", e))
}

/// `fcntl(fd, cmd, ...)` on the one byte `at`; returns the filled-in
/// `flock`.
pub(super) fn record_lock(
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

/// This process's id ([`getpid`]), as the lock word holds it.
pub(super) fn current_pid() -> u32 {
    getpid() as u32
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

    impl Node {
        /// Takes `fd` off the list; false if a fork handler closed it.
        pub(super) fn forget(&self, fd: RawFd) -> bool {
            self.fd
                .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// Puts `fd` on the list, with the fork handler installed first.
    pub(super) fn remember(fd: RawFd) -> &'static Node {
        install();
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
    /// child's copies of the slot descriptors.
    extern "C" fn in_child() {
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

    /// Installs the fork handler once.
    fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: `in_child` is a valid handler for the life of the
            // process (a static function); the others are none.
            unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
    }
}

fn slot_fds(shared: &Shared) -> MutexGuard<'_, Option<SlotFd>> {
    shared
        .slot_fd
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Closes this process's slot descriptor, if it has one: the slot is
    /// free again.
    pub(super) fn close_slot(&mut self) {
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
    }

    /// This process's slot, claimed on first use.
    pub(super) fn slot(&self) -> Result<u32> {
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

    /// Whether the user of `slot` is alive: holds its slot's record lock,
    /// which is a write lock. A read lock there is not a user's: anyone who
    /// may read the file can take one (a reader of a `0644` block), for
    /// instance the moment a holder dies, and it must not make that dead
    /// holder pass for alive (its waiters would never take the lock over).
    /// A write lock excludes every other lock, so a live user's is the one
    /// lock the kernel reports.
    pub(super) fn alive(&self, slot: u32) -> Result<bool> {
        let fl = record_lock(
            self.obj.as_raw_fd(),
            libc::F_OFD_GETLK,
            libc::F_WRLCK,
            slot_byte(slot),
        )
        .map_err(|e| Error::io("fcntl", e))?;
        Ok(i32::from(fl.l_type) == libc::F_WRLCK)
    }
}
