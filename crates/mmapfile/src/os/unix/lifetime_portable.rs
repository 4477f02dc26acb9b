//! Windows-like lifetime of named blocks where shared-memory objects cannot
//! be locked: macOS and the BSDs (and Linux built with `simulate-macos`).
//!
//! The protocol, for newcomers in `docs/named-blocks.md` ("macOS and the
//! BSDs"), in short:
//!
//! - Each name has a *record file* in the state directory [`STATE_DIR`]:
//!   the full name, and either the shared-memory object that holds the
//!   block's bytes (a fresh random name per block, which fits macOS's 31
//!   bytes) with the block's exact size, or a file mapping's record.
//! - Every holder keeps a shared `flock` on the record file, which the
//!   kernel drops when the holder's descriptor closes, exit and SIGKILL
//!   included. `flock` works on regular files everywhere, and a lock
//!   belongs to one open file description, so two holders in one process
//!   are two holders.
//! - A record file gets its name (`link`) only once it is complete and held
//!   by its creator, and its object exists and is sized: nobody sees a block
//!   under construction. A creator that dies before leaves a `.new-*` file
//!   that `gc` removes with its object.
//! - Whoever gets the *exclusive* lock on a record file that is still at
//!   its name removes the block (object, then name) before it lets go:
//!   a closing holder that finds itself last, an opener or `gc` that finds
//!   no holder. So anyone who waited for an exclusive holder and finds the
//!   record file gone from its name starts over, and anyone who finds it
//!   still there knows the block is live.
//! - `flock` cannot convert a lock atomically (it drops the old lock
//!   first), so the protocol never converts a lock it must keep.

use std::ffi::CString;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::names::{fresh_object_suffix, record_file_name, OBJECT_DIGITS, OBJECT_PREFIX};
use super::record::{read_small, write_all, FileRecord};
use super::sys::errno;
use super::{
    cstring, fchmod, fchmod_object, fstat, open_path, shm_open, shm_unlink, Held, Joined, New,
};
use crate::access::CreateMode;
use crate::error::{Error, Result};

/// Where record files live: shared by all users (sticky, like `/tmp`), and
/// not cleaned by age, as macOS cleans `/tmp` (a long-lived block's record
/// must not go). Shared-memory objects do not survive a reboot; records
/// left from before one are dead and removed like any other dead block.
/// It must belong to root or to the user ([`ensure_state_dir`]).
pub(crate) const STATE_DIR: &str = "/var/tmp/mmapfile";

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

/// First line of every record (with its format version).
const HEADER: &str = "mmapfile name 1";

/// Prefix of record files under construction (with their object's suffix).
const NEW_PREFIX: &str = ".new-";

/// Prefix of records removed by `rm` while holders remained.
const REMOVED_PREFIX: &str = ".removed-";

/// Prefix of a block's lock file (with its object's suffix): the mapping
/// lock of `lock_portable.rs`, made by the first holder that asks for it.
const LOCK_PREFIX: &str = ".lock-";

/// What a record file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The full name (after its namespace prefix).
    pub(crate) name: String,
    /// The block's or mapping's permission bits, as given (the record
    /// file's own let nobody but its owner write it).
    pub(crate) mode: u32,
    pub(crate) what: Stored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A block: the object holding its bytes, and its exact size (macOS
    /// reports an object's size rounded up to whole pages).
    Block { object: String, size: u64 },
    /// A named file mapping.
    File(FileRecord),
}

impl Record {
    pub(super) fn encode(&self) -> Vec<u8> {
        let name: String = self.name.bytes().map(|b| format!("{b:02x}")).collect();
        let mut out = format!("{HEADER}\nname {name}\nmode {:o}\n", self.mode).into_bytes();
        match &self.what {
            Stored::Block { object, size } => {
                out.extend_from_slice(format!("block {object}\nsize {size}\n").as_bytes())
            }
            Stored::File(record) => out.extend_from_slice(&record.encode()),
        }
        out
    }

