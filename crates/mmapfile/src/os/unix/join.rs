//! What joining a name as a holder takes and gives: the contract between
//! `Backing` and the lifetime backends (`lifetime_linux.rs`,
//! `lifetime_portable.rs`).

use std::os::fd::OwnedFd;

use super::file_record::FileRecord;
use super::segment::Segment;
use crate::access::Space;
use crate::error::Result;

/// Fills a new shared-memory object before it gets its name, while nobody
/// else can reach it: a block's size, or a file mapping's record. (A change
/// to an object that has its name is a `lifetime_linux::Change`.)
pub(crate) type Init<'a> = &'a dyn Fn(&OwnedFd) -> Result<()>;

/// What a creating open makes under a name.
pub(crate) enum New<'a> {
    /// A block of `size` bytes with room as `space` says; `init` sizes its
    /// new object where that object is the block's memory.
    Block {
        size: u64,
        init: Init<'a>,
        #[cfg_attr(portable_lifetime, allow(dead_code))]
        space: Space,
    },
    /// A file mapping, described by its record.
    File(&'a FileRecord),
}

/// What the name leads to, once joined.
pub(crate) enum Held {
    /// A block; `size` where the OS cannot tell it exactly (macOS rounds an
    /// object's size up to whole pages), else the object's size is it.
    Block { size: Option<u64> },
    /// A named file mapping.
    File(FileRecord),
}

/// A name joined as a holder (`lifetime::join`).
pub(crate) struct Joined {
    /// The descriptor whose lock makes us a holder.
    pub(crate) held: OwnedFd,
    /// A block's memory, where it is another object than `held`.
    pub(crate) memory: Option<OwnedFd>,
    /// A block's memory, where it is a System V segment (Linux).
    pub(crate) segment: Option<Segment>,
    pub(crate) what: Held,
    /// Whether this holder can end the block's life (see `backing::Source::Named`).
    pub(crate) lockable: bool,
    pub(crate) created: bool,
}
