//! The memory of a named block on Linux: a System V shared-memory segment
//! that the kernel frees when its last attachment goes, however its
//! holders end (close, exit, SIGKILL, a crash).
//!
//! The segment is marked for removal (`IPC_RMID`) as soon as its creator has
//! attached it, so no key and no name lead to it and nothing outlives the
//! last holder; Linux still lets a process attach a marked segment by its
//! id while it exists. The name (`/dev/shm/mmapfile.<name>`) stays a small
//! record file that says which segment holds the block ([`SegmentRef`], in
//! its modification time, so the record holds no page of memory and an
//! opener reads it with the `fstat` it makes anyway) and keeps the holders'
//! locks of `lifetime_linux.rs`.
//!
//! Ids are reused, and anybody can write a record under a name of their
//! own, so an opener checks what it attached: the segment's owner must be
//! the record's owner, and the segment's identity must be the record's tag
//! ([`SegmentRef::tag`]): its creation time and the few bytes by which its
//! asked size falls short of whole pages, chosen at random (see
//! [`object_len`]). Both are kept by the kernel (`IPC_STAT`), so creating a
//! block writes nothing into its memory and allocates no page of it.
//!
//! Every holder keeps the whole segment attached ([`Segment`]) for as long
//! as it holds the block: that attachment is what keeps the memory alive,
//! and views are duplicates of it (`mremap` of a shared mapping with an old
//! size of 0), which costs less than attaching again.

use std::io;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::page_size;
use crate::error::{Error, Result};

/// The offset of the trailer page in an object holding `user_len` bytes:
/// the user's bytes rounded up to whole pages. `None` on overflow.
pub(crate) fn trailer_offset(user_len: u64) -> Option<u64> {
    let page = page_size() as u64;
    user_len.checked_next_multiple_of(page)
}

/// The length of an object that holds `user_len` bytes of the user's and a
/// trailer page after them. `None` on overflow. Bytes `0..256` of the
/// trailer page belong to the mapping lock; the rest are unused.
///
/// A segment of this length is asked for up to a page less (its *shortfall*,
/// part of its tag): the kernel gives whole pages all the same, and
/// `IPC_STAT` reports the size as asked.
pub(crate) fn object_len(user_len: u64) -> Option<u64> {
    trailer_offset(user_len)?.checked_add(page_size() as u64)
}

/// What a record says about its block's segment. It is kept in the
/// record's modification time ([`SegmentRef::mtime`]), which the creator
/// sets with the one call that finishes the record, and which an opener
/// reads with the `fstat` it makes anyway; the record itself stays empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    pub(crate) id: libc::c_int,
    /// The segment's identity, as [`identity`] makes it from what
    /// `IPC_STAT` says.
    pub(crate) tag: u32,
    /// The low [`NS_BITS`] bits of the IPC namespace the segment lives in
    /// (the inode of `/proc/self/ns/ipc`), 0 where unknown.
    pub(crate) ipc_ns: u16,
    /// The bytes by which the block's size falls short of whole pages: the
    /// segment's length gives the pages, so this gives the size.
    pub(crate) pad: u16,
}

/// The top four bits of the seconds of a record's modification time that
/// say it holds a [`SegmentRef`]: a time some 10^11 years from now, which
/// no clock and no `touch` without `-d` writes.
const MAGIC: u64 = 0b0101;
const NS_BITS: u32 = 13;
const NS_MASK: u64 = (1 << NS_BITS) - 1;
/// The creation second is kept modulo 2^13 (over two hours) in the tag.
const CTIME_MASK: u64 = (1 << 13) - 1;

impl SegmentRef {
    /// The record's modification time that says this: seconds
    /// `MAGIC | id | pad | namespace` (4, 31, 16 and 13 bits, from the top),
    /// nanoseconds the tag (29 bits, below 10^9 as a time must be).
    pub(crate) fn mtime(&self) -> (i64, i64) {
        let seconds = MAGIC << 60
            | (self.id as u64 & 0x7fff_ffff) << 29
            | u64::from(self.pad) << NS_BITS
            | u64::from(self.ipc_ns) & NS_MASK;
        (seconds as i64, i64::from(self.tag))
    }

