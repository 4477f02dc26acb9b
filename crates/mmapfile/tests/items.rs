//! Item and slice access, `read_into_raw` and `madvise`.

mod common;

use common::Scratch;
use mmapfile::{Access, Error, MapFile, MapOptions};

fn filled(len: usize) -> MapFile {
    let mut m = MapOptions::new().maximum_size(len as u64).open().unwrap();
    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
    m.write_at(0, &data).unwrap();
    m
}

#[test]
fn byte_at_counts_negative_indices_from_the_end() {
    let m = filled(100);
    assert_eq!(m.byte_at(0).unwrap(), 0);
    assert_eq!(m.byte_at(99).unwrap(), 99);
    assert_eq!(m.byte_at(-1).unwrap(), 99);
    assert_eq!(m.byte_at(-100).unwrap(), 0);
    for bad in [100, -101, i64::MAX, i64::MIN] {
        assert!(matches!(m.byte_at(bad), Err(Error::Index(_))), "{bad}");
    }
}

#[test]
fn set_byte_at_writes_one_byte() {
    let mut m = filled(10);
    m.set_byte_at(-1, 0xAA).unwrap();
    assert_eq!(m.byte_at(9).unwrap(), 0xAA);
    assert!(matches!(m.set_byte_at(10, 1), Err(Error::Index(_))));
}

#[test]
fn set_byte_at_checked_reports_the_index_before_the_value() {
    let mut m = filled(10);
    let bad_value = || Err::<u8, Error>(Error::InvalidArgument("bad value".into()));
    assert!(matches!(
        m.set_byte_at_checked(10, bad_value()),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.set_byte_at_checked(0, bad_value()),
        Err(Error::InvalidArgument(_))
    ));
    m.set_byte_at_checked(0, Ok::<u8, Error>(7)).unwrap();
    assert_eq!(m.byte_at(0).unwrap(), 7);
    m.close().unwrap();
    assert!(matches!(
        m.set_byte_at_checked(10, bad_value()),
        Err(Error::Closed)
    ));
}

#[test]
fn resize_refuses_read_and_copy_maps_and_keeps_their_data() {
    let dir = Scratch::new();
    let path = dir.path("data");
    std::fs::write(&path, b"0123456789").unwrap();
    for access in [Access::Read, Access::Copy] {
        let mut m = MapOptions::new().file(&path).access(access).open().unwrap();
        if access == Access::Copy {
            m.write_at(0, b"ab").unwrap();
        }
        for size in [0, 10, 20] {
            assert!(
                matches!(m.resize(size, 0, 0), Err(Error::NotResizable)),
                "{access:?} {size}"
            );
        }
        let mut buf = [0u8; 10];
        m.read_at(0, &mut buf).unwrap();
        let expected: &[u8] = if access == Access::Copy {
            b"ab23456789"
        } else {
            b"0123456789"
        };
        assert_eq!(&buf, expected);
        assert_eq!(m.len().unwrap(), 10);
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
}

#[test]
fn read_slice_gathers_with_any_step() {
    let m = filled(20);
    let mut buf = [0u8; 5];
    m.read_slice(2, 1, &mut buf).unwrap();
    assert_eq!(buf, [2, 3, 4, 5, 6]);
    m.read_slice(1, 4, &mut buf).unwrap();
    assert_eq!(buf, [1, 5, 9, 13, 17]);
    m.read_slice(19, -3, &mut buf).unwrap();
    assert_eq!(buf, [19, 16, 13, 10, 7]);
}

#[test]
fn slices_reaching_outside_the_view_are_refused() {
    let mut m = filled(20);
    let mut buf = [0u8; 5];
    assert!(matches!(
        m.read_slice(16, 1, &mut buf),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.read_slice(3, -1, &mut buf),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.read_slice(0, isize::MAX, &mut buf),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.read_slice(20, 1, &mut buf[..1]),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.write_slice(0, 5, buf.len(), &buf),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        m.read_slice(0, 0, &mut buf),
        Err(Error::InvalidArgument(_))
    ));
    // Empty slices touch nothing and are fine anywhere.
    m.read_slice(usize::MAX, 7, &mut []).unwrap();
}

#[test]
fn write_slice_scatters_with_any_step() {
    let mut m = filled(10);
    m.write_slice(9, -2, 3, &[100, 101, 102]).unwrap();
    let mut buf = [0u8; 10];
    m.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0, 1, 2, 3, 4, 102, 6, 101, 8, 100]);
}

