//! Windows-like lifetime of named blocks on Linux.
//!
//! A block lives while some holder has it open; the protocol that makes this
//! true is described for newcomers in `docs/named-blocks.md`. In short:
//!
//! - Every holder keeps a shared open-file-description (OFD) lock on byte
//!   [`LIVENESS_BYTE`] of the shared-memory object. The kernel drops it when
//!   the holder's descriptor closes, which includes exit and SIGKILL.
//! - Nobody ever uses a block under construction. A block's record is
//!   created under its name (`O_CREAT | O_EXCL`) empty, and held by its
//!   creator, which finishes it by its last step (the segment's reference,
//!   or the size). A record that is still empty is *unfinished*: an opener
//!   that finds one held waits for it, and one that finds it without a
//!   holder (its creator died, or has not taken its lock yet) removes it
//!   like a dead block, so a creator checks `st_nlink` once it holds its
//!   lock. A file mapping's record, written in several steps, is published
//!   only once written and held (`O_TMPFILE` + `linkat`).
//! - The name is removed only by a process that holds the *exclusive* lock
//!   on the object the name refers to, and that has checked (`st_nlink`)
//!   that the object is still linked. A closing holder gets that lock by
//!   converting its shared lock without waiting (or, if refused, by
//!   dropping it and trying once more); an opener that gets it finds a dead
//!   block and removes it.
//! - Anyone who gets a lock re-checks `st_nlink`: an object unlinked in the
//!   meantime is never used, the caller starts over with the name.

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::file_record::{FileRecord, MARK};
use super::names::{is_digested, shm_name};
use super::segment::{creation_key, AttachError, Segment, SegmentRef};
use super::space::{populate, room_in_memory};
use super::sys::errno;
use super::{cstring, fchmod, fstat, shm_open, shm_unlink, Held, Joined, New, SHM_DIR};
use crate::access::CreateMode;
use crate::error::{Error, Result};

/// What fills a new record (a block's memory and reference, or a file
/// mapping's record), given the key to make a segment under
/// ([`creation_key`], or `IPC_PRIVATE` for a record nobody can find yet).
type Fill<'a> = &'a dyn Fn(&OwnedFd, libc::key_t) -> Result<()>;

fn geteuid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The byte whose lock marks a holder. Byte 1 and up are free for
/// user-level locks, which must never touch byte 0.
pub(crate) const LIVENESS_BYTE: libc::off_t = 0;

