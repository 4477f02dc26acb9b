//! Huge pages for fresh buffers: none to ask for on Windows.

/// None: Windows has no advice that brings large pages to memory already
/// allocated. Large pages come only from `VirtualAlloc(MEM_LARGE_PAGES)`,
/// which needs the `SeLockMemoryPrivilege` that ordinary accounts lack, and
/// the buffers this is for are allocated by the caller (Python's allocator).
pub(crate) fn advisable_huge_page_size() -> Option<usize> {
    None
}

/// Never called (see `advisable_huge_page_size`); does nothing.
///
/// # Safety
/// As on Linux: the range must lie inside memory the caller owns.
pub(crate) unsafe fn advise_huge_pages(_ptr: *mut u8, _len: usize) -> bool {
    false
}
