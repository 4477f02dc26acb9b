//! Substring search in mapped memory: `find` and `rfind` on a [`Region`],
//! in chunks, on several threads for a large span, each chunk one guarded
//! access (`Region::with_slice`). The slice semantics of the public API are
//! in `mapping/search.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use memchr::memmem;

use std::mem::MaybeUninit;

use crate::error::Result;
use crate::mem::{assume_init, with_large_buffer, Region, COPY_BUFFER, SMALL_COPY};
use crate::os::guarded;

impl Region<'_> {
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
        if !guarded::DIRECT_READS {
            // SAFETY: as below.
            return unsafe { self.0.search_copy(needle, from, to, direction) };
        }
        // SAFETY: `from..to` lies inside the range the caller of
        // `Region::search` vouched for, which stays mapped until it returns.
        let found = unsafe { self.0.with_slice(from, to, |hay| search(hay, needle)) }?;
        Ok(found.map(|i| i + from))
    }
}

impl Region<'_> {
    /// The absolute index of the first (or last) match in `from..to`,
    /// found in copies of the view made by the guarded routines: windows of
    /// the range, each overlapping the next by the needle's length less one
    /// byte, so that every match lies whole in some window. The first
    /// window is small, so a match near where the search starts costs a
    /// small copy; the windows after it double up to [`COPY_BUFFER`].
    ///
    /// # Safety
    /// `from <= to <= self.len`, and the region must be mapped for the
    /// duration of the call.
    #[inline(always)]
    unsafe fn search_copy(
        self,
        needle: &[u8],
        from: usize,
        to: usize,
        direction: Direction,
    ) -> Result<Option<usize>> {
        let n = needle.len();
        if n == 0 {
            return Ok(Some(match direction {
                Direction::Forward => from,
                Direction::Backward => to,
            }));
        }
        if n == 1 && matches!(direction, Direction::Forward) {
            // The guarded byte search reads the view itself: no copy.
            // SAFETY: the caller guarantees `from..to` is mapped and in
            // bounds.
            return unsafe { self.find_byte(from, to, needle[0]) };
        }
        let mut span = (from, to);
        if 2 * n <= SMALL_COPY {
            let mut small = [MaybeUninit::<u8>::uninit(); SMALL_COPY];
            // SAFETY: forwarded from the caller.
            let first = unsafe { self.search_windows(needle, &mut span, direction, &mut small, 0) };
            if let Some(answer) = first? {
                return Ok(answer);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.search_copy_rest(needle, span, direction) }
    }

    /// [`Region::search_copy`] past its first window.
    ///
    /// # Safety
    /// As for [`Region::search_copy`].
    #[inline(never)]
    unsafe fn search_copy_rest(
        self,
        needle: &[u8],
        mut span: (usize, usize),
        direction: Direction,
    ) -> Result<Option<usize>> {
        // A window must hold a whole match and move on past it.
        let largest = COPY_BUFFER.max(2 * needle.len());
        with_large_buffer(largest, |buf| {
            // SAFETY: forwarded from the caller.
            let answer =
                unsafe { self.search_windows(needle, &mut span, direction, buf, usize::MAX) };
            Ok(answer?.unwrap_or(None))
        })
    }

    /// Searches windows of `span` through copies in `buf`, each window
    /// twice as long as the one before (the first is `4 * SMALL_COPY` bytes,
    /// or all of `buf` if that is shorter), for at most `1 + more` windows. Returns the answer once it is known, or None with `span`
    /// narrowed to what is left to search.
    ///
    /// # Safety
    /// As for [`Region::search_copy`], for `span`; `buf` holds at least
    /// twice the needle's length.
    unsafe fn search_windows(
        self,
        needle: &[u8],
        span: &mut (usize, usize),
        direction: Direction,
        buf: &mut [MaybeUninit<u8>],
        more: usize,
    ) -> Result<Option<Option<usize>>> {
        let n = needle.len();
        let mut window = buf.len().min(4 * SMALL_COPY);
        for _ in 0..=more {
            let (lo, hi) = *span;
            if hi - lo < n {
                return Ok(Some(None));
            }
            let (start, end) = match direction {
                Direction::Forward => (lo, hi.min(lo.saturating_add(window))),
                Direction::Backward => (lo.max(hi.saturating_sub(window)), hi),
            };
            let part = &mut buf[..end - start];
            // SAFETY: `start..end` lies inside `span`, which the caller
            // vouched for; `part` holds `end - start` bytes.
            unsafe { self.copy_out_uninit(start, part)? };
            // SAFETY: `copy_out_uninit` initialised all of `part`.
            let hay = unsafe { assume_init(part) };
            let found = match direction {
                Direction::Forward => search_forward(hay, needle),
                Direction::Backward => search_backward(hay, needle),
            };
            if let Some(i) = found {
                return Ok(Some(Some(start + i)));
            }
            // Matches starting in the window's last `n - 1` bytes (first,
            // backward) are not whole in it: the next window starts there.
            match direction {
                Direction::Forward if end == hi => return Ok(Some(None)),
                Direction::Forward => span.0 = end - (n - 1),
                Direction::Backward if start == lo => return Ok(Some(None)),
                Direction::Backward => span.1 = start + (n - 1),
            }
            window = (window * 2).min(buf.len());
        }
        Ok(None)
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
        _ => match probe(hay, needle, Direction::Forward) {
            Probe::Found(i) => Some(i),
            Probe::Absent => None,
            Probe::Unsure(from) => memmem::find(&hay[from..], needle).map(|i| from + i),
        },
    }
}

