//! The portable backend's record files: what the record file of a name
//! says (see `lifetime_portable.rs` for who writes and reads them when),
//! and its format.
//!
//! A record file holds, one field a line: the format's first line, the
//! full name (in hex: it may hold any character), the permission bits, and
//! what the name leads to: a block's shared-memory object and its exact
//! size, or a named file mapping's record (`file_record.rs`).
//!
//! ```text
//! mmapfile name 1
//! name 6d7964617461
//! mode 600
//! block /mmapfile=0123456789abcdef01234
//! size 8388608
//! ```

use std::io;
use std::os::fd::OwnedFd;

use super::file_record::{read_small, FileRecord};
use super::names::{OBJECT_DIGITS, OBJECT_PREFIX};
use crate::error::{Error, Result};

/// First line of every record (with its format version).
const HEADER: &str = "mmapfile name 1";

/// What the record file of a name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameRecord {
    /// The full name (after its namespace prefix).
    pub(crate) name: String,
    /// The block's or mapping's permission bits, as given (the record
    /// file's own let nobody but its owner write it).
    pub(crate) mode: u32,
    pub(crate) what: Stored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A block: the object holding its bytes, and its exact size (macOS
    /// reports an object's size rounded up to whole pages).
    Block { object: String, size: u64 },
    /// A named file mapping.
    File(FileRecord),
}

impl NameRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let name: String = self.name.bytes().map(|b| format!("{b:02x}")).collect();
        let mut out = format!("{HEADER}\nname {name}\nmode {:o}\n", self.mode).into_bytes();
        match &self.what {
            Stored::Block { object, size } => {
                out.extend_from_slice(format!("block {object}\nsize {size}\n").as_bytes())
            }
            Stored::File(record) => out.extend_from_slice(&record.encode()),
        }
        out
    }

    /// Reads a record that any process may have written: anything but a
    /// record exactly as [`NameRecord::encode`] writes it is refused.
    pub(super) fn decode(bytes: &[u8]) -> Result<NameRecord> {
        let bad = || {
            Error::io(
                "read",
                io::Error::new(io::ErrorKind::InvalidData, "a name's record is damaged"),
            )
        };
        let mut parts = bytes.splitn(4, |&b| b == b'\n');
        if parts.next() != Some(HEADER.as_bytes()) {
            return Err(bad());
        }
        let hex = parts
            .next()
            .and_then(|l| l.strip_prefix(b"name "))
            .filter(|h| h.len() % 2 == 0)
            .ok_or_else(bad)?;
        let name = hex
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mode = parts
            .next()
            .and_then(|l| l.strip_prefix(b"mode "))
            .and_then(|m| std::str::from_utf8(m).ok())
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .filter(|&m| m <= 0o777)
            .ok_or_else(bad)?;
        let rest = parts.next().ok_or_else(bad)?;
        let what = if let Some(block) = rest.strip_prefix(b"block ") {
            let text = std::str::from_utf8(block).map_err(|_| bad())?;
            let mut lines = text.split('\n');
            let object = lines.next().ok_or_else(bad)?.to_owned();
            let size = lines
                .next()
                .and_then(|l| l.strip_prefix("size "))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&size| size > 0)
                .ok_or_else(bad)?;
            // The object's name is used in paths (its lock file) and
            // removed with the block: only a name this backend makes.
            if !is_object_name(&object) || lines.next() != Some("") {
                return Err(bad());
            }
            Stored::Block { object, size }
        } else {
            Stored::File(FileRecord::decode(rest)?)
        };
        let record = NameRecord { name, mode, what };
        // Only what `encode` writes: no second spelling of a record (upper
        // case hex, leading zeros, a `+`) passes.
        if record.encode() != bytes {
            return Err(bad());
        }
        Ok(record)
    }

    /// Reads the record file open as `fd`.
    pub(super) fn read(fd: &OwnedFd) -> Result<NameRecord> {
        NameRecord::decode(&read_small(fd)?)
    }
}

/// Whether `object` is a name this backend gives a block's object:
/// [`OBJECT_PREFIX`] and [`OBJECT_DIGITS`] lower-case hex digits.
pub(super) fn is_object_name(object: &str) -> bool {
    object.strip_prefix(OBJECT_PREFIX).is_some_and(|suffix| {
        suffix.len() == OBJECT_DIGITS
            && suffix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::sys::open_path;
    use super::*;

    fn block(name: &str, mode: u32, suffix: &str, size: u64) -> NameRecord {
        NameRecord {
            name: name.to_owned(),
            mode,
            what: Stored::Block {
                object: format!("{OBJECT_PREFIX}{suffix}"),
                size,
            },
        }
    }

    #[test]
    fn records_read_back_what_was_written() {
        let block = block("odd\nname ß 日本", 0o640, "0123456789abcdef01234", 12345);
        assert_eq!(NameRecord::decode(&block.encode()).unwrap(), block);
        let file = NameRecord {
            name: "x".repeat(700),
            mode: 0o600,
            what: Stored::File(FileRecord {
                size: 7,
                identity: super::super::file_record::Identity::of(
                    &open_path(&c"/".to_owned(), libc::O_RDONLY, 0).unwrap(),
                )
                .unwrap(),
                path: PathBuf::from("/tmp/a\nb"),
            }),
        };
        assert_eq!(NameRecord::decode(&file.encode()).unwrap(), file);
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = block("n", 0o600, "0", 1).encode();
        for cut in 0..good.len() {
            assert!(NameRecord::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }
}
