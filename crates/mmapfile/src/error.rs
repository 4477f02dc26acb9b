//! The one error type of the crate.

use std::io;

/// Everything that can go wrong with a mapping.
///
/// Variants other than [`Error::Io`] describe a misuse that the caller can
/// avoid; `Io` carries the operating-system error together with the name of
/// the system call that produced it, so that nothing is flattened into a bare
/// number.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The OS call that failed, e.g. `"shm_open"` or `"CreateFileMappingW"`.
        op: &'static str,
        /// The error the OS reported.
        #[source]
        source: io::Error,
    },
    /// The mapping was closed (or never opened successfully).
    #[error("mmapfile closed or invalid")]
    Closed,
    /// An offset, size or count falls outside the view. The message names
    /// the operation, with the wording pywin32 uses where it has one.
    #[error("{0}")]
    OutOfRange(&'static str),
    /// An item index or slice falls outside the view, or a slice assignment
    /// has the wrong length (Python's `IndexError` for sequences).
    #[error("{0}")]
    Index(&'static str),
    /// An argument is not acceptable for a reason other than range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A name for a shared block cannot be used on this OS.
    #[error("invalid mapping name: {0}")]
    InvalidName(String),
    /// A write was attempted on a read-only mapping.
    #[error("mapping is read-only")]
    ReadOnly,
    /// `resize` was called on a mapping opened with
    /// [`Access::Read`](crate::Access::Read) or
    /// [`Access::Copy`](crate::Access::Copy): a read-only view has nothing
    /// to grow the file with, and a private copy-on-write view would lose
    /// its changes in the new view.
    #[error("cannot resize a read-only or copy-on-write mapping (ACCESS_READ or ACCESS_COPY)")]
    NotResizable,
    /// The memory is exported (e.g. through Python's buffer protocol), so it
    /// cannot be unmapped or moved.
    #[error("cannot {0} while the mapping's memory is exported")]
    Exported(&'static str),
    /// [`MapLock::release`](crate::MapLock::release) was called on a lock
    /// that this lock object does not hold.
    #[error("release unlocked lock")]
    NotHeld,
    /// The operation is not available on this OS or for this kind of mapping.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The backing file or block shrank under the mapping, so the touched
    /// pages no longer exist.
    #[error("{0}")]
    Truncated(String),
    /// The file behind a named file mapping is no longer the file the name
    /// was made for: it was removed, or another file took its path. Opening
    /// the name is refused rather than mapping another file's bytes.
    #[error("{message}")]
    FileChanged {
        /// What happened, naming the mapping and the path.
        message: String,
        /// The OS error code that says the same (`ENOENT` for a removed
        /// file, `ESTALE` for a replaced one).
        code: i32,
    },
    /// Something another user could have made or changed stands where a
    /// shared name's state is kept (a directory, a record, a lock file, the
    /// file or object a record points at), so using it would let that user
    /// read, redirect or replace this user's data: refused, never used.
    /// `docs/security.md` lists each case.
    #[error("{message}")]
    Refused {
        /// The OS call whose result was refused (e.g. `"open"`, `"lstat"`).
        op: &'static str,
        /// The OS error code that says the same (usually `EACCES`).
        code: i32,
        /// What was found, and what to do about it.
        message: String,
    },
    /// The storage behind a mapping cannot hold it: creating a block or
    /// growing a file was refused because the file system (or the machine's
    /// memory) has no room for it, or an access touched a page that the
    /// file system could not allocate (it is full) or read. Boxed, so that
    /// every `Result` of the crate stays as small as it was: the per-call
    /// paths move them around.
    #[error(transparent)]
    Storage(Box<StorageError>),
}

impl Error {
    /// Wraps the last OS error (`errno` / `GetLastError`) for `op`.
    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::Io {
            op,
            source: io::Error::last_os_error(),
        }
    }

    /// Wraps an `io::Error` for `op`.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// The raw OS error code, if this is an OS error that has one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Storage(storage) => storage.source.raw_os_error(),
            _ => None,
        }
    }
}

/// The details of [`Error::Storage`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// The OS call that failed or whose answer refused the request (e.g.
    /// `"fstatvfs"`, `"fallocate"`); None for a page that went missing under
    /// an access.
    pub op: Option<&'static str>,
    /// The error code, as the OS would report it (`ENOSPC`, `ENOMEM` or
    /// `EIO`).
    #[source]
    pub source: io::Error,
    /// The whole explanation: what was asked, what there is, what to do.
    pub message: String,
}

impl Error {
    /// An [`Error::Storage`].
    pub(crate) fn storage(op: Option<&'static str>, code: i32, message: String) -> Self {
        Error::Storage(Box::new(StorageError {
            op,
            source: io::Error::from_raw_os_error(code),
            message,
        }))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
