//! The mapping lock, within one process (cross-process behaviour is covered
//! by the Python tests, which start real processes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mmapfile::{Error, MapOptions};

fn unnamed() -> mmapfile::MapFile {
    MapOptions::new().maximum_size(4096).open().unwrap()
}

#[test]
fn second_lock_object_cannot_take_a_held_lock() {
    let m = unnamed();
    let a = m.lock().unwrap();
    let b = m.lock().unwrap();
    assert!(a.try_acquire().unwrap());
    assert!(!b.try_acquire().unwrap());
    assert!(b.is_locked().unwrap());
    a.release().unwrap();
    assert!(!b.is_locked().unwrap());
    assert!(b.try_acquire().unwrap());
    b.release().unwrap();
}

#[test]
fn timed_acquire_gives_up_after_the_timeout() {
    let m = unnamed();
    let a = m.lock().unwrap();
    assert!(a.acquire(None).unwrap());
    let start = Instant::now();
    assert!(!m
        .lock()
        .unwrap()
        .acquire(Some(Duration::from_millis(100)))
        .unwrap());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn release_without_holding_is_an_error() {
    let m = unnamed();
    let lock = m.lock().unwrap();
    assert!(matches!(lock.release(), Err(Error::NotHeld)));
    assert!(lock.acquire(None).unwrap());
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(Error::NotHeld)));
}

#[test]
fn lock_outlives_close_of_the_view() {
    let mut m = unnamed();
    let a = m.lock().unwrap();
    let b = m.lock().unwrap();
    assert!(a.acquire(None).unwrap());
    m.close().unwrap();
    assert!(!b.try_acquire().unwrap());
    a.release().unwrap();
    assert!(b.try_acquire().unwrap());
}

#[test]
fn lock_of_a_closed_map_is_refused() {
    let mut m = unnamed();
    m.close().unwrap();
    assert!(matches!(m.lock(), Err(Error::Closed)));
}

#[test]
fn dropping_a_held_lock_releases_it() {
    let m = unnamed();
    let a = m.lock().unwrap();
    assert!(a.acquire(None).unwrap());
    drop(a);
    assert!(m.lock().unwrap().try_acquire().unwrap());
}

#[test]
fn threads_sharing_one_lock_object_exclude_each_other() {
    let m = unnamed();
    let lock = Arc::new(m.lock().unwrap());
    let m = Arc::new(std::sync::Mutex::new(m));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let lock = Arc::clone(&lock);
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    assert!(lock.acquire(None).unwrap());
                    // Read-modify-write in two separate critical sections of
                    // the in-process mutex: only the mapping lock keeps the
                    // increments from being lost.
                    let mut buf = [0u8; 8];
                    m.lock().unwrap().read_at(0, &mut buf).unwrap();
                    std::thread::yield_now();
                    let next = u64::from_le_bytes(buf) + 1;
                    m.lock().unwrap().write_at(0, &next.to_le_bytes()).unwrap();
                    lock.release().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut buf = [0u8; 8];
    m.lock().unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(u64::from_le_bytes(buf), 2000);
}

#[test]
fn file_and_named_maps_share_a_lock_across_objects() {
    let path = std::env::temp_dir().join(format!("mmapfile-lock-{}", std::process::id()));
    let a = MapOptions::new()
        .file(&path)
        .maximum_size(4096)
        .open()
        .unwrap();
    let b = MapOptions::new().file(&path).open().unwrap();
    let la = a.lock().unwrap();
    assert!(la.acquire(None).unwrap());
    assert!(!b.lock().unwrap().try_acquire().unwrap());
    la.release().unwrap();
    assert!(b.lock().unwrap().try_acquire().unwrap());
    std::fs::remove_file(&path).unwrap();

    let name = format!("locktest-{}", std::process::id());
    let a = MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()
        .unwrap();
    let b = MapOptions::new().name(&name).open().unwrap();
    let la = a.lock().unwrap();
    assert!(la.acquire(None).unwrap());
    assert!(!b.lock().unwrap().try_acquire().unwrap());
    la.release().unwrap();
    let _ = std::fs::remove_file(format!("/dev/shm/mmapfile.{name}"));
}

