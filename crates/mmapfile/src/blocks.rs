//! Looking at named blocks and named file mappings from outside: list,
//! inspect, read, remove and collect dead ones. This is what `python -m mmapfile` uses; opening a
//! block to work with it is [`MapOptions`](crate::MapOptions)' job.
//!
//! Block names are given as to [`MapOptions::name`](crate::MapOptions::name):
//! a `Local\` or `Global\` prefix is accepted and removed.
//!
//! ```no_run
//! for block in mmapfile::blocks::list()? {
//!     println!("{} {} bytes, {:?} holders", block.name, block.size, block.holders);
//! }
//! let removed = mmapfile::blocks::collect_garbage()?;
//! # Ok::<(), mmapfile::Error>(())
//! ```

use std::time::SystemTime;

use crate::error::Result;
use crate::name::BlockName;
use crate::os;

/// How this build keeps named blocks: `"windows"` (the kernel's sections),
/// `"linux"` (shared-memory objects held by open-file-description locks),
/// `"portable"` (macOS and the BSDs: a record file per name in
/// `/var/tmp/mmapfile`, held by `flock`), or `"portable-simulated"` (the
/// portable backend on Linux with macOS's limits imposed, for testing).
pub const BACKEND: &str = os::NAMED_BACKEND;

/// What is known about one named block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockInfo {
    /// The block's name (without a namespace prefix).
    pub name: String,
    /// The name of the POSIX shared-memory object that holds the bytes
    /// (Linux: `/mmapfile.<name>`, or a digest of a long name; macOS and
    /// the BSDs: a random name per block), for `shm_open` or
    /// `multiprocessing.shared_memory.SharedMemory(name=...)` (without the
    /// leading slash there). Empty for a file mapping on macOS and the BSDs,
    /// which has no such object. On Linux a block whose bytes are in
    /// [`segment`](Self::segment) has an empty object: that name leads to
    /// no bytes.
    pub shm_name: String,
    /// On Linux, the id of the System V segment that holds the block's
    /// bytes (`ipcs -m`; a C program may `shmat` it and must check it as
    /// `docs/named-blocks.md` says), where they are in one.
    pub segment: Option<i32>,
    /// Where the name lives in the file system: the block's object in
    /// `/dev/shm` (Linux), or its record file (macOS and the BSDs).
    pub path: Option<std::path::PathBuf>,
    /// Size in bytes: the block's, or for a file mapping the mapping's.
    pub size: u64,
    /// For a named file mapping (created with a file and a name): the
    /// mapped file. `None` for a block of shared memory.
    pub file: Option<std::path::PathBuf>,
    /// How many mapping objects hold the block, in all processes; `None`
    /// where the OS cannot tell. `Some(0)` means the block is dead: every
    /// holder exited without closing it (e.g. killed), and the next open of
    /// the name, or [`collect_garbage`], removes it.
    pub holders: Option<u32>,
    /// The owner's user id.
    pub owner: u32,
    /// Permission bits.
    pub mode: u32,
    /// When the block was created or last grown, if known.
    pub changed: Option<SystemTime>,
}

impl BlockInfo {
    /// Whether every holder is gone (known only where holders are counted).
    pub fn is_dead(&self) -> bool {
        self.holders == Some(0)
    }
}

/// Every named block that belongs to the calling user, sorted by name. On
/// Linux, the names of blocks whose memory the kernel freed when their last
/// holder died are removed as they are found, not listed.
pub fn list() -> Result<Vec<BlockInfo>> {
    os::list_blocks(true)
}

/// Information on the block `name`.
pub fn info(name: &str) -> Result<BlockInfo> {
    os::block_info(BlockName::new(name)?.base())
}

/// Copies up to `len` bytes (`None`: to the end) from `offset` in the block
/// `name` without becoming a holder, so a dead block kept in a file can be
/// inspected before it is removed (on Linux a block in a System V segment
/// has no bytes left once dead: `ENOENT`). A length past the end returns
/// fewer bytes; an offset past the end is [`crate::Error::InvalidArgument`].
/// For a named file
/// mapping, the bytes are the mapped file's (within the mapping's size).
pub fn read(name: &str, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
    os::read_block(BlockName::new(name)?.base(), offset, len)
}

/// Removes the name `name` at once, whatever its holders do. They keep their
/// mappings (of a block nobody else can open any more); the next open of the
/// name creates a new block. A named file mapping's file is not touched.
/// Use it to clear a block that is stuck, not as the normal way to end one:
/// closing the last holder does that.
///
/// Returns whether holders remained, where this is found out on the way
/// (the portable backend); `None` elsewhere ([`info`] counts them on Linux).
pub fn remove(name: &str) -> Result<Option<bool>> {
    os::remove_block(BlockName::new(name)?.base())
}

/// Removes every dead block of the calling user (one whose holders all
/// exited without closing it) and returns their names. Live blocks are
/// never touched, even if a holder joins while this runs.
pub fn collect_garbage() -> Result<Vec<String>> {
    // What creators that died while creating left (where any is left).
    os::collect_leftovers()?;
    let mut removed = Vec::new();
    // Names whose memory the kernel already freed are listed too: removing
    // them is what is left to do.
    for block in os::list_blocks(false)? {
        if os::collect_block(&block.name)? {
            removed.push(block.name);
        }
    }
    Ok(removed)
}
