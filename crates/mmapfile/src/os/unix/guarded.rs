//! The accesses to a view's memory, as the rest of the crate makes them.
//!
//! Windows runs each access in a routine that can stop at a fault and
//! report it (`os/windows/guarded.rs`). Here no access ever stops: the
//! `SIGBUS` guard ([`super::fault`]) lets every access finish and records
//! the fault for the view, whoever made the access. So these are the plain
//! operations, and [`Fault`] has no values.

use crate::error::Error;

/// Whether code other than these functions may read a view's memory (a
/// search through a slice, a foreign runtime copying from a pointer): yes,
/// the `SIGBUS` guard covers any code.
pub(crate) const DIRECT_READS: bool = true;

/// An access that a fault stopped: never, here.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {}

impl Fault {
    /// The error for the fault (there is none).
    pub(crate) fn error(self) -> Error {
        match self {}
    }
}

/// Copies `len` bytes from `src` to `dst`, which may overlap (`memmove`).
///
/// # Safety
/// Both ranges must be valid for the access.
#[inline(always)]
pub(crate) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Fault> {
    // SAFETY: forwarded from the caller; `copy` allows overlap.
    unsafe { std::ptr::copy(src, dst, len) };
    Ok(())
}

/// Reads the byte at `src`.
///
/// # Safety
/// `src` must be valid for reads.
#[inline(always)]
pub(crate) unsafe fn load(src: *const u8) -> Result<u8, Fault> {
    // SAFETY: forwarded from the caller; a volatile read keeps the compiler
    // from assuming the byte is stable (another process may change it).
    Ok(unsafe { src.read_volatile() })
}

/// Writes `value` to the byte at `dst`.
///
/// # Safety
/// `dst` must be valid for writes.
#[inline(always)]
pub(crate) unsafe fn store(dst: *mut u8, value: u8) -> Result<(), Fault> {
    // SAFETY: forwarded from the caller.
    unsafe { dst.write_volatile(value) };
    Ok(())
}

/// The index of the first `byte` in the `len` bytes at `hay`, or `len` if
/// there is none.
///
/// # Safety
/// `hay..hay + len` must be valid for reads for the duration of the call.
#[inline(always)]
pub(crate) unsafe fn find_byte(hay: *const u8, len: usize, byte: u8) -> Result<usize, Fault> {
    // SAFETY: forwarded from the caller; only memchr reads the slice, which
    // tolerates contents changing under it.
    let hay = unsafe { std::slice::from_raw_parts(hay, len) };
    Ok(super::find_byte(byte, hay).unwrap_or(len))
}

/// Copies the `count` bytes at `first`, `first + step`, … to `dst`.
///
/// # Safety
/// Every byte read must be valid for reads, `dst..dst + count` for writes,
/// and the two must not overlap.
#[inline(always)]
pub(crate) unsafe fn gather(
    dst: *mut u8,
    first: *const u8,
    step: isize,
    count: usize,
) -> Result<(), Fault> {
    for k in 0..count {
        // SAFETY: the caller guarantees every `first + k * step` is valid,
        // and `dst + k` for `k < count`; volatile as in `load`.
        unsafe {
            dst.add(k)
                .write(first.offset(k as isize * step).read_volatile())
        };
    }
    Ok(())
}

/// Copies the `count` bytes at `src` to `first`, `first + step`, ….
///
/// # Safety
/// Every byte written must be valid for writes, `src..src + count` for
/// reads, and the two must not overlap.
#[inline(always)]
pub(crate) unsafe fn scatter(
    first: *mut u8,
    src: *const u8,
    step: isize,
    count: usize,
) -> Result<(), Fault> {
    for k in 0..count {
        // SAFETY: the caller guarantees every `first + k * step` is valid
        // for writes, and `src + k` for reads.
        unsafe {
            first
                .offset(k as isize * step)
                .write_volatile(src.add(k).read())
        };
    }
    Ok(())
}