    /// What the modification time `seconds`, `nanoseconds` of a record
    /// says, if it holds a reference.
    pub(crate) fn from_mtime(seconds: i64, nanoseconds: i64) -> Option<SegmentRef> {
        let seconds = seconds as u64;
        if seconds >> 60 != MAGIC || !(0..1 << 29).contains(&nanoseconds) {
            return None;
        }
        Some(SegmentRef {
            id: ((seconds >> 29) & 0x7fff_ffff) as libc::c_int,
            tag: nanoseconds as u32,
            ipc_ns: (seconds & NS_MASK) as u16,
            pad: (seconds >> NS_BITS) as u16,
        })
    }

    /// What the record with status `st` says, if it names a segment.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn from_stat(st: &libc::stat) -> Option<SegmentRef> {
        SegmentRef::from_mtime(st.st_mtime as i64, st.st_mtime_nsec as i64)
    }
}

/// Whether a record's modification time can hold a [`SegmentRef`] here:
/// it needs 64-bit times, and a page size that fits in its `pad`.
fn references_fit() -> bool {
    std::mem::size_of::<libc::time_t>() >= 8 && page_size() <= 1 << 16
}

/// The IPC namespace of this process (the inode number of
/// `/proc/self/ns/ipc`), 0 where `/proc` cannot tell. Asked once: a
/// process that moves to another namespace (`setns`) after its first block
/// is not supported.
pub(crate) fn ipc_namespace() -> u64 {
    static NS: OnceLock<u64> = OnceLock::new();
    *NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/ipc").map_or(0, |m| m.ino())
    })
}

/// Why attaching a record's segment failed.
pub(crate) enum AttachError {
    /// The segment is not the record's block: gone (its holders are dying,
    /// and the id may already be another segment's), or not this record's.
    NotTheBlock,
    /// A real error, to report.
    Failed(Error),
}

impl AttachError {
    /// What the failed call `op` on a record's segment id says: the id
    /// names no segment (any more) or a removed one, or a real error.
    fn from_io(op: &'static str, e: io::Error) -> AttachError {
        match e.raw_os_error() {
            Some(libc::EINVAL | libc::EIDRM) => AttachError::NotTheBlock,
            _ => AttachError::Failed(Error::io(op, e)),
        }
    }
}

/// A holder's attachment of a segment: what keeps its memory alive.
///
/// It starts as one attachment of the whole segment. The first view of the
/// whole block takes the user's part of it over (so a create or open that
/// maps the block once attaches once); the trailer page stays, as this
/// holder's own hold on the memory, until drop. Other views attach anew.
#[derive(Debug)]
pub(crate) struct Segment {
    id: libc::c_int,
    /// The whole attachment, until a view takes it over (then null).
    whole: AtomicPtr<u8>,
    /// The trailer page, mapped as long as this value lives.
    trailer: *mut u8,
    /// The block's size: the user's bytes.
    size: u64,
    /// The segment's length: the user's bytes, rounded up, and the trailer page.
    len: u64,
    writable: bool,
}

// SAFETY: a Segment is address ranges owned by this value; nothing in it is
// tied to the thread that created it.
unsafe impl Send for Segment {}
// SAFETY: `&Segment` only reads its plain fields, and takes `whole` over
// atomically; memory is reached through raw pointers whose users synchronise.
unsafe impl Sync for Segment {}

