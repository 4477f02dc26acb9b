//! The control page of an unnamed block: the first page of the block's
//! memory object, which holds what the mapping needs besides the user's
//! bytes (its lock), and which the user never sees or counts (`len()` and
//! views keep the user's size).
//!
//! The user's byte `i` is the object's byte [`user_offset`]` + i`, and the
//! object is [`object_len`] bytes long. Placed first rather than past the
//! user's bytes, the page stays where it is when the block grows (a resize
//! ftruncates the object while forked children use its lock), and the
//! user's size is exactly the object's size minus one page. Nobody maps an
//! unnamed block's object but this crate (it has no name), so the offset is
//! nobody else's concern.
//!
//! Named blocks and file mappings keep their lock elsewhere (see
//! `lock_home.rs`): other programs map their objects from byte 0, so a
//! block kept in a segment has it in the segment's trailer page, and a file
//! (or a block kept in a `/dev/shm` file) in a companion object. The
//! portable backend keeps its lock in lock files, and its blocks have no
//! control page.

use std::io;
use std::ops::Range;

use crate::error::{Error, Result};

/// Bytes of the control page (and of a segment's trailer page, and of a
/// lock companion's page) that belong to the mapping lock.
#[cfg_attr(portable_lifetime, allow(dead_code))]
pub(crate) const LOCK_AREA: Range<usize> = 0..256;

/// The size of an unnamed block's control page: a page where blocks have
/// one (Linux), none in the portable backend.
pub(crate) fn control_len() -> u64 {
    if cfg!(portable_lifetime) {
        0
    } else {
        super::page_size() as u64
    }
}

/// Where the user's bytes start in an unnamed block's object.
pub(crate) fn user_offset() -> u64 {
    control_len()
}

/// The length of the object of an unnamed block of `user_len` bytes.
pub(crate) fn object_len(user_len: u64) -> Result<u64> {
    user_len
        .checked_add(control_len())
        .ok_or_else(|| Error::io("ftruncate", io::Error::from_raw_os_error(libc::EFBIG)))
}

/// The user's size of an unnamed block whose object is `object_len` bytes.
pub(crate) fn user_len(object_len: u64) -> u64 {
    object_len.saturating_sub(control_len())
}
