//! Every access to mapped memory goes through this module.
//!
//! Mapped memory may be changed at any moment by another process, so it is
//! never handed out as a Rust slice: bytes are copied in and out through raw
//! pointers. Keeping all such accesses in one place is also what lets the
//! crate guard them against pages that vanish when the backing file shrinks.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use memchr::memmem;

use crate::error::{Error, Result};
use crate::os;

/// A byte range of mapped memory: `ptr..ptr + len`, valid for the duration of
/// the borrow that produced it.
///
/// Every access is checked afterwards against the view's fault record
/// ([`os::RawView::fault`]): if the backing file or block shrank and a
/// touched page no longer exists, the access returns [`Error::Truncated`]
/// instead of the process dying of `SIGBUS`, and so does every later access
/// to the view (its pages were replaced, so it must not be used again until
/// it is mapped anew).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<'a> {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) view: &'a os::RawView,
}

impl Region<'_> {
    /// Runs `access`, which touches `offset..offset + len` of the region.
    #[inline(always)]
    fn guard<R>(self, access: impl FnOnce() -> R) -> Result<R> {
        let result = access();
        match self.view.fault() {
            None => Ok(result),
            Some(addr) => Err(truncated(self.ptr, addr)),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call. `dst` may point into the
    /// region (a caller may pass a view of the mapping itself), so the copy
    /// is a `memmove`.
    pub(crate) unsafe fn copy_out(self, offset: usize, dst: &mut [u8]) -> Result<()> {
        debug_assert!(offset + dst.len() <= self.len);
        let len = dst.len();
        self.guard(|| {
            // SAFETY: the caller guarantees the source range is mapped and
            // in bounds; `copy` allows the ranges to overlap.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr(), len) }
        })
    }

    /// Like [`Region::copy_out`], into memory that may be uninitialised
    /// (such as a new Python bytes object): after the call all of `dst` is
    /// initialised.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call.
    pub(crate) unsafe fn copy_out_uninit(
        self,
        offset: usize,
        dst: &mut [MaybeUninit<u8>],
    ) -> Result<()> {
        debug_assert!(offset + dst.len() <= self.len);
        let len = dst.len();
        self.guard(|| {
            // SAFETY: the caller guarantees the source range is mapped and in
            // bounds; `dst` is a unique borrow of `len` bytes, and writing
            // bytes into `MaybeUninit<u8>` needs no prior initialisation. A
            // plain `&mut` cannot point into the mapping, but `copy` costs no
            // more than `copy_nonoverlapping` and needs no such argument.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr().cast(), len) }
        })
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Safety
    /// `offset + src.len() <= self.len`, and the region must be mapped and
    /// writable for the duration of the call. `src` may point into the
    /// region, so the copy is a `memmove`.
    pub(crate) unsafe fn copy_in(self, offset: usize, src: &[u8]) -> Result<()> {
        debug_assert!(offset + src.len() <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees the destination range is mapped,
            // writable and in bounds; `copy` allows the ranges to overlap.
            unsafe { std::ptr::copy(src.as_ptr(), self.ptr.add(offset), src.len()) }
        })
    }

    /// Copies `len` bytes starting at `offset` to the raw pointer `dst`.
    ///
    /// # Safety
    /// `offset + len <= self.len`, the region must be mapped and readable,
    /// and `dst` must be valid for writes of `len` bytes for the duration of
    /// the call. `dst` may point into the region (it may be a view of this
    /// very mapping), so the copy is a `memmove`.
    pub(crate) unsafe fn copy_out_raw(self, offset: usize, dst: *mut u8, len: usize) -> Result<()> {
        debug_assert!(offset + len <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees both ranges are valid; `copy`
            // allows them to overlap.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst, len) }
        })
    }

    /// Copies the bytes at `start`, `start + step`, … (`dst.len()` of them)
    /// into `dst`; `step` may be negative.
    ///
    /// # Safety
    /// Every index `start + k * step` for `k < dst.len()` lies in
    /// `0..self.len`, and the region must be mapped and readable. `dst` must
    /// not point into the region.
    pub(crate) unsafe fn gather(self, start: usize, step: isize, dst: &mut [u8]) -> Result<()> {
        // The indices may be spread over the whole region: guard all of it.
        self.guard(|| {
            // SAFETY: `start < len` when `dst` is not empty (caller's
            // guarantee); for an empty `dst` the pointer is never dereferenced.
            let first = unsafe { self.ptr.add(start) };
            for (k, out) in dst.iter_mut().enumerate() {
                // SAFETY: the caller guarantees `start + k * step` is inside
                // the region, so the offset stays inside the mapping; a
                // volatile read because another process may change the byte.
                *out = unsafe { first.offset(k as isize * step).read_volatile() };
            }
        })
    }

    /// Copies `src` to the bytes at `start`, `start + step`, … ; `step` may be
    /// negative.
    ///
    /// # Safety
    /// Every index `start + k * step` for `k < src.len()` lies in
    /// `0..self.len`, and the region must be mapped and writable. `src` must
    /// not point into the region.
    pub(crate) unsafe fn scatter(self, start: usize, step: isize, src: &[u8]) -> Result<()> {
        self.guard(|| {
            // SAFETY: as in `gather`.
            let first = unsafe { self.ptr.add(start) };
            for (k, &b) in src.iter().enumerate() {
                // SAFETY: the caller guarantees `start + k * step` is inside
                // the writable region.
                unsafe { first.offset(k as isize * step).write_volatile(b) };
            }
        })
    }

    /// Moves `count` bytes from `src` to `dest` inside the region (the ranges
    /// may overlap).
    ///
    /// # Safety
    /// Both ranges lie inside the region, which must be mapped and writable.
    pub(crate) unsafe fn copy_within(self, dest: usize, src: usize, count: usize) -> Result<()> {
        debug_assert!(dest + count <= self.len && src + count <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees both ranges are mapped and in
            // bounds; `copy` allows overlap.
            unsafe { std::ptr::copy(self.ptr.add(src), self.ptr.add(dest), count) }
        })
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
    unsafe fn with_slice<R>(
        self,
        start: usize,
        end: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        debug_assert!(start <= end && end <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees the range is mapped and in
            // bounds; the slice does not outlive this call.
            let bytes = unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) };
            f(bytes)
        })
    }

    /// Index (absolute) of the first `needle` in `start..end`.
    ///
    /// # Safety
    /// As for [`Region::with_slice`].
    pub(crate) unsafe fn find(
        self,
        needle: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Option<usize>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.search(needle, start, end, Direction::Forward) }
    }

    /// Index (absolute) of the last `needle` in `start..end`.
    ///
    /// # Safety
    /// As for [`Region::with_slice`].
    pub(crate) unsafe fn rfind(
        self,
        needle: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Option<usize>> {
        // SAFETY: forwarded from the caller.
        unsafe { self.search(needle, start, end, Direction::Backward) }
    }

    /// Searches `start..end` in chunks, in `direction` order, and returns
    /// the match of the first chunk (in that order) that has one.
    ///
    /// A search of a large mapping is bound by memory bandwidth, which one
    /// core cannot use up; so once the first chunk has come up empty, the
    /// remaining chunks are handed out in order to several threads, each of
    /// which stops as soon as a chunk earlier in the order has a match.
    /// Every thread makes its own guarded access.
    ///
    /// # Safety
    /// As for [`Region::with_slice`].
    unsafe fn search(
        self,
        needle: &[u8],
        start: usize,
        end: usize,
        direction: Direction,
    ) -> Result<Option<usize>> {
        let span = end - start;
        let chunks = Chunks::new(start, end, needle.len(), direction);
        let threads = search_threads(span, needle.len());
        if threads <= 1 || chunks.count <= 1 {
            return SendRegion(self).search(needle, start, end, direction);
        }
        // The first chunk alone, on this thread: a match close to where the
        // search starts costs no thread.
        let (from, to) = chunks.get(0);
        if let Some(found) = SendRegion(self).search(needle, from, to, direction)? {
            return Ok(Some(found));
        }
        let next = AtomicUsize::new(1);
        // The order index of the earliest chunk known to hold a match.
        let best = AtomicUsize::new(usize::MAX);
        let work = |region: SendRegion<'_>| -> Result<Option<(usize, usize)>> {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= chunks.count || k > best.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let (from, to) = chunks.get(k);
                if let Some(found) = region.search(needle, from, to, direction)? {
                    best.fetch_min(k, Ordering::Relaxed);
                    // Later chunks cannot matter any more.
                    return Ok(Some((k, found)));
                }
            }
        };
        let results: Vec<Result<Option<(usize, usize)>>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads)
                .map(|_| {
                    let region = SendRegion(self);
                    scope.spawn(move || work(region))
                })
                .collect();
            let mut results = vec![work(SendRegion(self))];
            for helper in helpers {
                // A search does not panic; if one did, let it propagate.
                results.push(
                    helper
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                );
            }
            results
        });
        let mut winner: Option<(usize, usize)> = None;
        for result in results {
            if let Some((k, found)) = result? {
                if winner.is_none_or(|(best_k, _)| k < best_k) {
                    winner = Some((k, found));
                }
            }
        }
        Ok(winner.map(|(_, found)| found))
    }

    /// Finds the line at `start` (up to and including the next `\n`, or to
    /// the end of the region) and copies it into the storage that `alloc`
    /// returns for its length, in one guarded access: a short line costs
    /// one guard, not one for the search and one for the copy.
    ///
    /// `alloc(n)` returns an owner of at least `n` bytes of storage, which
    /// `storage` then borrows; the first `n` bytes are initialised when this
    /// returns `Ok(Ok(_))`. An error from `alloc` is returned as is.
    ///
    /// # Safety
    /// `start <= self.len`, and the region must be mapped and readable for
    /// the duration of the call.
    pub(crate) unsafe fn read_line<B, E>(
        self,
        start: usize,
        alloc: impl FnOnce(usize) -> Result<B, E>,
        storage: impl FnOnce(&mut B) -> &mut [MaybeUninit<u8>],
    ) -> Result<Result<(B, usize), E>> {
        debug_assert!(start <= self.len);
        let rest = self.len - start;
        self.guard(|| {
            // SAFETY: the caller guarantees `start..len` is mapped and in
            // bounds. As in `with_slice`, only memchr reads the slice, and
            // it does not outlive this closure.
            let hay = unsafe { std::slice::from_raw_parts(self.ptr.add(start), rest) };
            let n = memchr::memchr(b'\n', hay).map_or(rest, |i| i + 1);
            let mut owner = alloc(n)?;
            let dst = storage(&mut owner);
            assert!(dst.len() >= n, "read_line: storage shorter than asked for");
            // SAFETY: `start..start + n` is inside the region (n <= rest),
            // and `dst` holds at least `n` bytes; `copy` allows overlap.
            unsafe { std::ptr::copy(self.ptr.add(start), dst.as_mut_ptr().cast(), n) };
            Ok((owner, n))
        })
    }

    /// Reads one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and readable.
    pub(crate) unsafe fn byte(self, offset: usize) -> Result<u8> {
        debug_assert!(offset < self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees `offset` is in bounds and mapped;
            // a volatile read keeps the compiler from assuming the byte is
            // stable.
            unsafe { self.ptr.add(offset).read_volatile() }
        })
    }

    /// Writes one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and writable.
    pub(crate) unsafe fn set_byte(self, offset: usize, value: u8) -> Result<()> {
        debug_assert!(offset < self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees `offset` is in bounds, mapped and
            // writable.
            unsafe { self.ptr.add(offset).write_volatile(value) }
        })
    }
}

