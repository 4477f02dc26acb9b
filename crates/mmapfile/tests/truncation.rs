//! A file that shrinks under a mapping makes accesses fail with
//! `Error::Truncated` instead of killing the process with `SIGBUS`.
#![cfg(unix)]

use std::fs::OpenOptions;
use std::path::PathBuf;

use mmapfile::{Error, MapOptions};

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, len: usize) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("mmapfile-trunc-{tag}-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; len]).unwrap();
        TempFile(path)
    }

    fn set_len(&self, len: u64) {
        let f = OpenOptions::new().write(true).open(&self.0).unwrap();
        f.set_len(len).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn is_truncated<T: std::fmt::Debug>(r: mmapfile::Result<T>) -> bool {
    match r {
        Err(Error::Truncated(what)) => what.contains("shrank"),
        other => panic!("expected Error::Truncated, got {other:?}"),
    }
}

#[test]
fn every_access_past_the_new_end_fails_and_the_view_stays_poisoned() {
    let page = mmapfile::page_size();
    let file = TempFile::new("all", 4 * page);
    let mut m = MapOptions::new().file(&file.0).open().unwrap();
    file.set_len(page as u64);

    // Inside the first page, which still exists, reads work before any fault.
    assert_eq!(m.read(10).unwrap(), vec![b'x'; 10]);
    m.seek(0, 0).unwrap();

    // A read that crosses into the vanished pages fails and names the offset.
    let err = m.read(-1).unwrap_err();
    let Error::Truncated(what) = &err else {
        panic!("{err:?}")
    };
    assert!(what.contains(&format!("offset {page}")), "{what}");
    // The failed read did not move the position.
    assert_eq!(m.tell().unwrap(), 0);

    // Every other access now reports the same thing, even inside page 0.
    assert!(is_truncated(m.read(1)));
    assert!(is_truncated(m.read_byte()));
    assert!(is_truncated(m.readline()));
    assert!(is_truncated(m.write(b"y")));
    assert!(is_truncated(m.write_byte(b'y')));
    assert!(is_truncated(m.find(b"x", None, None)));
    assert!(is_truncated(m.rfind(b"x", None, None)));
    assert!(is_truncated(m.move_within(0, 1, 1)));
    assert!(is_truncated(m.flush(0, 0)));
    assert!(is_truncated(m.export()));
    // Even where the call would fail anyway (at the end, out of range), a
    // poisoned view answers with its fault.
    let end = m.len().unwrap();
    m.seek(0, 2).unwrap();
    assert!(is_truncated(m.read_byte()));
    assert!(is_truncated(m.readline()));
    // SAFETY: the closure reads nothing.
    assert!(is_truncated(unsafe { m.read_at_with(end, 1, |_| ()) }));
    // SAFETY: as above.
    assert!(is_truncated(unsafe { m.read_at_with(0, 1, |_| ()) }));
    m.seek(0, 0).unwrap();

    // resize maps a new view of what is left, which works again.
    m.resize(0, 0, 0).unwrap();
    assert_eq!(m.len().unwrap(), page);
    m.seek(0, 0).unwrap();
    assert_eq!(m.read(-1).unwrap(), vec![b'x'; page]);
    m.close().unwrap();
}

#[test]
fn each_kind_of_access_survives_the_fault() {
    let page = mmapfile::page_size();
    type Access = fn(&mut mmapfile::MapFile, usize) -> bool;
    let accesses: [(&str, Access); 7] = [
        ("read_at", |m, p| {
            // black_box: a read whose bytes nobody looks at may be optimised
            // away, and then it touches nothing.
            let mut buf = [0; 8];
            let failed = is_truncated(m.read_at(2 * p, &mut buf));
            std::hint::black_box(&buf);
            failed
        }),
        ("write_at", |m, p| is_truncated(m.write_at(2 * p, b"abc"))),
        ("find", |m, _| is_truncated(m.find(b"zz", Some(0), None))),
        ("rfind", |m, _| is_truncated(m.rfind(b"z", Some(0), None))),
        ("move", |m, p| {
            is_truncated(m.move_within(0, 2 * p as i64, p as i64))
        }),
        ("read_byte", |m, p| {
            m.seek(3 * p as i64, 0).unwrap();
            is_truncated(m.read_byte())
        }),
        ("write_byte", |m, p| {
            m.seek(3 * p as i64 + 5, 0).unwrap();
            is_truncated(m.write_byte(1))
        }),
    ];
    for (what, access) in accesses {
        let file = TempFile::new(what, 4 * page);
        let mut m = MapOptions::new().file(&file.0).open().unwrap();
        file.set_len(page as u64 / 2);
        assert!(access(&mut m, page), "{what}");
        m.close().unwrap();
    }
}

#[test]
fn a_fault_on_one_thread_does_not_disturb_another() {
    let page = mmapfile::page_size();
    let shrinking = TempFile::new("thread-a", 8 * page);
    let steady = TempFile::new("thread-b", 8 * page);
    let steady_path = steady.0.clone();
    let reader = std::thread::spawn(move || {
        let m = MapOptions::new().file(&steady_path).open().unwrap();
        let mut buf = vec![0; 8 * page];
        for _ in 0..2000 {
            m.read_at(0, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == b'x'));
        }
    });
    for _ in 0..50 {
        shrinking.set_len(8 * page as u64);
        let m = MapOptions::new().file(&shrinking.0).open().unwrap();
        shrinking.set_len(0);
        let mut buf = vec![0; 8 * page];
        assert!(is_truncated(m.read_at(0, &mut buf)));
    }
    reader.join().unwrap();
}

