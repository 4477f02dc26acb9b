//! Windows-like lifetime of named blocks where shared-memory objects cannot
//! be locked: macOS and the BSDs (and Linux built with `simulate-macos`).
//!
//! The protocol, for newcomers in `docs/named-blocks.md` ("macOS and the
//! BSDs"), in short:
//!
//! - Each name has a *record file* in the state directory (`state_dir.rs`):
//!   the full name, and either the shared-memory object that holds the
//!   block's bytes (a fresh random name per block, which fits macOS's 31
//!   bytes) with the block's exact size, or a file mapping's record (the
//!   format: `name_record.rs`).
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

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::file_record::{write_all, FileRecord};
use super::name_record::{NameRecord, Stored};
use super::names::{fresh_object_suffix, record_file_name, OBJECT_PREFIX};
use super::state_dir::{
    at_path, check_state_dir, draft_path, lock_path_of, object_of, open_record, record_file_mode,
    removed_path, Hidden,
};
use super::sys::errno;
use super::{
    cstring, fchmod, fchmod_object, fstat, open_path, shm_open, shm_unlink, Held, Joined, New,
};
use crate::access::CreateMode;
use crate::error::{Error, Result};

// What `Backing` and `blocks.rs` (`key`) and the mapping lock of
// `lock_portable.rs` (the rest) find here, as on Linux.
pub(crate) use super::state_dir::{ensure_state_dir, key, state_dir};
pub(crate) use super::sys::{flock, unlink};

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
            let path = draft_path(&suffix)?;
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
    let record = NameRecord {
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
    if let Ok(NameRecord {
        what: Stored::Block { object, .. },
        ..
    }) = NameRecord::read(fd)
    {
        let _ = shm_unlink(&cstring("shm_unlink", object.as_bytes())?);
        let _ = unlink(&lock_path_of(&object)?);
    }
    match unlink(key) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("unlink", e)),
        _ => Ok(()),
    }
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
        let record = NameRecord::read(&fd)?;
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
    let old = NameRecord::read(held)?;
    let (draft, _) = Draft::new(old.mode)?;
    let record = NameRecord {
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
    pub(crate) record: NameRecord,
    pub(crate) stat: libc::stat,
    pub(crate) path: PathBuf,
}

/// Reads the record of `base` without holding it.
pub(crate) fn look(base: &str) -> Result<Listed> {
    let key = key(base)?;
    let fd = open_record(&key).map_err(|e| Error::io("open", e))?;
    let record = NameRecord::read(&fd)?;
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
        if let Ok(record) = NameRecord::read(&fd) {
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
    match Hidden::of(file) {
        Hidden::Draft { .. } => {
            let young = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .is_ok_and(|now| now.as_secs().saturating_sub(st.st_mtime.max(0) as u64) < 5);
            Ok(!young && try_exclusive(fd)?)
        }
        Hidden::Removed => try_exclusive(fd),
        Hidden::Lock { suffix } => match shm_open(&object_of(suffix)?, libc::O_RDONLY, 0) {
            Err(e) => Ok(e.kind() == io::ErrorKind::NotFound),
            Ok(_) => Ok(false),
        },
        Hidden::UnnamedLock { rest } => {
            let pid = std::str::from_utf8(rest)
                .ok()
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<libc::pid_t>().ok());
            Ok(pid.is_some_and(|pid| {
                // SAFETY: signal 0 only asks whether the process exists.
                let asked = unsafe { libc::kill(pid, 0) };
                asked != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            }))
        }
        Hidden::Other => Ok(false),
    }
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
    match Hidden::of(file) {
        // A draft is named after its object, and may have died before it
        // wrote its record.
        Hidden::Draft { suffix } => {
            let _ = shm_unlink(&object_of(suffix)?);
        }
        Hidden::Removed => {
            remove_held(&fd, path)?;
            return Ok(true);
        }
        _ => {}
    }
    let _ = unlink(path);
    Ok(true)
}

/// The lock file of the block whose record file we hold as `held`
/// (`state_dir::lock_path_of`), made if it is not there yet: readable by those the
/// block's mode lets in, since `flock` needs no more.
pub(crate) fn lock_file(held: &OwnedFd) -> Result<CString> {
    let record = NameRecord::read(held)?;
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
