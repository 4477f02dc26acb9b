//! Cross-process lifetime of named blocks, driven from Rust: the test binary
//! runs itself as the child (`child_holder`, which only acts when the
//! environment variable below names a block).

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use mmapfile::{blocks, CreateMode, MapOptions};

const CHILD_ENV: &str = "MMAPFILE_TEST_CHILD_BLOCK";
const ENOENT: i32 = 2;

fn unique(tag: &str) -> String {
    format!("rust-test-{}-{tag}", std::process::id())
}

/// Whether the name exists: the Linux block's object, or the portable
/// backend's record file (with `simulate-macos`).
fn exists(name: &str) -> bool {
    if cfg!(portable_lifetime) {
        Path::new(&format!("/var/tmp/mmapfile/{name}")).exists()
    } else {
        Path::new(&format!("/dev/shm/mmapfile.{name}")).exists()
    }
}

/// What `info` says of a block whose holders all died: no holder on Linux;
/// the portable backend cannot count them (`gc` finds the dead).
const DEAD_HOLDERS: Option<u32> = if cfg!(portable_lifetime) {
    None
} else {
    Some(0)
};

/// Held by the tests that leave a dead block and look at it: listing
/// blocks (on Linux) removes every dead block's record of this user, so it
/// must not run while another test expects its dead block to be there.
static DEAD_BLOCKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Not a test of its own: the child side of the tests below. Creates the
/// block, writes to it, says "ready", then waits to be killed.
#[test]
fn child_holder() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut m = MapOptions::new()
        .name(name)
        .maximum_size(4096)
        .open()
        .unwrap();
    m.write(b"child bytes").unwrap();
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// Runs `child_holder` for `name` and kills it with SIGKILL once it holds.
fn hold_in_child_then_kill(name: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holder", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn last_holder_close_removes_the_name() {
    let name = unique("close");
    let a = MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()
        .unwrap();
    let mut b = MapOptions::new().name(&name).open().unwrap();
    assert!(a.created() && !b.created());
    drop(a);
    assert!(exists(&name), "b still holds it");
    b.close().unwrap();
    assert!(!exists(&name));
}

#[test]
fn killed_holder_leaves_a_dead_block_that_the_next_create_replaces() {
    let _alone = DEAD_BLOCKS.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("killed");
    hold_in_child_then_kill(&name);
    let info = blocks::info(&name).unwrap();
    assert_eq!(info.holders, DEAD_HOLDERS);
    assert!(exists(&name), "nobody removed it yet");
    let mut m = MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()
        .unwrap();
    assert!(m.created());
    assert_eq!(m.read(11).unwrap(), vec![0; 11]);
    m.close().unwrap();
    assert!(!exists(&name));
}

#[test]
fn dead_block_can_be_read_listed_and_removed() {
    let _alone = DEAD_BLOCKS.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique("dead");
    hold_in_child_then_kill(&name);
    if !cfg!(portable_lifetime) {
        // The kernel freed the killed holder's memory (a System V segment)
        // with it: there is nothing left to read, listing removes the empty
        // record, and the name opens nothing.
        assert_eq!(
            blocks::read(&name, 0, Some(11)).unwrap_err().raw_os_error(),
            Some(ENOENT)
        );
        assert!(exists(&name), "nobody removed the record yet");
        assert!(!blocks::list().unwrap().iter().any(|b| b.name == name));
        assert!(!exists(&name));
        let err = MapOptions::new()
            .name(&name)
            .create(CreateMode::OpenOnly)
            .open()
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOENT));
        return;
    }
    assert_eq!(blocks::read(&name, 0, Some(11)).unwrap(), b"child bytes");
    // collect_garbage would remove every dead block of this user, other
    // programs' too; the per-block steps it is made of are tested here.
    assert!(blocks::list()
        .unwrap()
        .iter()
        .any(|b| b.name == name && b.holders == DEAD_HOLDERS));
    // Where removing finds out whether holders remained: none did.
    let held = blocks::remove(&name).unwrap();
    assert!(held.is_none_or(|held| !held));
    assert!(!exists(&name));
    let err = MapOptions::new()
        .name(&name)
        .create(CreateMode::OpenOnly)
        .open()
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(ENOENT));
}
