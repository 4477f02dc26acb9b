//! The operating-system backend slot.
//!
//! This is the only module that knows which OS it runs on. Each backend
//! exports the same items:
//!
//! - `Backing`: an open object that can be mapped (a file, a named block of
//!   shared memory, or an unnamed block), with `file`, `named`, `anonymous`,
//!   `len`, `can_grow`, `grow`, `map`, `sync`, `close` and `lock_target`
//!   (what may grow, and the checks before, are decided above the slot, in
//!   `mapping/options.rs`: a backend only grows). Creating a
//!   block and growing a file take a [`crate::Space`] policy: what to check
//!   or allocate so that the storage exists (Unix: `unix/space.rs`; Windows
//!   allocates at creation whatever the policy).
//! - `RawView`: one mapped view with `as_ptr`, `len`, `flush`, `advise`,
//!   `unmap` and `fault`: the lowest address at which a page of the view
//!   vanished under an access (its file was truncated), which every access
//!   checks afterwards; the page was replaced so the access could finish
//!   instead of killing the process (Windows: always None, its
//!   accesses stop at a fault instead, see `guarded`); and
//!   `vanished`, why that page vanished ([`Vanished`]: the object shrank,
//!   or its file system had no space), asked after the access.
//! - `guarded`: every access to a view's memory (`copy`, `load`, `store`,
//!   `gather`, `scatter`, `find_byte`), each returning a `Fault` where the OS stops an
//!   access at a page that cannot be brought in (Windows; on Unix `Fault`
//!   has no values, the `SIGBUS` guard lets accesses finish), and
//!   `DIRECT_READS`: whether other code (a search over a slice, a foreign
//!   runtime copying from a pointer) may read a view directly.
//! - `ADVICE`: the `madvise` values this OS offers, as `(C name, value)`
//!   pairs (empty where there is no such call).
//! - `LockTarget` (what `Backing::lock_target` returns) and `Lock`, the
//!   state behind one `MapLock` (`new(target)`, `acquire`,
//!   `acquire_checking`, `acquire_waiting`, `acquire_if_free`, `release`,
//!   `is_held`, `is_locked`, `abandoned`): the cross-process lock of a
//!   mapping. Every `Lock` of one mapped thing contends with every other, in
//!   this process or another; a holder that dies leaves it to the next
//!   acquirer. Linux and Windows: a word in shared memory,
//!   `crate::lock::word::WordLock` over the backend's `LockWord` (where the
//!   word lives, how a waiter sleeps and learns of a holder's death:
//!   `unix/lock_linux.rs`, a futex; `windows/lock.rs`, an event and the
//!   holder's process handle); the portable backend: a descriptor per
//!   acquisition (a `flock`), through `crate::lock::desc::DescLock`.
//! - `page_size()` and `allocation_granularity()`.
//! - `find_byte(byte, hay)`: the fastest `memchr` for short haystacks that
//!   the platform has.
//! - `advisable_huge_page_size()` and `advise_huge_pages(ptr, len)`: the
//!   size of the huge pages that advice on fresh anonymous memory brings
//!   (None where it would change nothing: not Linux, or THP not in `madvise`
//!   mode), and that advice, for a range aligned to that size.
//! - `list_blocks`, `block_info`, `read_block`, `remove_block`,
//!   `collect_block` and `collect_leftovers`: named blocks seen from outside
//!   (`crate::blocks`).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// Why a page of a view vanished under an access (see
/// `RawView::vanished`). The `SIGBUS` is the same for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Windows views never report a vanished page: their accesses stop at a fault
// instead (see `windows::RawView::fault`).
#[cfg_attr(windows, allow(dead_code))]
pub(crate) enum Vanished {
    /// The file or block is now too short for the page.
    Shrank,
    /// The file or block is long enough, but its file system had no space
    /// to allocate the page; `code` is the OS's code for that (`ENOSPC`).
    NoSpace { code: i32 },
    /// Long enough, and the file system has space: the page could not be
    /// read or allocated for another reason; `code` says so (`EIO`).
    Failed { code: i32 },
}
