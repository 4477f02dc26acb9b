//! Every access to mapped memory goes through this module.
//!
//! Mapped memory may be changed at any moment by another process, so it is
//! never handed out as a Rust slice: bytes are copied in and out through raw
//! pointers. Keeping all such accesses in one place is also what lets the
//! crate guard them against pages that vanish when the backing file shrinks.

use std::mem::MaybeUninit;

use memchr::memmem;

/// A byte range of mapped memory: `ptr..ptr + len`, valid for the duration of
/// the borrow that produced it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
}

impl Region {
    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call. `dst` may point into the
    /// region (a caller may pass a view of the mapping itself), so the copy
    /// is a `memmove`.
    pub(crate) unsafe fn copy_out(self, offset: usize, dst: &mut [u8]) {
        debug_assert!(offset + dst.len() <= self.len);
        // SAFETY: the caller guarantees the source range is mapped and in
        // bounds; `copy` allows the ranges to overlap.
        unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr(), dst.len()) }
    }

    /// Like [`Region::copy_out`], into memory that may be uninitialised
    /// (such as a new Python bytes object): after the call all of `dst` is
    /// initialised.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call.
    pub(crate) unsafe fn copy_out_uninit(self, offset: usize, dst: &mut [MaybeUninit<u8>]) {
        debug_assert!(offset + dst.len() <= self.len);
        // SAFETY: the caller guarantees the source range is mapped and in
        // bounds; `dst` is a unique borrow of `dst.len()` bytes, and writing
        // bytes into `MaybeUninit<u8>` needs no prior initialisation. A
        // plain `&mut` cannot point into the mapping, but `copy` costs no
        // more than `copy_nonoverlapping` and needs no such argument.
        unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr().cast(), dst.len()) }
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Safety
    /// `offset + src.len() <= self.len`, and the region must be mapped and
    /// writable for the duration of the call. `src` may point into the
    /// region, so the copy is a `memmove`.
    pub(crate) unsafe fn copy_in(self, offset: usize, src: &[u8]) {
        debug_assert!(offset + src.len() <= self.len);
        // SAFETY: the caller guarantees the destination range is mapped,
        // writable and in bounds; `copy` allows the ranges to overlap.
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.add(offset), src.len()) }
    }

    /// Moves `count` bytes from `src` to `dest` inside the region (the ranges
    /// may overlap).
    ///
    /// # Safety
    /// Both ranges lie inside the region, which must be mapped and writable.
    pub(crate) unsafe fn copy_within(self, dest: usize, src: usize, count: usize) {
        debug_assert!(dest + count <= self.len && src + count <= self.len);
        // SAFETY: the caller guarantees both ranges are mapped and in bounds;
        // `copy` allows overlap.
        unsafe { std::ptr::copy(self.ptr.add(src), self.ptr.add(dest), count) }
    }

    /// Runs `f` on the bytes `start..end` seen as a slice.
    ///
    /// The slice never leaves this module's callers' search functions: it is
    /// only read by `memchr`'s searches, which tolerate contents changing
    /// under them (a concurrent writer can only make the answer stale, as
    /// with any read of shared memory).
    ///
    /// # Safety
    /// `start <= end <= self.len`, and the region must be mapped and readable
    /// for the duration of the call.
    unsafe fn with_slice<R>(self, start: usize, end: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert!(start <= end && end <= self.len);
        // SAFETY: the caller guarantees the range is mapped and in bounds;
        // the slice does not outlive this call.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) };
        f(bytes)
    }

    /// Index (absolute) of the first `needle` in `start..end`.
    ///
    /// # Safety
    /// As for [`Region::with_slice`].
    pub(crate) unsafe fn find(self, needle: &[u8], start: usize, end: usize) -> Option<usize> {
        // SAFETY: forwarded from the caller.
        unsafe { self.with_slice(start, end, |hay| search_forward(hay, needle)) }.map(|i| i + start)
    }

    /// Index (absolute) of the last `needle` in `start..end`.
    ///
    /// # Safety
    /// As for [`Region::with_slice`].
    pub(crate) unsafe fn rfind(self, needle: &[u8], start: usize, end: usize) -> Option<usize> {
        // SAFETY: forwarded from the caller.
        unsafe { self.with_slice(start, end, |hay| search_backward(hay, needle)) }
            .map(|i| i + start)
    }

    /// Reads one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and readable.
    pub(crate) unsafe fn byte(self, offset: usize) -> u8 {
        debug_assert!(offset < self.len);
        // SAFETY: the caller guarantees `offset` is in bounds and mapped; a
        // volatile read keeps the compiler from assuming the byte is stable.
        unsafe { self.ptr.add(offset).read_volatile() }
    }

    /// Writes one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and writable.
    pub(crate) unsafe fn set_byte(self, offset: usize, value: u8) {
        debug_assert!(offset < self.len);
        // SAFETY: the caller guarantees `offset` is in bounds, mapped and
        // writable.
        unsafe { self.ptr.add(offset).write_volatile(value) }
    }
}

