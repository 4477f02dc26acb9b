//! Where the word of the mapping lock lives on Linux (see `lock_linux.rs`):
//! an unnamed block's control page, a named block's segment trailer, or a
//! companion object in `/dev/shm`; and which file's record locks tell its
//! slots' liveness.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use super::super::segment::Segment;
use super::super::{
    cstring, fchmod, fstat, ftruncate, lifetime, page_size, shm_open, Backing, Kind, SHM_DIR,
};
use super::slots::{current_pid, record_lock, reopen};
use super::{LockTarget, Shared};
use crate::error::{Error, Result};

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
        Ok(Shared::new(obj, page.cast(), companion))
    }

    /// The lock of a named block kept in a segment: its word in the
    /// segment's trailer page, through an attachment of that page alone
    /// that this value owns (so the lock outlives the block's own
    /// attachment when a `MapLock` outlives the map); its slots locked on
    /// `record`, a new open file description of the block's record, which
    /// every holder of the block keeps open.
    ///
    /// No other object is made: the word dies with the segment, which the
    /// kernel frees when its last attachment goes, so a block made anew
    /// under the same name starts with a free word. The segment and the
    /// record were checked to be the block's when it was joined.
    fn in_trailer(record: OwnedFd, segment: &Segment) -> Result<Shared> {
        let page = segment.attach_trailer()?;
        Ok(Shared::new(record, page, None))
    }

    fn new(obj: OwnedFd, page: *mut u8, companion: Option<CString>) -> Shared {
        Shared {
            obj,
            page,
            companion,
            creator: current_pid(),
            slot: AtomicU64::new(0),
            slot_fd: Mutex::new(None),
        }
    }
}

/// Removes the companions whose users all died (they are removed by the
/// next user otherwise, which may never come): the leftovers `gc` removes.
pub(crate) fn collect_companions() -> Result<()> {
    let dir = match std::fs::read_dir(SHM_DIR) {
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
    /// A block's lock needs permission to open the block for writing: its
    /// record's, and its segment's or companion's.
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let mut cached = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(target) = cached.as_ref() {
            return Ok(target.clone());
        }
        let shared = match (&self.kind, &self.segment) {
            (Kind::Anonymous, _) => Shared::map(reopen(&self.fd)?, None)?,
            // `fd` is the block's record.
            (_, Some(segment)) => Shared::in_trailer(reopen(&self.fd)?, segment)?,
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
