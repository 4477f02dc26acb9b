//! Inspecting and removing named blocks from outside (the CLI's `ls`,
//! `info`, `dump`, `rm`, `gc`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::file_record::FileRecord;
use super::{fstat, lifetime};
use crate::blocks::BlockInfo;
use crate::error::{Error, Result};

fn time_of(secs: i64, nanos: i64) -> Option<SystemTime> {
    let secs = u64::try_from(secs).ok()?;
    let nanos = u32::try_from(nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Removes `base` if it is dead (no holder). Returns whether it did.
pub(crate) fn collect_block(base: &str) -> Result<bool> {
    lifetime::collect(&lifetime::key(base)?)
}

/// Copies up to `len` bytes (`None`: to the end) at `offset` out of the
/// block, without becoming a holder (so that a dead block can be looked at
/// before it is collected).
pub(crate) fn read_block(base: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
    let range = |size: u64| -> Result<(u64, usize)> {
        if offset > size {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is past the end of the block ({size} bytes)"
            )));
        }
        let end = match len {
            Some(len) => offset.saturating_add(len).min(size),
            None => size,
        };
        let count = usize::try_from(end - offset)
            .map_err(|_| Error::InvalidArgument("the range does not fit in memory".into()))?;
        Ok((offset, count))
    };
    if let Some((segment, size)) = segment_source(base)? {
        let (start, count) = range(size)?;
        let mut out = vec![0u8; count];
        segment.copy_to(start, out.as_mut_ptr(), count)?;
        return Ok(out);
    }
    let (fd, size) = source(base)?;
    let (start, count) = range(size)?;
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

/// The bytes of the file mapping `base` that `record` describes: the
/// file's, as far as both the mapping and the file reach (the file may have
/// shrunk since).
fn file_source(record: FileRecord, base: &str, owner: libc::uid_t) -> Result<(OwnedFd, u64)> {
    let file = record.open_file(false, base, owner)?;
    let size = record.size.min(fstat(&file)?.st_size.max(0) as u64);
    Ok((file, size))
}

#[cfg(not(portable_lifetime))]
mod backend {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::os::unix::file_record::MARK;
    use crate::os::unix::names::{shm_name, SHM_PREFIX};
    use crate::os::unix::segment::{AttachError, Segment, SegmentRef};
    use crate::os::unix::{shm_open, shm_unlink, SHM_DIR};

    fn open_readonly(base: &str) -> Result<OwnedFd> {
        shm_open(&lifetime::key(base)?, libc::O_RDONLY, 0).map_err(|e| Error::io("shm_open", e))
    }

    /// Whether the object is a named file mapping's record.
    fn is_record(st: &libc::stat) -> bool {
        st.st_mode & MARK != 0
    }

