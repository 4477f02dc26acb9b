//! Property tests of every parser of bytes that another process (possibly
//! another user's) wrote, and of the naming rules those bytes are found by
//! (`docs/security.md`, "Parsers"): a file mapping's record, the portable
//! backend's record files, Linux's name labels, and the names and digests
//! of `names.rs`.
//!
//! Two properties for each parser, on arbitrary bytes and on valid records
//! with bytes flipped, inserted, removed or cut:
//!
//! - it never panics;
//! - what it accepts is exactly what the writer writes: decoding and
//!   encoding again gives the very same bytes, so no malformed, truncated
//!   or second spelling of a record is ever taken for a record.
//!
//! The number of cases is fixed (so `make test` spends a bounded time here:
//! about a second in a debug build); `PROPTEST_CASES` raises it for a longer
//! search.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use proptest::prelude::*;

use super::file_record::{FileRecord, Identity};

/// Cases per property: a few thousand, unless `PROPTEST_CASES` says more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An edit of a valid record.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Cut(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (
            any::<usize>(),
            prop_oneof![Just(b'\n'), Just(b' '), Just(b'0'), Just(b'+'), any::<u8>()]
        )
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Cut),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Flip(at, b) if len > 0 => bytes[at % len] = b,
            Edit::Insert(at, b) => bytes.insert(at % (len + 1), b),
            Edit::Remove(at) if len > 0 => drop(bytes.remove(at % len)),
            Edit::Cut(at) => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// Numbers that fill a field's width, and the odd ones.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(u64::MAX), 0u64..100_000, any::<u64>()]
}

fn identity() -> impl Strategy<Value = Identity> {
    let born = prop_oneof![
        Just(None),
        (any::<i64>(), 0u32..1_000_000_000).prop_map(Some),
    ];
    (number(), number(), born).prop_map(|(dev, ino, born)| Identity::from_parts(dev, ino, born))
}

fn file_record() -> impl Strategy<Value = FileRecord> {
    let path = prop::collection::vec(any::<u8>(), 0..64).prop_map(|mut tail| {
        // Absolute, as `FileRecord::new` makes it; any byte after the slash
        // (a newline too) is a path byte.
        tail.retain(|&b| b != 0);
        let mut path = b"/".to_vec();
        path.extend(tail);
        PathBuf::from(OsStr::from_bytes(&path))
    });
    (number(), identity(), path).prop_map(|(size, identity, path)| FileRecord {
        size,
        identity,
        path,
    })
}

