//! Searching the view: `find` and `rfind` with CPython's slice semantics,
//! and the two-step searches the binding uses to release the GIL only for
//! long ones.

// See mod.rs: lazy error construction keeps success paths free of drop glue.
#![allow(clippy::unnecessary_lazy_evaluations)]

use super::{clamp_bound, MapFile};
use crate::error::Result;
use crate::mem::Region;

/// The outcome of a search limited to part of its range
/// ([`MapFile::find_partial`], [`MapFile::rfind_partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// The answer: the absolute index of the match, or no match.
    Done(Option<usize>),
    /// No match in the part searched; search on in `start..end`.
    Rest {
        /// Absolute index where the rest begins.
        start: usize,
        /// Absolute index where the rest ends.
        end: usize,
    },
}

impl MapFile {
    fn search_bounds(
        &self,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<(Region<'_>, usize, usize)> {
        let region = self.region()?;
        // A start past the end finds nothing, not even an empty needle (as
        // `bytes.find` and CPython 3.15's `mmap.find`): it is moved to
        // len + 1 (no overflow: a view is at most isize::MAX bytes), which
        // no end reaches. Every caller returns no match when end < start.
        let past_end = start.is_some_and(|s| u64::try_from(s).is_ok_and(|s| s > region.len as u64));
        let start = if past_end {
            region.len + 1
        } else {
            clamp_bound(start, self.pos, region.len)
        };
        let end = clamp_bound(end, region.len, region.len);
        Ok((region, start, end))
    }

    /// The absolute index of the first `needle` in `start..end` (slice
    /// semantics: negative counts from the end; `start` defaults to the
    /// position and `end` to the view's end), as CPython's `mmap.find`.
    /// The position does not move.
    pub fn find(
        &self,
        needle: &[u8],
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Option<usize>> {
        let (region, start, end) = self.search_bounds(start, end)?;
        if end < start || end - start < needle.len() {
            return Ok(None);
        }
        // SAFETY: `start <= end <= len`, inside the live view.
        unsafe { region.find(needle, start, end) }
    }

    /// Like [`MapFile::find`], but the last occurrence.
    pub fn rfind(
        &self,
        needle: &[u8],
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Option<usize>> {
        let (region, start, end) = self.search_bounds(start, end)?;
        if end < start || end - start < needle.len() {
            return Ok(None);
        }
        // SAFETY: `start <= end <= len`, inside the live view.
        unsafe { region.rfind(needle, start, end) }
    }

    /// [`MapFile::find`] limited to the first `budget` bytes of the range
    /// (plus the needle's length, so that no match starting there is
    /// missed): the answer, or the rest of the range to search with `find`.
    /// A caller can search a nearby match cheaply and do the rest another
    /// way (the Python binding releases the GIL for it).
    pub fn find_partial(
        &self,
        needle: &[u8],
        start: Option<i64>,
        end: Option<i64>,
        budget: usize,
    ) -> Result<Partial> {
        self.search_partial(needle, start, end, budget, false)
    }

    /// [`MapFile::rfind`] limited to the last `budget` bytes of the range:
    /// the answer, or the rest of the range to search with `rfind`.
    pub fn rfind_partial(
        &self,
        needle: &[u8],
        start: Option<i64>,
        end: Option<i64>,
        budget: usize,
    ) -> Result<Partial> {
        self.search_partial(needle, start, end, budget, true)
    }

    fn search_partial(
        &self,
        needle: &[u8],
        start: Option<i64>,
        end: Option<i64>,
        budget: usize,
        backward: bool,
    ) -> Result<Partial> {
        let (region, start, end) = self.search_bounds(start, end)?;
        if end < start || end - start < needle.len() {
            return Ok(Partial::Done(None));
        }
        let budget = budget.max(1);
        // The part searched here, and the rest if the part has no match:
        // matches starting in the rest end outside the part, or overlap it
        // by less than the needle's length.
        let overlap = needle.len().saturating_sub(1);
        let (part, rest) = if end - start <= budget.saturating_add(overlap) {
            ((start, end), None)
        } else if backward {
            let lo = end - budget;
            ((lo, end), Some((start, lo + overlap)))
        } else {
            let hi = start + budget;
            ((start, hi + overlap), Some((hi, end)))
        };
        // SAFETY: `start <= part.0 <= part.1 <= end <= len`, inside the
        // live view.
        let found = unsafe {
            if backward {
                region.rfind(needle, part.0, part.1)
            } else {
                region.find(needle, part.0, part.1)
            }
        }?;
        Ok(match (found, rest) {
            (None, Some((start, end))) => Partial::Rest { start, end },
            (found, _) => Partial::Done(found),
        })
    }
}
