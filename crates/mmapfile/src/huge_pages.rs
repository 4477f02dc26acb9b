//! Huge pages for the fresh buffers that large reads fill.
//!
//! Copying 64 MiB out of a view into a newly allocated buffer costs more in
//! the buffer's page faults than in the copy: the kernel takes a fault and
//! zeroes a page for every 4 KiB of fresh memory, 16,384 times, before the
//! copy's bytes land. Backed by 2 MiB pages instead, the same buffer takes
//! 32 faults, and the copy runs three to four times faster (measured in
//! docs/performance.md). [`advise_copy_destination`] asks for that, where
//! the OS gives huge pages on request (Linux with transparent huge pages in
//! `madvise` mode), for the whole huge pages inside the buffer.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use crate::os;

/// Buffers shorter than this are left as they are: none of them holds a
/// whole huge page (2 MiB on x86-64 and on arm64 with 4 KiB pages; larger
/// elsewhere). Longer ones are advised as soon as they hold one: measured,
/// a buffer of 2.5 MiB whose middle 2 MiB get a huge page fills faster, and
/// the advice costs one system call, nothing next to the copy
/// (docs/performance.md).
pub const HUGE_PAGE_COPY_MIN: usize = 2 << 20;

/// The environment variable that turns the advice off: `MMAPFILE_HUGEPAGES=0`.
pub const HUGE_PAGES_ENV: &str = "MMAPFILE_HUGEPAGES";

/// Whether the advice is on for this process: read from the environment
/// once, at the first large copy.
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(HUGE_PAGES_ENV).is_none_or(|v| v != "0"))
}

/// Prepares a freshly allocated buffer that a copy is about to fill
/// entirely: for a buffer of at least [`HUGE_PAGE_COPY_MIN`] bytes, asks the
/// OS to back the whole huge pages inside it with huge pages, so that the
/// copy takes one page fault per huge page instead of one per page. Returns
/// whether the advice was given and taken.
///
/// Does nothing (and returns false) for a shorter buffer, where the OS
/// offers no such advice (Windows, macOS: see `docs/performance.md`), where
/// it would change nothing (Linux with THP `never` or `always`), when
/// `MMAPFILE_HUGEPAGES=0` is set, or when the advice fails. The buffer's
/// contents are never changed.
///
/// Call it only for memory that the copy fills soon and in full: the huge
/// pages in the advised range are allocated as a whole at the first touch
/// of each, and the range keeps the advice while the allocator reuses the
/// memory.
pub fn advise_copy_destination(dst: &mut [MaybeUninit<u8>]) -> bool {
    if dst.len() < HUGE_PAGE_COPY_MIN || !enabled() {
        return false;
    }
    let Some(huge) = os::advisable_huge_page_size() else {
        return false;
    };
    match huge_interior(dst.as_ptr() as usize, dst.len(), huge) {
        Some((skip, len)) => {
            // SAFETY: `skip..skip + len` lies inside `dst`, which this call
            // borrows uniquely, and is aligned to the huge page size (so to
            // the page size); the OS slot is only given a size where the
            // memory is ordinary process memory. The advice keeps contents.
            unsafe { os::advise_huge_pages(dst.as_mut_ptr().cast::<u8>().add(skip), len) }
        }
        None => false,
    }
}

/// The whole `huge`-byte pages inside `addr..addr + len`, as the offset of
/// the first from `addr` and their total length; None if there are none.
/// `huge` is a power of two.
fn huge_interior(addr: usize, len: usize, huge: usize) -> Option<(usize, usize)> {
    let mask = huge - 1;
    let first = addr.checked_add(mask)? & !mask;
    let end = addr.checked_add(len)? & !mask;
    (end > first).then(|| (first - addr, end - first))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: usize = 2 << 20;

    #[test]
    fn the_interior_is_the_whole_huge_pages_inside_the_range() {
        assert_eq!(huge_interior(0, 4 * H, H), Some((0, 4 * H)));
        assert_eq!(huge_interior(48, 4 * H, H), Some((H - 48, 3 * H)));
        assert_eq!(huge_interior(H - 1, H + 1, H), Some((1, H)));
        assert_eq!(huge_interior(H - 1, H, H), None);
        assert_eq!(huge_interior(1, 2 * H - 2, H), None);
        assert_eq!(huge_interior(usize::MAX - 10, 5, H), None);
    }

    #[test]
    fn short_buffers_are_left_alone() {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); HUGE_PAGE_COPY_MIN - 1];
        assert!(!advise_copy_destination(&mut buf));
    }
}