fn search_forward(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(0),
        [b] => memchr::memchr(*b, hay),
        _ => memmem::find(hay, needle),
    }
}

fn search_backward(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(hay.len()),
        [b] => memchr::memrchr(*b, hay),
        _ => rfind_blockwise(hay, needle, RFIND_BLOCK),
    }
}

/// The largest block [`rfind_blockwise`] searches forward at a time: large
/// enough that a block costs far more than starting a search, small enough
/// that the block holding the last match is rescanned quickly.
const RFIND_BLOCK: usize = 256 * 1024;

/// The last `needle` (two bytes or more) in `hay`.
///
/// `memchr`'s reverse substring search has no vectorised prefilter and runs
/// several times slower than its forward one. So this scans blocks from the
/// end with the forward searcher: the first block (from the end) that holds
/// a match is then searched backwards from its first match only, which
/// finds the last match. Blocks start small and double up to `max_block`,
/// so a match near the end is found after a few KiB. Every byte is scanned
/// at most twice (plus one needle length of overlap per block), so the
/// worst case stays linear.
fn rfind_blockwise(hay: &[u8], needle: &[u8], max_block: usize) -> Option<usize> {
    let last_start = hay.len().checked_sub(needle.len())?;
    let max_block = max_block.max(needle.len());
    let mut block = (4 * needle.len()).clamp(1, max_block);
    let forward = memmem::Finder::new(needle);
    // Candidate starts not yet ruled out: `0..=hi`.
    let mut hi = last_start;
    loop {
        let lo = hi.saturating_sub(block - 1);
        // Every match starting in `lo..=hi` lies inside `lo..hi + needle.len()`.
        let end = hi + needle.len();
        if let Some(first) = forward.find(&hay[lo..end]) {
            let from = lo + first;
            let last = memmem::rfind(&hay[from..end], needle);
            return Some(from + last.unwrap_or(0));
        }
        if lo == 0 {
            return None;
        }
        hi = lo - 1;
        block = block.saturating_mul(2).min(max_block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
        (0..=hay.len().checked_sub(needle.len())?)
            .rev()
            .find(|&i| &hay[i..i + needle.len()] == needle)
    }

    #[test]
    fn blockwise_rfind_agrees_with_a_naive_search_across_block_edges() {
        // A small alphabet makes matches, overlapping matches and matches
        // straddling block edges common.
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b"ab"[(state % 2) as usize]
        };
        for len in [0, 1, 2, 3, 7, 16, 33, 100, 257] {
            let hay: Vec<u8> = (0..len).map(|_| next()).collect();
            for needle_len in 2..6 {
                for start in 0..hay.len().saturating_sub(needle_len) {
                    let needle = &hay[start..start + needle_len];
                    for block in [1, 2, 3, 5, 8, 64] {
                        assert_eq!(
                            rfind_blockwise(&hay, needle, block),
                            naive_rfind(&hay, needle),
                            "hay {hay:?} needle {needle:?} block {block}"
                        );
                    }
                }
                let absent = vec![b'c'; needle_len];
                assert_eq!(rfind_blockwise(&hay, &absent, 4), None);
            }
        }
    }

    #[test]
    fn blockwise_rfind_finds_the_last_of_overlapping_matches() {
        assert_eq!(rfind_blockwise(b"ababa", b"aba", 2), Some(2));
        assert_eq!(rfind_blockwise(b"aaaaaa", b"aa", 3), Some(4));
        assert_eq!(rfind_blockwise(b"a", b"aa", 3), None);
    }
}
