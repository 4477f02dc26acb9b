//! A mapped view on Windows (`MapViewOfFile`); its accesses are guarded by
//! the routines of `guarded.rs`, not by the view.

use windows_sys::Win32::System::Memory::{
    FlushViewOfFile, MapViewOfFile, UnmapViewOfFile, MEMORY_MAPPED_VIEW_ADDRESS,
};

use super::sys::{check, split, Handle};
use crate::error::{Error, Result};
use crate::os::Vanished;

pub(super) fn map_raw(section: &Handle, offset: u64, len: usize, access: u32) -> Result<RawView> {
    // Before any view can be touched, faults in its accesses must be caught.
    super::guarded::install();
    let (hi, lo) = split(offset);
    // SAFETY: `section` is an open section handle; the system chooses the
    // address; the result is checked.
    let view = unsafe { MapViewOfFile(section.0, access, hi, lo, len) };
    if view.Value.is_null() {
        return Err(Error::last_os("MapViewOfFile"));
    }
    Ok(RawView {
        ptr: view.Value.cast(),
        len,
    })
}

/// One mapped view. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct RawView {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

// SAFETY: a RawView is an address range owned by this value; nothing in it is
// tied to the thread that created it.
unsafe impl Send for RawView {}
// SAFETY: `&self` methods only read the fields or call FlushViewOfFile, which
// is thread-safe; memory access goes through raw pointers whose users
// synchronise.
unsafe impl Sync for RawView {}

impl RawView {
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Writes `offset..offset + len` of the view back to the file
    /// (`FlushViewOfFile`; `Backing::sync` then flushes the file's buffers).
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside the view, which is mapped.
        check("FlushViewOfFile", unsafe {
            FlushViewOfFile(self.ptr.add(offset).cast(), len)
        })
    }

    /// Unmaps the view and reports errors.
    pub(crate) fn unmap(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `ptr` came from MapViewOfFile and is unmapped exactly once
        // (Drop will not run).
        check("UnmapViewOfFile", unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: this.ptr.cast(),
            })
        })
    }
}

impl Drop for RawView {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from MapViewOfFile and is unmapped exactly once;
        // an error cannot be reported from drop (`unmap` reports it).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.cast(),
            });
        }
    }
}

/// Windows has no `madvise`: no advice values are offered, so
/// `MapFile::madvise` reports [`Error::Unsupported`] before reaching
/// [`RawView::advise`]. (`PrefetchVirtualMemory` and `DiscardVirtualMemory`
/// cover parts of it, with different semantics; they are not offered under
/// `madvise`'s name.)
pub(crate) const ADVICE: &[(&str, i32)] = &[];

impl RawView {
    /// Always None: a view never loses pages here. A page that cannot be
    /// brought in (the file shrank under Wine, its storage failed or went
    /// away, a full disk under a sparse file) raises an exception, which
    /// the routine making the access catches and returns as a fault
    /// (`guarded.rs`); the view itself stays as it was.
    ///
    /// Why not replace the pages as the POSIX guard does: part of a view
    /// cannot be unmapped, so that would mean unmapping the whole view and
    /// putting fresh memory at the same addresses; in between, another
    /// thread may be given that address range (and the re-run instruction
    /// would write into its memory), or, with placeholders
    /// (`UnmapViewOfFile2` + `VirtualAlloc2`), a thread touching the
    /// still-valid part of the view faults on the placeholder.
    #[inline(always)]
    pub(crate) fn fault(&self) -> Option<usize> {
        None
    }

    /// Never called: [`RawView::fault`] never reports a page.
    #[cold]
    pub(crate) fn vanished(&self, _addr: usize) -> Vanished {
        Vanished::Shrank
    }

    /// Never reached with a valid advice value (there are none on Windows).
    pub(crate) fn advise(&self, _offset: usize, _len: usize, _advice: i32) -> Result<()> {
        Err(Error::Unsupported("madvise is not available on Windows"))
    }
}