#[test]
fn a_lock_taken_in_one_thread_can_be_released_in_another() {
    let m = unnamed();
    let lock = Arc::new(m.lock().unwrap());
    let taker = Arc::clone(&lock);
    std::thread::spawn(move || assert!(taker.acquire(None).unwrap()))
        .join()
        .unwrap();
    assert!(lock.is_held());
    assert!(!m.lock().unwrap().try_acquire().unwrap());
    lock.release().unwrap();
    assert!(m.lock().unwrap().try_acquire().unwrap());
}

const CHILD_ENV: &str = "MMAPFILE_LOCK_TEST_CHILD";

/// The child half of `a_lock_whose_holder_died_is_free`: takes the lock of
/// the block named in the environment and exits without releasing it.
#[test]
fn child_takes_lock_and_dies() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let m = MapOptions::new().name(name).open().unwrap();
    let lock = m.lock().unwrap();
    assert!(lock.acquire(None).unwrap());
    // No destructors: the process ends holding the lock.
    std::process::exit(0);
}

#[test]
fn a_lock_whose_holder_died_is_free() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let name = format!("lockdeath-{}", std::process::id());
    let m = MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()
        .unwrap();
    // Made before the holder dies: on Windows the mutex (and what it knows
    // of its holder's death) lives only while some process has it open.
    let lock = m.lock().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_takes_lock_and_dies", "--test-threads=1"])
        .env(CHILD_ENV, &name)
        .status()
        .unwrap();
    assert!(status.success(), "child failed: {status}");
    assert!(!lock.abandoned());
    assert!(
        lock.try_acquire().unwrap(),
        "the dead child's lock was kept"
    );
    // flock (the portable backend) cannot tell that its holder died.
    assert_eq!(
        lock.abandoned(),
        !mmapfile::blocks::BACKEND.starts_with("portable")
    );
    lock.release().unwrap();
    assert!(lock.try_acquire().unwrap());
    assert!(
        !lock.abandoned(),
        "a lock released normally is not abandoned"
    );
    lock.release().unwrap();
    let _ = std::fs::remove_file(format!("/dev/shm/mmapfile.{name}"));
}

#[test]
fn acquire_checking_takes_a_free_lock_without_checking() {
    let m = unnamed();
    let lock = m.lock().unwrap();
    let acquired = lock
        .acquire_checking(None, Duration::from_millis(10), || -> Result<(), Error> {
            panic!("a free lock needs no check")
        })
        .unwrap();
    assert!(acquired);
    lock.release().unwrap();
}

#[test]
fn acquire_checking_checks_before_waiting_and_while_waiting() {
    let m = unnamed();
    let holder = m.lock().unwrap();
    assert!(holder.acquire(None).unwrap());
    for timeout in [None, Some(Duration::from_secs(60))] {
        let waiter = m.lock().unwrap();
        // A check that fails at once ends the wait before it starts...
        let mut calls = 0;
        let result = waiter.acquire_checking(timeout, Duration::from_secs(60), || {
            calls += 1;
            Err(Error::Unsupported("stop"))
        });
        assert!(
            matches!(result, Err(Error::Unsupported("stop"))),
            "{timeout:?}"
        );
        assert_eq!(calls, 1);
        // ...and one that fails later ends it from inside the wait.
        let start = Instant::now();
        let mut calls = 0;
        let result = waiter.acquire_checking(timeout, Duration::from_millis(20), || {
            calls += 1;
            if calls < 4 {
                Ok(())
            } else {
                Err(Error::Unsupported("stop"))
            }
        });
        assert!(
            matches!(result, Err(Error::Unsupported("stop"))),
            "{timeout:?}"
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(60),
            "{timeout:?} {waited:?}"
        );
        assert!(waited < Duration::from_secs(20), "{timeout:?} {waited:?}");
        assert!(!waiter.is_held());
    }
    holder.release().unwrap();
}

#[test]
fn an_abandoned_untimed_wait_gives_the_lock_back() {
    let m = unnamed();
    let holder = m.lock().unwrap();
    assert!(holder.acquire(None).unwrap());
    let waiter = m.lock().unwrap();
    let result = waiter.acquire_checking(None, Duration::from_millis(10), || {
        Err(Error::Unsupported("stop"))
    });
    assert!(result.is_err());
    holder.release().unwrap();
    // The abandoned helper may take the lock for an instant; it must let
    // go, so a later acquisition gets it.
    let later = m.lock().unwrap();
    assert!(later.acquire(Some(Duration::from_secs(20))).unwrap());
    later.release().unwrap();
}

