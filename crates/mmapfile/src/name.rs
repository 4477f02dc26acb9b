//! Names of shared blocks: Windows namespace prefixes and validation.

use crate::error::{Error, Result};

/// The longest name, in UTF-16 code units with its prefix, as on Windows
/// (`MAX_PATH`, the documented limit of kernel object names). Every OS
/// takes names up to this length: where its own limit on shared-memory
/// names is shorter, the OS backend derives a shorter object name from the
/// full one (`os/unix/names.rs`).
pub const MAX_NAME: usize = 260;

/// A validated block name: the part after an optional `Local\` or `Global\`
/// prefix, which is what identifies the block on POSIX systems.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockName {
    full: String,
    base_start: usize,
}

impl BlockName {
    /// Validates `name`.
    ///
    /// `Local\` and `Global\` prefixes (matched case-insensitively, as on
    /// Windows) are accepted; on POSIX both mean "this machine", so
    /// `Local\x`, `Global\x` and `x` all name one block. The remaining part
    /// must be non-empty and must not contain `/` or NUL; the whole name may
    /// be up to [`MAX_NAME`] UTF-16 code units long, on every OS.
    pub fn new(name: &str) -> Result<Self> {
        let base_start = ["local\\", "global\\"]
            .iter()
            .find(|p| {
                name.len() >= p.len()
                    && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
            .map_or(0, |p| p.len());
        let base = &name[base_start..];
        if base.is_empty() {
            return Err(Error::InvalidName(format!(
                "{name:?} is empty after its namespace prefix"
            )));
        }
        if base.contains('\0') {
            return Err(Error::InvalidName(format!(
                "{name:?} contains a NUL character"
            )));
        }
        if base.contains('/') {
            return Err(Error::InvalidName(format!("{name:?} contains '/'")));
        }
        let units = name.encode_utf16().count();
        if units > MAX_NAME {
            return Err(Error::InvalidName(format!(
                "name is {units} characters long (UTF-16 code units, prefix included); \
                 names may be at most {MAX_NAME}, as on Windows"
            )));
        }
        Ok(BlockName {
            full: name.to_owned(),
            base_start,
        })
    }

    /// The name as given, prefix included.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The name without its namespace prefix.
    pub fn base(&self) -> &str {
        &self.full[self.base_start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_case_insensitively() {
        assert_eq!(BlockName::new("Local\\abc").unwrap().base(), "abc");
        assert_eq!(BlockName::new("global\\abc").unwrap().base(), "abc");
        assert_eq!(BlockName::new("abc").unwrap().base(), "abc");
        assert_eq!(BlockName::new("Local\\abc").unwrap().as_str(), "Local\\abc");
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in ["", "Local\\", "a/b", "a\0b"] {
            let err = BlockName::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName(_)), "{bad:?}: {err}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        assert!(BlockName::new(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(BlockName::new(&"x".repeat(MAX_NAME)).is_ok());
        // Counted as Windows counts: the prefix is part of the name, and a
        // character outside the BMP takes two code units.
        assert!(BlockName::new(&format!("Local\\{}", "x".repeat(MAX_NAME - 6))).is_ok());
        assert!(BlockName::new(&format!("Local\\{}", "x".repeat(MAX_NAME - 5))).is_err());
        assert!(BlockName::new(&"\u{1F600}".repeat(MAX_NAME / 2)).is_ok());
        assert!(BlockName::new(&"\u{1F600}".repeat(MAX_NAME / 2 + 1)).is_err());
    }

    #[test]
    fn non_ascii_names_are_accepted() {
        assert_eq!(
            BlockName::new("Local\\kamera-ß-日本").unwrap().base(),
            "kamera-ß-日本"
        );
    }
}
