//! Names of shared blocks: Windows namespace prefixes and validation.

use crate::error::{Error, Result};
use crate::os;

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
    /// must be non-empty, must not contain `/` or NUL, and must fit the OS's
    /// limit on shared-memory names.
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
        if base.len() > os::NAME_MAX {
            return Err(Error::InvalidName(format!(
                "name is {} bytes long; this OS allows at most {} (after any Local\\ or Global\\ prefix)",
                base.len(),
                os::NAME_MAX
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
        let long = "x".repeat(os::NAME_MAX + 1);
        assert!(BlockName::new(&long)
            .unwrap_err()
            .to_string()
            .contains("at most"));
        assert!(BlockName::new(&"x".repeat(os::NAME_MAX)).is_ok());
    }

    #[test]
    fn non_ascii_names_are_accepted() {
        assert_eq!(
            BlockName::new("Local\\kamera-ß-日本").unwrap().base(),
            "kamera-ß-日本"
        );
    }
}
