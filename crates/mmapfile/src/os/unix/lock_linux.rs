//! The mapping lock on Linux: an open-file-description (OFD) lock on one
//! byte of the backing object, through a fresh open file description per
//! acquisition (`/proc/self/fd`), so that threads and forked children
//! contend like processes, and the kernel releases it when its holder dies.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{cstring, open_path, Backing, Kind};
use crate::error::{Error, Result};

/// Where a mapping's lock lives: the backing object, reached through a
/// descriptor of our own so that the lock outlives `close()` of the view.
///
/// On Linux the lock is an open-file-description (OFD) write lock on one
/// byte of the backing object. Such locks belong to an open file
/// description, so every acquisition opens a fresh one: two threads, or a
/// forked child, then contend like two processes do, and the kernel drops the
/// lock when its holder dies.
#[derive(Debug)]
pub(crate) struct LockTarget {
    /// Never locked itself: it is reopened for each acquisition and used to
    /// ask whether anyone holds the lock.
    fd: OwnedFd,
    /// The locked byte. Files use an offset far past any real data, so the
    /// lock does not clash with byte-range locks a program takes on its own
    /// file; blocks use byte 1 (byte 0 is kept for the liveness protocol of
    /// named blocks).
    start: libc::off_t,
}

/// One held acquisition of a [`LockTarget`]: closing it releases the lock.
#[derive(Debug)]
pub(crate) struct LockDesc {
    fd: OwnedFd,
    start: libc::off_t,
    /// The process that opened it: a forked child inherits the descriptor
    /// but not the ownership.
    pid: u32,
}

/// The path that reopens `fd` as a new open file description.
fn proc_path(fd: &OwnedFd) -> Result<CString> {
    cstring(
        "open",
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes(),
    )
}

fn flock(start: libc::off_t, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes is a
    // valid value (it also zeroes l_pid, which OFD locks require).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = start;
    fl.l_len = 1;
    fl
}

/// `fcntl(fd, cmd, &fl)`; returns the filled-in `fl`.
fn fcntl_lock(fd: &OwnedFd, cmd: libc::c_int, mut fl: libc::flock) -> io::Result<libc::flock> {
    // SAFETY: `fd` is open and `fl` is a valid, writable flock for the
    // duration of the call.
    if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl) } == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl)
    }
}

impl Backing {
    /// The lock of this backing object. Needs permission to open it for
    /// writing: a write lock can only be taken through a writable
    /// descriptor.
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let start = match self.kind {
            // A named file mapping locks its file, as every other
            // mapping of the same file does.
            _ if self.is_file() => libc::off_t::MAX - 1,
            Kind::File { .. } | Kind::Named { .. } | Kind::Anonymous => 1,
        };
        let fd =
            open_path(&proc_path(&self.fd)?, libc::O_RDWR, 0).map_err(|e| Error::io("open", e))?;
        Ok(LockTarget { fd, start })
    }
}

impl LockTarget {
    /// A fresh open file description to acquire the lock through.
    pub(crate) fn description(&self) -> Result<LockDesc> {
        let fd =
            open_path(&proc_path(&self.fd)?, libc::O_RDWR, 0).map_err(|e| Error::io("open", e))?;
        Ok(LockDesc {
            fd,
            start: self.start,
            pid: std::process::id(),
        })
    }

    /// Whether any open file description (in any process) holds the lock.
    pub(crate) fn is_locked(&self) -> Result<bool> {
        let fl = fcntl_lock(
            &self.fd,
            libc::F_OFD_GETLK,
            flock(self.start, libc::F_WRLCK),
        )
        .map_err(|e| Error::io("fcntl", e))?;
        Ok(i32::from(fl.l_type) != libc::F_UNLCK)
    }
}

impl LockDesc {
    /// Takes the lock if it is free; returns whether it did.
    pub(crate) fn try_lock(&self) -> Result<bool> {
        match fcntl_lock(
            &self.fd,
            libc::F_OFD_SETLK,
            flock(self.start, libc::F_WRLCK),
        ) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            Err(e) => Err(Error::io("fcntl", e)),
        }
    }

    /// Waits for the lock. A signal interrupts the wait with an error of
    /// kind [`io::ErrorKind::Interrupted`], so that the caller can run
    /// its signal handlers and call again.
    pub(crate) fn lock(&self) -> Result<()> {
        fcntl_lock(
            &self.fd,
            libc::F_OFD_SETLKW,
            flock(self.start, libc::F_WRLCK),
        )
        .map(drop)
        .map_err(|e| Error::io("fcntl", e))
    }

    /// Releases the lock, reporting errors (dropping also releases it).
    pub(crate) fn unlock(self) -> Result<()> {
        fcntl_lock(
            &self.fd,
            libc::F_OFD_SETLK,
            flock(self.start, libc::F_UNLCK),
        )
        .map(drop)
        .map_err(|e| Error::io("fcntl", e))
    }
}

impl Backing {
    /// Nothing to clean up: the lock lives on the mapped object itself.
    pub(crate) fn forget_lock(&self) {}
}

impl LockDesc {
    /// Whether this process opened it (false in a forked child, which only
    /// inherited a copy of the descriptor).
    pub(crate) fn belongs_to_this_process(&self) -> bool {
        self.pid == std::process::id()
    }
}
