//! What the mapping lock costs here: an uncontended `acquire` + `release`
//! of `MapLock` (of an unnamed block, a named block and a file), and on
//! Windows, for comparison, the two designs it could use: a named kernel
//! mutex (a system call per acquire and per release, what `MapLock` waited
//! on, through an owner thread per acquisition, until it became a word) and
//! a bare interlocked word in a shared section (the floor of what `MapLock`
//! does now when nobody waits).
//!
//! `cargo run --release --example lock_cost` (on Windows under Wine:
//! `--target x86_64-pc-windows-gnu`, with the runner from `ci/windows`).

use std::time::Instant;

/// Operations per round.
const N: u32 = 200_000;

fn per_op(what: &str, n: u32, mut op: impl FnMut()) {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(n));
    }
    println!("{what:48} {best:10.1} ns");
}

fn main() -> Result<(), mmapfile::Error> {
    let m = mmapfile::MapOptions::new().maximum_size(4096).open()?;
    let lock = m.lock()?;
    per_op("MapLock acquire+release (unnamed block)", N, || {
        assert!(lock.acquire(None).expect("acquire"));
        lock.release().expect("release");
    });
    per_op("MapLock acquire_if_free+release", N, || {
        assert!(lock.acquire_if_free().expect("acquire"));
        lock.release().expect("release");
    });
    let name = format!("lock-cost-{}", std::process::id());
    let mut named = mmapfile::MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()?;
    let lock = named.lock()?;
    per_op("MapLock acquire+release (named block)", N, || {
        assert!(lock.acquire(None).expect("acquire"));
        lock.release().expect("release");
    });
    drop(lock);
    named.close()?;
    let path = std::env::temp_dir().join(format!("lock-cost-{}.bin", std::process::id()));
    let mut file = mmapfile::MapOptions::new()
        .file(&path)
        .maximum_size(4096)
        .open()?;
    let lock = file.lock()?;
    per_op("MapLock acquire+release (file)", N, || {
        assert!(lock.acquire(None).expect("acquire"));
        lock.release().expect("release");
    });
    drop(lock);
    file.close()?;
    let _ = std::fs::remove_file(&path);
    #[cfg(not(windows))]
    let _ = std::fs::remove_file(format!("/dev/shm/mmapfile.{name}"));
    #[cfg(windows)]
    windows::compare();
    Ok(())
}

#[cfg(windows)]
mod windows {
    use std::sync::atomic::{AtomicU32, Ordering};

    use windows_sys::Win32::Foundation::{INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
    use windows_sys::Win32::System::Memory::{
        CreateFileMappingW, MapViewOfFile, FILE_MAP_ALL_ACCESS, PAGE_READWRITE,
    };
    use windows_sys::Win32::System::Threading::{CreateMutexW, ReleaseMutex, WaitForSingleObject};

    use super::per_op;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(Some(0)).collect()
    }

    pub(super) fn compare() {
        let name = wide(&format!("Local\\mmapfile-lock-cost-{}", std::process::id()));
        // SAFETY: the name is NUL-terminated; no security attributes.
        let mutex = unsafe { CreateMutexW(std::ptr::null(), 0, name.as_ptr()) };
        assert!(!mutex.is_null(), "CreateMutexW failed");
        per_op(
            "named mutex WaitForSingleObject+ReleaseMutex",
            200_000,
            || {
                // SAFETY: `mutex` is an open mutex handle, owned by this thread
                // between the two calls.
                unsafe {
                    assert_eq!(WaitForSingleObject(mutex, 0), WAIT_OBJECT_0);
                    assert!(ReleaseMutex(mutex) != 0);
                }
            },
        );
        let section = wide(&format!("Local\\mmapfile-lock-word-{}", std::process::id()));
        // SAFETY: a pagefile-backed section of one page, named; checked.
        let mapping = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                4096,
                section.as_ptr(),
            )
        };
        assert!(!mapping.is_null(), "CreateFileMappingW failed");
        // SAFETY: maps the whole section; checked.
        let view = unsafe { MapViewOfFile(mapping, FILE_MAP_ALL_ACCESS, 0, 0, 4096) };
        assert!(!view.Value.is_null(), "MapViewOfFile failed");
        // SAFETY: the view is page-aligned, 4096 bytes, mapped for the rest
        // of the process, and only accessed atomically here.
        let word = unsafe { &*view.Value.cast::<AtomicU32>() };
        per_op("interlocked word CAS+store (section)", 200_000, || {
            assert!(word
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok());
            word.store(0, Ordering::Release);
        });
    }
}
