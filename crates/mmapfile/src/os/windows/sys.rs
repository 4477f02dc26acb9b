//! The Win32 calls every file of the backend uses: owned handles, UTF-16
//! strings, 64-bit sizes split in two, and what the system reports of its
//! memory.

use std::ffi::OsStr;
use std::os::windows::ffi::OsStrExt;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use crate::error::{Error, Result};

/// (page size, allocation granularity), read once.
fn system_info() -> (usize, usize) {
    static INFO: OnceLock<(usize, usize)> = OnceLock::new();
    *INFO.get_or_init(|| {
        // SAFETY: SYSTEM_INFO is plain data for which all-zero is valid, and
        // GetSystemInfo fills it and cannot fail.
        let info = unsafe {
            let mut info: SYSTEM_INFO = std::mem::zeroed();
            GetSystemInfo(&mut info);
            info
        };
        (
            info.dwPageSize as usize,
            info.dwAllocationGranularity as usize,
        )
    })
}

/// The index of the first `byte` in `hay`.
#[inline]
pub(crate) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(byte, hay)
}

/// The memory page size.
pub(crate) fn page_size() -> usize {
    system_info().0
}

/// The alignment a view's offset must have (64 KiB on current Windows).
pub(crate) fn allocation_granularity() -> usize {
    system_info().1
}

pub(super) fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

pub(super) fn check(op: &'static str, ok: i32) -> Result<()> {
    if ok == 0 {
        Err(Error::last_os(op))
    } else {
        Ok(())
    }
}

/// An owned kernel handle, closed on drop.
#[derive(Debug)]
pub(super) struct Handle(pub(super) HANDLE);

// SAFETY: a kernel handle may be used and closed from any thread.
unsafe impl Send for Handle {}
// SAFETY: the functions called with `&Handle` are thread-safe kernel calls.
unsafe impl Sync for Handle {}

impl Handle {
    /// Wraps the result of a handle-returning call; `invalid` is that call's
    /// failure value (NULL or INVALID_HANDLE_VALUE).
    pub(super) fn new(op: &'static str, raw: HANDLE, invalid: HANDLE) -> Result<Handle> {
        if raw == invalid || raw.is_null() {
            Err(Error::last_os(op))
        } else {
            Ok(Handle(raw))
        }
    }

    pub(super) fn close(self) -> Result<()> {
        let raw = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: we own the handle and close it exactly once (Drop will not run).
        check("CloseHandle", unsafe { CloseHandle(raw) })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it exactly once. A failure to
        // close cannot be reported from drop; `close` reports it.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

pub(super) fn split(size: u64) -> (u32, u32) {
    ((size >> 32) as u32, size as u32)
}