/// The error for a view whose pages vanished: `addr` is the lowest missing
/// address, `start` where the user's part of the view begins.
#[cold]
#[inline(never)]
pub(crate) fn truncated(start: *const u8, addr: usize) -> Error {
    let at = addr.saturating_sub(start as usize);
    Error::Truncated(format!(
        "the file or block behind the mapping shrank: the bytes at offset {at} of the view no \
         longer exist (every access fails until resize() or close())"
    ))
}

/// Which match a search wants: the first or the last.
#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

/// `start..end` cut into chunks by where a match starts, numbered in the
/// order a search in `direction` visits them. Chunk `k` covers the matches
/// that start in its share and so reaches `needle_len - 1` bytes past it.
struct Chunks {
    start: usize,
    end: usize,
    overlap: usize,
    count: usize,
    direction: Direction,
}

/// The size of one chunk of a large search.
const SEARCH_CHUNK: usize = 2 << 20;

impl Chunks {
    fn new(start: usize, end: usize, needle_len: usize, direction: Direction) -> Self {
        let count = (end - start).div_ceil(SEARCH_CHUNK).max(1);
        Chunks {
            start,
            end,
            overlap: needle_len.saturating_sub(1),
            count,
            direction,
        }
    }

    /// The byte range of the `k`-th chunk in search order.
    fn get(&self, k: usize) -> (usize, usize) {
        let index = match self.direction {
            Direction::Forward => k,
            Direction::Backward => self.count - 1 - k,
        };
        let from = (self.start + index * SEARCH_CHUNK).min(self.end);
        let to = (from + SEARCH_CHUNK)
            .saturating_add(self.overlap)
            .min(self.end);
        (from, to)
    }
}