/// The check of every decoder here: no panic (the caller ran it), and
/// whatever was accepted is what its encoder writes.
fn accepted_only_if_canonical<T>(input: &[u8], decoded: Option<T>, encode: impl Fn(&T) -> Vec<u8>) {
    if let Some(value) = decoded {
        assert_eq!(
            encode(&value),
            input,
            "accepted bytes that are not a record as written: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn file_records_read_back_exactly(record in file_record()) {
        prop_assert_eq!(FileRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn file_records_refuse_any_bytes_but_a_record(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let decoded = FileRecord::decode(&bytes).ok();
        accepted_only_if_canonical(&bytes, decoded, FileRecord::encode);
    }

    #[test]
    fn edited_file_records_are_refused_unless_still_a_record(
        record in file_record(),
        edits in edits(),
    ) {
        let bytes = apply(record.encode(), &edits);
        let decoded = FileRecord::decode(&bytes).ok();
        if let Some(decoded) = &decoded {
            prop_assert!(decoded.path.as_os_str().as_bytes().starts_with(b"/"));
        }
        accepted_only_if_canonical(&bytes, decoded, FileRecord::encode);
    }
}

/// The portable backend's record files (`name_record.rs`, `state_dir.rs`).
#[cfg(portable_lifetime)]
mod portable {
    use super::super::name_record::{is_object_name, NameRecord, Stored};
    use super::super::names::{fresh_object_suffix, OBJECT_DIGITS, OBJECT_PREFIX};
    use super::super::state_dir::state_dir_problem;
    use super::*;

    fn object() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(b"0123456789abcdef".to_vec()),
            OBJECT_DIGITS,
        )
        .prop_map(|digits| format!("{OBJECT_PREFIX}{}", String::from_utf8(digits).unwrap()))
    }

    fn record() -> impl Strategy<Value = NameRecord> {
        let what = prop_oneof![
            (object(), 1u64..=u64::MAX).prop_map(|(object, size)| Stored::Block { object, size }),
            file_record().prop_map(Stored::File),
        ];
        (any::<String>(), 0u32..=0o777, what).prop_map(|(name, mode, what)| NameRecord {
            name,
            mode,
            what,
        })
    }

    fn check_accepted(bytes: &[u8]) {
        let decoded = NameRecord::decode(bytes).ok();
        if let Some(record) = &decoded {
            assert!(record.mode <= 0o777);
            if let Stored::Block { object, size } = &record.what {
                assert!(is_object_name(object), "{object:?}");
                assert!(*size > 0);
            }
        }
        accepted_only_if_canonical(bytes, decoded, NameRecord::encode);
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn records_read_back_exactly(record in record()) {
            prop_assert_eq!(NameRecord::decode(&record.encode()).unwrap(), record);
        }

        #[test]
        fn records_refuse_any_bytes_but_a_record(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            check_accepted(&bytes);
            // Behind a valid header too, where the fields are read.
            let mut headed = b"mmapfile name 1\nname 6e\nmode 600\n".to_vec();
            headed.extend_from_slice(&bytes);
            check_accepted(&headed);
        }

        #[test]
        fn edited_records_are_refused_unless_still_a_record(
            record in record(),
            edits in edits(),
        ) {
            check_accepted(&apply(record.encode(), &edits));
        }

        #[test]
        fn only_object_names_this_backend_makes_are_accepted(object in "\\PC{0,40}") {
            let made = object.strip_prefix(OBJECT_PREFIX).is_some_and(|s| {
                s.len() == OBJECT_DIGITS && s.bytes().all(|b| b"0123456789abcdef".contains(&b))
            });
            prop_assert_eq!(is_object_name(&object), made);
        }
    }

    #[test]
    fn a_record_cannot_lead_outside_the_objects_of_this_backend() {
        let fresh = format!("{OBJECT_PREFIX}{}", fresh_object_suffix().unwrap());
        assert!(is_object_name(&fresh));
        for forged in [
            "/mmapfile=/../../../../etc/passwd",
            "/mmapfile=0123456789abcdef01234/..",
            "/mmapfile=0123456789ABCDEF01234",
            "/mmapfile=0123456789abcdef0123",
            "/mmapfile.camera",
        ] {
            assert!(!is_object_name(forged), "{forged}");
        }
    }

    #[test]
    // mode_t is u16 on macOS and u32 on Linux.
    #[allow(clippy::unnecessary_cast)]
    fn state_directories_others_could_change_are_refused() {
        const DIR: u32 = libc::S_IFDIR as u32;
        const LINK: u32 = libc::S_IFLNK as u32;
        const STICKY: u32 = libc::S_ISVTX as u32;
        let (me, other) = (1000, 1001);
        // Trusted: root's or ours, not writable by others unless sticky.
        for (mode, owner) in [
            (DIR | STICKY | 0o777, 0),
            (DIR | STICKY | 0o777, me),
            (DIR | 0o755, 0),
            (DIR | 0o700, me),
        ] {
            assert_eq!(state_dir_problem(mode, owner, me), None, "{mode:o} {owner}");
        }
        // Another user's, even sticky (the attack); writable by
        // others and not sticky; not a directory.
        for (mode, owner) in [
            (DIR | STICKY | 0o777, other),
            (DIR | 0o700, other),
            (DIR | 0o777, 0),
            (DIR | 0o775, me),
            (LINK | 0o777, me),
            (LINK | 0o777, 0),
        ] {
            assert!(
                state_dir_problem(mode, owner, me).is_some(),
                "{mode:o} {owner}"
            );
        }
    }
}

/// Linux's names and labels (`names.rs`, `lifetime_linux.rs`).
#[cfg(not(portable_lifetime))]
mod linux {
    use super::super::lifetime::labelled_for_another;
    use super::super::names::{is_digested, shm_name, DIGEST_MARK, SHM_PREFIX};
    use super::*;

    /// Names as `BlockName` takes them: no `/`, no NUL, up to 780 bytes.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9=._ -]{0,20}",
            "[^/\u{0}]{0,300}",
            (1usize..=260).prop_map(|n| "n".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn labels_name_their_block_or_another(
            base in name(),
            label in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        ) {
            let another = labelled_for_another(label.as_deref(), &base);
            prop_assert_eq!(another, label.as_deref().is_some_and(|l| l != base.as_bytes()));
            prop_assert!(!labelled_for_another(Some(base.as_bytes()), &base));
        }

        #[test]
        fn object_names_are_file_names_and_differ_for_different_names(a in name(), b in name()) {
            for n in [&a, &b] {
                let shm = shm_name(n);
                let file = &shm[1..];
                prop_assert!(file.len() <= 255, "{} bytes", file.len());
                prop_assert!(!file.contains('/') && !file.contains('\0'));
                prop_assert_eq!(is_digested(n), file[SHM_PREFIX.len() - 1..].starts_with(DIGEST_MARK));
            }
            if a != b {
                prop_assert_ne!(shm_name(&a), shm_name(&b));
            }
        }

        #[test]
        fn no_name_passes_for_another_names_digest(a in name()) {
            let long = format!("{a}{}", "x".repeat(300));
            let forged = shm_name(&long)[SHM_PREFIX.len()..].to_owned();
            prop_assert!(forged.starts_with(DIGEST_MARK));
            prop_assert_ne!(shm_name(&forged), shm_name(&long));
        }
    }
}

/// The portable backend's record file names (`names.rs`).
#[cfg(portable_lifetime)]
mod portable_names {
    use super::super::names::record_file_name;
    use super::*;

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9=._ -]{0,20}",
            "[^/\u{0}]{0,300}",
            (1usize..=260).prop_map(|n| "n".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn record_files_survive_case_folding_and_differ_for_different_names(
            a in name(),
            b in name(),
        ) {
            for n in [&a, &b] {
                let file = record_file_name(n);
                // Lower-case ASCII only: a file system that folds case or
                // normalises Unicode keeps it as it is.
                prop_assert!(file.bytes().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || b"_-.=".contains(&c)), "{file:?}");
                prop_assert!(!file.is_empty() && !file.starts_with('.') && file.len() <= 200);
            }
            if a != b {
                prop_assert_ne!(record_file_name(&a), record_file_name(&b));
            }
        }
    }
}
