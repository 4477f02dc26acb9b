//! One mapped view of a backing object (`RawView`): its address range, the
//! `SIGBUS` guard's registration, and what can be asked of it afterwards
//! (why a page vanished, `msync`, `madvise`).

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::OnceLock;

use super::fault::Watch;
use super::{cvt, page_size, space};
use crate::error::Result;
use crate::os::Vanished;

/// A file system with less than this free is taken to be the reason a page
/// could not be allocated: the kernel raises `SIGBUS` only once it has
/// failed to find space, and a few blocks may stay reserved or be freed by
/// others in the meantime.
const NEARLY_FULL: u64 = 1 << 20;

/// One mapped view. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct RawView {
    ptr: *mut u8,
    len: usize,
    /// The view's registration with the `SIGBUS` guard.
    watch: Watch,
    /// The descriptor of the [`Backing`] this view was mapped from, only
    /// to ask, after a fault, why the page vanished ([`RawView::vanished`]).
    /// Borrowed: a view lives next to its backing object (`mapping::Live`),
    /// which is closed only after the view is unmapped.
    fd: RawFd,
    /// Where the view starts in the backing object (a multiple of the page size).
    offset: u64,
    /// Why pages vanished, found out once: every access to the poisoned
    /// view reports the same.
    vanished: OnceLock<Vanished>,
}

// SAFETY: a RawView is an address range owned by this value; nothing in it is
// tied to the thread that created it.
unsafe impl Send for RawView {}
// SAFETY: RawView's methods take `&self` only to read its fields or to call
// msync, which is thread-safe; memory access goes through raw pointers whose
// users synchronise.
unsafe impl Sync for RawView {}

impl RawView {
    /// The view of `len` bytes at `ptr`, which the caller just mapped from
    /// `fd` at `offset` (private memory copied from it counts too), now
    /// watched by the `SIGBUS` guard.
    pub(super) fn new(ptr: *mut u8, len: usize, fd: RawFd, offset: u64) -> RawView {
        RawView {
            ptr,
            len,
            watch: Watch::new(ptr, len),
            fd,
            offset,
            vanished: OnceLock::new(),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The lowest address at which a page of the view vanished under an
    /// access (see `fault.rs`); checked after every access.
    #[inline(always)]
    pub(crate) fn fault(&self) -> Option<usize> {
        self.watch.fault()
    }

    /// Why the page at `addr` (a [`RawView::fault`] address) vanished: the
    /// object behind the view is now too short for it (it shrank), or it is
    /// still long enough, so the page could not be allocated or read: no
    /// space if its file system is (nearly) full, else an I/O error. Both
    /// raise the same `SIGBUS`; only the object's size and its file
    /// system's free space, asked here, after the access, tell them apart.
    #[cold]
    pub(crate) fn vanished(&self, addr: usize) -> Vanished {
        *self.vanished.get_or_init(|| {
            // The view's own pages are contiguous from `ptr`, at `offset`.
            let at = (addr.saturating_sub(self.ptr as usize)) as u64;
            let Some(byte) = self.offset.checked_add(at) else {
                return Vanished::Shrank;
            };
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: `st` is writable memory for one stat; `fd` is open (see
            // the field).
            if unsafe { libc::fstat(self.fd, st.as_mut_ptr()) } != 0 {
                return Vanished::Shrank;
            }
            // SAFETY: fstat returned 0, so it filled `st`.
            let size = unsafe { st.assume_init() }.st_size.max(0) as u64;
            if size <= byte {
                return Vanished::Shrank;
            }
            // SAFETY: the backing object's descriptor stays open while the
            // view is mapped (see the field).
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            match space::free_space(fd) {
                Ok(Some(free)) if free.avail >= NEARLY_FULL => Vanished::Failed { code: libc::EIO },
                _ => Vanished::NoSpace { code: libc::ENOSPC },
            }
        })
    }

    /// Writes the pages covering `offset..offset + len` back to the backing
    /// object and waits for it (`msync(MS_SYNC)`). The range must lie inside
    /// the view.
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        if len == 0 {
            return Ok(());
        }
        let page = page_size();
        let start = offset - offset % page;
        // SAFETY: `start..offset + len` lies inside the mapping (page
        // alignment only moves `start` down to the mapping's aligned base or
        // above), and msync does not touch the memory's contents.
        cvt("msync", unsafe {
            libc::msync(
                self.ptr.add(start).cast(),
                offset + len - start,
                libc::MS_SYNC,
            )
        })?;
        Ok(())
    }

    /// Ends the view without unmapping it: its address range is handed
    /// back to whoever mapped it (a segment's attachment, see
    /// `Segment::take_back`). Returns the range.
    pub(super) fn forget(self) -> (*mut u8, usize) {
        let this = std::mem::ManuallyDrop::new(self);
        this.watch.release();
        (this.ptr, this.len)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Unmaps the view and reports errors.
    pub(crate) fn unmap(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        this.watch.release();
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // exactly once (Drop will not run).
        cvt("munmap", unsafe { libc::munmap(this.ptr.cast(), this.len) })?;
        Ok(())
    }
}

impl Drop for RawView {
    fn drop(&mut self) {
        self.watch.release();
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // exactly once. An error cannot be reported from drop, and munmap of
        // a range we mapped only fails on invalid arguments, which would be a
        // bug caught by `unmap` in tests.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The `madvise` advice values offered to users, by their C names.
///
/// Left out on purpose: `MADV_DONTFORK` (a forked child that touches the
/// view would crash), `MADV_HWPOISON` and `MADV_SOFT_OFFLINE` (they inject
/// memory errors, and the next access kills the process).
pub(crate) const ADVICE: &[(&str, i32)] = &[
    ("MADV_NORMAL", libc::MADV_NORMAL),
    ("MADV_RANDOM", libc::MADV_RANDOM),
    ("MADV_SEQUENTIAL", libc::MADV_SEQUENTIAL),
    ("MADV_WILLNEED", libc::MADV_WILLNEED),
    ("MADV_DONTNEED", libc::MADV_DONTNEED),
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    ("MADV_FREE", libc::MADV_FREE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_REMOVE", libc::MADV_REMOVE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DOFORK", libc::MADV_DOFORK),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_MERGEABLE", libc::MADV_MERGEABLE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_UNMERGEABLE", libc::MADV_UNMERGEABLE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_HUGEPAGE", libc::MADV_HUGEPAGE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_NOHUGEPAGE", libc::MADV_NOHUGEPAGE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DONTDUMP", libc::MADV_DONTDUMP),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DODUMP", libc::MADV_DODUMP),
];

impl RawView {
    /// Gives the kernel `advice` (one of [`ADVICE`]) about the pages covering
    /// `offset..offset + len` of the view. The range must lie inside the view.
    pub(crate) fn advise(&self, offset: usize, len: usize, advice: i32) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        debug_assert!(ADVICE.iter().any(|&(_, a)| a == advice));
        if len == 0 {
            return Ok(());
        }
        // madvise wants a page-aligned start; the view itself starts on a
        // page boundary, so aligning down stays inside it.
        let page = page_size();
        let start = offset - offset % page;
        // SAFETY: `start..offset + len` lies inside this mapping. None of the
        // advice values in ADVICE unmaps memory: at worst (DONTNEED, REMOVE,
        // FREE) the pages' contents are dropped and read back as the file's
        // data or zeros, which no Rust reference can observe because mapped
        // memory is only reached through raw pointers.
        cvt("madvise", unsafe {
            libc::madvise(self.ptr.add(start).cast(), offset + len - start, advice)
        })?;
        Ok(())
    }
}