#[test]
fn many_views_each_report_only_their_own_fault() {
    // More views than one block of the guard's table holds, so the table
    // grows; a fault is charged to the view it happened in and no other.
    let page = mmapfile::page_size();
    let files: Vec<TempFile> = (0..150)
        .map(|i| TempFile::new(&format!("many-{i}"), 2 * page))
        .collect();
    let mut views: Vec<_> = files
        .iter()
        .map(|f| MapOptions::new().file(&f.0).open().unwrap())
        .collect();
    for file in files.iter().step_by(3) {
        file.set_len(0);
    }
    for (i, m) in views.iter_mut().enumerate() {
        let read = m.read(-1);
        if i % 3 == 0 {
            assert!(is_truncated(read), "view {i}");
        } else {
            assert_eq!(read.unwrap(), vec![b'x'; 2 * page], "view {i}");
        }
    }
    // Closing views frees their slots; new views reuse them and start clean.
    views.clear();
    for file in files.iter().step_by(3) {
        file.set_len(2 * page as u64);
    }
    for file in &files {
        let mut m = MapOptions::new().file(&file.0).open().unwrap();
        assert_eq!(m.read(1).unwrap().len(), 1);
    }
}

#[test]
fn faults_are_recovered_while_other_threads_map_and_unmap_views() {
    // Other threads register and release views all the time (slots of the
    // guard's table change under the handler), while this thread faults on
    // views of a file it keeps shrinking: every fault is still recovered
    // and charged to the right view.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let page = mmapfile::page_size();
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rounds = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let views: Vec<_> = (0..20)
                        .map(|_| MapOptions::new().maximum_size(page as u64).open().unwrap())
                        .collect();
                    for mut m in views {
                        assert_eq!(m.read_byte().unwrap(), 0);
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let shrinking = TempFile::new("churn", 4 * page);
    for _ in 0..300 {
        shrinking.set_len(4 * page as u64);
        let m = MapOptions::new().file(&shrinking.0).open().unwrap();
        shrinking.set_len(page as u64);
        let mut buf = vec![0; 4 * page];
        let Err(Error::Truncated(what)) = m.read_at(0, &mut buf) else {
            panic!("no fault reported");
        };
        assert!(what.contains(&format!("offset {page} ")), "{what}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn {
        assert!(t.join().unwrap() > 0);
    }
}
