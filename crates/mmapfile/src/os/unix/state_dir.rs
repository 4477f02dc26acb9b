//! The portable backend's state directory, where the record files of names
//! live (see `lifetime_portable.rs`): where it is, whether it can be
//! trusted, and the paths of the files in it.
//!
//! Besides a record file for each name (see `names::record_file_name`),
//! it holds hidden files, each named by a prefix below: drafts of record
//! files, records that `rm` moved aside, and the mapping locks of
//! `lock_portable.rs`.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use super::lock::ANON_PREFIX;
use super::names::{record_file_name, OBJECT_PREFIX};
use super::sys::{cstring, fstat, lstat, open_path};
use crate::error::{Error, Result};

/// Where record files live: shared by all users (sticky, like `/tmp`), and
/// not cleaned by age, as macOS cleans `/tmp` (a long-lived block's record
/// must not go). Shared-memory objects do not survive a reboot; records
/// left from before one are dead and removed like any other dead block.
/// It must belong to root or to the user ([`ensure_state_dir`]).
const STATE_DIR: &str = "/var/tmp/mmapfile";

/// The state directory: [`STATE_DIR`].
#[cfg(not(simulated))]
pub(crate) fn state_dir() -> &'static str {
    STATE_DIR
}

/// The state directory: [`STATE_DIR`], or in the simulated backend (a
/// test build) `$MMAPFILE_SIMULATED_STATE_DIR`, so that a test can let
/// another user make the directory first without touching the machine's.
#[cfg(simulated)]
pub(crate) fn state_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var("MMAPFILE_SIMULATED_STATE_DIR").unwrap_or_else(|_| STATE_DIR.to_owned())
    })
}

/// Whether the state directory was found to be what it should be.
static CHECKED: OnceLock<()> = OnceLock::new();

/// Makes sure the state directory exists and is what it should be
/// ([`state_dir_problem`]): otherwise nothing in it can be trusted, and
/// every use of a name is refused with what to do.
pub(crate) fn ensure_state_dir() -> Result<()> {
    state_dir_checked(true)
}

/// Checks the state directory if it exists (looking for names makes none).
pub(super) fn check_state_dir() -> Result<()> {
    state_dir_checked(false)
}

fn state_dir_checked(create: bool) -> Result<()> {
    if CHECKED.get().is_some() {
        return Ok(());
    }
    let path = state_dir();
    let dir = cstring("mkdir", path.as_bytes())?;
    if create {
        make_state_dir(&dir)?;
    }
    let st = match lstat(&dir) {
        Ok(st) => st,
        // Not made yet: nothing in it to trust, nothing to find.
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("lstat", e)),
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    // mode_t is u16 on macOS and u32 on Linux.
    #[allow(clippy::useless_conversion)]
    if let Some(problem) = state_dir_problem(u32::from(st.st_mode), st.st_uid, me) {
        return Err(Error::Refused {
            op: "lstat",
            code: libc::EACCES,
            message: format!(
                "{path} {problem}, so named blocks cannot be kept there safely. When no \
                 named block is in use, an administrator can remove it and make it \
                 again as root: `sudo rm -rf {path} && sudo install -d -m 1777 -o root {path}` \
                 (see the security page of mmapfile's documentation)"
            ),
        });
    }
    let _ = CHECKED.set(());
    Ok(())
}

