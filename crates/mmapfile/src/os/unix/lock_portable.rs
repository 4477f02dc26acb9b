//! The mapping lock on macOS and the BSDs: `flock` on a file that every
//! process mapping the same thing reaches by its path, opened anew for each
//! acquisition. A `flock` belongs to one open file description, so threads
//! and forked children contend like processes do, and the kernel releases
//! it when its holder dies. The file is:
//!
//! - for a file (named mapping or not): the file itself, so a program's own
//!   `flock` on that file contends with the mapping lock;
//! - for a named block: `.lock-<object>` in the state directory, made by
//!   the first holder that asks for the lock, removed with the block;
//! - for an unnamed block: `.anon-<pid>-<n>` there, made by the process that
//!   created the block (its forked children reach it by the same path) and
//!   removed once that process has closed the block and dropped its locks,
//!   or by `gc` once that process is gone.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use super::lifetime::{self, flock};
use super::{cstring, fstat, open_path, Backing, Kind};
use crate::error::{Error, Result};

/// The `MapLock` here: one `flock` descriptor per acquisition.
pub(crate) type Lock = crate::lock::desc::DescLock<LockTarget>;

/// What a [`Backing`] keeps of its lock: nothing, each `lock()` makes its
/// own target.
pub(crate) type LockCache = ();

/// Prefix of an unnamed block's lock file (then `<pid>-<n>`).
pub(crate) const ANON_PREFIX: &str = ".anon-";

/// The file's identity: a path that leads elsewhere since is refused.
type Identity = (u64, u64);

fn identity(fd: &OwnedFd) -> Result<Identity> {
    let st = fstat(fd)?;
    // dev_t and ino_t differ in width and signedness between systems.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Where a mapping's lock lives: a path, and the file it led to.
#[derive(Debug)]
pub(crate) struct LockTarget {
    path: CString,
    file: Identity,
    /// For an unnamed block: the lock file this keeps (by its path, which
    /// stays when the block moves to a new object as it grows).
    anonymous: Option<CString>,
}

impl Drop for LockTarget {
    fn drop(&mut self) {
        if let Some(path) = &self.anonymous {
            let_go(path);
        }
    }
}

/// One acquisition of a [`LockTarget`]: its own open file description.
#[derive(Debug)]
pub(crate) struct LockDesc {
    fd: OwnedFd,
    /// The process that opened it: a forked child inherits the descriptor
    /// but not the ownership.
    pid: u32,
}

/// An unnamed block's lock file, and how many of this process's objects
/// use it (the block, and each `LockTarget`).
type AnonymousLock = (CString, usize);

/// Unnamed blocks' lock files, by the identity of the block's object.
/// A forked child inherits the table, hence the parent's files.
fn anonymous_locks() -> MutexGuard<'static, HashMap<Identity, AnonymousLock>> {
    static TABLE: LazyLock<Mutex<HashMap<Identity, AnonymousLock>>> =
        LazyLock::new(Default::default);
    // Every change is one statement: a panic cannot leave it half done.
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One user of the unnamed-block lock file `path` is done with it; the
/// last one removes it, if this process made it. Found by its path: the
/// block's object, which keys the table, changes when the block grows.
fn let_go(path: &CString) {
    let mut table = anonymous_locks();
    let Some(id) = table
        .iter()
        .find_map(|(id, (known, _))| (known == path).then_some(*id))
    else {
        return;
    };
    let Some((path, users)) = table.get_mut(&id) else {
        return;
    };
    *users -= 1;
    if *users > 0 {
        return;
    }
    let mine = format!("/{ANON_PREFIX}{}-", std::process::id());
    if path
        .as_bytes()
        .windows(mine.len())
        .any(|w| w == mine.as_bytes())
    {
        let _ = lifetime::unlink(path);
    }
    table.remove(&id);
}

fn cpath(path: &Path) -> Result<CString> {
    cstring("open", path.as_os_str().as_bytes())
}

impl Backing {
    /// The lock of this mapping (see the module's documentation).
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let mut anonymous = None;
        let (path, made) = match &self.kind {
            Kind::File { path, .. } => (cpath(path)?, false),
            Kind::Named {
                file: Some(file), ..
            } => (cpath(&file.path)?, false),
            Kind::Named {
                held: Some(held), ..
            } => (lifetime::lock_file(held)?, true),
            Kind::Named { held: None, .. } => {
                return Err(Error::InvalidArgument(
                    "a named block that is not held".into(),
                ))
            }
            Kind::Anonymous => {
                let path = anonymous_lock(identity(&self.fd)?)?;
                anonymous = Some(path.clone());
                (path, true)
            }
        };
        // From here on the target owns its use of an unnamed block's file.
        let mut target = LockTarget {
            path,
            file: (0, 0),
            anonymous,
        };
        let fd = open_path(&target.path, libc::O_RDONLY, 0).map_err(|e| Error::io("open", e))?;
        target.file = identity(&fd)?;
        // A mapped file must still be at its path: the lock is reached by it.
        if !made && target.file != identity(&self.fd)? {
            return Err(moved());
        }
        Ok(target)
    }

    /// The block is done with its unnamed lock file (see [`let_go`]).
    pub(crate) fn forget_lock(&self) {
        if let (Kind::Anonymous, Ok(id)) = (&self.kind, identity(&self.fd)) {
            let path = anonymous_locks().get(&id).map(|(path, _)| path.clone());
            if let Some(path) = path {
                let_go(&path);
            }
        }
    }

    /// Carries an unnamed block's lock over to its new object (macOS grows
    /// a block by copying it into a new one).
    #[cfg(macos_limits)]
    pub(crate) fn move_lock(&self, old: &OwnedFd) -> Result<()> {
        let mut table = anonymous_locks();
        if let Some(path) = table.remove(&identity(old)?) {
            table.insert(identity(&self.fd)?, path);
        }
        Ok(())
    }
}