/// A [`Region`] handed to a search thread.
#[derive(Clone, Copy)]
struct SendRegion<'a>(Region<'a>);

// SAFETY: the region's memory stays mapped for the whole `thread::scope` in
// which the search threads run (the caller's borrow of the view outlives it),
// and the threads only read it; the view it refers to is `Sync`.
unsafe impl Send for SendRegion<'_> {}

impl SendRegion<'_> {
    /// The absolute index of the first (or last) match in `from..to`.
    fn search(
        self,
        needle: &[u8],
        from: usize,
        to: usize,
        direction: Direction,
    ) -> Result<Option<usize>> {
        let search = match direction {
            Direction::Forward => search_forward,
            Direction::Backward => search_backward,
        };
        // SAFETY: `from..to` lies inside the range the caller of
        // `Region::search` vouched for, which stays mapped until it returns.
        let found = unsafe { self.0.with_slice(from, to, |hay| search(hay, needle)) }?;
        Ok(found.map(|i| i + from))
    }
}

/// Searches of at least this many bytes may use several threads.
const PARALLEL_SEARCH_MIN: usize = 16 << 20;

/// How many threads may search `len` bytes for a needle of `needle_len`.
fn search_threads(len: usize, needle_len: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    if len < PARALLEL_SEARCH_MIN || needle_len == 0 || needle_len > SEARCH_CHUNK / 2 {
        return 1;
    }
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
    })
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