/// A shortfall for a new segment (see [`object_len`]): a number below the
/// page size that consecutive segments do not share by chance. With the
/// creation time it tells an opener that the id in a record still names that
/// record's segment (see [`identity`]); it is no secret, so a counter mixed
/// with a random seed drawn once per process does, without a system call
/// per block.
fn new_shortfall() -> Result<u64> {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = match SEED.get() {
        Some(&seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            // SAFETY: `bytes` is writable memory of its length (at most 256).
            if unsafe { libc::getentropy(bytes.as_mut_ptr().cast(), bytes.len()) } != 0 {
                return Err(Error::last_os("getentropy"));
            }
            *SEED.get_or_init(|| u64::from_ne_bytes(bytes))
        }
    };
    let z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    Ok(mix(z) % page_size() as u64)
}

/// SplitMix64's finaliser: distinct inputs give distinct, scattered values.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key under which a creator makes the segment of the record with
/// status `st` (taken once it holds the record, so its inode and its
/// modification time, which is still its creation time). The segment has
/// this key only until its creator marks it for removal (`IPC_RMID` turns
/// the key back to `IPC_PRIVATE`), a few microseconds: a creator killed in
/// between leaves a segment that nobody attaches and nothing marks, which
/// [`Segment::reap`] finds by this key from the record it left.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn creation_key(st: &libc::stat) -> libc::key_t {
    let z = mix(st.st_ino as u64
        ^ (st.st_mtime as u64).rotate_left(32)
        ^ (st.st_mtime_nsec as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Positive, and never IPC_PRIVATE (0).
    ((z & 0x7fff_ffff) as libc::key_t).max(1)
}

/// `SHM_DEST` of `<linux/shm.h>`: the segment is marked for removal.
const SHM_DEST: libc::c_ushort = 0o1000;

/// How long after its record was made a creator may have made its segment.
const MADE_WITHIN_SECONDS: i64 = 60;

/// A segment's identity (a record's [`SegmentRef::tag`]): the second it was
/// created in, modulo 2^13 (2 h 16 min), and its shortfall. No two segments
/// with the same id share it in practice: the kernel gives an id again only
/// after its sequence number has wrapped, that is after 65,536 other
/// segments at least (and on Linux 4.19 and later after millions: each wrap
/// of the sequence takes a cycle through the free slots, at least 64 of
/// them), which at more than a microsecond a `shmget` takes more than a
/// second; the second must then be the same modulo 2^13, and the shortfall
/// too (one chance in the page size).
fn identity(ctime: i64, shortfall: u64) -> u32 {
    ((ctime as u64 & CTIME_MASK) << 16 | shortfall) as u32
}

/// The seconds of the real-time clock as the kernel stamps an IPC object's
/// change time with them (`ktime_get_real_seconds`, which is what the
/// coarse real-time clock reads, from the vDSO).
fn coarse_seconds() -> i64 {
    // SAFETY: an all-zero timespec is a valid value of this plain C struct.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is writable memory for one timespec; this clock exists
    // on every Linux this backend supports (2.6.32 and later).
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    seconds(ts.tv_sec)
}

/// A `time_t` as 64 bits (it is 32 on some 32-bit targets).
#[allow(clippy::unnecessary_cast)]
fn seconds(t: libc::time_t) -> i64 {
    t as i64
}

/// Keeps the attachment at `ptr` out of this process's core dumps, as a
/// block in a `/dev/shm` file always was: the kernel dumps System V memory
/// by default (`coredump_filter` bit 1) and files' shared mappings not (bit
/// 3), and a crash should neither copy a large block into a core file nor
/// keep its memory while the dump is written. `MADV_DODUMP` on a view
/// brings them back.
fn leave_out_of_core_dumps(ptr: *mut u8, len: usize) {
    // SAFETY: `ptr..ptr + len` is an attachment of ours; the advice changes
    // no contents. It can only fail on a bad range, which would be a bug
    // caught by the test of this, and then the block is merely dumped.
    unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTDUMP) };
}

