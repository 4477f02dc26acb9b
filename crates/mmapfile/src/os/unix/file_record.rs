//! Named file mappings on POSIX: the record that a name leads to.
//!
//! A named file mapping uses the same shared-memory object, under the same
//! name and with the same holder protocol, as a named block (see
//! `docs/named-blocks.md`); only its contents differ. Instead of the shared
//! bytes, the object holds a short text record saying which file the name
//! maps and how large the mapping is, and its mode has the sticky bit
//! ([`MARK`]), which no block created through this crate can have (a
//! block's `mode` is limited to the permission bits). The record is written
//! before the object gets its name and never changes afterwards.
//!
//! An opener reads the record, opens the file itself (so it needs its own
//! permission to open the file) and checks that the file is still the one
//! the name was made for: same device, inode and, where the file system
//! keeps one, birth time. A file removed or replaced since is refused.
//!
//! The record changes once after it is published, in one case: a `resize`
//! that grows the mapping rewrites the size, if (as on Windows, where the
//! only holder's resize makes the mapping anew) nobody else holds the name.
//! It does so under the exclusive lock on the liveness byte, and openers read
//! the record only while they hold the shared one, so none reads it half
//! rewritten.
//!
//! The record, one field a line, the path last (it may hold any byte):
//!
//! ```text
//! mmapfile file mapping 1
//! size 8388608
//! dev 2049
//! ino 1835010
//! born 1764612345.123456789
//! path /home/user/data.bin
//! ```
//!
//! `born` is `-` where the file system does not report a birth time.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{cstring, fstat, open_path};
use crate::error::{Error, Result};

/// The mode bit that marks an object as a file mapping's record (Linux: the
/// portable backend's record files say what they are).
#[cfg(not(portable_lifetime))]
// mode_t is u32 on Linux and u16 on macOS.
#[allow(clippy::unnecessary_cast)]
pub(crate) const MARK: u32 = libc::S_ISVTX as u32;

/// The first line of every record (with its format version).
const HEADER: &str = "mmapfile file mapping 1";

/// Records are small; anything larger is not one of ours.
const MAX_LEN: usize = 64 * 1024;

/// Who a file is: what stays the same for its whole life, and differs for a
/// file that later takes its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    /// Birth time (seconds, nanoseconds), where the file system keeps it.
    born: Option<(i64, u32)>,
}

impl Identity {
    /// An identity from its fields (tests of the record's parser).
    #[cfg(test)]
    pub(crate) fn from_parts(dev: u64, ino: u64, born: Option<(i64, u32)>) -> Identity {
        Identity { dev, ino, born }
    }

    /// The identity of the open file `fd`.
    pub(crate) fn of(fd: &OwnedFd) -> Result<Identity> {
        let st = fstat(fd)?;
        // dev_t and ino_t differ in width and signedness between systems.
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        Ok(Identity {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            born: birth_time(fd, &st),
        })
    }

    /// Whether `other` is the same file. A birth time known on one side
    /// only (e.g. a kernel that gained `statx` support) does not count
    /// against it: device and inode still have to match.
    fn same_file(&self, other: &Identity) -> bool {
        self.dev == other.dev
            && self.ino == other.ino
            && match (self.born, other.born) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn birth_time(fd: &OwnedFd, _st: &libc::stat) -> Option<(i64, u32)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `fd` is open, the path is an empty NUL-terminated string (with
    // AT_EMPTY_PATH this asks about `fd` itself), and `stx` is writable
    // memory for one statx structure.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    };
    if ret != 0 {
        return None;
    }
    // SAFETY: statx returned 0, so it filled the structure (which was zeroed
    // before, so any field it left alone is zero, not uninitialised).
    let stx = unsafe { stx.assume_init() };
    (stx.stx_mask & libc::STATX_BTIME != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec))
}

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
))]
fn birth_time(_fd: &OwnedFd, st: &libc::stat) -> Option<(i64, u32)> {
    let nanos = u32::try_from(st.st_birthtime_nsec).ok()?;
    (st.st_birthtime > 0).then_some((st.st_birthtime, nanos))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd"
)))]
fn birth_time(_fd: &OwnedFd, _st: &libc::stat) -> Option<(i64, u32)> {
    None
}