fn moved() -> Error {
    Error::io(
        "open",
        io::Error::new(
            io::ErrorKind::NotFound,
            "the mapped file is no longer at its path, where its lock is reached",
        ),
    )
}

/// The lock file of the unnamed block `id`, made on first use: the block
/// and the caller each count as one of its users.
fn anonymous_lock(id: Identity) -> Result<CString> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut table = anonymous_locks();
    if let Some((path, users)) = table.get_mut(&id) {
        *users += 1;
        return Ok(path.clone());
    }
    lifetime::ensure_state_dir()?;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cstring(
            "open",
            format!(
                "{}/{ANON_PREFIX}{}-{n}",
                lifetime::state_dir(),
                std::process::id()
            )
            .as_bytes(),
        )?;
        let flags = libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match open_path(&path, flags, 0o600) {
            Ok(_) => {
                table.insert(id, (path.clone(), 2));
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("open", e)),
        }
    }
}

impl LockTarget {
    /// A fresh open file description to acquire the lock through.
    pub(crate) fn description(&self) -> Result<LockDesc> {
        let fd = open_path(&self.path, libc::O_RDONLY, 0).map_err(|e| Error::io("open", e))?;
        if identity(&fd)? != self.file {
            return Err(moved());
        }
        Ok(LockDesc {
            fd,
            pid: std::process::id(),
        })
    }

    /// Whether anyone holds the lock. `flock` cannot ask without trying, so
    /// this takes the lock for an instant if it is free: a `try_acquire` at
    /// that instant elsewhere finds it held.
    pub(crate) fn is_locked(&self) -> Result<bool> {
        let probe = self.description()?;
        if probe.try_lock()? {
            probe.unlock()?;
            return Ok(false);
        }
        Ok(true)
    }
}

impl LockDesc {
    /// Takes the lock if it is free; returns whether it did.
    pub(crate) fn try_lock(&self) -> Result<bool> {
        flock(&self.fd, libc::LOCK_EX | libc::LOCK_NB, false)
    }

    /// Waits for the lock. A signal interrupts the wait with an error of
    /// kind [`io::ErrorKind::Interrupted`], so that the caller can run its
    /// signal handlers and call again.
    pub(crate) fn lock(&self) -> Result<()> {
        flock(&self.fd, libc::LOCK_EX, true).map(drop)
    }

    /// Releases the lock, reporting errors (dropping also releases it).
    pub(crate) fn unlock(self) -> Result<()> {
        flock(&self.fd, libc::LOCK_UN, false).map(drop)
    }

    /// Whether this process opened it (false in a forked child, which only
    /// inherited a copy of the descriptor).
    pub(crate) fn belongs_to_this_process(&self) -> bool {
        self.pid == std::process::id()
    }
}

impl crate::lock::desc::DescTarget for LockTarget {
    type Desc = LockDesc;
    fn description(&self) -> Result<LockDesc> {
        LockTarget::description(self)
    }
    fn is_locked(&self) -> Result<bool> {
        LockTarget::is_locked(self)
    }
}

impl crate::lock::desc::Desc for LockDesc {
    fn try_lock(&self) -> Result<bool> {
        LockDesc::try_lock(self)
    }
    fn lock(&self) -> Result<()> {
        LockDesc::lock(self)
    }
    fn unlock(self) -> Result<()> {
        LockDesc::unlock(self)
    }
    fn belongs_to_this_process(&self) -> bool {
        LockDesc::belongs_to_this_process(self)
    }
    /// `flock` cannot tell that its holder died.
    fn abandoned(&self) -> bool {
        false
    }
}