fn search_backward(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [] => Some(hay.len()),
        [b] => memchr::memrchr(*b, hay),
        _ => match probe(hay, needle, Direction::Backward) {
            Probe::Found(i) => Some(i),
            Probe::Absent => None,
            Probe::Unsure(to) => rfind_blockwise(&hay[..to], needle, RFIND_BLOCK),
        },
    }
}

/// What [`probe`] learnt.
#[derive(Debug, PartialEq)]
enum Probe {
    /// The first (forward) or last (backward) match starts here.
    Found(usize),
    /// `hay` holds no match.
    Absent,
    /// No match starts in the part probed; search on from here (forward:
    /// from this index on; backward: in `hay[..to]`).
    Unsure(usize),
}

/// How many bytes [`probe`] looks at, and how many places where the
/// needle's first byte occurs it compares, before it gives up.
const PROBE_BYTES: usize = 1024;
const PROBE_TRIES: usize = 16;

/// Looks for the needle (two bytes or more) among the first (or last)
/// [`PROBE_BYTES`] of `hay` by finding its first byte with `memchr` (or
/// `memrchr`) and comparing there.
///
/// A search whose match is close to where it starts then costs no more
/// than a `memchr`: building `memchr`'s substring searcher costs about 60
/// ns, as much as the whole search of a nearby match in C. A first byte
/// that is common gives up after [`PROBE_TRIES`] comparisons, so the work
/// here stays bounded.
fn probe(hay: &[u8], needle: &[u8], direction: Direction) -> Probe {
    let Some(last_start) = hay.len().checked_sub(needle.len()) else {
        return Probe::Absent;
    };
    let first = needle[0];
    // Candidate starts probed: `lo..=hi` (inclusive), within `0..=last_start`.
    let span = PROBE_BYTES.min(last_start + 1);
    let (lo, hi) = match direction {
        Direction::Forward => (0, span - 1),
        Direction::Backward => (last_start + 1 - span, last_start),
    };
    let mut window = lo..hi + 1;
    for _ in 0..PROBE_TRIES {
        let at = match direction {
            Direction::Forward => memchr::memchr(first, &hay[window.clone()]),
            Direction::Backward => memchr::memrchr(first, &hay[window.clone()]),
        };
        let Some(at) = at.map(|i| window.start + i) else {
            // No start in the window: done with it.
            return match direction {
                Direction::Forward if hi == last_start => Probe::Absent,
                Direction::Forward => Probe::Unsure(hi + 1),
                Direction::Backward if lo == 0 => Probe::Absent,
                // Matches starting before `lo` end before `lo + len - 1`.
                Direction::Backward => Probe::Unsure(lo + needle.len() - 1),
            };
        };
        if hay[at..].starts_with(needle) {
            return Probe::Found(at);
        }
        match direction {
            Direction::Forward => window.start = at + 1,
            Direction::Backward => window.end = at,
        }
    }
    // Gave up: everything not ruled out is still to search.
    match direction {
        Direction::Forward => Probe::Unsure(window.start),
        // Starts before `window.end` are left, and end before this.
        Direction::Backward => match window.end.checked_sub(1) {
            Some(last) => Probe::Unsure(last + needle.len()),
            None => Probe::Absent,
        },
    }
}

