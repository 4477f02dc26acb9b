//! Two processes using one block name see the same bytes. The second
//! process is this test binary run again with `MMAPFILE_TEST_CHILD` set,
//! so that it executes only the child half.

mod common;

use std::process::Command;

use common::Block;
use mmapfile::MapOptions;

const CHILD_ENV: &str = "MMAPFILE_TEST_CHILD";

/// The child half: opens the block named in the environment at its own
/// size, checks the parent's bytes, and answers after them.
#[test]
fn child_half() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut m = MapOptions::new().name(name).open().unwrap();
    assert_eq!(m.len().unwrap(), common::opened_block_len(3000));
    assert_eq!(m.read(6).unwrap(), b"parent");
    m.write(b" child").unwrap();
    m.close().unwrap();
}

#[test]
fn a_child_process_shares_a_named_block() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let block = Block::new();
    let mut m = MapOptions::new()
        .name(block.name())
        .maximum_size(3000)
        .open()
        .unwrap();
    m.write(b"parent").unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_half", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, block.name())
        .status()
        .unwrap();
    assert!(status.success(), "child failed: {status}");
    m.seek(0, 0).unwrap();
    assert_eq!(m.read(12).unwrap(), b"parent child");
}
