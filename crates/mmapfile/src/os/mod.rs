//! The operating-system backend slot.
//!
//! This is the only module that knows which OS it runs on. Each backend
//! exports the same items:
//!
//! - `Backing`: an open object that can be mapped (a file, a named block of
//!   shared memory, or an unnamed block), with `file`, `named`, `anonymous`,
//!   `len`, `grow`, `map`, `sync` and `close`.
//! - `RawView`: one mapped view with `as_ptr`, `len`, `flush` and `unmap`.
//! - `page_size()` and `allocation_granularity()`.
//! - `NAME_MAX`: the longest name (in bytes, after the namespace prefix is
//!   removed) that the OS accepts for a named block.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
