//! A failed open leaves no descriptor (Windows: handle) open. Counting them
//! only works when no other test opens any at the same time, so this binary
//! holds a single test that runs every case in turn.

mod common;

use common::{Block, Scratch};
use mmapfile::MapOptions;

#[cfg(unix)]
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(windows)]
fn handle_count() -> Option<usize> {
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessHandleCount};
    let mut count = 0u32;
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no
    // closing, and `count` is writable for the call.
    let ok = unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut count) };
    (ok != 0).then_some(count as usize)
}

/// The process's handle count, if the OS keeps one that this test can
/// trust: Wine answers GetProcessHandleCount with a number that does not
/// follow handles, so the count is checked to move with an open file first.
#[cfg(windows)]
fn open_fds() -> Option<usize> {
    let before = handle_count()?;
    let file = std::fs::File::open(std::env::current_exe().ok()?).ok()?;
    let with_file = handle_count()?;
    drop(file);
    (with_file == before + 1).then(handle_count).flatten()
}

#[test]
fn failed_and_closed_mappings_leave_no_descriptor_open() {
    let Some(start) = open_fds() else {
        eprintln!("no usable descriptor or handle count: counting skipped");
        return;
    };
    let dir = Scratch::new();
    let existing = dir.path("existing");
    std::fs::write(&existing, b"abc").unwrap();
    let empty = dir.path("empty");
    std::fs::write(&empty, b"").unwrap();
    let block = Block::new();
    let keeper = MapOptions::new()
        .name(block.name())
        .maximum_size(10)
        .open()
        .unwrap();
    let base = open_fds().unwrap();
    // The portable backend holds the name's record file and the object.
    let per_block = if cfg!(portable_lifetime) { 2 } else { 1 };
    assert_eq!(base, start + per_block, "the open block's descriptors");

    let failures: Vec<(&str, MapOptions)> = vec![
        ("new empty file", MapOptions::new().file(dir.path("new"))),
        ("existing empty file", MapOptions::new().file(&empty)),
        (
            "offset past an existing file",
            MapOptions::new().file(&existing).offset(3),
        ),
        (
            "missing directory",
            MapOptions::new().file(dir.path("no/f")).maximum_size(1),
        ),
        (
            "window past an existing block",
            MapOptions::new().name(block.name()).offset(10),
        ),
        (
            "missing block",
            MapOptions::new().name(format!("{}-missing", block.name())),
        ),
        (
            "new block with a bad window",
            MapOptions::new()
                .name(format!("{}-new", block.name()))
                .maximum_size(10)
                .len(11),
        ),
        (
            "unnamed block too large to map",
            MapOptions::new().maximum_size(1 << 62),
        ),
    ];
    for (what, opts) in failures {
        assert!(opts.open().is_err(), "{what} should fail");
        assert_eq!(open_fds().unwrap(), base, "{what} leaked a descriptor");
    }

    for _ in 0..50 {
        let mut m = MapOptions::new().file(&existing).open().unwrap();
        m.resize(10, 0, 0).unwrap();
        m.close().unwrap();
        drop(MapOptions::new().name(block.name()).open().unwrap());
    }
    assert_eq!(open_fds().unwrap(), base, "open/close cycles leaked");
    drop(keeper);
    assert_eq!(open_fds().unwrap(), start);
    assert_eq!(dir.entries(), ["empty", "existing"]);
}