    fn info_from_stat(
        base: &str,
        shm: String,
        st: &libc::stat,
        holders: Option<u32>,
        record: Option<FileRecord>,
        segment: Option<SegmentRef>,
    ) -> BlockInfo {
        let (size, file) = match record {
            Some(record) => (record.size, Some(record.path)),
            // A block whose segment is gone (its holders all died) has no
            // size left to show.
            None => (
                segment.map_or(st.st_size.max(0) as u64, |s| {
                    Segment::size_of(&s, st.st_uid).unwrap_or(0)
                }),
                None,
            ),
        };
        BlockInfo {
            name: base.to_owned(),
            path: Some(format!("{SHM_DIR}{shm}").into()),
            shm_name: shm,
            segment: segment.map(|s| s.id),
            size,
            file,
            holders,
            owner: st.st_uid,
            mode: st.st_mode & 0o777,
            // The inode's change time: set when the block was published,
            // and again by a resize that grows it.
            changed: time_of(st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// Information on the named block `base`.
    pub(crate) fn block_info(base: &str) -> Result<BlockInfo> {
        let fd = open_readonly(base)?;
        let st = fstat(&fd)?;
        let holders = holder_counts().map(|counts| count_for(&counts, &st));
        let record = if is_record(&st) {
            Some(FileRecord::read(&fd)?)
        } else {
            None
        };
        let segment = SegmentRef::from_stat(&st);
        Ok(info_from_stat(
            base,
            shm_name(base),
            &st,
            holders,
            record,
            segment,
        ))
    }

    /// The segment that holds the block `base`'s memory, attached read-only,
    /// and the block's size; `None` where the record is the memory itself.
    pub(super) fn segment_source(base: &str) -> Result<Option<(Segment, u64)>> {
        let fd = open_readonly(base)?;
        let st = fstat(&fd)?;
        let Some(reference) = SegmentRef::from_stat(&st) else {
            return Ok(None);
        };
        match Segment::attach(&reference, st.st_uid, false) {
            Ok(segment) => {
                let size = segment.size();
                Ok(Some((segment, size)))
            }
            // Its last holder ended, and the kernel freed its memory.
            Err(AttachError::NotTheBlock) => Err(Error::io(
                "shmat",
                io::Error::from_raw_os_error(libc::ENOENT),
            )),
            Err(AttachError::Failed(e)) => Err(e),
        }
    }

    pub(super) fn source(base: &str) -> Result<(OwnedFd, u64)> {
        let fd = open_readonly(base)?;
        let st = fstat(&fd)?;
        if is_record(&st) {
            return file_source(FileRecord::read(&fd)?, base, st.st_uid);
        }
        Ok((fd, st.st_size.max(0) as u64))
    }

    /// Removes the name `base` whatever its holders do (they keep their
    /// mappings; new openers get a new block).
    pub(crate) fn remove_block(base: &str) -> Result<Option<bool>> {
        shm_unlink(&lifetime::key(base)?).map_err(|e| Error::io("shm_unlink", e))?;
        Ok(None)
    }

    /// A creator killed before it finished its block leaves the block's
    /// record, dead, which `gc` removes with the other dead blocks; the lock
    /// companions of processes that all died are removed here.
    pub(crate) fn collect_leftovers() -> Result<()> {
        crate::os::unix::lock::collect_companions()
    }

    /// Every named block of this user. With `tidy`, the names of blocks
    /// whose memory the kernel freed with their last holder (which died
    /// without closing) are removed instead of listed.
    pub(crate) fn list_blocks(tidy: bool) -> Result<Vec<BlockInfo>> {
        let prefix = &SHM_PREFIX.as_bytes()[1..];
        let counts = holder_counts();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::io("opendir", e))?;
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
                .map_err(|_| Error::io("open", io::Error::from_raw_os_error(libc::EINVAL)))?;
            // Not following links, and without waiting for a FIFO.
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
            let Ok(fd) = super::super::open_path(&path, flags, 0) else {
                continue; // removed while we listed, or not ours to read
            };
            let st = fstat(&fd)?;
            if st.st_uid != me || st.st_mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            let holders = counts.as_ref().map(|c| count_for(c, &st));
            let shm = format!("{SHM_PREFIX}{base}");
            let segment = SegmentRef::from_stat(&st);
            let unfinished = lifetime::unfinished(&st);
            if tidy && holders == Some(0) && (segment.is_some() || unfinished) {
                // What the last holder of a block in a segment leaves when it
                // dies without closing, or a creator killed before its block
                // was finished: the kernel freed the memory, and this record
                // of nothing goes now (a live holder that joins meanwhile
                // keeps it: `collect` takes the exclusive lock).
                drop(fd);
                if let Ok(key) = CString::new(shm) {
                    let _ = lifetime::collect(&key);
                }
                continue;
            }
            if unfinished && holders != Some(0) {
                // Not a block yet: its creator is at work. (One whose creator
                // died is listed, dead, for `gc` to remove.)
                continue;
            }
            let record = if is_record(&st) {
                // Not readable: list it as it is.
                FileRecord::read(&fd).ok()
            } else {
                None
            };
            // A digested name shows its full name where it was kept.
            let name = lifetime::label_of(&fd).unwrap_or_else(|| base.to_owned());
            blocks.push(info_from_stat(&name, shm, &st, holders, record, segment));
        }
        blocks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(blocks)
    }

    /// Holders per object, keyed by (device major, device minor, inode):
    /// the shared OFD locks on the liveness byte in `/proc/locks`.
    type Counts = std::collections::HashMap<(u64, u64, u64), u32>;

    /// `None` without `/proc`: holders are then unknown, not an error.
    fn holder_counts() -> Option<Counts> {
        let text = std::fs::read_to_string("/proc/locks").ok()?;
        let mut counts = Counts::new();
        let want = lifetime::LIVENESS_BYTE.to_string();
        for line in text.lines() {
            // "12: OFDLCK ADVISORY  READ -1 00:1a:4242 0 0"; waiters have "->".
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, "OFDLCK", _, "READ", _, dev, start, end] = fields[..] else {
                continue;
            };
            if start != want || end != want {
                continue;
            }
            let mut parts = dev.split(':');
            let (Some(major), Some(minor), Some(inode)) =
                (parts.next(), parts.next(), parts.next())
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
        Some(counts)
    }

    fn count_for(counts: &Counts, st: &libc::stat) -> u32 {
        let dev = st.st_dev;
        // glibc's encoding of dev_t, as the kernel prints it in /proc/locks.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        counts.get(&(major, minor, st.st_ino)).copied().unwrap_or(0)
    }
}

#[cfg(portable_lifetime)]
mod backend {
    use super::*;
    use crate::os::unix::lifetime::Listed;
    use crate::os::unix::name_record::Stored;
    use crate::os::unix::{cstring, shm_open};

