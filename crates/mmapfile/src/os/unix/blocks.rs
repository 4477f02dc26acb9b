//! Inspecting and removing named blocks from outside (the CLI's `ls`,
//! `info`, `dump`, `rm`, `gc`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{FileRecord, MARK};
use super::{fstat, lifetime, shm_name, shm_open, shm_unlink};
use crate::blocks::BlockInfo;
use crate::error::{Error, Result};

fn shm_cstring(base: &str) -> Result<CString> {
    CString::new(shm_name(base))
        .map_err(|_| Error::io("shm_open", io::Error::from_raw_os_error(libc::EINVAL)))
}

fn open_readonly(base: &str) -> Result<OwnedFd> {
    shm_open(&shm_cstring(base)?, libc::O_RDONLY, 0).map_err(|e| Error::io("shm_open", e))
}

fn time_of(secs: i64, nanos: i64) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok()?;
    let nanos = u32::try_from(nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Whether the object is a named file mapping's record.
// mode_t is u32 on Linux but u16 on macOS, hence the conversion.
#[allow(clippy::useless_conversion)]
fn is_record(st: &libc::stat) -> bool {
    u32::from(st.st_mode) & MARK != 0
}

// mode_t is u32 on Linux but u16 on macOS, hence the conversion.
#[allow(clippy::useless_conversion)]
fn info_from_stat(
    base: &str,
    st: &libc::stat,
    holders: Option<u32>,
    record: Option<FileRecord>,
) -> BlockInfo {
    let (size, file) = match record {
        Some(record) => (record.size, Some(record.path)),
        None => (st.st_size.max(0) as u64, None),
    };
    BlockInfo {
        name: base.to_owned(),
        shm_name: shm_name(base),
        size,
        file,
        holders,
        owner: st.st_uid,
        mode: u32::from(st.st_mode) & 0o777,
        // The inode's change time: set when the block was published, and
        // again by a resize that grows it.
        changed: time_of(st.st_ctime, st.st_ctime_nsec),
    }
}

/// Information on the named block `base`.
pub(crate) fn block_info(base: &str) -> Result<BlockInfo> {
    let fd = open_readonly(base)?;
    let st = fstat(&fd)?;
    let holders = holder_counts()?.and_then(|counts| count_for(&counts, &st));
    let record = if is_record(&st) {
        Some(FileRecord::read(&fd)?)
    } else {
        None
    };
    Ok(info_from_stat(base, &st, holders.or(known_zero()), record))
}

/// `Some(0)` where holders are counted (an object absent from the lock
/// table has none), `None` where they cannot be.
fn known_zero() -> Option<u32> {
    lifetime::TRACKS_HOLDERS.then_some(0)
}

/// Removes the name `base` whatever its holders do (they keep their
/// mappings; new openers get a new block).
pub(crate) fn remove_block(base: &str) -> Result<()> {
    shm_unlink(&shm_cstring(base)?).map_err(|e| Error::io("shm_unlink", e))
}

/// Removes `base` if it is dead (no holder). Returns whether it did.
pub(crate) fn collect_block(base: &str) -> Result<bool> {
    lifetime::collect(&shm_cstring(base)?)
}

/// Copies up to `len` bytes (`None`: to the end) at `offset` out of the
/// block, without becoming a holder (so that a dead block can be looked at
/// before it is collected).
pub(crate) fn read_block(base: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
    let mut fd = open_readonly(base)?;
    let st = fstat(&fd)?;
    let mut size = st.st_size.max(0) as u64;
    if is_record(&st) {
        // A file mapping: its bytes are the file's, as far as both the
        // mapping and the file reach (the file may have shrunk since).
        let record = FileRecord::read(&fd)?;
        fd = record.open_file(false, base)?;
        size = record.size.min(fstat(&fd)?.st_size.max(0) as u64);
    }
    let start = offset.min(size);
    let end = match len {
        Some(len) => start.saturating_add(len).min(size),
        None => size,
    };
    let count = usize::try_from(end - start)
        .map_err(|_| Error::InvalidArgument("the range does not fit in memory".into()))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let page = super::page_size() as u64;
    let aligned = start - start % page;
    let delta = (start - aligned) as usize;
    let map_len = delta
        .checked_add(count)
        .ok_or_else(|| Error::InvalidArgument("the range does not fit in memory".into()))?;
    let map_offset = libc::off_t::try_from(aligned)
        .map_err(|_| Error::io("mmap", io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
    // SAFETY: a fresh read-only shared mapping at an address the kernel
    // chooses overlaps nothing; `fd` is open; the result is checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            map_offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::last_os("mmap"));
    }
    let mut out = vec![0u8; count];
    // SAFETY: `delta..delta + count` lies inside the `map_len`-byte mapping,
    // which lies inside the object as measured by fstat. Another process may
    // shrink the object meanwhile (SIGBUS); that is the hazard of every
    // shared mapping and the same as for a holder. The copy goes through raw
    // pointers, so no reference to shared memory is ever formed.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>().add(delta), out.as_mut_ptr(), count);
    }
    // SAFETY: `ptr`/`map_len` come from the successful mmap above, unmapped
    // once; a failure could only leak address space in this short-lived call.
    unsafe {
        libc::munmap(ptr, map_len);
    }
    Ok(out)
}

/// Every named block of this user.
#[cfg(target_os = "linux")]
pub(crate) fn list_blocks() -> Result<Vec<BlockInfo>> {
    use std::os::unix::ffi::OsStrExt;

    let prefix = &super::SHM_PREFIX.as_bytes()[1..];
    let counts = holder_counts()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let dir = std::fs::read_dir(super::SHM_DIR).map_err(|e| Error::io("opendir", e))?;
    let mut blocks = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::io("readdir", e))?;
        let file_name = entry.file_name();
        let Some(base) = file_name.as_bytes().strip_prefix(prefix) else {
            continue;
        };
        let Ok(base) = std::str::from_utf8(base) else {
            continue; // not a name this crate could have made
        };
        let path = CString::new(entry.path().as_os_str().as_bytes())
            .map_err(|_| Error::io("stat", io::Error::from_raw_os_error(libc::EINVAL)))?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `path` is NUL-terminated and `st` writable memory for a stat.
        if unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
            continue; // removed while we listed
        }
        // SAFETY: lstat returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        if st.st_uid != me || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        let holders = counts
            .as_ref()
            .and_then(|c| count_for(c, &st))
            .or(known_zero());
        let record = if is_record(&st) {
            // Removed while we listed, or not readable: list it as it is.
            open_readonly(base)
                .and_then(|fd| FileRecord::read(&fd))
                .ok()
        } else {
            None
        };
        blocks.push(info_from_stat(base, &st, holders, record));
    }
    blocks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(blocks)
}

