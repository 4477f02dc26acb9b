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

/// What opening a mapping does about the storage that a new block, or the
/// part by which a file grows, will need.
///
/// POSIX sizes files and shared memory with `ftruncate`, which allocates
/// nothing: the storage is found page by page when the pages are first
/// written, and a page that cannot be found (the file system or `/dev/shm`
/// is full) kills the writer with `SIGBUS`. Windows commits a block's memory
/// and allocates a grown file when the mapping is created, and fails there
/// instead. These policies choose how close to Windows a POSIX system comes;
/// on Windows all three behave as Windows does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Space {
    /// Refuse, at creation, a block or a growth that cannot fit in the space
    /// free now: the file system's free space (for a named block,
    /// `/dev/shm`'s), and for blocks also the machine's memory plus swap.
    /// One `fstatvfs` whatever the size (memory is asked once a process). The
    /// check cannot see space that others take afterwards; a page that
    /// cannot be found later is reported as
    /// [`Error::Storage`](crate::Error::Storage) by the access that needed
    /// it. The default.
    #[default]
    Check,
    /// Allocate the storage at creation (`fallocate`), so that no later
    /// access can find the space missing. Cheap for a file on a disk file
    /// system (ext4, xfs: a few milliseconds per GiB), but for a block, or a
    /// file on tmpfs, every page is allocated and zeroed at once: memory is
    /// used from the start and creation takes time in proportion to the
    /// size. Where the file system cannot allocate ahead (no `fallocate`),
    /// falls back to [`Space::Check`].
    Reserve,
    /// Neither check nor allocate: POSIX's plain `ftruncate`. For files and
    /// blocks meant to be sparse, larger than the space there is.
    Sparse,
}
