//! Windows backend: `CreateFileW`, `CreateFileMappingW`/`OpenFileMappingW`,
//! `MapViewOfFile`, `FlushViewOfFile`, `UnmapViewOfFile`, `VirtualQuery`.
//!
//! Named blocks are pagefile-backed sections whose name goes to Windows
//! unchanged, so `Local\` and `Global\` keep their Windows meaning and a
//! pywin32 program can share a block with this crate by name. Their lifetime
//! is the kernel's: a section lives while any handle or view holds it, so
//! there is no lifetime file here as there is in `unix/`.
//!
//! The files mirror `unix/` where the concern exists on both:
//! `backing.rs` (`Backing`), `view.rs` (`RawView`, `ADVICE`), `lock.rs`
//! (`LockTarget`, `Lock`; with `lock_home.rs` and `lock_owner.rs`, as
//! `lock_linux.rs` with `lock_home.rs` and `lock_slots.rs`), `blocks.rs`
//! (named blocks seen from outside), `names.rs`, `huge_pages.rs`, and
//! `sys.rs`, the calls the others share.

mod backing;
mod blocks;
pub(crate) mod guarded;
mod huge_pages;
mod lock;
mod names;
mod sys;
mod view;

pub(crate) use backing::Backing;
pub(crate) use blocks::{
    block_info, collect_block, collect_leftovers, list_blocks, read_block, remove_block,
};
pub(crate) use huge_pages::{advisable_huge_page_size, advise_huge_pages};
pub(crate) use lock::{Lock, LockTarget};
pub(crate) use names::{name_taken, NAMED_BACKEND};
pub(crate) use sys::{allocation_granularity, find_byte, page_size};
pub(crate) use view::{RawView, ADVICE};