#[test]
fn read_only_maps_refuse_item_writes() {
    let path = std::env::temp_dir().join(format!("mmapfile-items-{}", std::process::id()));
    std::fs::write(&path, b"abc").unwrap();
    let mut m = MapOptions::new()
        .file(&path)
        .access(Access::Read)
        .open()
        .unwrap();
    assert!(matches!(m.set_byte_at(0, 1), Err(Error::ReadOnly)));
    assert!(matches!(m.write_slice(0, 1, 1, b"x"), Err(Error::ReadOnly)));
    assert_eq!(m.byte_at(1).unwrap(), b'b');
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn read_into_raw_copies_what_is_left_and_advances() {
    let mut m = filled(10);
    m.seek(7, 0).unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for 8 bytes.
    let n = unsafe { m.read_into_raw(buf.as_mut_ptr(), buf.len()) }.unwrap();
    assert_eq!(n, 3);
    assert_eq!(&buf[..3], &[7, 8, 9]);
    assert_eq!(m.tell().unwrap(), 10);
    // SAFETY: as above.
    let n = unsafe { m.read_into_raw(buf.as_mut_ptr(), buf.len()) }.unwrap();
    assert_eq!(n, 0);
}

#[test]
fn madvise_checks_its_arguments() {
    let m = filled(3 * mmapfile::page_size());
    if mmapfile::advice_values().is_empty() {
        // Windows: no madvise, and the call says so for any value.
        assert!(matches!(m.madvise(0, 0, 0), Err(Error::Unsupported(_))));
        return;
    }
    let (_, willneed) = *mmapfile::advice_values()
        .iter()
        .find(|(name, _)| *name == "MADV_WILLNEED")
        .unwrap();
    m.madvise(willneed, 0, 0).unwrap();
    // An unaligned start is fine: the advice covers whole pages.
    m.madvise(willneed, 10, 5).unwrap();
    // Past the end is cut at the end.
    m.madvise(willneed, 10, i64::MAX).unwrap();
    let len = m.len().unwrap() as i64;
    assert!(matches!(
        m.madvise(willneed, len, 1),
        Err(Error::OutOfRange(_))
    ));
    assert!(matches!(
        m.madvise(willneed, -1, 1),
        Err(Error::OutOfRange(_))
    ));
    assert!(matches!(
        m.madvise(willneed, 0, -1),
        Err(Error::OutOfRange(_))
    ));
    assert!(matches!(
        m.madvise(-12345, 0, 0),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "Windows has no madvise (see madvise_checks_its_arguments)"
)]
fn madvise_works_on_a_view_at_an_unaligned_offset() {
    let path = std::env::temp_dir().join(format!("mmapfile-madv-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 3 * mmapfile::page_size()]).unwrap();
    let m = MapOptions::new().file(&path).offset(100).open().unwrap();
    let (_, dontneed) = *mmapfile::advice_values()
        .iter()
        .find(|(name, _)| *name == "MADV_DONTNEED")
        .unwrap();
    m.madvise(dontneed, 0, 0).unwrap();
    // A shared file mapping reads its data back from the file.
    assert_eq!(m.byte_at(0).unwrap(), 7);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn slice_assignment_of_the_wrong_size_is_an_index_error_but_read_only_comes_first() {
    let mut m = MapOptions::new().maximum_size(16).open().unwrap();
    assert!(matches!(
        m.write_slice(0, 1, 4, b"abc"),
        Err(Error::Index(_))
    ));
    let dir = std::env::temp_dir().join(format!("mmapfile-items-ro-{}", std::process::id()));
    std::fs::write(&dir, b"0123456789").unwrap();
    let mut ro = MapOptions::new()
        .file(&dir)
        .access(Access::Read)
        .open()
        .unwrap();
    assert!(matches!(
        ro.write_slice(0, 1, 4, b"abc"),
        Err(Error::ReadOnly)
    ));
    ro.close().unwrap();
    std::fs::remove_file(&dir).unwrap();
}
