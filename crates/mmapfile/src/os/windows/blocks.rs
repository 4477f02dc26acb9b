//! Named blocks seen from outside: not offered on Windows.

use crate::error::{Error, Result};

/// Listing and inspecting named blocks from outside needs the object
/// manager's directory API, which this backend does not use: the kernel
/// already frees a section with its last handle, so there is nothing to
/// collect. These report that plainly.
fn blocks_unsupported<T>() -> Result<T> {
    Err(Error::Unsupported(
        "looking at named blocks from outside is not supported on Windows \
         (the kernel frees a block with its last handle, so none can be left behind)",
    ))
}

pub(crate) fn list_blocks(_tidy: bool) -> Result<Vec<crate::blocks::BlockInfo>> {
    blocks_unsupported()
}

pub(crate) fn block_info(_base: &str) -> Result<crate::blocks::BlockInfo> {
    blocks_unsupported()
}

pub(crate) fn read_block(_base: &str, _offset: u64, _len: Option<u64>) -> Result<Vec<u8>> {
    blocks_unsupported()
}

pub(crate) fn remove_block(_base: &str) -> Result<Option<bool>> {
    blocks_unsupported()
}

pub(crate) fn collect_block(_base: &str) -> Result<bool> {
    blocks_unsupported()
}

pub(crate) fn collect_leftovers() -> Result<()> {
    blocks_unsupported()
}