    /// Reads a record that any process may have written: anything but a
    /// record exactly as [`Record::encode`] writes it is refused.
    pub(super) fn decode(bytes: &[u8]) -> Result<Record> {
        let bad = || {
            Error::io(
                "read",
                io::Error::new(io::ErrorKind::InvalidData, "a name's record is damaged"),
            )
        };
        let mut parts = bytes.splitn(4, |&b| b == b'\n');
        if parts.next() != Some(HEADER.as_bytes()) {
            return Err(bad());
        }
        let hex = parts
            .next()
            .and_then(|l| l.strip_prefix(b"name "))
            .filter(|h| h.len() % 2 == 0)
            .ok_or_else(bad)?;
        let name = hex
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mode = parts
            .next()
            .and_then(|l| l.strip_prefix(b"mode "))
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .filter(|&m| m <= 0o777)
            .ok_or_else(bad)?;
        let rest = parts.next().ok_or_else(bad)?;
        let what = if let Some(block) = rest.strip_prefix(b"block ") {
            let text = std::str::from_utf8(block).map_err(|_| bad())?;
            let mut lines = text.split('\n');
            let object = lines.next().ok_or_else(bad)?.to_owned();
            let size = lines
                .next()
                .and_then(|l| l.strip_prefix("size "))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&size| size > 0)
                .ok_or_else(bad)?;
            // The object's name is used in paths (its lock file) and
            // removed with the block: only a name this backend makes.
            if !is_object_name(&object) || lines.next() != Some("") {
                return Err(bad());
            }
            Stored::Block { object, size }
        } else {
            Stored::File(FileRecord::decode(rest)?)
        };
        let record = Record { name, mode, what };
        // Only what `encode` writes: no second spelling of a record (upper
        // case hex, leading zeros, a `+`) passes.
        if record.encode() != bytes {
            return Err(bad());
        }
        Ok(record)
    }

    fn read(fd: &OwnedFd) -> Result<Record> {
        Record::decode(&read_small(fd)?)
    }
}

/// `flock(fd, op)`; `Ok(false)` if a non-blocking request was refused.
/// A signal's `EINTR` is returned (an error of kind `Interrupted`) only when
/// `interruptible`; otherwise the call is made again. (The mapping lock of
/// `lock_portable.rs` uses it too.)
pub(crate) fn flock(fd: &OwnedFd, op: libc::c_int, interruptible: bool) -> Result<bool> {
    #[cfg(simulated)]
    super::simulated::refuse_lock_on_shm(fd)?;
    loop {
        // SAFETY: `fd` is an open descriptor.
        if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) if !interruptible => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(Error::io("flock", err)),
        }
    }
}

fn try_exclusive(fd: &OwnedFd) -> Result<bool> {
    flock(fd, libc::LOCK_EX | libc::LOCK_NB, false)
}

fn try_shared(fd: &OwnedFd) -> Result<bool> {
    flock(fd, libc::LOCK_SH | libc::LOCK_NB, false)
}

/// Waits for a shared lock. Nobody waits while holding the exclusive lock,
/// so this cannot deadlock.
fn wait_shared(fd: &OwnedFd) -> Result<()> {
    flock(fd, libc::LOCK_SH, false).map(drop)
}

fn unlock(fd: &OwnedFd) -> Result<()> {
    flock(fd, libc::LOCK_UN, false).map(drop)
}