fn ofd_lock(fd: RawFd, cmd: libc::c_int, ty: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct;
    // `l_pid` must be 0 for OFD locks.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LIVENESS_BYTE;
    fl.l_len = 1;
    loop {
        // SAFETY: `fd` is an open descriptor and `fl` a valid, writable flock.
        if unsafe { libc::fcntl(fd, cmd, &mut fl) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Converts our shared lock to the exclusive one if we are the only
/// holder, for a holder about to remove the name (the last to leave, or one
/// that found the record unfinished). `Ok(false)`: another holder stays, and
/// we hold nothing now.
///
/// Two holders doing this at once can each be refused because of the
/// other's shared lock, and the name would be left behind. So a refused one
/// drops its lock and tries again: of those that try together, the one that
/// tries last finds the others' locks gone. Meanwhile it holds nothing,
/// which is fine: it is leaving, and an opener that finds no holder at all
/// removes the name just as it would.
fn take_from_holders(fd: &OwnedFd) -> Result<bool> {
    if try_exclusive(fd)? {
        return Ok(true);
    }
    unlock(fd)?;
    try_exclusive(fd)
}

/// Takes (or converts our shared lock to) the exclusive lock without
/// waiting. `Ok(false)`: some other holder has a lock.
pub(crate) fn try_exclusive(fd: &OwnedFd) -> Result<bool> {
    match ofd_lock(fd.as_raw_fd(), libc::F_OFD_SETLK, libc::F_WRLCK) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(Error::io("fcntl", e)),
    }
}

/// Takes (or converts to) the shared lock, waiting while someone holds the
/// exclusive one. Nobody waits while holding the exclusive lock, so this
/// cannot deadlock among processes that follow the protocol.
fn wait_shared(fd: &OwnedFd) -> Result<()> {
    ofd_lock(fd.as_raw_fd(), libc::F_OFD_SETLKW, libc::F_RDLCK).map_err(|e| Error::io("fcntl", e))
}

fn unlock(fd: &OwnedFd) -> Result<()> {
    ofd_lock(fd.as_raw_fd(), libc::F_OFD_SETLK, libc::F_UNLCK).map_err(|e| Error::io("fcntl", e))
}

/// Whether an open file description other than `fd`'s holds a lock on the
/// liveness byte. Works on read-only descriptors, unlike `try_exclusive`.
fn others_hold(fd: &OwnedFd) -> Result<bool> {
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = LIVENESS_BYTE;
    fl.l_len = 1;
    // SAFETY: `fd` is open and `fl` a valid, writable flock.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(Error::last_os("fcntl"));
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Removes the name `shm` of the object `fd`, which the caller holds
/// exclusively (so no other holder is left), if the object is still linked
/// (else the name is another object's now); returns whether it was. This is
/// the one place a name is removed by the protocol. A record left
/// unfinished by a creator killed while it made the block's segment may
/// have left that segment too: it is destroyed first ([`Segment::reap`]), so
/// that a killed creator leaves nothing.
fn remove_name(fd: &OwnedFd, shm: &CString) -> Result<bool> {
    let st = fstat(fd)?;
    if st.st_nlink == 0 {
        return Ok(false);
    }
    if unfinished(&st) {
        #[allow(clippy::unnecessary_cast)]
        Segment::reap(creation_key(&st), st.st_uid, st.st_mtime as i64);
    }
    match shm_unlink(shm) {
        // `ENOENT` only means a forced removal (`mmapfile rm`) got there first.
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("shm_unlink", e)),
        _ => Ok(true),
    }
}

/// `/dev/shm/<name>` for a shared-memory name `/<name>`: where glibc and
/// musl keep POSIX shared memory.
fn shm_path(shm: &CString) -> Result<CString> {
    let mut path = SHM_DIR.as_bytes().to_vec();
    path.extend_from_slice(shm.as_bytes());
    CString::new(path).map_err(|_| errno("linkat", libc::EINVAL))
}

/// Set once `linkat(AT_EMPTY_PATH)` has been refused (see `publish`).
static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether a record with status `st` is unfinished: created in place and
/// not yet given its block (see [`create_in_place`]). A finished block's
/// record has a segment's reference or a size; a file mapping's has its mark.
pub(crate) fn unfinished(st: &libc::stat) -> bool {
    st.st_size == 0 && st.st_mode & MARK == 0 && SegmentRef::from_stat(st).is_none()
}

/// How long an opener that found a record unfinished, and its creator at
/// work, sleeps before it looks again.
const UNFINISHED_POLL: Duration = Duration::from_micros(200);

/// How long after its last change a held record may still be unfinished.
/// A creator finishes its record microseconds after making it, except one
/// that keeps the block in the record and allocates it first (`space=
/// "reserve"` where no segment can be had), which the record's growing
/// pages show. One held, unfinished and without pages for longer had its
/// time changed since (`touch` on it), which took away the reference to its
/// block's memory: see [`touched`].
const FINISHED_WITHIN: Duration = Duration::from_secs(5);

/// Whether the unfinished record with status `st` was touched rather than
/// being made: last changed (`st_ctime`: made, given its mode or its time)
/// longer than [`FINISHED_WITHIN`] ago, and no page allocated in it.
fn touched(st: &libc::stat) -> bool {
    let changed = Duration::new(
        st.st_ctime.max(0) as u64,
        st.st_ctime_nsec.clamp(0, 999_999_999) as u32,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    st.st_blocks == 0 && now.saturating_sub(changed) > FINISHED_WITHIN
}

/// Creates a block's record under its name, holds it, and lets `init` give
/// it its block; `init` must leave the record [`unfinished`] until its last
/// step. Returns the record; `Ok(None)`: the name is taken.
///
/// Creating under the name, where `publish` creates an unnamed object and
/// links it, spares the look for an existing name and the `linkat`. The
/// creator holds the record shared, as any holder, rather than exclusively
/// until it is finished (which would let openers sleep in the kernel instead
/// of polling): converting down would be one more system call a create.
/// Measured in docs/named-blocks.md, "Costs".
fn create_in_place(shm: &CString, init: Fill<'_>, mode: u32) -> Result<Option<OwnedFd>> {
    loop {
        let fd = match shm_open(shm, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        // Waits only while an opener that found the record before this lock
        // removes it, taking it for a dead creator's: then make another.
        wait_shared(&fd)?;
        let st = fstat(&fd)?;
        if st.st_nlink == 0 {
            continue;
        }
        if st.st_mode & 0o7777 != mode {
            // The umask took bits away.
            if let Err(e) = fchmod(&fd, mode) {
                return Err(abandon(&fd, shm, e));
            }
        }
        return finish(fd, &st, shm, init).map(Some);
    }
}

/// Gives the named, held, unfinished record `fd` (status `st`) its block
/// with `init`, under the segment key [`creation_key`] of `st`.
fn finish(fd: OwnedFd, st: &libc::stat, shm: &CString, init: Fill<'_>) -> Result<OwnedFd> {
    match init(&fd, creation_key(st)) {
        Ok(()) => Ok(fd),
        Err(e) => Err(abandon(&fd, shm, e)),
    }
}

/// Lets go of the record `fd` whose creation failed with `e`, and returns
/// `e`. It is unfinished, so nobody joined: remove it, or leave it to an
/// opener looking at it just now, which removes it once we are gone.
fn abandon(fd: &OwnedFd, shm: &CString, e: Error) -> Error {
    let removed = take_from_holders(fd).and_then(|sole| match sole {
        true => remove_name(fd, shm).map(drop),
        false => Ok(()),
    });
    removed.err().unwrap_or(e)
}

/// Creates a block's record with the mode bits `mode` exactly (which a
/// record created under its name lacks until `fchmod`, refusing others
/// meanwhile), holds it, names it unfinished, and lets `init` give it its
/// block as [`create_in_place`] does. For blocks that other users may open.
/// `Ok(None)`: the name is taken.
fn publish_unfinished(shm: &CString, init: Fill<'_>, mode: u32) -> Result<Option<OwnedFd>> {
    let Some(fd) = publish(shm, &|_, _| Ok(()), mode)? else {
        return Ok(None);
    };
    // Held since before it was named, so still linked and unfinished.
    let st = fstat(&fd)?;
    finish(fd, &st, shm, init).map(Some)
}

/// Creates an object, fills it with `init` (a file mapping's record; nothing
/// for [`publish_unfinished`]), gives it the mode bits `mode`, holds it, and
/// only then gives it its name. `Ok(None)`: the name is taken.
fn publish(shm: &CString, init: Fill<'_>, mode: u32) -> Result<Option<OwnedFd>> {
    let dir = CString::new(SHM_DIR).map_err(|_| errno("open", libc::EINVAL))?;
    // SAFETY: `dir` is a NUL-terminated string that outlives the call.
    let raw = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if raw < 0 {
        return Err(Error::last_os("open"));
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // What is filled here makes no segment: until it is linked, nobody could
    // find this record to reap what its creator left if killed meanwhile
    // (see `creation_key`).
    init(&fd, libc::IPC_PRIVATE)?;
    // Explicitly, so that the umask does not change what the caller asked for.
    fchmod(&fd, mode)?;
    // Nobody else can reach the object yet, so this cannot wait.
    wait_shared(&fd)?;
    let target = shm_path(shm)?;
    // Naming the descriptor itself (AT_EMPTY_PATH) spares the kernel the walk
    // through /proc, a sixth of a create + close. Kernels before 6.10 allow
    // it only with CAP_DAC_READ_SEARCH and refuse with ENOENT otherwise;
    // then /proc/self/fd does the same, and is used from then on.
    let mut ret = -1;
    let mut refused = EMPTY_PATH_REFUSED.load(Ordering::Relaxed);
    if !refused {
        // SAFETY: `raw` is open; both paths are NUL-terminated strings that
        // outlive the call.
        ret = unsafe {
            libc::linkat(
                raw,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        if ret != 0 && io::Error::last_os_error().kind() == io::ErrorKind::NotFound {
            EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
            refused = true;
        }
    }
    if refused {
        let proc_path = CString::new(format!("/proc/self/fd/{raw}"))
            .map_err(|_| errno("linkat", libc::EINVAL))?;
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        ret = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
    }
    if ret == 0 {
        return Ok(Some(fd));
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::AlreadyExists {
        // The unnamed object dies with `fd`.
        return Ok(None);
    }
    Err(Error::io("linkat", err))
}

/// What looking at an existing object found.
enum Found {
    /// We now hold it (shared lock); its status, taken under the lock.
    Held(libc::stat),
    /// Someone holds it; we do not (only asked to look).
    Live,
    /// Dead or destroyed: start over with the name.
    Gone,
}

/// Joins the object behind `fd` as a holder (`hold`), or only finds out
/// whether it is live. A dead block (no holder at all) is removed, so that
/// its stale contents are never handed out.
fn examine(fd: &OwnedFd, shm: &CString, lockable: bool, hold: bool) -> Result<Found> {
    if !lockable {
        // A read-only descriptor can neither hold the exclusive lock nor
        // remove a dead block safely, but it can tell whether one is dead.
        if !others_hold(fd)? {
            return Err(errno("shm_open", libc::ENOENT));
        }
        if !hold {
            return Ok(Found::Live);
        }
        wait_shared(fd)?;
        return held(fd);
    }
    if try_exclusive(fd)? {
        // No holder now, and none can join while we hold this lock. If the
        // object is still linked, its holders all died: remove it.
        remove_name(fd, shm)?;
        return Ok(Found::Gone);
    }
    if !hold {
        return Ok(Found::Live);
    }
    // Live holders. If one of them is just closing as the last holder (or a
    // reclaimer is removing it), it holds the exclusive lock: wait, then
    // check that the object survived.
    wait_shared(fd)?;
    held(fd)
}

/// What a holder that just took its shared lock on `fd` finds: the object,
/// or that it was removed while we waited (start over).
fn held(fd: &OwnedFd) -> Result<Found> {
    let st = fstat(fd)?;
    Ok(if st.st_nlink > 0 {
        Found::Held(st)
    } else {
        Found::Gone
    })
}

/// The shared-memory name of the name `base`: the key the rest of the
/// backend passes around.
pub(crate) fn key(base: &str) -> Result<CString> {
    cstring("shm_open", shm_name(base).as_bytes())
}

/// The extended attribute that keeps a digested name's full name.
const LABEL: &std::ffi::CStr = c"user.mmapfile.name";

/// Sets the extended attribute `name` of the new object `fd` to `value`.
/// `Ok(false)`: this file system keeps no user extended attributes (tmpfs
/// before Linux 6.6).
fn set_attr(fd: &OwnedFd, name: &std::ffi::CStr, value: &[u8]) -> Result<bool> {
    // SAFETY: `fd` is open; the name is NUL-terminated and the value is
    // `value.len()` readable bytes.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret != 0 {
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM)) {
            return Err(Error::io("fsetxattr", err));
        }
        return Ok(false);
    }
    Ok(true)
}

/// The extended attribute `name` of the object `fd` as the object has it,
/// `None` if it has none (or tmpfs keeps none). One longer than any value we
/// write (a label of 780 bytes, a segment reference) comes back as its first
/// 1024 bytes, which no name matches and no segment reference parses as.
fn attr(fd: &OwnedFd, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    // SAFETY: `fd` is open; the name is NUL-terminated and `buf` is
    // writable memory of its length.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return (io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE)).then_some(buf);
    }
    buf.truncate(usize::try_from(n).ok()?);
    Some(buf)
}

/// The label's bytes as the object `fd` has them ([`attr`]).
fn read_label(fd: &OwnedFd) -> Option<Vec<u8>> {
    attr(fd, LABEL)
}

/// Whether an object labelled `label` ([`read_label`]) is another name's
/// than `base`: a label that is not exactly `base`'s bytes is. No label
/// (tmpfs before Linux 6.6) says nothing.
pub(super) fn labelled_for_another(label: Option<&[u8]>, base: &str) -> bool {
    label.is_some_and(|label| label != base.as_bytes())
}

/// Writes the full name `base` on the new object `fd`, where tmpfs keeps
/// user extended attributes (Linux 6.6 and later); elsewhere `ls` shows
/// the digest.
fn label(fd: &OwnedFd, base: &str) -> Result<()> {
    set_attr(fd, LABEL, base.as_bytes()).map(drop)
}

/// The full name kept on the object `fd` ([`label`]), if it has one that
/// is text.
pub(crate) fn label_of(fd: &OwnedFd) -> Option<String> {
    String::from_utf8(read_label(fd)?).ok()
}

/// Whether this file system keeps a record's modification time exactly, as
/// a [`SegmentRef`] in it needs: learnt from the first record this process
/// finishes (`KEPT_UNKNOWN` until then).
static MTIME_KEPT: AtomicU8 = AtomicU8::new(KEPT_UNKNOWN);
const KEPT_UNKNOWN: u8 = 0;
const KEPT: u8 = 1;
const NOT_KEPT: u8 = 2;

/// Finishes the new record `fd` of a block whose memory is a segment: its
/// modification time becomes the segment's reference. `Ok(false)`: this
/// file system does not keep such a time (found once per process, by
/// reading the first one back); the caller keeps the block in the record.
///
/// A time rather than an extended attribute: tmpfs keeps user attributes
/// only from Linux 6.6, a create + close that set one took 1.2 to 2 us
/// longer (of about 21) than one that sets the time (0.4 us), and an opener
/// reads the time with the `fstat` it makes anyway (docs/named-blocks.md,
/// "The record").
fn mark_segment(fd: &OwnedFd, reference: &SegmentRef) -> Result<bool> {
    let known = MTIME_KEPT.load(Ordering::Relaxed);
    if known == NOT_KEPT {
        return Ok(false);
    }
    let (seconds, nanoseconds) = reference.mtime();
    // SAFETY: an all-zero timespec is a valid value of this plain C struct.
    let mut times: [libc::timespec; 2] = unsafe { std::mem::zeroed() };
    // The access time is left as it is.
    times[0].tv_nsec = libc::UTIME_OMIT;
    times[1].tv_sec = seconds as libc::time_t;
    times[1].tv_nsec = nanoseconds as _;
    // SAFETY: `fd` is open and `times` two valid timespecs.
    if unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) } != 0 {
        let err = io::Error::last_os_error();
        if !matches!(
            err.raw_os_error(),
            Some(libc::EINVAL | libc::EOVERFLOW | libc::EPERM)
        ) {
            return Err(Error::io("futimens", err));
        }
        MTIME_KEPT.store(NOT_KEPT, Ordering::Relaxed);
        return Ok(false);
    }
    if known == KEPT_UNKNOWN {
        let kept = SegmentRef::from_stat(&fstat(fd)?) == Some(*reference);
        MTIME_KEPT.store(if kept { KEPT } else { NOT_KEPT }, Ordering::Relaxed);
        return Ok(kept);
    }
    Ok(true)
}

/// How long an opener waits for the holders of a record whose segment is
/// gone to finish dying before it calls the record damaged.
const DYING: Duration = Duration::from_secs(2);

/// Opens or creates the name `key` (of the name `base`) and joins it as a
/// holder; `new` is what a creating call makes (none: the name must exist).
pub(crate) fn join(
    key: &CString,
    base: &str,
    new: Option<New<'_>>,
    create: CreateMode,
    writable: bool,
    mode: u32,
    allow_other_owner: bool,
) -> Result<Joined> {
    let digested = is_digested(base);
    let (block, mode, file) = match new {
        Some(New::Block { size, init, space }) => (Some((size, init, space)), mode, None),
        Some(New::File(record)) => (None, mode | MARK, Some(record)),
        None => (None, mode, None),
    };
    // The segment a creating call made for the record it is filling: the
    // last one, if a name taken meanwhile made it start over.
    let made: RefCell<Option<Segment>> = RefCell::new(None);
    // A block's record is finished by its last step (see `unfinished`):
    // the segment's reference, or the size.
    let fill = |fd: &OwnedFd, key: libc::key_t| {
        made.replace(None);
        if digested {
            label(fd, base)?;
        }
        match (block, file) {
            (Some((size, init, space)), _) => {
                room_in_memory(size, space)?;
                match Segment::create(size, mode, key)? {
                    // The record stays empty: a program that maps it by
                    // its path (`SharedMemory(name=...)`, `shm_open`) is
                    // refused rather than shown zeros.
                    Some((segment, reference)) => {
                        if mark_segment(fd, &reference)? {
                            populate(&segment, size, space)?;
                            made.replace(Some(segment));
                        } else {
                            init(fd)?;
                        }
                    }
                    None => init(fd)?,
                }
            }
            (None, Some(record)) => drop(record.write(fd)?),
            (None, None) => {}
        }
        Ok(())
    };
    let making = block.is_some() || file.is_some();
    // A record created in place has the umask's mode until its creator
    // corrects it, so one that others may open (group or other bits) is
    // given its mode before it is named: they would be refused meanwhile.
    // A file mapping's record is written in several steps, so it is named
    // only once written.
    let how = match block {
        Some(_) if mode & 0o077 == 0 => Make::InPlace,
        Some(_) => Make::NamedUnfinished,
        None => Make::Whole,
    };
    let started = Instant::now();
    // `marked`: the record has the mark of a file mapping's.
    let (fd, lockable, created, segment, marked) = loop {
        let (fd, lockable, found) = open(
            key,
            making.then_some(&fill as Fill<'_>),
            how,
            create,
            writable,
            mode,
            allow_other_owner,
        )?;
        let Some(st) = found else {
            break (fd, lockable, true, made.take(), false);
        };
        made.replace(None);
        let Some(reference) = SegmentRef::from_stat(&st) else {
            // mode_t is u32 on Linux, and this file is built for Linux only.
            if !unfinished(&st) {
                break (fd, lockable, false, None, st.st_mode & MARK != 0);
            }
            // Its creator is at work, died, or has not taken its lock yet.
            // As its only holder we remove it; a read-only opener cannot,
            // but then looks again and finds it gone or without a holder.
            // A refused `take_from_holders` has already let go of our lock.
            if !lockable {
                unlock(&fd)?;
            } else if take_from_holders(&fd)? {
                remove_name(&fd, key)?;
                continue;
            }
            drop(fd);
            if touched(&st) {
                return Err(Error::FileChanged {
                    message: format!(
                        "the named block {base:?} is held, but its record no longer says where \
                         its memory is: its modification time was changed (by `touch`?); \
                         its holders keep their views, and `mmapfile rm` frees the name"
                    ),
                    code: libc::EIDRM,
                });
            }
            std::thread::sleep(UNFINISHED_POLL);
            continue;
        };
        // The kernel detaches a killed holder's memory before it drops its
        // locks, so for a moment a record can look held while its segment is
        // already gone (or its id already another segment's): wait that out.
        match Segment::attach(&reference, st.st_uid, writable) {
            Ok(segment) => break (fd, lockable, false, Some(segment), false),
            Err(AttachError::Failed(e)) => {
                let _ = unlock(&fd);
                return Err(e);
            }
            Err(AttachError::NotTheBlock) if started.elapsed() < DYING => {
                // Its holders are dying: let go and look again.
                unlock(&fd)?;
                drop(fd);
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(AttachError::NotTheBlock) => {
                let _ = unlock(&fd);
                return Err(Error::FileChanged {
                    message: format!(
                        "the named block {base:?} is held, but its record leads to no \
                         block of its own (segment {} is gone or another's)",
                        reference.id
                    ),
                    code: libc::EIDRM,
                });
            }
        }
    };
    if digested && !created {
        let label = read_label(&fd);
        if labelled_for_another(label.as_deref(), base) {
            let _ = release(&fd, key, lockable);
            let other = String::from_utf8_lossy(label.as_deref().unwrap_or_default());
            return Err(Error::InvalidName(format!(
                "{base:?} and {other:?} have the same digest"
            )));
        }
    }
    // An object with the mark is the record of a file mapping with this
    // name (a new object is what we asked for).
    let what = match file {
        _ if segment.is_some() => Held::Block {
            size: segment.as_ref().map(Segment::size),
        },
        Some(record) if created => Held::File(record.clone()),
        _ if created => Held::Block { size: None },
        _ if marked => match FileRecord::read(&fd) {
            Ok(record) => Held::File(record),
            Err(e) => {
                let _ = release(&fd, key, lockable);
                return Err(e);
            }
        },
        _ => Held::Block { size: None },
    };
    Ok(Joined {
        held: fd,
        memory: None,
        segment,
        what,
        lockable,
        created,
    })
}

/// How a record is made and named.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Make {
    /// Under its name: [`create_in_place`].
    InPlace,
    /// Unnamed with its mode, then named unfinished: [`publish_unfinished`].
    NamedUnfinished,
    /// Filled, then named: [`publish`].
    Whole,
}

/// Opens or creates the named object `shm` and joins it as a holder; `new`
/// fills an object this call creates (none: the name must exist), made as
/// `how` says.
/// Returns the descriptor, whether it was opened read-write (only those can
/// end the object's life on close), and, unless this call created it, its
/// status as taken under our lock.
fn open(
    shm: &CString,
    new: Option<Fill<'_>>,
    how: Make,
    create: CreateMode,
    writable: bool,
    mode: u32,
    allow_other_owner: bool,
) -> Result<(OwnedFd, bool, Option<libc::stat>)> {
    let may_create = new.is_some() && create != CreateMode::OpenOnly;
    let make = |init| match how {
        Make::InPlace => create_in_place(shm, init, mode),
        Make::NamedUnfinished => publish_unfinished(shm, init, mode),
        Make::Whole => publish(shm, init, mode),
    };
    loop {
        // A block is made first and opened if the name is taken: creating
        // is the look. A file mapping's record is looked for first.
        if let Some(init) =
            new.filter(|_| create == CreateMode::CreateOnly || (how == Make::InPlace && may_create))
        {
            if let Some(fd) = make(init)? {
                return Ok((fd, true, None));
            }
        }
        // Read-write even for read-only access where permitted: a read-only
        // descriptor cannot take the exclusive lock that ends a life.
        let opened = match shm_open(shm, libc::O_RDWR, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && !writable => {
                shm_open(shm, libc::O_RDONLY, 0).map(|fd| (fd, false))
            }
            other => other.map(|fd| (fd, true)),
        };
        let (fd, lockable) = match opened {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound && may_create => {
                let Some(init) = new else {
                    unreachable!("may_create needs an init")
                };
                match make(init)? {
                    Some(fd) => return Ok((fd, true, None)),
                    None => continue,
                }
            }
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        let st = fstat(&fd)?;
        if st.st_uid != geteuid() && !allow_other_owner {
            return Err(errno("shm_open", libc::EACCES));
        }
        // A block has one name (`publish` links it once). Another means a
        // hard link made by someone with access to it, so that this name
        // would reach the block of another name.
        if st.st_nlink > 1 {
            return Err(Error::Refused {
                op: "shm_open",
                code: libc::EACCES,
                message: format!(
                    "{}{} has {} names (a hard link was made to it), so it may be another \
                     name's block: refused; remove this name (`mmapfile rm`) to free it",
                    SHM_DIR,
                    String::from_utf8_lossy(shm.as_bytes()),
                    st.st_nlink
                ),
            });
        }
        let hold = create != CreateMode::CreateOnly;
        match examine(&fd, shm, lockable, hold)? {
            Found::Held(st) => return Ok((fd, lockable, Some(st))),
            Found::Live => return Err(errno("shm_open", libc::EEXIST)),
            Found::Gone => continue,
        }
    }
}

/// Leaves the block as a holder: the last holder removes its name. The
/// descriptor is closed by the caller afterwards.
pub(crate) fn release(fd: &OwnedFd, shm: &CString, lockable: bool) -> Result<()> {
    if !lockable {
        return Ok(());
    }
    // Converting our shared lock to exclusive succeeds only if no other
    // holder exists; while we hold it nobody can join, so removing the name
    // cannot strand a new holder. Openers waiting for the shared lock see
    // st_nlink == 0 once we are done and start over.
    if take_from_holders(fd)? {
        remove_name(fd, shm)?;
    }
    Ok(())
}

/// Replaces the file mapping record in the object `held` with `record` if
/// this is its only holder. Returns whether it did.
pub(crate) fn rewrite_file_record(
    held: &mut OwnedFd,
    _key: &CString,
    record: &FileRecord,
) -> Result<bool> {
    change_if_sole_holder(held, &|fd| record.rewrite(fd))
}

/// A change to an object that already has its name and holders (unlike
/// an [`Init`], which fills an object nobody else can reach yet).
type Change<'a> = &'a dyn Fn(&OwnedFd) -> Result<()>;

/// Runs `change` on the object `fd` if this is its only holder, with the
/// exclusive lock held (so nobody joins, or reads what joining reads,
/// meanwhile), and keeps holding it afterwards. Returns whether it ran.
fn change_if_sole_holder(fd: &OwnedFd, change: Change<'_>) -> Result<bool> {
    if !try_exclusive(fd)? {
        return Ok(false);
    }
    let changed = change(fd);
    // Back to a shared hold; converting down never waits.
    let held = wait_shared(fd);
    changed.and(held).map(|()| true)
}

/// Removes the dead block at `shm` (no holder at all) and returns whether
/// it did. Live blocks, and blocks this user may not open read-write, are
/// left alone.
pub(crate) fn collect(shm: &CString) -> Result<bool> {
    let fd = match shm_open(shm, libc::O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("shm_open", e)),
    };
    Ok(try_exclusive(&fd)? && remove_name(&fd, shm)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_through_proc_works_where_empty_path_is_refused() {
        // This kernel may allow AT_EMPTY_PATH; pretend it refused.
        EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
        let name = format!("publish-proc-{}", std::process::id());
        let mut m = crate::MapOptions::new()
            .name(&name)
            .maximum_size(4096)
            .open()
            .unwrap();
        assert!(m.created());
        m.write(b"named").unwrap();
        let mut other = crate::MapOptions::new().name(&name).open().unwrap();
        assert!(!other.created());
        assert_eq!(other.read(5).unwrap(), b"named");
        other.close().unwrap();
        m.close().unwrap();
        EMPTY_PATH_REFUSED.store(false, Ordering::Relaxed);
    }
}