/// Listing needs a directory of shared-memory objects, which only Linux has.
#[cfg(not(target_os = "linux"))]
pub(crate) fn list_blocks() -> Result<Vec<BlockInfo>> {
    Err(Error::io(
        "list",
        io::Error::new(
            io::ErrorKind::Unsupported,
            "this OS offers no way to list shared-memory objects",
        ),
    ))
}

/// Holders per object, keyed by (device major, device minor, inode): the
/// shared OFD locks on the liveness byte in `/proc/locks`.
#[cfg(target_os = "linux")]
type Counts = std::collections::HashMap<(u64, u64, u64), u32>;
#[cfg(not(target_os = "linux"))]
type Counts = ();

#[cfg(target_os = "linux")]
fn holder_counts() -> Result<Option<Counts>> {
    let text = match std::fs::read_to_string("/proc/locks") {
        Ok(text) => text,
        // No /proc: holders are unknown, which is not an error.
        Err(_) => return Ok(None),
    };
    let mut counts = Counts::new();
    for line in text.lines() {
        // "12: OFDLCK ADVISORY  READ -1 00:1a:4242 0 0"; waiters have "->".
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "OFDLCK", _, "READ", _, dev, start, end] = fields[..] else {
            continue;
        };
        let want = lifetime::LIVENESS_BYTE.to_string();
        if start != want || end != want {
            continue;
        }
        let mut parts = dev.split(':');
        let (Some(major), Some(minor), Some(inode)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(inode)) = (
            u64::from_str_radix(major, 16),
            u64::from_str_radix(minor, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        *counts.entry((major, minor, inode)).or_insert(0) += 1;
    }
    Ok(Some(counts))
}

#[cfg(target_os = "linux")]
fn count_for(counts: &Counts, st: &libc::stat) -> Option<u32> {
    let dev = st.st_dev;
    // glibc's encoding of dev_t, as the kernel prints it in /proc/locks.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some(counts.get(&(major, minor, st.st_ino)).copied().unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn holder_counts() -> Result<Option<Counts>> {
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
fn count_for(_counts: &Counts, _st: &libc::stat) -> Option<u32> {
    None
}
