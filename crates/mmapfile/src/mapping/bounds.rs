//! Every rule by which an index, a slice or a window is clamped or checked
//! against the view or the mapping object, written once.

use crate::error::{Error, Result};

/// Resolves a CPython-style slice bound against a length `len`: a negative
/// `index` counts from the end, and the result is clamped to `0..=len`, as
/// `PySlice_AdjustIndices` does for step 1. The one rule for every index
/// that this crate and its Python binding clamp.
///
/// ```
/// assert_eq!(mmapfile::clamp_index(-3, 10), 7);
/// assert_eq!(mmapfile::clamp_index(-30, 10), 0);
/// assert_eq!(mmapfile::clamp_index(30, 10), 10);
/// ```
#[inline]
pub fn clamp_index(index: i64, len: usize) -> usize {
    if index < 0 {
        len.saturating_sub(usize::try_from(index.unsigned_abs()).unwrap_or(usize::MAX))
    } else {
        usize::try_from(index).map_or(len, |i| i.min(len))
    }
}

/// [`clamp_index`] for an optional bound: `default` where there is none.
pub(super) fn clamp_bound(index: Option<i64>, default: usize, len: usize) -> usize {
    index.map_or(default, |i| clamp_index(i, len))
}

/// Checks that the `count` indices `start`, `start + step`, … lie in the
/// view.
pub(super) fn check_slice(len: usize, start: usize, step: isize, count: usize) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let last = (count as i128 - 1)
        .checked_mul(step as i128)
        .and_then(|d| d.checked_add(start as i128));
    if start >= len || last.is_none_or(|last| !(0..len as i128).contains(&last)) {
        return Err(Error::Index("mmap slice out of range"));
    }
    Ok(())
}

/// Checks that the window `offset..offset + len` (len 0: to the end) lies
/// inside a mapping object of `size` bytes and returns its length.
pub(super) fn check_window(size: u64, offset: u64, len: u64) -> Result<u64> {
    if offset >= size {
        return Err(Error::InvalidArgument(format!(
            "FileOffset {offset} is not inside the mapping ({size} bytes)"
        )));
    }
    let len = if len == 0 { size - offset } else { len };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::InvalidArgument(format!(
            "NumberOfBytesToMap {len} at FileOffset {offset} goes past the end of the \
             mapping ({size} bytes)"
        )));
    }
    Ok(len)
}