/// The largest block [`rfind_blockwise`] searches forward at a time: large
/// enough that a block costs far more than starting a search, small enough
/// that the block holding the last match is rescanned quickly.
const RFIND_BLOCK: usize = 256 * 1024;

/// The first block [`rfind_blockwise`] searches: a forward search of 1 KiB
/// costs about what starting one costs.
const RFIND_FIRST: usize = 1024;

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
    let mut block = (4 * needle.len()).max(RFIND_FIRST).clamp(1, max_block);
    let forward = memmem::Finder::new(needle);
    // Candidate starts not yet ruled out: `0..=hi`.
    let mut hi = last_start;
    loop {
        let lo = hi.saturating_sub(block - 1);
        // Every match starting in `lo..=hi` lies inside `lo..hi + needle.len()`.
        let end = hi + needle.len();
        if let Some(first) = forward.find(&hay[lo..end]) {
            let from = lo + first;
            return Some(from + last_match(&forward, &hay[from..end]));
        }
        if lo == 0 {
            return None;
        }
        hi = lo - 1;
        block = block.saturating_mul(2).min(max_block);
    }
}

/// The start of the last `needle` in `hay`, which starts with a match.
///
/// The usual block holds one match or a few: they are stepped through with
/// the forward searcher. A block dense with matches (say `aa` in `aaaa…`)
/// would make that one call per match, so after a few steps the rest goes
/// to `memchr`'s reverse searcher, which is linear.
fn last_match(forward: &memmem::Finder<'_>, hay: &[u8]) -> usize {
    const STEPS: usize = 8;
    let mut last = 0;
    for _ in 0..STEPS {
        match forward.find(&hay[last + 1..]) {
            Some(i) => last += 1 + i,
            None => return last,
        }
    }
    last + memmem::rfind(&hay[last..], forward.needle()).unwrap_or(0)
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
    fn last_match_agrees_with_a_naive_search_with_few_and_many_matches() {
        let finder = memmem::Finder::new(b"aa");
        for len in [2, 3, 9, 10, 11, 12, 200] {
            // Dense: past the forward steps, into the reverse search.
            let hay = vec![b'a'; len];
            assert_eq!(last_match(&finder, &hay), len - 2, "{len}");
            // One match, at the start.
            let mut hay = vec![b'b'; len];
            hay[..2].copy_from_slice(b"aa");
            assert_eq!(last_match(&finder, &hay), 0, "{len}");
            // A few, apart.
            let mut hay = vec![b'b'; len + 6];
            for at in [0, 3, len + 4] {
                hay[at..at + 2].copy_from_slice(b"aa");
            }
            assert_eq!(last_match(&finder, &hay), len + 4, "{len}");
        }
    }

    fn naive_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        (0..=hay.len().checked_sub(needle.len())?).find(|&i| &hay[i..i + needle.len()] == needle)
    }

    #[test]
    fn searches_with_a_probe_agree_with_naive_ones() {
        // Lengths on both sides of the probe's window, first bytes that are
        // rare and common (so the probe gives up), matches inside, at the
        // edge of and past the window.
        let mut state = 0x9e37_79b9_u32;
        let mut next = |alphabet: &[u8]| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            alphabet[(state % alphabet.len() as u32) as usize]
        };
        for alphabet in [&b"ab"[..], b"abcdefgh"] {
            for len in [2, 5, 100, PROBE_BYTES - 1, PROBE_BYTES + 3, 3 * PROBE_BYTES] {
                let hay: Vec<u8> = (0..len).map(|_| next(alphabet)).collect();
                for needle_len in [2, 3, 5] {
                    let starts = [0, 1, len / 2, len.saturating_sub(needle_len + 1)];
                    for &start in starts.iter().filter(|&&s| s + needle_len <= len) {
                        let needle = &hay[start..start + needle_len];
                        assert_eq!(search_forward(&hay, needle), naive_find(&hay, needle));
                        assert_eq!(search_backward(&hay, needle), naive_rfind(&hay, needle));
                    }
                    let absent = vec![b'z'; needle_len];
                    assert_eq!(search_forward(&hay, &absent), None);
                    assert_eq!(search_backward(&hay, &absent), None);
                    // First byte present everywhere, needle absent: the probe
                    // gives up and the full search answers.
                    let mut tricky = vec![hay[0]; needle_len];
                    tricky[needle_len - 1] = b'z';
                    assert_eq!(search_forward(&hay, &tricky), None);
                    assert_eq!(search_backward(&hay, &tricky), None);
                }
            }
        }
    }

    #[test]
    fn a_probe_that_gives_up_on_its_last_candidate_stays_in_bounds() {
        // The first byte occurs exactly PROBE_TRIES times and never starts
        // a match: the last try is at index 0 (backward) or the last start
        // (forward).
        let hay = b"ax".repeat(PROBE_TRIES);
        assert_eq!(probe(&hay, b"ay", Direction::Backward), Probe::Absent);
        assert_eq!(search_backward(&hay, b"ay"), None);
        assert_eq!(search_forward(&hay, b"ay"), None);
        let mut hay = b"ax".repeat(PROBE_TRIES);
        hay.extend_from_slice(b"ay");
        assert_eq!(search_backward(&hay, b"ay"), Some(2 * PROBE_TRIES));
        assert_eq!(search_forward(&hay, b"ay"), Some(2 * PROBE_TRIES));
    }

    #[test]
    fn blockwise_rfind_finds_the_last_of_overlapping_matches() {
        assert_eq!(rfind_blockwise(b"ababa", b"aba", 2), Some(2));
        assert_eq!(rfind_blockwise(b"aaaaaa", b"aa", 3), Some(4));
        assert_eq!(rfind_blockwise(b"a", b"aa", 3), None);
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;
    use crate::MapOptions;

    #[test]
    fn searches_through_copies_agree_with_direct_ones_across_windows() {
        // Matches placed around the window edges (256, 1 KiB, 2 KiB, ...)
        // and far out, for needles short and long (longer than a small
        // window holds, so the first window is skipped).
        let len = 40_000;
        let mut m = MapOptions::new().maximum_size(len as u64).open().unwrap();
        let mut data = vec![b'.'; len];
        let long: Vec<u8> = (0..200).map(|i| b'a' + (i % 26) as u8).collect();
        for at in [
            3, 254, 255, 256, 1020, 1023, 2047, 3070, 7165, 15_000, 39_000,
        ] {
            data[at] = b'x';
        }
        for at in [500, 17_000, 39_700] {
            data[at..at + long.len()].copy_from_slice(&long);
        }
        m.write(&data).unwrap();
        let region = m.region().unwrap();
        let needles: [&[u8]; 4] = [b"x", b".x", &long, &long[..130]];
        for needle in needles {
            for (from, to) in [
                (0, len),
                (4, len),
                (0, 2048),
                (255, 1100),
                (600, 39_800),
                (0, 0),
            ] {
                for direction in [Direction::Forward, Direction::Backward] {
                    let hay = &data[from..to];
                    let expected = match direction {
                        Direction::Forward => search_forward(hay, needle),
                        Direction::Backward => search_backward(hay, needle),
                    }
                    .map(|i| i + from);
                    // SAFETY: `from..to` lies inside the live view.
                    let got = unsafe { region.search_copy(needle, from, to, direction) }.unwrap();
                    assert_eq!(got, expected, "{from}..{to}, needle of {}", needle.len());
                }
            }
        }
    }
}