fn shmat(id: libc::c_int, writable: bool) -> io::Result<*mut u8> {
    let flags = if writable { 0 } else { libc::SHM_RDONLY };
    // SAFETY: attaching at an address the kernel chooses overlaps nothing;
    // the result is checked below.
    let ptr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if ptr as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

fn stat(id: libc::c_int) -> io::Result<libc::shmid_ds> {
    // SAFETY: an all-zero shmid_ds is a valid value of this plain C struct.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is writable memory for one shmid_ds.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ds)
}

impl Segment {
    /// Creates a segment for `user_len` bytes with the permission bits
    /// `mode`, attaches it and marks it for removal, so that it dies with
    /// its last attachment. `Ok(None)`: segments cannot be had here (none
    /// left under `kernel.shmmni`, larger than `kernel.shmmax`, or refused
    /// by a sandbox); the caller keeps the block in `/dev/shm` instead.
    ///
    /// The segment is made under `key` ([`creation_key`], or `IPC_PRIVATE`),
    /// or without a key if another segment has that one.
    pub(crate) fn create(
        user_len: u64,
        mode: u32,
        key: libc::key_t,
    ) -> Result<Option<(Segment, SegmentRef)>> {
        if !references_fit() {
            return Ok(None);
        }
        let too_large = || Error::io("shmget", io::Error::from_raw_os_error(libc::EFBIG));
        let len = object_len(user_len).ok_or_else(too_large)?;
        let shortfall = new_shortfall()?;
        let asked = usize::try_from(len - shortfall).map_err(|_| too_large())?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | libc::SHM_NORESERVE | (mode & 0o777) as i32;
        // The kernel stamps the segment with the second it was made in: when
        // the clock reads the same second on both sides of the call, that is
        // the one, and no `IPC_STAT` is needed to learn it.
        let make = |key| {
            let before = coarse_seconds();
            // SAFETY: shmget has no memory preconditions.
            let id = unsafe { libc::shmget(key, asked, flags) };
            (id, io::Error::last_os_error(), before, coarse_seconds())
        };
        let (mut id, mut err, mut before, mut after) = make(key);
        if id < 0 && key != libc::IPC_PRIVATE && err.raw_os_error() == Some(libc::EEXIST) {
            (id, err, before, after) = make(libc::IPC_PRIVATE);
        }
        if id < 0 {
            return match err.raw_os_error() {
                Some(libc::ENOSPC | libc::EINVAL | libc::EPERM | libc::ENOSYS | libc::EACCES) => {
                    Ok(None)
                }
                _ => Err(Error::io("shmget", err)),
            };
        }
        let attached = shmat(id, true);
        let ctime = if before == after {
            Ok(before)
        } else {
            stat(id).map(|ds| seconds(ds.shm_ctime))
        };
        // Marked at once, attached or not: the segment then dies with the
        // attachment (or now, without one), whatever happens to this process.
        // SAFETY: IPC_RMID takes no buffer.
        let removed = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        let base = attached.map_err(|e| Error::io("shmat", e))?;
        let segment = Segment::new(id, base, user_len, len, true);
        if removed != 0 {
            return Err(Error::last_os("shmctl"));
        }
        let ctime = ctime.map_err(|e| Error::io("shmctl", e))?;
        let reference = SegmentRef {
            id,
            tag: identity(ctime, shortfall),
            ipc_ns: (ipc_namespace() & NS_MASK) as u16,
            // Below a page, which `references_fit` keeps within 16 bits.
            pad: (len - page_size() as u64 - user_len) as u16,
        };
        Ok(Some((segment, reference)))
    }

    /// Attaches the segment a record of the user `owner` refers to, and
    /// checks that it is that record's block.
    pub(crate) fn attach(
        reference: &SegmentRef,
        owner: libc::uid_t,
        writable: bool,
    ) -> std::result::Result<Segment, AttachError> {
        let here = ipc_namespace() & NS_MASK;
        if reference.ipc_ns != 0 && here != 0 && u64::from(reference.ipc_ns) != here {
            return Err(AttachError::Failed(Error::FileChanged {
                message: format!(
                    "this named block lives in another IPC namespace than this process's \
                     (ipc:[{}]): a container that shares /dev/shm with its host must share \
                     its IPC namespace too (docker run --ipc=host, or the same \
                     --ipc=container:<name>)",
                    ipc_namespace()
                ),
                code: libc::EXDEV,
            }));
        }
        let (size, len) = Segment::check(reference, owner)?;
        let base = shmat(reference.id, writable).map_err(|e| AttachError::from_io("shmat", e))?;
        Ok(Segment::new(reference.id, base, size, len, writable))
    }

    /// Destroys the segment that a creator killed while it made it left
    /// behind: the one under `key` ([`creation_key`] of the unfinished record
    /// the creator left, which the caller holds exclusively, so that no live
    /// creator is making it), created by `owner` within a minute of the
    /// record's making at `made_at` seconds, attached by nobody and not
    /// marked for removal. Anything else under that key is left alone.
    /// Returns whether it destroyed one.
    pub(crate) fn reap(key: libc::key_t, owner: libc::uid_t, made_at: i64) -> bool {
        // SAFETY: shmget has no memory preconditions; size 0 and no flags
        // only look the key up.
        let id = unsafe { libc::shmget(key, 0, 0) };
        if id < 0 {
            return false;
        }
        let Ok(ds) = stat(id) else {
            return false;
        };
        let made = seconds(ds.shm_ctime);
        let left = ds.shm_perm.uid == owner
            && ds.shm_perm.cuid == owner
            && ds.shm_nattch == 0
            && ds.shm_perm.mode & SHM_DEST == 0
            && (made_at - 1..=made_at + MADE_WITHIN_SECONDS).contains(&made);
        // SAFETY: IPC_RMID takes no buffer.
        left && unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0
    }

    /// The size of the block whose record is `reference`, of the user
    /// `owner`, if its segment is still there (`None`: its last holder
    /// ended, and the kernel freed it).
    pub(crate) fn size_of(reference: &SegmentRef, owner: libc::uid_t) -> Option<u64> {
        Segment::check(reference, owner).ok().map(|(size, _)| size)
    }

    /// Checks that the segment `reference` names is the record's block and
    /// returns the block's size and the segment's length.
    fn check(
        reference: &SegmentRef,
        owner: libc::uid_t,
    ) -> std::result::Result<(u64, u64), AttachError> {
        let ds = stat(reference.id).map_err(|e| AttachError::from_io("shmctl", e))?;
        if ds.shm_perm.uid != owner || ds.shm_perm.cuid != owner {
            return Err(AttachError::NotTheBlock);
        }
        // The segment has whole pages: the size asked, rounded up. Its
        // shortfall and creation second are its identity, which must be the
        // record's tag; its pages less the trailer's and the record's pad
        // are the block's size.
        let page = page_size() as u64;
        let asked = ds.shm_segsz as u64;
        let len = asked
            .checked_next_multiple_of(page)
            .ok_or(AttachError::NotTheBlock)?;
        if identity(seconds(ds.shm_ctime), len - asked) != reference.tag {
            return Err(AttachError::NotTheBlock);
        }
        let size = (len.checked_sub(page))
            .and_then(|user| user.checked_sub(u64::from(reference.pad)))
            .filter(|&size| object_len(size) == Some(len))
            .ok_or(AttachError::NotTheBlock)?;
        Ok((size, len))
    }

    fn new(id: libc::c_int, base: *mut u8, size: u64, len: u64, writable: bool) -> Segment {
        leave_out_of_core_dumps(base, len as usize);
        // SAFETY: `len` is at least one page (the trailer), so the trailer
        // page lies in the attachment.
        let trailer = unsafe { base.add(len as usize - page_size()) };
        Segment {
            id,
            whole: AtomicPtr::new(base),
            trailer,
            size,
            len,
            writable,
        }
    }

    /// The block's size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The whole attachment, before any view took it over (else null).
    pub(crate) fn base(&self) -> *mut u8 {
        self.whole.load(Ordering::Acquire)
    }

    /// The segment's trailer page (see [`object_len`]), mapped as long as
    /// this value lives.
    #[cfg(test)]
    pub(crate) fn trailer(&self) -> *mut u8 {
        self.trailer
    }

    /// A new attachment of the segment's trailer page alone, writable, for
    /// the mapping lock, whose word is there (`lock_home.rs`): it keeps the
    /// segment alive, and is detached with one `munmap` of a page. Needs
    /// write permission on the segment, whatever this holder's attachment.
    pub(crate) fn attach_trailer(&self) -> Result<*mut u8> {
        self.attach_window(self.len - page_size() as u64, self.len, true)
    }

    /// A mapping of the `len` bytes at `offset` (page-aligned) of the
    /// user's part of the segment, shared with every other attachment,
    /// writable if `writable` (this holder's attachment must be). The caller
    /// unmaps it (`munmap`), which detaches it.
    pub(crate) fn map(&self, offset: u64, len: usize, writable: bool) -> Result<*mut u8> {
        let page = page_size() as u64;
        let user_part = self.len - page;
        let end = (offset.checked_add(len as u64))
            .and_then(|end| end.checked_next_multiple_of(page))
            .filter(|&end| len > 0 && end <= user_part);
        let Some(end) = end else {
            return Err(Error::io(
                "shmat",
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        };
        if writable && !self.writable {
            return Err(Error::io(
                "shmat",
                io::Error::from_raw_os_error(libc::EACCES),
            ));
        }
        if offset == 0 && end == user_part && writable == self.writable {
            let whole = self.whole.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !whole.is_null() {
                return Ok(whole);
            }
        }
        self.attach_window(offset, end, writable)
    }

    /// The user's part of the whole attachment: where [`Segment::map`]
    /// hands it over, and its length.
    fn user_part(&self) -> (*mut u8, usize) {
        let len = self.len as usize - page_size();
        // SAFETY: the trailer page follows the user's part in the attachment.
        (unsafe { self.trailer.sub(len) }, len)
    }

    /// Whether the view at `ptr` of `len` bytes is the user's part of the
    /// whole attachment, taken over by [`Segment::map`]. No other view can
    /// start there, even after that one was unmapped: the trailer page
    /// right after the user's part stays mapped while `self` lives, so a
    /// new attachment of the whole segment cannot be placed at that address.
    pub(crate) fn is_taken_by(&self, ptr: *mut u8, len: usize) -> bool {
        let (base, user_len) = self.user_part();
        ptr == base
            && len.div_ceil(page_size()) * page_size() == user_len
            && self.whole.load(Ordering::Acquire).is_null()
    }

    /// Takes back the user's part of the whole attachment from the view
    /// that took it over ([`Segment::is_taken_by`]), which ends without
    /// unmapping it: the attachment is then whole again, and detached in
    /// one call on drop (or taken over by the next view of the whole block).
    pub(crate) fn take_back(&self, ptr: *mut u8, len: usize) {
        debug_assert!(self.is_taken_by(ptr, len));
        self.whole.store(ptr, Ordering::Release);
    }

    /// A new attachment of the segment cut down to `offset..end` (both
    /// page-aligned, inside it).
    fn attach_window(&self, offset: u64, end: u64, writable: bool) -> Result<*mut u8> {
        let base = shmat(self.id, writable).map_err(|e| Error::io("shmat", e))?;
        let cut = |from: u64, to: u64| -> Result<()> {
            if from == to {
                return Ok(());
            }
            // SAFETY: `from..to` lies inside the attachment just made, which
            // nothing else uses yet.
            let ret = unsafe { libc::munmap(base.add(from as usize).cast(), (to - from) as usize) };
            if ret != 0 {
                return Err(Error::last_os("munmap"));
            }
            Ok(())
        };
        if let Err(e) = cut(0, offset).and_then(|()| cut(end, self.len)) {
            // SAFETY: as above; what is left of it is unmapped once.
            unsafe { libc::munmap(base.add(offset as usize).cast(), (end - offset) as usize) };
            return Err(e);
        }
        // SAFETY: `offset` lies inside the attachment.
        let window = unsafe { base.add(offset as usize) };
        leave_out_of_core_dumps(window, (end - offset) as usize);
        Ok(window)
    }

    /// Copies the `len` bytes at `offset` (inside the user's part) to `dst`,
    /// through an attachment of its own.
    pub(crate) fn copy_to(&self, offset: u64, dst: *mut u8, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let page = page_size() as u64;
        let start = offset - offset % page;
        let end = offset
            .checked_add(len as u64)
            .and_then(|end| end.checked_next_multiple_of(page))
            .filter(|&end| end <= self.len - page)
            .ok_or_else(|| Error::io("shmat", io::Error::from_raw_os_error(libc::EINVAL)))?;
        let window = self.attach_window(start, end, false)?;
        // SAFETY: the source lies inside the window just attached, and the
        // caller gives `len` writable bytes at `dst` that it owns. Another
        // process may write the source meanwhile, so the copy goes through
        // raw pointers and no reference to shared memory is formed.
        unsafe {
            std::ptr::copy_nonoverlapping(window.add((offset - start) as usize), dst, len);
            libc::munmap(window.cast(), (end - start) as usize);
        }
        Ok(())
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let whole = *self.whole.get_mut();
        let (ptr, len) = if whole.is_null() {
            (self.trailer, page_size())
        } else {
            (whole, self.len as usize)
        };
        // SAFETY: what is left of our attachment, unmapped (so detached)
        // once. A failure could only leave the memory in place until exit.
        unsafe { libc::munmap(ptr.cast(), len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_segments_read_back() {
        let r = SegmentRef {
            id: i32::MAX,
            tag: (1 << 29) - 1,
            ipc_ns: (NS_MASK as u16) & 0x1234,
            pad: u16::MAX,
        };
        let (sec, nsec) = r.mtime();
        assert!(nsec < 1_000_000_000, "a valid time");
        assert_eq!(SegmentRef::from_mtime(sec, nsec), Some(r));
        let zero = SegmentRef {
            id: 0,
            tag: 0,
            ipc_ns: 0,
            pad: 0,
        };
        assert_eq!(SegmentRef::from_mtime(zero.mtime().0, 0), Some(zero));
        // Times a clock or `touch` writes say nothing.
        assert_eq!(SegmentRef::from_mtime(1_796_000_000, 5), None);
        assert_eq!(SegmentRef::from_mtime(-1, 0), None);
        assert_eq!(SegmentRef::from_mtime(sec, 1 << 29), None);
    }

    #[test]
    fn the_trailer_page_follows_the_users_bytes() {
        let page = page_size() as u64;
        assert_eq!(trailer_offset(1), Some(page));
        assert_eq!(object_len(page), Some(2 * page));
        assert_eq!(object_len(0), Some(page));
        assert_eq!(object_len(u64::MAX), None);
    }

    /// The segment's row of `/proc/sysvipc/shm`, split into fields.
    fn sysvipc_row(id: libc::c_int) -> Vec<String> {
        let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
        let row = table
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .find(|fields| fields.get(1) == Some(&id.to_string()))
            .expect("the segment is listed");
        row
    }

    #[test]
    fn creating_a_segment_allocates_none_of_its_memory_and_keeps_whole_pages() {
        let page = page_size();
        for size in [1, 10, page as u64, 3 * page as u64 + 1] {
            let (seg, r) = Segment::create(size, 0o600, libc::IPC_PRIVATE)
                .unwrap()
                .expect("segments");
            // Columns: key shmid perms size cpid lpid nattch uid gid cuid
            // cgid atime dtime ctime rss swap.
            let row = sysvipc_row(r.id);
            assert_eq!(row[14], "0", "resident bytes after creation: {row:?}");
            let asked: u64 = row[3].parse().unwrap();
            let len = object_len(size).unwrap();
            assert!(
                asked <= len && len - asked < page as u64,
                "{asked} of {len}"
            );
            // The trailer's last byte is there, shortfall or not.
            // SAFETY: the trailer page is mapped while `seg` lives.
            unsafe { seg.trailer().add(page - 1).write_volatile(7) };
            assert_ne!(sysvipc_row(r.id)[14], "0");
        }
    }

    #[test]
    fn the_tag_is_the_identity_the_kernel_reports() {
        let (seg, r) = Segment::create(10, 0o600, libc::IPC_PRIVATE)
            .unwrap()
            .expect("segments");
        let ds = stat(r.id).unwrap();
        let len = object_len(10).unwrap();
        assert_eq!(
            r.tag,
            identity(seconds(ds.shm_ctime), len - ds.shm_segsz as u64)
        );
        assert_eq!(u64::from(r.pad), page_size() as u64 - 10);
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(Segment::size_of(&r, me), Some(10));
        drop(seg);
        assert_eq!(Segment::size_of(&r, me), None, "freed with its attachment");
    }

    #[test]
    fn an_opener_attaches_only_the_segment_its_record_names() {
        let (seg, r) = Segment::create(10, 0o600, libc::IPC_PRIVATE)
            .unwrap()
            .expect("segments");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert!(Segment::attach(&r, me, true).is_ok());
        let mut forgeries = vec![
            SegmentRef {
                tag: r.tag ^ 1,
                ..r
            },
            SegmentRef {
                tag: r.tag ^ 1 << 16,
                ..r
            },
        ];
        // A pad of a page or more would leave the block fewer pages than
        // its segment has.
        if let Ok(page) = u16::try_from(page_size()) {
            forgeries.push(SegmentRef { pad: page, ..r });
        }
        for forged in forgeries {
            assert!(matches!(
                Segment::attach(&forged, me, true),
                Err(AttachError::NotTheBlock)
            ));
        }
        assert!(matches!(
            Segment::attach(&r, me + 1, true),
            Err(AttachError::NotTheBlock)
        ));
        drop(seg);
        // The only attachment is gone, and the segment with it.
        assert!(matches!(
            Segment::attach(&r, me, true),
            Err(AttachError::NotTheBlock)
        ));
    }

    #[test]
    fn a_segment_left_by_a_killed_creator_is_reaped_by_its_key_alone() {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let now = coarse_seconds();
        let key = 0x3a00_0000 | (std::process::id() as libc::key_t & 0xff_ffff);
        let leave = || {
            // What a creator killed before its IPC_RMID leaves: a keyed,
            // unmarked segment that nobody attaches.
            // SAFETY: shmget has no memory preconditions.
            let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
            assert!(id >= 0, "{}", io::Error::last_os_error());
            id
        };
        let id = leave();
        // Not the record's: made long after it, or by someone else.
        assert!(!Segment::reap(key, me, now - 3600));
        assert!(!Segment::reap(key, me + 1, now));
        // Attached: someone uses it.
        let at = shmat(id, false).unwrap();
        assert!(!Segment::reap(key, me, now));
        // SAFETY: `at` is the attachment just made.
        unsafe { libc::shmdt(at.cast()) };
        assert!(Segment::reap(key, me, now));
        assert!(stat(id).is_err(), "destroyed");
        assert!(!Segment::reap(key, me, now), "nothing left under the key");
        // A creator that finds the key taken makes its segment without one.
        let id = leave();
        let (seg, r) = Segment::create(10, 0o600, key).unwrap().expect("segments");
        assert_ne!(r.id, id);
        drop(seg);
        assert!(Segment::reap(key, me, now));
    }
}