#[test]
fn acquire_checking_wakes_when_the_lock_is_released() {
    let m = unnamed();
    let holder = Arc::new(m.lock().unwrap());
    assert!(holder.acquire(None).unwrap());
    let releaser = {
        let holder = Arc::clone(&holder);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            holder.release().unwrap();
        })
    };
    let waiter = m.lock().unwrap();
    let mut checks = 0;
    let acquired = waiter
        .acquire_checking(None, Duration::from_millis(10), || {
            checks += 1;
            Ok::<(), Error>(())
        })
        .unwrap();
    assert!(acquired && waiter.is_held());
    assert!(checks >= 1);
    releaser.join().unwrap();
    assert!(!holder.try_acquire().unwrap());
    waiter.release().unwrap();
}

const HOLDER_ENV: &str = "MMAPFILE_LOCK_TEST_HOLDER";

/// The child half of `holders_killed_in_turn_are_each_taken_over`: takes
/// the lock of the block named in the environment, writes the cycle number
/// given there into the block's first 8 bytes, and waits to be killed.
#[test]
fn child_takes_lock_and_waits_to_be_killed() {
    let Ok(spec) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let (name, cycle) = spec.split_once(' ').unwrap();
    let cycle: u64 = cycle.parse().unwrap();
    let mut m = MapOptions::new().name(name).open().unwrap();
    let lock = m.lock().unwrap();
    assert!(lock.acquire(None).unwrap());
    m.write_at(0, &cycle.to_le_bytes()).unwrap();
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

/// Starts `child_takes_lock_and_waits_to_be_killed` for `spec`. Wine's
/// `CreateProcess` fails now and then with `ERROR_INTERNAL_ERROR` (1359;
/// seen once in a `make test-windows` run, with other Wine programs
/// starting beside it): that failure, which is not the lock's, is tried
/// again, at most twice.
fn spawn_holder(spec: &str) -> std::process::Child {
    let mut tries = 0;
    loop {
        let spawned = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_takes_lock_and_waits_to_be_killed",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, spec)
            .stdout(std::process::Stdio::null())
            .spawn();
        match spawned {
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && tries < 2 => {
                eprintln!("spawning a holder failed ({e}); trying again");
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.unwrap(),
        }
    }
}

/// Kill cycles: `MMAPFILE_LOCK_KILL_CYCLES` (default 1,000): each holder is
/// killed (`TerminateProcess`, `SIGKILL`) while it holds the lock, and the
/// parent, waiting in an untimed `acquire` when the kill lands, takes it
/// over and is told it was abandoned.
#[test]
fn holders_killed_in_turn_are_each_taken_over() {
    if std::env::var_os(HOLDER_ENV).is_some() {
        return;
    }
    let cycles: u64 = std::env::var("MMAPFILE_LOCK_KILL_CYCLES")
        .ok()
        .map_or(1000, |n| n.parse().unwrap());
    let name = format!("lockkills-{}", std::process::id());
    let m = MapOptions::new()
        .name(&name)
        .maximum_size(4096)
        .open()
        .unwrap();
    let lock = Arc::new(m.lock().unwrap());
    let tells = !mmapfile::blocks::BACKEND.starts_with("portable");
    let start = Instant::now();
    for cycle in 1..=cycles {
        let mut child = spawn_holder(&format!("{name} {cycle}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut bytes = [0u8; 8];
            m.read_at(0, &mut bytes).unwrap();
            if u64::from_le_bytes(bytes) == cycle {
                break;
            }
            assert!(Instant::now() < deadline, "cycle {cycle}: no holder");
            assert!(
                child.try_wait().unwrap().is_none(),
                "cycle {cycle}: the holder died early"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lock.is_locked().unwrap(), "cycle {cycle}");
        // The parent waits (untimed) while the kill lands.
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || lock.acquire(None).unwrap())
        };
        std::thread::sleep(Duration::from_millis(2));
        child.kill().unwrap();
        child.wait().unwrap();
        let killed = Instant::now();
        assert!(waiter.join().unwrap(), "cycle {cycle}");
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "cycle {cycle}: the waiter took {:?} to see the holder's death",
            killed.elapsed()
        );
        assert_eq!(lock.abandoned(), tells, "cycle {cycle}");
        lock.release().unwrap();
    }
    eprintln!("{cycles} kill cycles in {:?}", start.elapsed());
    assert!(!lock.is_locked().unwrap());
    let _ = std::fs::remove_file(format!("/dev/shm/mmapfile.{name}"));
}