/// What a name that leads to a file mapping says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRecord {
    /// The mapping's size (its `MaximumSize`, or the file's size when it
    /// was made).
    pub(crate) size: u64,
    pub(crate) identity: Identity,
    /// The file's absolute path when the name was made.
    pub(crate) path: PathBuf,
}

impl FileRecord {
    /// The record for the open file `fd` at `path`, mapped with `size` bytes.
    pub(crate) fn new(fd: &OwnedFd, path: &Path, size: u64) -> Result<FileRecord> {
        let path = std::path::absolute(path).map_err(|e| Error::io("getcwd", e))?;
        Ok(FileRecord {
            size,
            identity: Identity::of(fd)?,
            path,
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let born = match self.identity.born {
            Some((secs, nanos)) => format!("{secs}.{nanos:09}"),
            None => "-".to_owned(),
        };
        let mut out = format!(
            "{HEADER}\nsize {}\ndev {}\nino {}\nborn {born}\npath ",
            self.size, self.identity.dev, self.identity.ino
        )
        .into_bytes();
        out.extend_from_slice(self.path.as_os_str().as_bytes());
        out
    }

    /// Reads a record that any process may have written: anything but a
    /// record exactly as [`FileRecord::encode`] writes it is refused.
    pub(crate) fn decode(bytes: &[u8]) -> Result<FileRecord> {
        let bad = || {
            Error::io(
                "read",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the name's record of a file mapping is damaged",
                ),
            )
        };
        // Five text lines, then the path's bytes to the end.
        let mut parts = bytes.splitn(6, |&b| b == b'\n');
        let mut line = || -> Result<&str> {
            std::str::from_utf8(parts.next().ok_or_else(bad)?).map_err(|_| bad())
        };
        if line()? != HEADER {
            return Err(bad());
        }
        let mut field = |key: &str| -> Result<String> {
            line()?
                .strip_prefix(key)
                .and_then(|t| t.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(bad)
        };
        let number = |text: String| text.parse::<u64>().map_err(|_| bad());
        let size = number(field("size")?)?;
        let dev = number(field("dev")?)?;
        let ino = number(field("ino")?)?;
        let born = match field("born")?.as_str() {
            "-" => None,
            text => {
                let (secs, nanos) = text.split_once('.').ok_or_else(bad)?;
                let nanos = nanos
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n < 1_000_000_000)
                    .ok_or_else(bad)?;
                Some((secs.parse::<i64>().map_err(|_| bad())?, nanos))
            }
        };
        let rest = parts.next().ok_or_else(bad)?;
        let path = rest.strip_prefix(b"path ").ok_or_else(bad)?;
        // Absolute, as `new` makes it: a relative path would be found from
        // the opener's working directory.
        if !path.starts_with(b"/") {
            return Err(bad());
        }
        let record = FileRecord {
            size,
            identity: Identity { dev, ino, born },
            path: PathBuf::from(OsStr::from_bytes(path)),
        };
        // No second spelling of a record (leading zeros, a `+`) passes.
        if record.encode() != bytes {
            return Err(bad());
        }
        Ok(record)
    }

    #[cfg(not(portable_lifetime))]
    /// Reads the record from the object `fd`.
    pub(crate) fn read(fd: &OwnedFd) -> Result<FileRecord> {
        Self::decode(&read_small(fd)?)
    }

    #[cfg(not(portable_lifetime))]
    /// Writes the record into the new, still unnamed object `fd`.
    /// Returns the record's length.
    pub(crate) fn write(&self, fd: &OwnedFd) -> Result<u64> {
        let bytes = self.encode();
        write_all(fd, &bytes)?;
        Ok(bytes.len() as u64)
    }

    #[cfg(not(portable_lifetime))]
    /// Replaces the record in the object `fd`, whose other holders must be
    /// kept out meanwhile (see `lifetime::change_if_sole_holder`).
    pub(crate) fn rewrite(&self, fd: &OwnedFd) -> Result<()> {
        let len = self.write(fd)?;
        super::ftruncate(fd, len)
    }

    /// Opens the file the record names, read-write or read-only, and checks
    /// that it is still that file. `name` is for the error messages;
    /// `name_owner` is the user whose name (record) it is: a name of
    /// another user's must lead to a file of theirs, or that user could
    /// make us map (and write) a file of ours through a name of theirs.
    pub(crate) fn open_file(
        &self,
        writable: bool,
        name: &str,
        name_owner: libc::uid_t,
    ) -> Result<OwnedFd> {
        let cpath = cstring("open", self.path.as_os_str().as_bytes())?;
        // Without waiting for a writer, should the path now be a FIFO
        // (it is then refused as another file below); nothing changes for
        // the regular file it should be.
        let flags = libc::O_NONBLOCK
            | if writable {
                libc::O_RDWR
            } else {
                libc::O_RDONLY
            };
        let fd = match open_path(&cpath, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::FileChanged {
                    message: format!(
                        "the file behind the named mapping {name:?} was removed: {}",
                        self.path.display()
                    ),
                    code: libc::ENOENT,
                })
            }
            Err(e) => return Err(Error::io("open", e)),
        };
        if !self.identity.same_file(&Identity::of(&fd)?) {
            return Err(Error::FileChanged {
                message: format!(
                    "the file behind the named mapping {name:?} was replaced by another file \
                     since the name was made: {}",
                    self.path.display()
                ),
                code: libc::ESTALE,
            });
        }
        let file_owner = fstat(&fd)?.st_uid;
        // SAFETY: geteuid has no preconditions.
        if name_owner != unsafe { libc::geteuid() } && file_owner != name_owner {
            return Err(Error::Refused {
                op: "open",
                code: libc::EACCES,
                message: format!(
                    "the named mapping {name:?} is user {name_owner}'s but leads to a file \
                     of user {file_owner}: refused ({})",
                    self.path.display()
                ),
            });
        }
        Ok(fd)
    }
}

