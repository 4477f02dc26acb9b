//! Helpers shared by the integration tests: scratch directories and block
//! names that clean up after themselves.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "cargo-test-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The OS call an error names when a file cannot be opened.
pub const OPEN_FILE_OP: &str = if cfg!(windows) { "CreateFile" } else { "open" };

/// The OS call an error names when a named block to open does not exist
/// (the portable backend's name is its record file).
pub const OPEN_BLOCK_OP: &str = if cfg!(windows) {
    "OpenFileMapping"
} else if cfg!(portable_lifetime) {
    "open"
} else {
    "shm_open"
};

/// The size that a process opening an existing block of `len` bytes sees.
/// Windows keeps a pagefile-backed section's size in whole pages only, so
/// there it is `len` rounded up to the page size (pywin32 sees the same).
pub fn opened_block_len(len: usize) -> usize {
    if cfg!(windows) {
        len.div_ceil(mmapfile::page_size()) * mmapfile::page_size()
    } else {
        len
    }
}

/// A fresh directory, removed with everything in it when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// The names of the entries in the directory.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A block name no other test uses. The core does not unlink named blocks on
/// last close yet, so the block is removed from /dev/shm when this is dropped.
pub struct Block(String);

impl Block {
    pub fn new() -> Self {
        Block(unique("block"))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// Where the block's name lives as a file on Linux: the object itself,
    /// or the portable backend's record file (test names are used as they
    /// are).
    pub fn shm_path(&self) -> PathBuf {
        if cfg!(portable_lifetime) {
            PathBuf::from(format!("/var/tmp/mmapfile/{}", self.0))
        } else {
            PathBuf::from(format!("/dev/shm/mmapfile.{}", self.0))
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if cfg!(target_os = "linux") {
            let _ = std::fs::remove_file(self.shm_path());
        }
    }
}
