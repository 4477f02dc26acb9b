//! POSIX backend: `open`/`ftruncate`/`mmap` for files, `shm_open` for named
//! blocks, `memfd_create` (or an unlinked `shm_open` object) for unnamed ones.
//!
//! The files, in the order a call goes through them:
//!
//! - `backing.rs`: `Backing`, the object views are mapped from (a file, a
//!   named block or file mapping joined as a holder, an unnamed block).
//! - `join.rs`: what joining a name as a holder takes and gives, between
//!   `Backing` and the lifetime backends; `lifetime_linux.rs` (a block
//!   lives while some process holds it, by open-file-description locks) or,
//!   on macOS and the BSDs, which cannot lock shared-memory objects,
//!   `lifetime_portable.rs` (so does Linux built with the `simulate-macos`
//!   feature, see `build.rs`), with the files only it uses: `state_dir.rs`,
//!   where its record files are, and `name_record.rs`, what one says;
//!   `file_record.rs`, what a named file mapping's record holds.
//! - `segment.rs`: where a named block's memory is on Linux, a System V
//!   segment that the kernel frees with its last holder
//!   (`segment_none.rs` where there are none: the portable backend).
//! - `names.rs`: what a name becomes at the OS level.
//! - `space.rs`: room for new storage before an object is sized.
//! - `view.rs` and `fault.rs`: one mapped view, and the `SIGBUS` guard that
//!   lets an access to a vanished page fail instead of killing the process.
//! - `lock_linux.rs` / `lock_portable.rs`: the cross-process lock of a
//!   mapping; on Linux the futex's sleeps and wake-ups and the holder's
//!   liveness under the word protocol of `crate::lock::word`, with
//!   `lock_home.rs` (where the
//!   word lives: an unnamed block's control page, a named block's segment
//!   trailer, or a companion object) and `lock_slots.rs` (whose record
//!   locks tell its users alive, and the fork handler); `control.rs`, the
//!   page of an unnamed block's object that holds its lock on Linux.
//! - `copy.rs`: where an object is sized once and mapped only shared
//!   (macOS), growing and copy-on-write views by copying.
//! - `blocks.rs`: named blocks listed, inspected and removed from outside.
//! - `huge_pages.rs`: huge pages for fresh buffers.
//! - `sys.rs`: the system calls the others share, with the hooks of
//!   `simulated.rs` (the `simulate-macos` build) and the per-OS constants;
//!   the one file here whose function bodies may test a `cfg`.

mod backing;
mod blocks;
mod control;
mod copy;
mod fault;
mod file_record;
pub(crate) mod guarded;
mod huge_pages;
mod join;
#[cfg_attr(not(portable_lifetime), path = "lifetime_linux.rs")]
#[cfg_attr(portable_lifetime, path = "lifetime_portable.rs")]
mod lifetime;
#[cfg_attr(not(portable_lifetime), path = "lock_linux.rs")]
#[cfg_attr(portable_lifetime, path = "lock_portable.rs")]
pub(crate) mod lock;
#[cfg(portable_lifetime)]
mod name_record;
mod names;
#[cfg(test)]
mod parser_props;
#[cfg(not(portable_lifetime))]
mod segment;
#[cfg(portable_lifetime)]
#[path = "segment_none.rs"]
mod segment;
#[cfg(simulated)]
mod simulated;
mod space;
#[cfg(portable_lifetime)]
mod state_dir;
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

// The names the backend's files share, where they have always found them
// (`super::…`). `Kind` is the lock files' older name for `backing::Source`.
use backing::Source as Kind;
use join::{Held, Joined, New};
#[cfg(portable_lifetime)]
use sys::fchmod_object;
use sys::{cstring, cvt, fchmod, fstat, open_path, shm_open, shm_unlink};
#[cfg(not(portable_lifetime))]
use {names::SHM_DIR, sys::ftruncate};
