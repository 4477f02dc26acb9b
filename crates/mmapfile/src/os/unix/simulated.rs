//! macOS's limits on shared-memory objects, imposed on a Linux build with
//! the `simulate-macos` feature, so that the test suite shows on Linux what
//! the portable backend does under them:
//!
//! - an object name is at most 31 bytes with its slash (`PSHMNAMLEN`):
//!   longer ones fail with `ENAMETOOLONG`;
//! - an object is sized once: a second `ftruncate` fails with `EINVAL`;
//! - objects cannot be locked: `flock` on one fails with `EOPNOTSUPP`;
//! - `fstat` reports an object's size rounded up to whole pages;
//! - `fchmod` and `fstatvfs` of an object fail with `EINVAL` (XNU has no
//!   such operations for them); a new object gets `shm_open`'s mode exactly
//!   (XNU does not apply the umask);
//! - an object is mapped only shared: `MAP_PRIVATE` fails with `EINVAL`;
//! - `shm_open` refuses `O_CLOEXEC` with `EINVAL` (macOS 26.4 and later).
//!
//! An object is told by its device: the one `/dev/shm` is on.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// macOS's `PSHMNAMLEN`: the longest object name, slash included.
const PSHMNAMLEN: usize = 31;

fn shm_device() -> Option<libc::dev_t> {
    static DEV: OnceLock<Option<libc::dev_t>> = OnceLock::new();
    *DEV.get_or_init(|| {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: the path is NUL-terminated and `st` writable memory for
        // one stat.
        if unsafe { libc::stat(c"/dev/shm".as_ptr(), st.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: stat returned 0, so it filled `st`.
        Some(unsafe { st.assume_init() }.st_dev)
    })
}

fn is_object(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG && Some(st.st_dev) == shm_device()
}

/// `fstat` as the kernel answers it (not rounded as `sys::fstat` does here).
fn raw_fstat(fd: BorrowedFd<'_>) -> Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open and `st` writable memory for one stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(Error::last_os("fstat"));
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

fn refused(op: &'static str, code: libc::c_int) -> Error {
    Error::io(op, io::Error::from_raw_os_error(code))
}

pub(crate) fn check_shm_open(name: &CString, flags: libc::c_int) -> io::Result<()> {
    if name.as_bytes().len() > PSHMNAMLEN {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    if flags & libc::O_CLOEXEC != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// What XNU gives a new object: `mode`, without the umask.
pub(crate) fn created_with(fd: &OwnedFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `fd` is open.
    if unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o777) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mmap` of an object: only shared.
pub(crate) fn check_mmap(fd: &OwnedFd, flags: libc::c_int) -> Result<()> {
    if flags & libc::MAP_SHARED == 0 && is_object(&raw_fstat(fd.as_fd())?) {
        return Err(refused("mmap", libc::EINVAL));
    }
    Ok(())
}

pub(crate) fn check_fchmod(fd: &OwnedFd) -> Result<()> {
    if is_object(&raw_fstat(fd.as_fd())?) {
        return Err(refused("fchmod", libc::EINVAL));
    }
    Ok(())
}

/// `fstatvfs` needs a file system, which an object has none of on macOS.
pub(crate) fn check_statvfs(fd: BorrowedFd<'_>) -> Result<()> {
    if is_object(&raw_fstat(fd)?) {
        return Err(refused("fstatvfs", libc::EINVAL));
    }
    Ok(())
}

pub(crate) fn check_truncate(fd: &OwnedFd) -> Result<()> {
    let st = raw_fstat(fd.as_fd())?;
    if is_object(&st) && st.st_size != 0 {
        return Err(refused("ftruncate", libc::EINVAL));
    }
    Ok(())
}

pub(crate) fn check_flock(fd: &OwnedFd) -> Result<()> {
    if is_object(&raw_fstat(fd.as_fd())?) {
        return Err(refused("flock", libc::EOPNOTSUPP));
    }
    Ok(())
}

pub(crate) fn round_size(mut st: libc::stat) -> libc::stat {
    if is_object(&st) {
        let page = super::page_size() as libc::off_t;
        st.st_size = (st.st_size + page - 1) / page * page;
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_imposed() {
        let long = CString::new(format!("/{}", "x".repeat(PSHMNAMLEN))).unwrap();
        let err =
            super::super::sys::shm_open(&long, libc::O_RDWR | libc::O_CREAT, 0o600).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
        let name = CString::new(format!("/mmapfile=sim{}", std::process::id())).unwrap();
        // SAFETY: umask has no preconditions; the old mask is put back.
        let old = unsafe { libc::umask(0o077) };
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        let fd = super::super::sys::shm_open(&name, flags, 0o664).unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        // No umask on macOS: the mode given, exactly.
        assert_eq!(raw_fstat(fd.as_fd()).unwrap().st_mode & 0o777, 0o664);
        super::super::sys::shm_unlink(&name).unwrap();
        super::super::sys::ftruncate(&fd, 100).unwrap();
        let page = super::super::sys::page_size() as libc::off_t;
        assert_eq!(super::super::sys::fstat(&fd).unwrap().st_size, page);
        let again = super::super::sys::ftruncate(&fd, 200).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EINVAL));
        let lock = super::super::sys::flock(&fd, libc::LOCK_SH, false).unwrap_err();
        assert_eq!(lock.raw_os_error(), Some(libc::EOPNOTSUPP));
        let chmod = super::super::sys::fchmod(&fd, 0o644).unwrap_err();
        assert_eq!(chmod.raw_os_error(), Some(libc::EINVAL));
        let statvfs = check_statvfs(fd.as_fd()).unwrap_err();
        assert_eq!(statvfs.raw_os_error(), Some(libc::EINVAL));
        let cloexec = check_shm_open(&name, libc::O_RDWR | libc::O_CLOEXEC).unwrap_err();
        assert_eq!(cloexec.raw_os_error(), Some(libc::EINVAL));
        let private = check_mmap(&fd, libc::MAP_PRIVATE).unwrap_err();
        assert_eq!(private.raw_os_error(), Some(libc::EINVAL));
        check_mmap(&fd, libc::MAP_SHARED).unwrap();
    }
}
