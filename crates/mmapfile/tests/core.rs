//! The core crate on its own: opening each kind of mapping, every
//! operation's semantics, error variants and offset alignment.

mod common;

use common::{Block, Scratch};
use mmapfile::{allocation_granularity, page_size, Access, Error, MapFile, MapOptions, Source};

fn anon(size: u64) -> MapFile {
    MapOptions::new().maximum_size(size).open().unwrap()
}

/// An unnamed 16-byte block holding `hello\nworld\n` and four NULs.
fn sample() -> MapFile {
    let mut m = anon(16);
    m.write(b"hello\nworld\n").unwrap();
    m.seek(0, 0).unwrap();
    m
}

fn is_out_of_range(err: &Error, message: &str) -> bool {
    matches!(err, Error::OutOfRange(m) if *m == message)
}

// --- opening -------------------------------------------------------------------------

#[test]
fn missing_file_is_created_at_maximum_size() {
    let dir = Scratch::new();
    let path = dir.path("new.bin");
    let mut m = MapOptions::new()
        .file(&path)
        .maximum_size(100)
        .open()
        .unwrap();
    assert!(m.created());
    assert_eq!(m.source(), &Source::File(path.clone()));
    assert_eq!(m.path(), Some(path.as_path()));
    assert_eq!(m.len().unwrap(), 100);
    assert_eq!(m.read(-1).unwrap(), vec![0; 100]);
    m.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), vec![0; 100]);
}

#[test]
fn maximum_size_zero_maps_exactly_the_file() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new().file(&path).open().unwrap();
    assert!(!m.created());
    assert_eq!(m.len().unwrap(), 3);
    m.write(b"XYZ").unwrap();
    m.flush(0, 0).unwrap();
    m.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"XYZ");
}

#[test]
fn larger_maximum_size_grows_the_file_with_zeros() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new()
        .file(&path)
        .maximum_size(8)
        .open()
        .unwrap();
    assert_eq!(m.read(-1).unwrap(), b"abc\0\0\0\0\0");
    m.close().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
}

#[test]
fn empty_file_without_size_is_refused() {
    let dir = Scratch::new();
    let path = dir.path("empty");
    std::fs::write(&path, b"").unwrap();
    let err = MapOptions::new().file(&path).open().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m == "Specified file is empty, and no mapping size given"),
        "{err:?}"
    );
    assert!(path.exists());
}

