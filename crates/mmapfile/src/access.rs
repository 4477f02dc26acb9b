//! How a mapping may be used.

/// The access mode of a mapping, with the same meaning (and, in the Python
/// module, the same numeric values) as CPython's `mmap.ACCESS_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Access {
    /// Read and write; writes reach the file or block and every other view
    /// of it (CPython's `ACCESS_WRITE`). The default.
    #[default]
    Write,
    /// Read only: the file is opened read-only, so read-only files can be
    /// mapped; writes are refused with [`Error::ReadOnly`](crate::Error::ReadOnly).
    Read,
    /// Copy on write: writes change this view only and never reach the file
    /// or block.
    Copy,
}

impl Access {
    /// Whether writes through the view are allowed.
    pub fn is_writable(self) -> bool {
        !matches!(self, Access::Read)
    }

    /// Whether the backing object must be opened for writing.
    pub fn writes_backing(self) -> bool {
        matches!(self, Access::Write)
    }
}

/// Whether opening a named block may create it, open it, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CreateMode {
    /// Create the block if it does not exist, else open it (pywin32's behaviour).
    #[default]
    OpenOrCreate,
    /// Create the block; fail if it already exists.
    CreateOnly,
    /// Open an existing block; fail if there is none.
    OpenOnly,
}
