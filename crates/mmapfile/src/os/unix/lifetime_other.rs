//! Named blocks on POSIX systems other than Linux (macOS, the BSDs).
//!
//! The Linux protocol needs a lock that the kernel drops when a holder dies
//! and that works on shared-memory objects. macOS refuses every kind of
//! lock (`flock`, `fcntl`) on `shm_open` descriptors, so holders cannot be
//! counted there: a block keeps the POSIX lifetime (it lives until its name
//! is removed, e.g. with `python -m mmapfile rm NAME`). Everything else —
//! names, `create=`, `created`, owner check, `mode=` — works as on Linux.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;

use std::os::fd::AsFd;

use super::space::{make_room, Purpose};
use super::{fchmod, fstat, ftruncate, shm_open, shm_unlink};
use crate::access::{CreateMode, Space};
use crate::error::{Error, Result};

/// Whether this platform runs the lifetime protocol (not here).
pub(crate) const TRACKS_HOLDERS: bool = false;

fn errno(op: &'static str, code: libc::c_int) -> Error {
    Error::io(op, io::Error::from_raw_os_error(code))
}

/// Opens or creates the named block `shm`. Returns the descriptor, whether
/// it is read-write, and whether this call created it.
pub(crate) fn open(
    shm: &CString,
    size: u64,
    create: CreateMode,
    writable: bool,
    mode: u32,
    allow_other_owner: bool,
    space: Space,
) -> Result<(OwnedFd, bool, bool)> {
    let may_create = size > 0 && create != CreateMode::OpenOnly;
    loop {
        if may_create {
            match shm_open(shm, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600) {
                Ok(fd) => {
                    let sized = make_room(fd.as_fd(), 0, size, Purpose::NamedBlock, space)
                        .and_then(|()| ftruncate(&fd, size))
                        .and_then(|()| fchmod(&fd, mode));
                    if let Err(e) = sized {
                        let _ = shm_unlink(shm);
                        return Err(e);
                    }
                    return Ok((fd, true, true));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if create == CreateMode::CreateOnly {
                        return Err(Error::io("shm_open", e));
                    }
                }
                Err(e) => return Err(Error::io("shm_open", e)),
            }
        }
        let flags = if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        match shm_open(shm, flags, 0) {
            Ok(fd) => {
                let st = fstat(&fd)?;
                // SAFETY: geteuid has no preconditions.
                if st.st_uid != unsafe { libc::geteuid() } && !allow_other_owner {
                    return Err(errno("shm_open", libc::EACCES));
                }
                return Ok((fd, writable, false));
            }
            // Removed between our create and open attempts: try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && may_create => continue,
            Err(e) => return Err(Error::io("shm_open", e)),
        }
    }
}

/// Leaves the block. Without holder counting, the block stays.
pub(crate) fn release(_fd: &OwnedFd, _shm: &CString, _lockable: bool) -> Result<()> {
    Ok(())
}

/// Dead blocks cannot be told from live ones here.
pub(crate) fn collect(_shm: &CString) -> Result<bool> {
    Err(Error::io(
        "collect",
        io::Error::new(
            io::ErrorKind::Unsupported,
            "this OS cannot tell whether a block has holders",
        ),
    ))
}
