//! What a block's name becomes at the OS level.
//!
//! A name may be as long as on Windows ([`crate::name::MAX_NAME`] UTF-16
//! code units, up to 780 bytes of UTF-8), but the OS names of shared-memory
//! objects are shorter: a file name in `/dev/shm` (255 bytes) on Linux, 31
//! bytes with the leading slash on macOS. So:
//!
//! - On Linux a name that fits is used as it is (`/mmapfile.<name>`), and
//!   one that does not (or that starts with [`DIGEST_MARK`], so that no name
//!   can pass for another's digest) becomes `/mmapfile.=<SHA-256 in hex>`.
//!   The full name is kept in the object's `user.mmapfile.name` extended
//!   attribute where tmpfs has them (Linux 6.6 and later), for `ls` and to
//!   tell two names with one digest apart.
//! - The portable backend (macOS, the BSDs) keeps each name's record in a
//!   file of the state directory, named the same way ([`record_file_name`]),
//!   and the record says which object holds the bytes: a fresh random name
//!   for every block ([`fresh_object_name`]), which fits macOS's 31 bytes.

use sha2::{Digest, Sha256};

use super::sys::errno;
use crate::error::Error;
#[cfg(portable_lifetime)]
use crate::error::Result;

/// How named blocks live here (see [`crate::blocks::BACKEND`]).
#[cfg(not(portable_lifetime))]
pub(crate) const NAMED_BACKEND: &str = "linux";
#[cfg(all(portable_lifetime, not(simulated)))]
pub(crate) const NAMED_BACKEND: &str = "portable";
#[cfg(simulated)]
pub(crate) const NAMED_BACKEND: &str = "portable-simulated";

/// Where Linux C libraries keep POSIX shared-memory objects.
#[cfg_attr(portable_lifetime, allow(dead_code))]
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The error for a name that is taken (`create=True` on an existing name).
pub(crate) fn name_taken() -> Error {
    errno("shm_open", libc::EEXIST)
}

#[cfg(not(portable_lifetime))]
/// Prefix of the shared-memory names of Linux blocks, so that they can be
/// told apart from other programs' in `/dev/shm`.
pub(crate) const SHM_PREFIX: &str = "/mmapfile.";

/// Starts a name made from a digest.
pub(crate) const DIGEST_MARK: char = '=';

#[cfg(not(portable_lifetime))]
/// The longest file name the file systems involved take (`NAME_MAX`).
const FILE_NAME_MAX: usize = 255;

/// SHA-256 of the name, in lower-case hex.
fn digest(base: &str) -> String {
    Sha256::digest(base.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(not(portable_lifetime))]
/// The POSIX shared-memory name of the Linux block `base`.
pub(crate) fn shm_name(base: &str) -> String {
    if is_digested(base) {
        format!("{SHM_PREFIX}{DIGEST_MARK}{}", digest(base))
    } else {
        format!("{SHM_PREFIX}{base}")
    }
}

#[cfg(not(portable_lifetime))]
/// Whether `shm_name(base)` is a digest (the name does not fit a file name
/// in `/dev/shm`, or could pass for a digest), so that the full name must
/// be kept elsewhere.
pub(crate) fn is_digested(base: &str) -> bool {
    SHM_PREFIX.len() - 1 + base.len() > FILE_NAME_MAX || base.starts_with(DIGEST_MARK)
}

/// The name of the record file of `base` in the portable backend's state
/// directory. Names made of lower-case letters, digits, `_`, `-` and `.`
/// (not first) are used as they are; every other name becomes its digest,
/// because file systems may fold case (APFS by default does) or
/// normalise Unicode, and two names must never share a file.
#[cfg(portable_lifetime)]
pub(crate) fn record_file_name(base: &str) -> String {
    let plain = !base.is_empty()
        && base.len() <= 200
        && !base.starts_with('.')
        && base
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if plain {
        base.to_owned()
    } else {
        format!("{DIGEST_MARK}{}", digest(base))
    }
}

/// Prefix of the objects that hold portable blocks' bytes. Unlike Linux's,
/// it ends without a dot, so Linux's `ls` never takes them for its own.
#[cfg(portable_lifetime)]
pub(crate) const OBJECT_PREFIX: &str = "/mmapfile=";

/// Hex digits after [`OBJECT_PREFIX`]: 84 random bits, and 31 bytes in all.
#[cfg(portable_lifetime)]
pub(crate) const OBJECT_DIGITS: usize = 21;

/// A random suffix of [`OBJECT_DIGITS`] hex digits for a new object.
#[cfg(portable_lifetime)]
pub(crate) fn fresh_object_suffix() -> Result<String> {
    let mut bytes = [0u8; OBJECT_DIGITS.div_ceil(2)];
    // SAFETY: `bytes` is writable memory of its length, at most 256 bytes.
    if unsafe { libc::getentropy(bytes.as_mut_ptr().cast(), bytes.len()) } != 0 {
        return Err(Error::last_os("getentropy"));
    }
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(OBJECT_DIGITS);
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(portable_lifetime))]
    fn short_names_are_kept_and_long_ones_digested() {
        assert_eq!(shm_name("camera"), "/mmapfile.camera");
        assert!(!is_digested("camera"));
        let long = "x".repeat(247);
        assert!(is_digested(&long));
        assert_eq!(shm_name(&long).len(), SHM_PREFIX.len() + 1 + 64);
        assert!(!is_digested(&"x".repeat(246)));
        // A name cannot pass for another's digest.
        let forged = shm_name(&long)[SHM_PREFIX.len()..].to_owned();
        assert_ne!(shm_name(&forged), shm_name(&long));
        assert!(is_digested(&forged));
    }

    /// Pairs of names that differ in their last byte only, kept and digested.
    fn differing_late() -> [(String, String); 2] {
        [199, 300].map(|n| {
            let stem = "n".repeat(n);
            (format!("{stem}a"), format!("{stem}z"))
        })
    }

    #[test]
    #[cfg(not(portable_lifetime))]
    fn names_that_differ_anywhere_get_different_objects() {
        for (a, b) in differing_late() {
            assert_ne!(shm_name(&a), shm_name(&b));
        }
    }

    #[test]
    #[cfg(portable_lifetime)]
    fn names_that_differ_anywhere_get_different_record_files() {
        for (a, b) in differing_late() {
            assert_ne!(record_file_name(&a), record_file_name(&b));
        }
    }

    #[test]
    #[cfg(portable_lifetime)]
    fn record_files_never_depend_on_case_folding() {
        assert_eq!(record_file_name("worker-1.cache"), "worker-1.cache");
        for odd in ["Camera", "kamera-ß", ".hidden", "=x", "a b", ""] {
            let file = record_file_name(odd);
            assert!(file.starts_with(DIGEST_MARK), "{odd:?} -> {file}");
            assert_eq!(file.len(), 65);
        }
        assert_ne!(record_file_name("Camera"), record_file_name("camera"));
    }

    #[test]
    #[cfg(portable_lifetime)]
    fn fresh_object_names_fit_macos() {
        let a = fresh_object_suffix().unwrap();
        let b = fresh_object_suffix().unwrap();
        assert_ne!(a, b);
        assert_eq!(OBJECT_PREFIX.len() + a.len(), 31);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