#[test]
fn unnamed_block_needs_a_size() {
    let err = MapOptions::new().open().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn unnamed_block_is_zeroed_and_private_to_its_mapping() {
    let mut a = anon(8);
    let mut b = anon(8);
    assert_eq!(a.source(), &Source::Anonymous);
    a.write(b"aaaa").unwrap();
    assert_eq!(b.read(-1).unwrap(), vec![0; 8]);
}

#[test]
fn named_block_is_shared_and_keeps_its_first_size() {
    let block = Block::new();
    let mut first = MapOptions::new()
        .name(block.name())
        .maximum_size(100)
        .open()
        .unwrap();
    assert!(first.created());
    let mut second = MapOptions::new()
        .name(block.name())
        .maximum_size(5000)
        .open()
        .unwrap();
    assert!(!second.created());
    assert_eq!(second.len().unwrap(), common::opened_block_len(100));
    first.write(b"shared").unwrap();
    assert_eq!(second.read(6).unwrap(), b"shared");
    let third = MapOptions::new().name(block.name()).open().unwrap();
    assert_eq!(third.len().unwrap(), common::opened_block_len(100));
    if cfg!(target_os = "linux") {
        assert_eq!(mmapfile::blocks::info(block.name()).unwrap().size, 100);
    }
}

#[test]
fn named_block_without_size_must_exist() {
    let block = Block::new();
    let err = MapOptions::new().name(block.name()).open().unwrap_err();
    match &err {
        Error::Io { op, source } => {
            assert_eq!(*op, common::OPEN_BLOCK_OP);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(err.raw_os_error().is_some());
    if cfg!(target_os = "linux") {
        assert!(!block.shm_path().exists());
    }
}

#[test]
fn namespace_prefix_names_the_same_block() {
    let block = Block::new();
    let mut plain = MapOptions::new()
        .name(block.name())
        .maximum_size(16)
        .open()
        .unwrap();
    plain.write(b"prefixed").unwrap();
    let mut local = MapOptions::new()
        .name(format!("Local\\{}", block.name()))
        .open()
        .unwrap();
    assert_eq!(local.read(8).unwrap(), b"prefixed");
    assert_eq!(
        local.name(),
        Some(format!("Local\\{}", block.name()).as_str())
    );
}

#[test]
fn bad_block_names_are_invalid_name_errors() {
    for bad in ["a/b", "Global\\", "Local\\"] {
        let err = MapOptions::new()
            .name(bad)
            .maximum_size(10)
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName(_)), "{bad:?}: {err:?}");
    }
}

#[test]
fn an_empty_name_or_path_means_none_as_in_pywin32() {
    let m = MapOptions::new()
        .name("")
        .file("")
        .maximum_size(10)
        .open()
        .unwrap();
    assert_eq!(m.source(), &Source::Anonymous);
    assert_eq!(m.name(), None);
    assert!(m.created());
    let dir = Scratch::new();
    let path = dir.path("f");
    let m = MapOptions::new()
        .file(&path)
        .name("")
        .maximum_size(10)
        .open()
        .unwrap();
    assert_eq!(m.source(), &Source::File(path));
}

#[test]
fn os_errors_name_the_failing_call() {
    let dir = Scratch::new();
    let err = MapOptions::new()
        .file(dir.path("missing/f"))
        .maximum_size(10)
        .open()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Io { op, .. } if *op == common::OPEN_FILE_OP),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", common::OPEN_FILE_OP)),
        "{err}"
    );
}

// --- windows and alignment -------------------------------------------------------------

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn unaligned_offsets_view_the_right_bytes() {
    let g = allocation_granularity();
    assert!(g >= page_size() && g % page_size() == 0);
    let dir = Scratch::new();
    let path = dir.path("f");
    let content = pattern(3 * g);
    std::fs::write(&path, &content).unwrap();
    for offset in [1, 7, g - 1, g, g + 1, 2 * g + 3] {
        for len in [0, 1, 100] {
            let mut m = MapOptions::new()
                .file(&path)
                .offset(offset as u64)
                .len(len as u64)
                .open()
                .unwrap();
            let end = if len == 0 {
                content.len()
            } else {
                offset + len
            };
            assert_eq!(m.offset().unwrap(), offset as u64);
            assert_eq!(m.len().unwrap(), end - offset, "offset {offset} len {len}");
            assert_eq!(m.read(-1).unwrap(), &content[offset..end]);
        }
    }
}

#[test]
fn writes_through_an_unaligned_view_land_at_its_offset() {
    let g = allocation_granularity();
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, vec![0; 2 * g]).unwrap();
    let mut m = MapOptions::new()
        .file(&path)
        .offset(g as u64 + 3)
        .len(4)
        .open()
        .unwrap();
    m.write(b"WXYZ").unwrap();
    m.flush(0, 0).unwrap();
    m.close().unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(&data[g + 3..g + 7], b"WXYZ");
    assert_eq!(data.iter().filter(|&&b| b == 0).count(), 2 * g - 4);
}

#[test]
fn windows_outside_the_mapping_are_refused() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"0123456789").unwrap();
    for (max, offset, len) in [
        (0, 10, 0),
        (0, 0, 11),
        (0, 5, 6),
        (5, 5, 0),
        (0, u64::MAX, 0),
        (0, 1, u64::MAX),
    ] {
        let err = MapOptions::new()
            .file(&path)
            .maximum_size(max)
            .offset(offset)
            .len(len)
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
}

// --- read, readline, write ------------------------------------------------------------