/// The whole contents of the small file or object `fd` (a record).
pub(crate) fn read_small(fd: &OwnedFd) -> Result<Vec<u8>> {
    let len = fstat(fd)?.st_size.max(0) as u64;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_LEN)
        .ok_or_else(|| Error::io("read", io::Error::from_raw_os_error(libc::EFBIG)))?;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        // SAFETY: `fd` is open and `buf[done..]` is writable memory of
        // `len - done` bytes.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf[done..].as_mut_ptr().cast(),
                len - done,
                done as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(Error::io("pread", err));
                }
            }
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// Writes `bytes` at the start of `fd`.
pub(crate) fn write_all(fd: &OwnedFd, bytes: &[u8]) -> Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: `fd` is open and `bytes[done..]` is readable memory of
        // `bytes.len() - done` bytes.
        let n = unsafe {
            libc::pwrite(
                fd.as_raw_fd(),
                bytes[done..].as_ptr().cast(),
                bytes.len() - done,
                done as libc::off_t,
            )
        };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(Error::io("pwrite", err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &[u8], born: Option<(i64, u32)>) -> FileRecord {
        FileRecord {
            size: 10 << 30,
            identity: Identity {
                dev: 2049,
                ino: 77,
                born,
            },
            path: PathBuf::from(OsStr::from_bytes(path)),
        }
    }

    #[test]
    fn records_read_back_what_was_written() {
        for record in [
            sample(b"/tmp/data.bin", Some((1_764_612_345, 5))),
            sample(b"/tmp/odd\nname \xff with bytes", None),
        ] {
            assert_eq!(FileRecord::decode(&record.encode()).unwrap(), record);
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        let good = sample(b"/tmp/x", None).encode();
        // Every cut before the path's first byte (a record is complete
        // before its object gets a name, so a cut path cannot be seen).
        for cut in 0..=good.len() - b"/tmp/x".len() {
            assert!(FileRecord::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = good.clone();
        wrong[0] = b'M';
        assert!(FileRecord::decode(&wrong).is_err());
        let text = String::from_utf8(good)
            .unwrap()
            .replace("size 10737418240", "size -1");
        assert!(FileRecord::decode(text.as_bytes()).is_err());
    }

    #[test]
    fn another_inode_or_birth_time_is_another_file() {
        let a = sample(b"/x", Some((5, 6))).identity;
        let mut b = a;
        assert!(a.same_file(&b));
        b.ino += 1;
        assert!(!a.same_file(&b));
        let mut c = a;
        c.born = Some((5, 7));
        assert!(!a.same_file(&c));
        let mut d = a;
        d.born = None;
        assert!(a.same_file(&d));
    }
}
