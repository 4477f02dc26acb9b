//! What a block's name becomes at the OS level: nothing, on Windows. The
//! name goes to `CreateFileMappingW` as given, so `Local\\` and `Global\\`
//! keep their Windows meaning and a pywin32 program shares a block with this
//! crate by name.

use std::io;

use windows_sys::Win32::Foundation::ERROR_ALREADY_EXISTS;

use crate::error::Error;

/// How named blocks live here (see [`crate::blocks::BACKEND`]).
pub(crate) const NAMED_BACKEND: &str = "windows";

/// The error for a name that is taken (`create=True` on an existing name).
pub(crate) fn name_taken() -> Error {
    Error::io(
        "CreateFileMapping",
        io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32),
    )
}