#[test]
fn read_is_clipped_and_negative_reads_the_rest() {
    let mut m = sample();
    assert_eq!(m.read(5).unwrap(), b"hello");
    assert_eq!(m.tell().unwrap(), 5);
    assert_eq!(m.read(-1).unwrap(), b"\nworld\n\0\0\0\0");
    assert_eq!(m.read(10).unwrap(), b"");
    m.seek(12, 0).unwrap();
    assert_eq!(m.read(i64::MAX).unwrap(), b"\0\0\0\0");
    m.seek(14, 0).unwrap();
    assert_eq!(m.read(i64::MIN).unwrap(), b"\0\0");
}

#[test]
fn read_into_and_read_at_check_bounds() {
    let mut m = sample();
    let mut buf = [0u8; 5];
    m.read_into(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    m.seek(14, 0).unwrap();
    let mut big = [0u8; 3];
    assert!(is_out_of_range(
        &m.read_into(&mut big).unwrap_err(),
        "read out of range"
    ));
    assert_eq!(m.tell().unwrap(), 14);
    m.read_at(6, &mut buf).unwrap();
    assert_eq!(&buf, b"world");
    assert!(m.read_at(12, &mut buf).is_err());
    assert!(m.read_at(usize::MAX, &mut [0u8; 2]).is_err());
}

#[test]
fn read_byte_stops_at_the_end() {
    let mut m = anon(2);
    m.write(b"ab").unwrap();
    m.seek(0, 0).unwrap();
    assert_eq!(m.read_byte().unwrap(), b'a');
    assert_eq!(m.read_byte().unwrap(), b'b');
    let err = m.read_byte().unwrap_err();
    assert!(is_out_of_range(&err, "read byte out of range"), "{err:?}");
    assert_eq!(err.to_string(), "read byte out of range");
}

#[test]
fn readline_returns_lines_then_the_rest_then_nothing() {
    let mut m = sample();
    assert_eq!(m.readline().unwrap(), b"hello\n");
    assert_eq!(m.readline().unwrap(), b"world\n");
    assert_eq!(m.readline().unwrap(), b"\0\0\0\0");
    assert_eq!(m.readline().unwrap(), b"");
    assert_eq!(m.tell().unwrap(), 16);
}

/// `readline_with` into a `Vec` of `MaybeUninit`, storage a caller
/// allocates once it knows the line's length.
fn readline_via_alloc(m: &mut MapFile) -> Result<Vec<u8>, Error> {
    let buf = m.readline_with(
        |n| Ok::<_, Error>(vec![std::mem::MaybeUninit::<u8>::uninit(); n]),
        |v| v.as_mut_slice(),
    )?;
    // SAFETY: `readline_with` initialised all `n` bytes it asked for.
    Ok(buf
        .into_iter()
        .map(|b| unsafe { b.assume_init() })
        .collect())
}

#[test]
fn readline_with_matches_readline_and_advances() {
    let mut m = sample();
    assert_eq!(readline_via_alloc(&mut m).unwrap(), b"hello\n");
    m.seek(3, 1).unwrap();
    assert_eq!(readline_via_alloc(&mut m).unwrap(), b"ld\n");
    assert_eq!(readline_via_alloc(&mut m).unwrap(), b"\0\0\0\0");
    assert_eq!(readline_via_alloc(&mut m).unwrap(), b"");
    assert_eq!(m.tell().unwrap(), 16);
}

#[test]
fn readline_with_whose_alloc_fails_leaves_the_position() {
    let mut m = sample();
    m.seek(2, 0).unwrap();
    let asked = std::cell::Cell::new(None);
    let err = m
        .readline_with(
            |n| {
                asked.set(Some(n));
                Err::<Vec<std::mem::MaybeUninit<u8>>, _>(Error::Closed)
            },
            |v| v.as_mut_slice(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
    assert_eq!(asked.get(), Some(4));
    assert_eq!(m.tell().unwrap(), 2);
    m.close().unwrap();
    let err = readline_via_alloc(&mut m).unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

#[test]
fn write_is_all_or_nothing() {
    let mut m = sample();
    m.seek(12, 0).unwrap();
    let err = m.write(b"12345").unwrap_err();
    assert!(is_out_of_range(&err, "data out of range"), "{err:?}");
    assert_eq!(m.tell().unwrap(), 12);
    assert_eq!(m.read(-1).unwrap(), b"\0\0\0\0");
    m.seek(12, 0).unwrap();
    m.write(b"1234").unwrap();
    assert_eq!(m.tell().unwrap(), 16);
    m.write(b"").unwrap();
}

#[test]
fn write_byte_stops_at_the_end() {
    let mut m = anon(1);
    m.write_byte(b'x').unwrap();
    let err = m.write_byte(b'y').unwrap_err();
    assert!(
        is_out_of_range(&err, "write_byte past end of buffer"),
        "{err:?}"
    );
    m.seek(0, 0).unwrap();
    assert_eq!(m.read(-1).unwrap(), b"x");
}

#[test]
fn write_at_does_not_move_the_position() {
    let mut m = sample();
    m.write_at(6, b"WORLD").unwrap();
    assert_eq!(m.tell().unwrap(), 0);
    assert!(m.write_at(15, b"ab").is_err());
    assert!(m.write_at(usize::MAX, b"a").is_err());
    m.seek(6, 0).unwrap();
    assert_eq!(m.read(5).unwrap(), b"WORLD");
}

// --- seek -----------------------------------------------------------------------------

#[test]
fn seek_semantics() {
    let mut m = anon(10);
    assert_eq!(m.seek(4, 0).unwrap(), 4);
    assert_eq!(m.seek(-3, 1).unwrap(), 1);
    assert_eq!(m.seek(2, 1).unwrap(), 3);
    // pywin32: a positive distance from the end moves back.
    assert_eq!(m.seek(4, 2).unwrap(), 6);
    // Our fix: a negative one too, as in CPython.
    assert_eq!(m.seek(-4, 2).unwrap(), 6);
    assert_eq!(m.seek(0, 2).unwrap(), 10);
    assert_eq!(m.seek(10, 0).unwrap(), 10);
    assert_eq!(m.seek(-10, 2).unwrap(), 0);
}

#[test]
fn seek_errors_keep_the_position() {
    let mut m = anon(10);
    m.seek(5, 0).unwrap();
    for (dist, how) in [
        (-1, 0),
        (11, 0),
        (11, 2),
        (-11, 2),
        (-6, 1),
        (6, 1),
        (i64::MAX, 0),
        (i64::MIN, 0),
        (i64::MAX, 1),
        (i64::MIN, 1),
        (i64::MAX, 2),
        (i64::MIN, 2),
    ] {
        let err = m.seek(dist, how).unwrap_err();
        assert!(
            is_out_of_range(&err, "seek out of range"),
            "{dist} {how}: {err:?}"
        );
        assert_eq!(m.tell().unwrap(), 5);
    }
    for how in [3, -1, i32::MAX, i32::MIN] {
        let err = m.seek(0, how).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(s) if s == "unknown seek type"),
            "{err:?}"
        );
    }
}

// --- find, rfind ----------------------------------------------------------------------

#[test]
fn find_and_rfind_honour_start_end_and_the_position() {
    let mut m = anon(15);
    m.write(b"abc\0abc\0\0xyzabc").unwrap();
    m.seek(0, 0).unwrap();
    assert_eq!(m.find(b"abc", None, None).unwrap(), Some(0));
    assert_eq!(m.find(b"abc", Some(1), None).unwrap(), Some(4));
    assert_eq!(m.find(b"abc", Some(0), Some(2)).unwrap(), None);
    assert_eq!(m.find(b"abc", Some(-3), None).unwrap(), Some(12));
    assert_eq!(m.find(b"abc", Some(-100), Some(-12)).unwrap(), Some(0));
    assert_eq!(m.find(b"\0\0", None, None).unwrap(), Some(7));
    assert_eq!(m.find(b"", Some(5), None).unwrap(), Some(5));
    // A start past the end finds nothing, as bytes.find and CPython 3.15.
    assert_eq!(m.find(b"", Some(15), None).unwrap(), Some(15));
    assert_eq!(m.find(b"", Some(16), None).unwrap(), None);
    assert_eq!(m.find(b"", Some(100), None).unwrap(), None);
    assert_eq!(m.rfind(b"", Some(16), Some(17)).unwrap(), None);
    assert_eq!(m.find(b"", Some(i64::MAX), None).unwrap(), None);
    assert_eq!(m.find(b"", Some(5), Some(2)).unwrap(), None);
    assert_eq!(m.find(b"zzz", None, None).unwrap(), None);
    assert_eq!(m.find(b"x", Some(i64::MAX), Some(i64::MIN)).unwrap(), None);
    assert_eq!(m.rfind(b"abc", None, None).unwrap(), Some(12));
    assert_eq!(m.rfind(b"abc", None, Some(-1)).unwrap(), Some(4));
    assert_eq!(m.rfind(b"", None, Some(9)).unwrap(), Some(9));
    m.seek(5, 0).unwrap();
    assert_eq!(m.find(b"abc", None, None).unwrap(), Some(12));
    assert_eq!(m.rfind(b"abc", None, Some(11)).unwrap(), None);
    assert_eq!(m.tell().unwrap(), 5);
}

// --- move, flush, resize ----------------------------------------------------------------

#[test]
fn move_within_copies_like_memmove_and_checks_bounds() {
    let mut m = sample();
    m.move_within(1, 0, 5).unwrap();
    assert_eq!(m.read(6).unwrap(), b"hhello");
    m.move_within(0, 1, 5).unwrap();
    m.seek(0, 0).unwrap();
    // The newline at 5 was overwritten by the first move.
    assert_eq!(m.read(6).unwrap(), b"helloo");
    m.move_within(16, 0, 0).unwrap();
    for (dest, src, count) in [
        (12, 0, 5),
        (0, 12, 5),
        (17, 0, 0),
        (1, 1, -1),
        (-1, 0, 1),
        (0, -1, 1),
        (i64::MAX, 0, 1),
        (0, 0, i64::MAX),
    ] {
        let err = m.move_within(dest, src, count).unwrap_err();
        assert!(
            is_out_of_range(&err, "source or destination out of range"),
            "{dest} {src} {count}: {err:?}"
        );
    }
}

#[test]
fn flush_checks_its_range() {
    let m = sample();
    for (offset, size) in [(0, 0), (16, 0), (4, 8), (0, 16)] {
        m.flush(offset, size).unwrap();
    }
    for (offset, size) in [(17, 0), (0, 17), (10, 7), (-1, 10), (0, -1), (i64::MAX, 1)] {
        let err = m.flush(offset, size).unwrap_err();
        assert!(
            is_out_of_range(&err, "flush values out of range"),
            "{offset} {size}: {err:?}"
        );
    }
}

#[test]
fn resize_grows_the_file_and_keeps_data_and_position() {
    let g = allocation_granularity() as u64;
    let dir = Scratch::new();
    let path = dir.path("f");
    let mut m = MapOptions::new()
        .file(&path)
        .maximum_size(10)
        .open()
        .unwrap();
    m.write(b"0123456789").unwrap();
    m.seek(4, 0).unwrap();
    m.resize(3 * g, 0, 0).unwrap();
    assert_eq!(m.len().unwrap() as u64, 3 * g);
    assert_eq!(m.tell().unwrap(), 4);
    assert_eq!(m.read(6).unwrap(), b"456789");
    m.resize(0, g + 2, 3).unwrap();
    assert_eq!(m.len().unwrap(), 3);
    assert_eq!(m.tell().unwrap(), 3);
    m.close().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * g);
}

#[test]
fn failed_resize_keeps_the_old_view_and_the_file() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new().file(&path).open().unwrap();
    let err = m.resize(100, 200, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(m.read(-1).unwrap(), b"abc");
    assert_eq!(std::fs::read(&path).unwrap(), b"abc");
}

// --- close, exports ----------------------------------------------------------------------

#[test]
fn every_operation_after_close_reports_closed() {
    let mut m = sample();
    m.close().unwrap();
    m.close().unwrap();
    assert!(m.is_closed());
    let closed = |r: Result<(), Error>| assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    closed(m.read(1).map(drop));
    closed(m.read_byte().map(drop));
    closed(m.readline().map(drop));
    closed(m.write(b"x"));
    closed(m.write_byte(b'x'));
    closed(m.seek(0, 0).map(drop));
    closed(m.tell().map(drop));
    closed(m.len().map(drop));
    closed(m.find(b"x", None, None).map(drop));
    closed(m.rfind(b"x", None, None).map(drop));
    closed(m.move_within(0, 1, 1));
    closed(m.flush(0, 0));
    closed(m.resize(32, 0, 0));
    closed(m.read_at(0, &mut [0u8; 1]));
    closed(m.write_at(0, b"x"));
    closed(m.export().map(drop));
    assert_eq!(Error::Closed.to_string(), "mmapfile closed or invalid");
}

#[test]
fn exports_block_close_and_resize_until_released() {
    let mut m = sample();
    let (ptr, len) = m.export().unwrap();
    assert!(!ptr.is_null());
    assert_eq!(len, 16);
    assert!(matches!(m.close(), Err(Error::Exported(_))));
    assert!(matches!(m.resize(32, 0, 0), Err(Error::Exported(_))));
    assert_eq!(m.read(5).unwrap(), b"hello");
    m.release_export();
    m.resize(32, 0, 0).unwrap();
    m.close().unwrap();
}

// --- access modes ------------------------------------------------------------------------

#[test]
fn read_only_access_refuses_writes_and_growth() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new()
        .file(&path)
        .access(Access::Read)
        .open()
        .unwrap();
    assert_eq!(m.read(-1).unwrap(), b"abc");
    assert!(matches!(m.write_at(0, b"x"), Err(Error::ReadOnly)));
    assert!(matches!(m.write_byte(b'x'), Err(Error::ReadOnly)));
    assert!(matches!(m.move_within(0, 1, 1), Err(Error::ReadOnly)));
    assert!(m.resize(100, 0, 0).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    let missing = MapOptions::new()
        .file(dir.path("missing"))
        .access(Access::Read)
        .maximum_size(10)
        .open();
    assert!(matches!(missing, Err(Error::Io { op, .. }) if op == common::OPEN_FILE_OP));
    assert!(!dir.path("missing").exists());
}

#[test]
fn copy_access_keeps_writes_out_of_the_file() {
    let dir = Scratch::new();
    let path = dir.path("f");
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new()
        .file(&path)
        .access(Access::Copy)
        .open()
        .unwrap();
    m.write(b"XY").unwrap();
    m.flush(0, 0).unwrap();
    m.seek(0, 0).unwrap();
    assert_eq!(m.read(-1).unwrap(), b"XYc");
    m.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"abc");
}

#[test]
fn failed_open_leaves_no_created_file_behind() {
    let dir = Scratch::new();
    let cases: [(u64, u64, u64); 4] = [(0, 0, 0), (10, 10, 0), (10, 0, 11), (10, u64::MAX, 0)];
    for (max, offset, len) in cases {
        let path = dir.path("new");
        assert!(MapOptions::new()
            .file(&path)
            .maximum_size(max)
            .offset(offset)
            .len(len)
            .open()
            .is_err());
        assert!(!path.exists(), "{max} {offset} {len}");
    }
    assert!(
        dir.entries().is_empty(),
        "{:?} in {:?}",
        dir.entries(),
        dir.dir()
    );
}

#[test]
fn failed_open_leaves_no_created_block_behind() {
    let block = Block::new();
    let err = MapOptions::new()
        .name(block.name())
        .maximum_size(10)
        .offset(20)
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    if cfg!(target_os = "linux") {
        assert!(!block.shm_path().exists());
    }
    // The name is free again: this open creates the block afresh.
    let m = MapOptions::new()
        .name(block.name())
        .maximum_size(10)
        .open()
        .unwrap();
    assert!(m.created());
}