fn lstat(path: &CString) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` writable memory for a stat.
    if unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: lstat returned 0, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// Whether the file open as `fd` is the one at `path` now.
fn at_path(fd: &OwnedFd, path: &CString) -> Result<bool> {
    let st = fstat(fd)?;
    match lstat(path) {
        Ok(now) => Ok(now.st_dev == st.st_dev && now.st_ino == st.st_ino),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("lstat", e)),
    }
}

pub(crate) fn unlink(path: &CString) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::unlink(path.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn in_dir(file: &str) -> Result<CString> {
    cstring("open", format!("{}/{file}", state_dir()).as_bytes())
}

/// Opens a file of the state directory to read or lock it, never through a
/// symbolic link, and without waiting for a writer if another user put a
/// FIFO there (`O_NONBLOCK` changes nothing for a regular file).
fn open_record(path: &CString) -> io::Result<OwnedFd> {
    open_path(
        path,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )
}

/// Whether `object` is a name this backend gives a block's object:
/// [`OBJECT_PREFIX`] and [`OBJECT_DIGITS`] lower-case hex digits.
pub(super) fn is_object_name(object: &str) -> bool {
    object.strip_prefix(OBJECT_PREFIX).is_some_and(|suffix| {
        suffix.len() == OBJECT_DIGITS
            && suffix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The shared-memory object named by the suffix `suffix` (of a draft or a
/// lock file).
fn object_of(suffix: &[u8]) -> Result<CString> {
    let mut object = OBJECT_PREFIX.as_bytes().to_vec();
    object.extend_from_slice(suffix);
    cstring("shm_unlink", &object)
}

/// The lock file of the block whose object is `object`.
fn lock_path_of(object: &str) -> Result<CString> {
    let suffix = object.strip_prefix(OBJECT_PREFIX).unwrap_or(object);
    in_dir(&format!("{LOCK_PREFIX}{suffix}"))
}

/// A record file's (or lock file's) mode for a block of mode `mode`:
/// readable by those the block's mode lets in, since holding it and
/// locking it take no more; written only by its owner.
fn record_file_mode(mode: u32) -> u32 {
    (mode & 0o444) | 0o600
}

/// The record file's path for the name `base`: the key the rest of the
/// backend passes around.
pub(crate) fn key(base: &str) -> Result<CString> {
    check_state_dir()?;
    in_dir(&record_file_name(base))
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
fn check_state_dir() -> Result<()> {
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

/// A record file under construction: `.new-<suffix>`, removed again (with
/// its object) unless it was published.
struct Draft {
    fd: OwnedFd,
    cleanup: Cleanup,
}

/// What a draft leaves behind unless it is published.
struct Cleanup {
    path: CString,
    /// The block's object, once made.
    object: Option<CString>,
    /// Whether the draft's file is still there under its draft name.
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(object) = &self.object {
            let _ = shm_unlink(object);
        }
        if self.armed {
            let _ = unlink(&self.path);
        }
    }
}

impl Draft {
    /// Creates a draft, locked shared from the start (so that `gc` never
    /// takes a live draft for a dead one). Returns it and its suffix.
    fn new(mode: u32) -> Result<(Draft, String)> {
        ensure_state_dir()?;
        loop {
            let suffix = fresh_object_suffix()?;
            let path = in_dir(&format!("{NEW_PREFIX}{suffix}"))?;
            let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            match open_path(&path, flags, 0o600) {
                Ok(fd) => {
                    let draft = Draft {
                        fd,
                        cleanup: Cleanup {
                            path,
                            object: None,
                            armed: true,
                        },
                    };
                    wait_shared(&draft.fd)?;
                    fchmod(&draft.fd, record_file_mode(mode))?;
                    return Ok((draft, suffix));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("open", e)),
            }
        }
    }

    /// Gives the draft the name `key`. `Ok(None)`: the name is taken, and
    /// the draft and its object are gone.
    fn publish(self, key: &CString) -> Result<Option<OwnedFd>> {
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        if unsafe { libc::link(self.cleanup.path.as_ptr(), key.as_ptr()) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::AlreadyExists {
                return Ok(None);
            }
            return Err(Error::io("link", err));
        }
        let Draft { fd, mut cleanup } = self;
        // The object is the block's now; only the draft name goes.
        cleanup.object = None;
        Ok(Some(fd))
    }

    /// Puts the draft in place of the record file at `key` (`rename`).
    fn replace(self, key: &CString) -> Result<OwnedFd> {
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        if unsafe { libc::rename(self.cleanup.path.as_ptr(), key.as_ptr()) } != 0 {
            return Err(Error::last_os("rename"));
        }
        let Draft { fd, mut cleanup } = self;
        cleanup.armed = false;
        Ok(fd)
    }
}

/// Creates the block or file mapping `new` under `key`, held by us. `Ok(None)`:
/// the name is taken.
fn create(key: &CString, base: &str, new: &New<'_>, mode: u32) -> Result<Option<Joined>> {
    let (mut draft, suffix) = Draft::new(mode)?;
    let (what, stored, memory) = match new {
        New::Block { size, init, .. } => {
            let object = format!("{OBJECT_PREFIX}{suffix}");
            let cobject = cstring("shm_open", object.as_bytes())?;
            let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
            let fd = shm_open(&cobject, flags, mode as libc::mode_t)
                .map_err(|e| Error::io("shm_open", e))?;
            draft.cleanup.object = Some(cobject);
            init(&fd)?;
            fchmod_object(&fd, mode)?;
            let stored = Stored::Block {
                object,
                size: *size,
            };
            (Held::Block { size: Some(*size) }, stored, Some(fd))
        }
        New::File(record) => (
            Held::File((*record).clone()),
            Stored::File((*record).clone()),
            None,
        ),
    };
    let record = Record {
        name: base.to_owned(),
        mode: mode & 0o777,
        what: stored,
    };
    write_all(&draft.fd, &record.encode())?;
    let Some(held) = draft.publish(key)? else {
        return Ok(None);
    };
    Ok(Some(Joined {
        held,
        memory,
        segment: None,
        what,
        lockable: true,
        created: true,
    }))
}

/// Removes the block whose record file `fd` we hold exclusively and found
/// at `key`: its object first, so that the object's name is never removed
/// by anyone but its block's last holder, then the record file.
fn remove_held(fd: &OwnedFd, key: &CString) -> Result<()> {
    // Only our own: another user's record may name any object or lock file
    // (ours too), which we would remove for them.
    // SAFETY: geteuid has no preconditions.
    if fstat(fd)?.st_uid != unsafe { libc::geteuid() } {
        return Err(errno("unlink", libc::EPERM));
    }
    if let Ok(Record {
        what: Stored::Block { object, .. },
        ..
    }) = Record::read(fd)
    {
        let _ = shm_unlink(&cstring("shm_unlink", object.as_bytes())?);
        let _ = unlink(&lock_path_of(&object)?);
    }
    match unlink(key) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", e)),
        _ => Ok(()),
    }
}

/// Where `rm` moves a record file whose holders remain, so that their last
/// one can remove it: named after the file's inode, which it keeps.
fn removed_path(fd: &OwnedFd) -> Result<CString> {
    let st = fstat(fd)?;
    in_dir(&format!("{REMOVED_PREFIX}{}-{}", st.st_dev, st.st_ino))
}

/// What looking at a published record file found.
enum Found {
    /// We now hold it (shared lock).
    Held,
    /// Someone holds it; we do not (only asked to look).
    Live,
    /// Dead, or gone from its name: start over with the name.
    Gone,
}

/// Joins the block whose record file `fd` was opened at `key` as a holder
/// (`hold`), or only finds out whether it is live. A dead block is removed.
fn examine(fd: &OwnedFd, key: &CString, hold: bool) -> Result<Found> {
    loop {
        if try_exclusive(fd)? {
            // No holder, and none can join while we hold this: if it is
            // still the name's, its holders all died.
            if at_path(fd, key)? {
                remove_held(fd, key).map_err(|e| match e.raw_os_error() {
                    // Another user's dead block: to us it is not there.
                    Some(libc::EPERM | libc::EACCES) => errno("open", libc::ENOENT),
                    _ => e,
                })?;
            }
            return Ok(Found::Gone);
        }
        if !hold {
            return Ok(Found::Live);
        }
        if try_shared(fd)? {
            // Nobody held it exclusively: the refusal above was a holder's
            // shared lock, or an exclusive holder's that has since removed
            // the block (or replaced its record), which `at_path` tells.
            return Ok(if at_path(fd, key)? {
                Found::Held
            } else {
                Found::Gone
            });
        }
        // An exclusive holder: a last holder, a collector or a resize at
        // work. Wait for it, then look again.
        wait_shared(fd)?;
        if !at_path(fd, key)? {
            return Ok(Found::Gone);
        }
        unlock(fd)?;
    }
}

/// Opens or creates the name `key` (of the name `base`) and joins it as a
/// holder; `new` is what a creating call makes (none: the name must exist).
pub(crate) fn join(
    key: &CString,
    base: &str,
    new: Option<New<'_>>,
    create_mode: CreateMode,
    writable: bool,
    mode: u32,
    allow_other_owner: bool,
) -> Result<Joined> {
    let may_create = new.is_some() && create_mode != CreateMode::OpenOnly;
    loop {
        if let (CreateMode::CreateOnly, Some(new)) = (create_mode, &new) {
            if let Some(joined) = create(key, base, new, mode)? {
                return Ok(joined);
            }
        }
        let fd = match open_record(key) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (true, Some(new)) = (may_create, &new) else {
                    return Err(Error::io("open", e));
                };
                match create(key, base, new, mode)? {
                    Some(joined) => return Ok(joined),
                    None => continue,
                }
            }
            Err(e) => return Err(Error::io("open", e)),
        };
        // SAFETY: geteuid has no preconditions.
        if fstat(&fd)?.st_uid != unsafe { libc::geteuid() } && !allow_other_owner {
            return Err(errno("open", libc::EACCES));
        }
        match examine(&fd, key, create_mode != CreateMode::CreateOnly)? {
            Found::Held => {}
            Found::Live => return Err(errno("open", libc::EEXIST)),
            Found::Gone => continue,
        }
        // From here on `fd` holds the block, and its record cannot change.
        let record = Record::read(&fd)?;
        if record.name != base {
            let _ = release(&fd, key, true);
            if record_file_name(&record.name) == record_file_name(base) {
                return Err(Error::InvalidName(format!(
                    "{base:?} and {:?} share a record file (a digest collision)",
                    record.name
                )));
            }
            // Another name's record file under this name: a hard link, so
            // that this name would reach that name's block.
            return Err(Error::Refused {
                op: "open",
                code: libc::EACCES,
                message: format!(
                    "the record file of the name {base:?} is the name {:?}'s (a hard link \
                     was made to it): refused",
                    record.name
                ),
            });
        }
        let (what, memory) = match record.what {
            Stored::File(file) => (Held::File(file), None),
            Stored::Block { object, size } => {
                let cobject = cstring("shm_open", object.as_bytes())?;
                let flags = if writable {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                match shm_open(&cobject, flags, 0) {
                    Ok(memory) => {
                        // Another user's record could name one of our own
                        // blocks' objects: the bytes must be the record's
                        // owner's.
                        let owner = fstat(&fd)?.st_uid;
                        if fstat(&memory)?.st_uid != owner {
                            let _ = release(&fd, key, true);
                            return Err(Error::Refused {
                                op: "shm_open",
                                code: libc::EACCES,
                                message: format!(
                                    "the record of the name {base:?} (user {owner}'s) leads \
                                     to another user's shared-memory object: refused"
                                ),
                            });
                        }
                        (Held::Block { size: Some(size) }, Some(memory))
                    }
                    // The record outlived its object: a last holder died
                    // between removing the two. Treat as dead.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        release(&fd, key, true)?;
                        continue;
                    }
                    Err(e) => {
                        let _ = release(&fd, key, true);
                        return Err(Error::io("shm_open", e));
                    }
                }
            }
        };
        return Ok(Joined {
            held: fd,
            memory,
            segment: None,
            what,
            lockable: true,
            created: false,
        });
    }
}

/// Leaves the block as a holder: the last holder removes it. The
/// descriptor is closed by the caller afterwards.
pub(crate) fn release(fd: &OwnedFd, key: &CString, _lockable: bool) -> Result<()> {
    // Drop our lock, then try for the exclusive one: of holders that leave
    // together, the one that tries last finds the others' locks gone.
    unlock(fd)?;
    if !try_exclusive(fd)? {
        return Ok(());
    }
    if at_path(fd, key)? {
        return remove_held(fd, key).or_else(|e| match e.raw_os_error() {
            // Another user's block, which we may not remove: dead until
            // its owner's next open or `gc`.
            Some(libc::EPERM | libc::EACCES) => Ok(()),
            _ => Err(e),
        });
    }
    // Moved aside by `rm` while we held it: nobody can reach it by its
    // name any more, and we were its last holder.
    let removed = removed_path(fd)?;
    if at_path(fd, &removed)? {
        let _ = remove_held(fd, &removed);
    }
    Ok(())
}

/// Replaces the file mapping record of the name we hold with `record`, if
/// we are its only holder, as a resize does on Windows. Never converts our
/// lock while others may hold: the new record file is published by
/// `rename` over the old one while we hold the old one exclusively.
pub(crate) fn rewrite_file_record(
    held: &mut OwnedFd,
    key: &CString,
    file: &FileRecord,
) -> Result<bool> {
    let old = Record::read(held)?;
    let (draft, _) = Draft::new(old.mode)?;
    let record = Record {
        what: Stored::File(file.clone()),
        ..old
    };
    write_all(&draft.fd, &record.encode())?;
    unlock(held)?;
    if !try_exclusive(held)? {
        // Others hold it: take our hold back. If they all left while we
        // held nothing and the last removed the name, publish ours anew.
        wait_shared(held)?;
        if at_path(held, key)? {
            return Ok(false);
        }
        return match draft.publish(key)? {
            Some(fd) => {
                *held = fd;
                Ok(true)
            }
            None => Ok(false),
        };
    }
    if !at_path(held, key)? {
        // Removed by `rm` meanwhile: keep holding what we have.
        wait_shared(held)?;
        return Ok(false);
    }
    match draft.replace(key) {
        Ok(fd) => {
            // Our old record file (now nameless) closes with the old
            // descriptor; anyone waiting on it finds it gone from the name
            // and starts over.
            *held = fd;
            Ok(true)
        }
        Err(e) => {
            wait_shared(held)?;
            Err(e)
        }
    }
}

/// Removes the dead block at `key` (no holder at all) and returns whether
/// it did. Live blocks are left alone.
pub(crate) fn collect(key: &CString) -> Result<bool> {
    let fd = match open_record(key) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("open", e)),
    };
    if try_exclusive(&fd)? && at_path(&fd, key)? {
        remove_held(&fd, key)?;
        return Ok(true);
    }
    Ok(false)
}

/// Removes the name at `key` whatever its holders do: the record file moves
/// aside, and the block goes with it now, or with its last holder (who
/// alone can still reach it). Returns whether holders remained.
pub(crate) fn remove(key: &CString) -> Result<bool> {
    let fd = open_record(key).map_err(|e| Error::io("open", e))?;
    let aside = removed_path(&fd)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    if unsafe { libc::rename(key.as_ptr(), aside.as_ptr()) } != 0 {
        return Err(Error::last_os("rename"));
    }
    // Nobody holds it: nobody else will remove it.
    if try_exclusive(&fd)? {
        if at_path(&fd, &aside)? {
            remove_held(&fd, &aside)?;
        }
        return Ok(false);
    }
    Ok(true)
}

/// One record file of the state directory, as `ls` shows it.
pub(crate) struct Listed {
    pub(crate) record: Record,
    pub(crate) stat: libc::stat,
    pub(crate) path: PathBuf,
}

/// Reads the record of `base` without holding it.
pub(crate) fn look(base: &str) -> Result<Listed> {
    let key = key(base)?;
    let fd = open_record(&key).map_err(|e| Error::io("open", e))?;
    let record = Record::read(&fd)?;
    if record.name != base {
        return Err(errno("open", libc::ENOENT));
    }
    Ok(Listed {
        stat: fstat(&fd)?,
        record,
        path: PathBuf::from(OsStr::from_bytes(key.as_bytes())),
    })
}

/// The records of this user's names, and the leftovers of creators that
/// died (`.new-*` files nobody holds), which `gc` removes.
pub(crate) fn list(me: libc::uid_t) -> Result<(Vec<Listed>, Vec<CString>)> {
    check_state_dir()?;
    let dir = match std::fs::read_dir(state_dir()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io("opendir", e)),
    };
    let mut listed = Vec::new();
    let mut stale = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::io("readdir", e))?;
        let path = cstring("open", entry.path().as_os_str().as_bytes())?;
        let Ok(fd) = open_record(&path) else {
            continue; // removed while we listed, or not ours to read
        };
        let st = fstat(&fd)?;
        if st.st_uid != me {
            continue;
        }
        let file_name = entry.file_name();
        if file_name.as_bytes().starts_with(b".") {
            if is_stale(&fd, file_name.as_bytes(), &st)? {
                stale.push(path);
            }
            continue;
        }
        if let Ok(record) = Record::read(&fd) {
            listed.push(Listed {
                record,
                stat: st,
                path: entry.path(),
            });
        }
    }
    Ok((listed, stale))
}

/// Whether the hidden file `file` (open as `fd`) is left from a process
/// that died: a draft nobody holds that stopped changing (one a few seconds
/// old may still be between being made and being locked), a record moved
/// aside by `rm` whose holders are gone, a block's lock file whose block is
/// gone, or an unnamed block's lock file whose process is gone.
fn is_stale(fd: &OwnedFd, file: &[u8], st: &libc::stat) -> Result<bool> {
    if file.starts_with(NEW_PREFIX.as_bytes()) {
        let young = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .is_ok_and(|now| now.as_secs().saturating_sub(st.st_mtime.max(0) as u64) < 5);
        return Ok(!young && try_exclusive(fd)?);
    }
    if file.starts_with(REMOVED_PREFIX.as_bytes()) {
        return try_exclusive(fd);
    }
    if let Some(suffix) = file.strip_prefix(LOCK_PREFIX.as_bytes()) {
        return match shm_open(&object_of(suffix)?, libc::O_RDONLY, 0) {
            Err(e) => Ok(e.kind() == io::ErrorKind::NotFound),
            Ok(_) => Ok(false),
        };
    }
    if let Some(rest) = file.strip_prefix(super::lock::ANON_PREFIX.as_bytes()) {
        let pid = std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        return Ok(pid.is_some_and(|pid| {
            // SAFETY: signal 0 only asks whether the process exists.
            let asked = unsafe { libc::kill(pid, 0) };
            asked != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }));
    }
    Ok(false)
}

/// Removes a leftover that [`list`] found (with its block's object), if it
/// is still stale.
pub(crate) fn remove_stale(path: &CString) -> Result<bool> {
    let Ok(fd) = open_record(path) else {
        return Ok(false);
    };
    let file = path.as_bytes().rsplit(|&b| b == b'/').next().unwrap_or(b"");
    if !(is_stale(&fd, file, &fstat(&fd)?)? && at_path(&fd, path)?) {
        return Ok(false);
    }
    if let Some(suffix) = file.strip_prefix(NEW_PREFIX.as_bytes()) {
        // A draft is named after its object, and may have died before it
        // wrote its record.
        let _ = shm_unlink(&object_of(suffix)?);
    } else if file.starts_with(REMOVED_PREFIX.as_bytes()) {
        remove_held(&fd, path)?;
        return Ok(true);
    }
    let _ = unlink(path);
    Ok(true)
}

/// The lock file of the block whose record file we hold as `held`
/// ([`LOCK_PREFIX`]), made if it is not there yet: readable by those the
/// block's mode lets in, since `flock` needs no more.
pub(crate) fn lock_file(held: &OwnedFd) -> Result<CString> {
    let record = Record::read(held)?;
    let Stored::Block { object, .. } = &record.what else {
        return Err(Error::InvalidArgument(
            "a file mapping locks its file".into(),
        ));
    };
    let path = lock_path_of(object)?;
    let flags = libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    match open_path(&path, flags, 0o600) {
        // Explicitly, so that the umask does not keep other holders out.
        Ok(fd) => fchmod(&fd, record_file_mode(record.mode))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Made by another holder, or planted by someone who saw the
            // object's name (a draft's name shows it): whoever holds a
            // planted file's lock would hold ours. It must be a file of the
            // block's owner, as the record file is.
            let refused = |what: &str| Error::Refused {
                op: "open",
                code: libc::EACCES,
                message: format!(
                    "the lock file {} {what}: refused",
                    String::from_utf8_lossy(path.as_bytes())
                ),
            };
            let fd = match open_record(&path) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(refused("is a symbolic link"))
                }
                Err(e) => return Err(Error::io("open", e)),
            };
            let st = fstat(&fd)?;
            // mode_t is u16 on macOS and u32 on Linux.
            #[allow(clippy::useless_conversion)]
            let regular =
                u32::from(st.st_mode) & u32::from(libc::S_IFMT) == u32::from(libc::S_IFREG);
            if !regular || st.st_uid != fstat(held)?.st_uid {
                return Err(refused("belongs to another user than the block"));
            }
        }
        Err(e) => return Err(Error::io("open", e)),
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, mode: u32, suffix: &str, size: u64) -> Record {
        Record {
            name: name.to_owned(),
            mode,
            what: Stored::Block {
                object: format!("{OBJECT_PREFIX}{suffix}"),
                size,
            },
        }
    }

    #[test]
    fn records_read_back_what_was_written() {
        let block = block("odd\nname ß 日本", 0o640, "0123456789abcdef01234", 12345);
        assert_eq!(Record::decode(&block.encode()).unwrap(), block);
        let file = Record {
            name: "x".repeat(700),
            mode: 0o600,
            what: Stored::File(FileRecord {
                size: 7,
                identity: super::super::record::Identity::of(
                    &open_path(&c"/".to_owned(), libc::O_RDONLY, 0).unwrap(),
                )
                .unwrap(),
                path: PathBuf::from("/tmp/a\nb"),
            }),
        };
        assert_eq!(Record::decode(&file.encode()).unwrap(), file);
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = block("n", 0o600, "0", 1).encode();
        for cut in 0..good.len() {
            assert!(Record::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }
}