    fn info_from(listed: Listed) -> BlockInfo {
        let Listed { record, stat, path } = listed;
        let (size, file, shm) = match record.what {
            Stored::Block { size, object } => (size, None, object),
            Stored::File(file) => (file.size, Some(file.path), String::new()),
        };
        BlockInfo {
            name: record.name,
            shm_name: shm,
            segment: None,
            path: Some(path),
            size,
            file,
            // Holders cannot be counted from outside here; `gc` finds the
            // dead ones.
            holders: None,
            owner: stat.st_uid,
            mode: record.mode,
            // The record file's change time: when the name was made, or
            // its record last rewritten.
            changed: time_of(stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    /// Information on the named block `base`.
    pub(crate) fn block_info(base: &str) -> Result<BlockInfo> {
        Ok(info_from(lifetime::look(base)?))
    }

    /// Blocks here are shared-memory objects, never segments.
    pub(super) fn segment_source(
        _base: &str,
    ) -> Result<Option<(crate::os::unix::segment::Segment, u64)>> {
        Ok(None)
    }

    pub(super) fn source(base: &str) -> Result<(OwnedFd, u64)> {
        let listed = lifetime::look(base)?;
        match listed.record.what {
            Stored::Block { object, size } => {
                let fd = shm_open(&cstring("shm_open", object.as_bytes())?, libc::O_RDONLY, 0)
                    .map_err(|e| Error::io("shm_open", e))?;
                Ok((fd, size))
            }
            Stored::File(file) => file_source(file, base, listed.stat.st_uid),
        }
    }

    /// Removes the name `base` whatever its holders do (they keep their
    /// mappings; new openers get a new block).
    pub(crate) fn remove_block(base: &str) -> Result<Option<bool>> {
        lifetime::remove(&lifetime::key(base)?).map(Some)
    }

    /// Removes what creators that died left behind.
    pub(crate) fn collect_leftovers() -> Result<()> {
        // SAFETY: geteuid has no preconditions.
        let (_, stale) = lifetime::list(unsafe { libc::geteuid() })?;
        for path in stale {
            lifetime::remove_stale(&path)?;
        }
        Ok(())
    }

    /// Every named block of this user, from the records.
    pub(crate) fn list_blocks(_tidy: bool) -> Result<Vec<BlockInfo>> {
        // SAFETY: geteuid has no preconditions.
        let (listed, _) = lifetime::list(unsafe { libc::geteuid() })?;
        let mut blocks: Vec<BlockInfo> = listed.into_iter().map(info_from).collect();
        blocks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(blocks)
    }
}

pub(crate) use backend::{block_info, collect_leftovers, list_blocks, remove_block};
use backend::{segment_source, source};