/// Makes the state directory `dir` unless it exists: open to all, sticky,
/// as /tmp is.
fn make_state_dir(dir: &CString) -> Result<()> {
    // SAFETY: `dir` is a NUL-terminated string that outlives the calls.
    if unsafe { libc::mkdir(dir.as_ptr(), 0o700) } == 0 {
        // Explicitly: the umask applied to mkdir. Nobody else can rename
        // our new directory in the sticky /var/tmp meanwhile.
        // SAFETY: as above.
        if unsafe { libc::chmod(dir.as_ptr(), 0o1777) } != 0 {
            return Err(Error::last_os("chmod"));
        }
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::AlreadyExists {
        return Err(Error::io("mkdir", err));
    }
    Ok(())
}

/// Why a state directory of mode `mode` (`st_mode`) owned by `owner` cannot
/// be trusted by the user `me`, if it cannot. It must be a real directory
/// (not a symbolic link) that belongs to root or to `me`: its owner can
/// remove or rename anything in it, sticky bit or not, so one that belongs
/// to another user would let that user end any name, or make two holders
/// of one name hold two blocks. If other users can write it, it must be
/// sticky, or they could remove or replace our records.
// mode_t is u16 on macOS and u32 on Linux, hence the widenings.
#[allow(clippy::useless_conversion)]
pub(super) fn state_dir_problem(mode: u32, owner: libc::uid_t, me: libc::uid_t) -> Option<String> {
    if mode & u32::from(libc::S_IFMT) != u32::from(libc::S_IFDIR) {
        return Some("is not a directory (a symbolic link or a file stands there)".into());
    }
    if owner != me && owner != 0 {
        return Some(format!(
            "belongs to user {owner}, who can remove or rename any record in it \
             (the sticky bit does not hold against a directory's owner)"
        ));
    }
    if mode & 0o022 != 0 && mode & u32::from(libc::S_ISVTX) == 0 {
        return Some(
            "can be written by other users and is not sticky, so they could remove or \
             replace any record in it"
                .into(),
        );
    }
    None
}

// The files in the state directory.

/// Prefix of record files under construction (with their object's suffix).
const NEW_PREFIX: &str = ".new-";

/// Prefix of records removed by `rm` while holders remained.
const REMOVED_PREFIX: &str = ".removed-";

/// Prefix of a block's lock file (with its object's suffix): the mapping
/// lock of `lock_portable.rs`, made by the first holder that asks for it.
const LOCK_PREFIX: &str = ".lock-";

fn in_dir(file: &str) -> Result<CString> {
    cstring("open", format!("{}/{file}", state_dir()).as_bytes())
}

/// The record file's path for the name `base`: the key the rest of the
/// backend passes around.
pub(crate) fn key(base: &str) -> Result<CString> {
    check_state_dir()?;
    in_dir(&record_file_name(base))
}

/// The path of a new draft, a record file under construction whose object
/// has the suffix `suffix`.
pub(super) fn draft_path(suffix: &str) -> Result<CString> {
    in_dir(&format!("{NEW_PREFIX}{suffix}"))
}

/// Where `rm` moves a record file whose holders remain, so that their last
/// one can remove it: named after the file's inode, which it keeps.
pub(super) fn removed_path(fd: &OwnedFd) -> Result<CString> {
    let st = fstat(fd)?;
    in_dir(&format!("{REMOVED_PREFIX}{}-{}", st.st_dev, st.st_ino))
}

/// The lock file of the block whose object is `object`.
pub(super) fn lock_path_of(object: &str) -> Result<CString> {
    let suffix = object.strip_prefix(OBJECT_PREFIX).unwrap_or(object);
    in_dir(&format!("{LOCK_PREFIX}{suffix}"))
}

/// The shared-memory object named by the suffix `suffix` (of a draft or a
/// lock file).
pub(super) fn object_of(suffix: &[u8]) -> Result<CString> {
    let mut object = OBJECT_PREFIX.as_bytes().to_vec();
    object.extend_from_slice(suffix);
    cstring("shm_unlink", &object)
}

/// What a hidden file of the state directory is, told by its name `file`.
pub(super) enum Hidden<'a> {
    /// A record file under construction, named after its object's suffix.
    Draft { suffix: &'a [u8] },
    /// A record file that `rm` moved aside while holders remained.
    Removed,
    /// A block's lock file, named after its object's suffix.
    Lock { suffix: &'a [u8] },
    /// An unnamed block's lock file (`lock_portable.rs`): what follows the
    /// prefix starts with its process's id.
    UnnamedLock { rest: &'a [u8] },
    /// Anything else: not ours to judge.
    Other,
}

impl<'a> Hidden<'a> {
    pub(super) fn of(file: &'a [u8]) -> Hidden<'a> {
        if let Some(suffix) = file.strip_prefix(NEW_PREFIX.as_bytes()) {
            Hidden::Draft { suffix }
        } else if file.starts_with(REMOVED_PREFIX.as_bytes()) {
            Hidden::Removed
        } else if let Some(suffix) = file.strip_prefix(LOCK_PREFIX.as_bytes()) {
            Hidden::Lock { suffix }
        } else if let Some(rest) = file.strip_prefix(ANON_PREFIX.as_bytes()) {
            Hidden::UnnamedLock { rest }
        } else {
            Hidden::Other
        }
    }
}

/// Opens a file of the state directory to read or lock it, never through a
/// symbolic link, and without waiting for a writer if another user put a
/// FIFO there (`O_NONBLOCK` changes nothing for a regular file).
pub(super) fn open_record(path: &CString) -> io::Result<OwnedFd> {
    open_path(
        path,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )
}

/// Whether the file open as `fd` is the one at `path` now.
pub(super) fn at_path(fd: &OwnedFd, path: &CString) -> Result<bool> {
    let st = fstat(fd)?;
    match lstat(path) {
        Ok(now) => Ok(now.st_dev == st.st_dev && now.st_ino == st.st_ino),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("lstat", e)),
    }
}

/// A record file's (or lock file's) mode for a block of mode `mode`:
/// readable by those the block's mode lets in, since holding it and
/// locking it take no more; written only by its owner.
pub(super) fn record_file_mode(mode: u32) -> u32 {
    (mode & 0o444) | 0o600
}
