//! Memory mappings with the semantics of Windows' file mappings, on every OS.
//!
//! A mapping is backed by one of three things:
//!
//! - a **file** on disk ([`MapOptions::file`]): created if missing, grown
//!   when a larger size is asked for, never padded otherwise;
//! - a **named block** of shared memory ([`MapOptions::name`]): any process
//!   that opens the same name sees the same bytes. On Linux the name is the
//!   file `/dev/shm/mmapfile.<name>` (a `Local\` or `Global\` prefix
//!   removed), a record of the System V segment that holds the bytes; on
//!   macOS and the BSDs an object recorded under the name in
//!   `/var/tmp/mmapfile`;
//! - an **unnamed block** (neither): shared with forked children only.
//!
//! A named block lives as on Windows: while at least one mapping object
//! holds it, in any process. When the last holder closes it, exits or is
//! killed, the name is free again and the next open creates a fresh,
//! zero-filled block; on Linux and Windows the kernel frees its memory at
//! once, even after SIGKILL (see `docs/named-blocks.md` for how, on each OS).
//! [`blocks`] lists and inspects blocks.
//!
//! [`MapFile`] then offers pywin32's `mmapfile` operations — `read`,
//! `write`, `seek`, `find`, `move`, `flush`, `resize`, … — with every bound
//! checked. Mapped memory is shared with other processes, so it is only ever
//! copied in and out through raw pointers, never lent out as a Rust slice.
//!
//! ```
//! use mmapfile::MapOptions;
//!
//! let dir = std::env::temp_dir().join(format!("mmapfile-doc-{}", std::process::id()));
//! std::fs::write(&dir, b"first line\nsecond line\n").unwrap();
//! let mut m = MapOptions::new().file(&dir).open()?;
//! assert_eq!(m.len()?, 23);
//! assert_eq!(m.readline()?, b"first line\n");
//! assert_eq!(m.readline()?, b"second line\n");
//! assert_eq!(m.readline()?, b"");
//! m.close()?;
//! # std::fs::remove_file(&dir).unwrap();
//! # Ok::<(), mmapfile::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod access;
pub mod blocks;
mod error;
mod huge_pages;
mod lock;
mod mapping;
mod mem;
mod name;
mod os;
mod search;

pub use access::{Access, CreateMode, Space};
pub use error::{Error, Result, StorageError};
pub use huge_pages::{advise_copy_destination, HUGE_PAGES_ENV, HUGE_PAGE_COPY_MIN};
pub use lock::MapLock;
pub use mapping::{clamp_index, MapFile, MapOptions, Partial, Source};
pub use name::{BlockName, MAX_NAME};

/// The size of a memory page.
pub fn page_size() -> usize {
    os::page_size()
}

/// The alignment the OS requires of a view's file offset (the page size on
/// POSIX, 64 KiB on Windows). Offsets given to this crate need not be
/// aligned: they are aligned down internally.
pub fn allocation_granularity() -> usize {
    os::allocation_granularity()
}

/// The advice values [`MapFile::madvise`] accepts on this OS, as pairs of the
/// C constant's name (`"MADV_WILLNEED"`, …) and its value. Empty where the OS
/// has no `madvise`.
pub fn advice_values() -> &'static [(&'static str, i32)] {
    os::ADVICE
}

// The README's example is compiled and run with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
