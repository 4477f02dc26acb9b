//! POSIX backend: `open`/`ftruncate`/`mmap` for files, `shm_open` for named
//! blocks, `memfd_create` (or an unlinked `shm_open` object) for unnamed ones.
//!
//! The lifetime of named blocks (a block lives while some process holds it)
//! is in `lifetime_linux.rs`; macOS and the BSDs, which cannot lock
//! shared-memory objects, get `lifetime_portable.rs` (so does Linux built
//! with the `simulate-macos` feature, see `build.rs`). `names.rs` says what a
//! name becomes at the OS level; `blocks.rs` lists, inspects and removes
//! blocks from outside; `huge_pages.rs` asks for huge pages for fresh buffers.

mod blocks;
mod fault;
mod huge_pages;
#[cfg_attr(not(portable_lifetime), path = "lifetime_linux.rs")]
#[cfg_attr(portable_lifetime, path = "lifetime_portable.rs")]
mod lifetime;
#[cfg_attr(not(portable_lifetime), path = "lock_linux.rs")]
#[cfg_attr(portable_lifetime, path = "lock_portable.rs")]
mod lock;
mod names;
mod record;
#[cfg(simulated)]
mod simulated;
mod space;
mod view;

pub(crate) use blocks::{
    block_info, collect_block, collect_leftovers, list_blocks, read_block, remove_block,
};
pub(crate) use huge_pages::{advisable_huge_page_size, advise_huge_pages};
pub(crate) use lock::{LockDesc, LockTarget};
pub(crate) use view::{RawView, ADVICE};

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::name::BlockName;
use record::FileRecord;
use space::{make_room, Purpose};

/// Fills a new shared-memory object before it gets its name: a block's
/// size, or a file mapping's record.
pub(crate) type Init<'a> = &'a dyn Fn(&OwnedFd) -> Result<()>;

/// What a creating open makes under a name.
pub(crate) enum New<'a> {
    /// A block of `size` bytes; `init` sizes its new object. (Linux reads
    /// the size back from the object, which the portable backend cannot.)
    Block {
        #[cfg_attr(not(portable_lifetime), allow(dead_code))]
        size: u64,
        init: Init<'a>,
    },
    /// A file mapping, described by its record.
    File(&'a FileRecord),
}

/// What the name leads to, once joined.
pub(crate) enum Held {
    /// A block; `size` where the OS cannot tell it exactly (macOS rounds an
    /// object's size up to whole pages), else the object's size is it.
    Block { size: Option<u64> },
    /// A named file mapping.
    File(FileRecord),
}

/// A name joined as a holder (`lifetime::join`).
pub(crate) struct Joined {
    /// The descriptor whose lock makes us a holder.
    pub(crate) held: OwnedFd,
    /// A block's memory, where it is another object than `held`.
    pub(crate) memory: Option<OwnedFd>,
    pub(crate) what: Held,
    /// Whether this holder can end the block's life (see `Kind::Named`).
    pub(crate) lockable: bool,
    pub(crate) created: bool,
}

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

/// The index of the first `byte` in `hay`. The C library's `memchr` (glibc's
/// is hand-written for each vector extension) starts faster than the
/// `memchr` crate's on the short haystacks `readline` searches: 33 against
/// about 70 instructions for an 80-byte line.
#[inline]
pub(crate) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    // SAFETY: `hay` is valid for reads of `hay.len()` bytes; the result is
    // null or points into it.
    let found = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(byte), hay.len()) };
    (!found.is_null()).then(|| found as usize - hay.as_ptr() as usize)
}

/// The memory page size: always a power of two, so that callers may round
/// addresses with a mask (a division is a noticeable part of a one-byte
/// access).
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = match usize::try_from(size) {
        Ok(size) if size.is_power_of_two() => size,
        _ => 4096,
    };
    PAGE.store(size, Ordering::Relaxed);
    size
}

/// The alignment a view's file offset must have. On POSIX it is the page size.
pub(crate) fn allocation_granularity() -> usize {
    page_size()
}

/// The error for a name that is taken (`create=True` on an existing name).
pub(crate) fn name_taken() -> Error {
    Error::io("shm_open", io::Error::from_raw_os_error(libc::EEXIST))
}

fn cstring(op: &'static str, bytes: &[u8]) -> Result<CString> {
    // A bad argument, not an OS failure (Python's open() says the same).
    CString::new(bytes).map_err(|_| Error::InvalidArgument(format!("{op}: embedded null byte")))
}

fn cvt(op: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret == -1 {
        Err(Error::last_os(op))
    } else {
        Ok(ret)
    }
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor and `st` points to writable memory
    // large enough for a `stat`; fstat initialises it on success.
    cvt("fstat", unsafe {
        libc::fstat(fd.as_raw_fd(), st.as_mut_ptr())
    })?;
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[cfg(simulated)]
    let st = simulated::round_size(st);
    Ok(st)
}

fn ftruncate(fd: &OwnedFd, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| Error::io("ftruncate", io::Error::from_raw_os_error(libc::EFBIG)))?;
    #[cfg(simulated)]
    simulated::check_truncate(fd)?;
    loop {
        // SAFETY: `fd` is an open descriptor.
        let ret = unsafe { libc::ftruncate(fd.as_raw_fd(), len) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(Error::io("ftruncate", err));
        }
    }
}

fn fchmod(fd: &OwnedFd, mode: u32) -> Result<()> {
    #[cfg(simulated)]
    simulated::check_fchmod(fd)?;
    // SAFETY: `fd` is an open descriptor.
    cvt("fchmod", unsafe {
        libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t)
    })?;
    Ok(())
}

fn open_path(path: &CString, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: open returned a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `shm_open`, close-on-exec. A new object gets `mode` minus the umask on
/// Linux (then `fchmod` sets it exactly), and `mode` exactly on macOS, which
/// cannot `fchmod` one.
fn shm_open(name: &CString, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // macOS 26.4 refuses O_CLOEXEC in shm_open's flags (POSIX lists only
    // O_RDONLY, O_RDWR, O_CREAT, O_EXCL and O_TRUNC): set it afterwards.
    let flags = if cfg!(macos_limits) {
        flags
    } else {
        flags | libc::O_CLOEXEC
    };
    #[cfg(simulated)]
    simulated::check_shm_open(name, flags)?;
    #[cfg(simulated)]
    let created = flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL;
    // Apple declares shm_open variadic, so the mode goes as the promoted
    // c_uint; Linux and FreeBSD take a mode_t.
    #[cfg(target_vendor = "apple")]
    let mode = libc::c_uint::from(mode);
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[cfg(simulated)]
    if created {
        simulated::created_with(&fd, mode)?;
    }
    #[cfg(macos_limits)]
    // SAFETY: `fd` is open; FD_CLOEXEC is the only descriptor flag.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Gives a new shared-memory object the mode `mode` exactly. macOS has no
/// `fchmod` for them, and needs none: `shm_open` gave it that mode.
#[cfg(portable_lifetime)]
fn fchmod_object(fd: &OwnedFd, mode: u32) -> Result<()> {
    if cfg!(macos_limits) {
        return Ok(());
    }
    fchmod(fd, mode)
}

fn shm_unlink(name: &CString) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[derive(Debug)]
enum Kind {
    /// A file on disk; `created` if this call created it, so that a failed
    /// open can remove it again.
    File { path: PathBuf, created: bool },
    /// A named block of POSIX shared memory, or a named file mapping, held
    /// by this object.
    Named {
        /// What the lifetime protocol calls the name (`lifetime::key`).
        key: CString,
        /// The descriptor whose lock makes this object a holder, where it
        /// is not `fd` itself: a file mapping's record, or (portable
        /// backend) a block's record file.
        held: Option<OwnedFd>,
        /// For a named file mapping: the file. `fd` is then the file.
        /// (Boxed: it keeps a `Backing` small enough to travel in errors.)
        file: Option<Box<NamedFile>>,
        /// Able to end the block's life: on Linux, opened read-write, so
        /// able to take the exclusive lock (see `lifetime_linux.rs`).
        lockable: bool,
        /// The process that joined. A forked child shares our open file
        /// description, hence our lock: it must not end the block's life.
        pid: libc::pid_t,
        /// Whether `release` already ran (explicit close), so Drop skips it.
        released: bool,
    },
    /// An unnamed block.
    Anonymous,
}

/// The file side of a named file mapping.
#[derive(Debug)]
struct NamedFile {
    /// The file's path; `created` too if this call created the file, so
    /// that a failed open can remove it again.
    path: PathBuf,
    created: bool,
    /// The mapping's size: what openers by name map.
    size: u64,
}

/// An open object that views can be mapped from.
#[derive(Debug)]
pub(crate) struct Backing {
    fd: OwnedFd,
    kind: Kind,
    writable: bool,
    /// The object's size where `fd`'s is not exact: macOS reports a
    /// shared-memory object's size rounded up to whole pages.
    exact_len: Option<u64>,
}

impl Backing {
    /// Opens the file at `path`, creating it when `access` is
    /// [`Access::Write`] and it does not exist. Returns whether it was created.
    pub(crate) fn file(path: &Path, access: Access) -> Result<(Backing, bool)> {
        let cpath = cstring("open", path.as_os_str().as_bytes())?;
        let writable = access.writes_backing();
        if !writable {
            let fd = open_path(&cpath, libc::O_RDONLY, 0).map_err(|e| Error::io("open", e))?;
            let backing = Backing {
                fd,
                kind: Kind::File {
                    path: path.to_path_buf(),
                    created: false,
                },
                writable,
                exact_len: None,
            };
            return Ok((backing, false));
        }
        loop {
            match open_path(&cpath, libc::O_RDWR, 0) {
                Ok(fd) => {
                    let backing = Backing {
                        fd,
                        kind: Kind::File {
                            path: path.to_path_buf(),
                            created: false,
                        },
                        writable,
                        exact_len: None,
                    };
                    return Ok((backing, false));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("open", e)),
            }
            match open_path(&cpath, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o666) {
                Ok(fd) => {
                    let kind = Kind::File {
                        path: path.to_path_buf(),
                        created: true,
                    };
                    let backing = Backing {
                        fd,
                        kind,
                        writable,
                        exact_len: None,
                    };
                    return Ok((backing, true));
                }
                // Someone else created it between our two calls: open theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("open", e)),
            }
        }
    }

    /// Creates or opens the named block `name` (already validated) and
    /// joins it as a holder: the block lives while some holder does.
    ///
    /// `size` is the size of a block this call creates; an existing block
    /// keeps its own size. With `size == 0` the block must exist. `mode`
    /// gives the permission bits of a new block exactly (the umask does not
    /// apply).
    pub(crate) fn named(
        name: &BlockName,
        size: u64,
        create: CreateMode,
        access: Access,
        mode: u32,
        allow_other_owner: bool,
        space: Space,
    ) -> Result<(Backing, bool)> {
        if create == CreateMode::CreateOnly && size == 0 {
            return Err(Error::InvalidArgument(
                "creating a named block needs a MaximumSize greater than 0".into(),
            ));
        }
        let key = lifetime::key(name.base())?;
        let writable = access.writes_backing();
        // A block that `space` finds no room for is refused before it has a
        // name, so a refusal leaves nothing behind.
        let init = |fd: &OwnedFd| {
            make_room(fd.as_fd(), 0, size, Purpose::NamedBlock, space)?;
            ftruncate(fd, size)
        };
        let new = (size > 0).then_some(New::Block { size, init: &init });
        let joined = lifetime::join(
            &key,
            name.base(),
            new,
            create,
            writable,
            mode,
            allow_other_owner,
        )?;
        let created = joined.created;
        let (fd, held, block_size, file) = match joined.what {
            Held::Block { size } => match joined.memory {
                Some(memory) => (memory, Some(joined.held), size, None),
                None => (joined.held, None, size, None),
            },
            Held::File(record) => {
                let file = match record.open_file(writable, name.as_str()) {
                    Ok(file) => file,
                    Err(e) => {
                        let _ = lifetime::release(&joined.held, &key, joined.lockable);
                        return Err(e);
                    }
                };
                let named_file = NamedFile {
                    path: record.path,
                    created: false,
                    size: record.size,
                };
                (file, Some(joined.held), None, Some(Box::new(named_file)))
            }
        };
        let backing = Backing {
            fd,
            kind: Kind::Named {
                key,
                held,
                file,
                lockable: joined.lockable,
                // SAFETY: getpid has no preconditions.
                pid: unsafe { libc::getpid() },
                released: false,
            },
            writable,
            exact_len: block_size,
        };
        Ok((backing, created))
    }

    /// Gives this file's mapping of `size` bytes the name `name`, so that
    /// any process can open it by the name: the file side of Windows'
    /// `CreateFileMapping` with a name. `Ok(false)`: the name is taken (by a
    /// block or another mapping), and nothing was changed.
    pub(crate) fn publish_name(&mut self, name: &BlockName, size: u64, mode: u32) -> Result<bool> {
        let Kind::File { path, .. } = &self.kind else {
            return Err(Error::InvalidArgument(
                "only a file mapping can be given a name".into(),
            ));
        };
        let record = FileRecord::new(&self.fd, path, size)?;
        let key = lifetime::key(name.base())?;
        let joined = match lifetime::join(
            &key,
            name.base(),
            Some(New::File(&record)),
            CreateMode::CreateOnly,
            true,
            mode,
            false,
        ) {
            Ok(joined) => joined,
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => return Ok(false),
            Err(err) => return Err(err),
        };
        let Kind::File { path, created } = std::mem::replace(&mut self.kind, Kind::Anonymous)
        else {
            unreachable!("checked above")
        };
        self.kind = Kind::Named {
            key,
            held: Some(joined.held),
            file: Some(Box::new(NamedFile {
                path,
                created,
                size,
            })),
            lockable: joined.lockable,
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
            released: false,
        };
        Ok(true)
    }

    /// The mapped file's path, for a named file mapping.
    pub(crate) fn file_path(&self) -> Option<PathBuf> {
        match &self.kind {
            Kind::Named {
                file: Some(file), ..
            } => Some(file.path.clone()),
            _ => None,
        }
    }

    /// Creates an unnamed block of `size` bytes, shared with forked children,
    /// with room for it as `space` says.
    pub(crate) fn anonymous(size: u64, space: Space) -> Result<Backing> {
        let fd = anonymous_fd()?;
        let backing = Backing {
            fd,
            kind: Kind::Anonymous,
            writable: true,
            exact_len: cfg!(macos_limits).then_some(size),
        };
        make_room(backing.fd.as_fd(), 0, size, Purpose::UnnamedBlock, space)?;
        ftruncate(&backing.fd, size)?;
        Ok(backing)
    }

    /// The current size of the mapping object in bytes: the file's or
    /// block's size, or for a named file mapping the mapping's size.
    pub(crate) fn len(&self) -> Result<u64> {
        if let Kind::Named {
            file: Some(file), ..
        } = &self.kind
        {
            return Ok(file.size);
        }
        if let Some(len) = self.exact_len {
            return Ok(len);
        }
        let st = fstat(&self.fd)?;
        Ok(st.st_size.max(0) as u64)
    }

    /// Makes the mapping object at least `len` bytes long (zero-filled),
    /// with room for the new bytes as `space` says.
    pub(crate) fn grow(&mut self, len: u64, space: Space) -> Result<()> {
        if self.len()? >= len {
            return Ok(());
        }
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if let (Kind::Named { file: None, .. }, Some(_)) = (&self.kind, self.exact_len) {
            return Err(Error::InvalidArgument(format!(
                "a named block cannot grow on this OS (it is {} bytes): a shared-memory \
                 object is sized once here, and a section on Windows",
                self.len()?
            )));
        }
        #[cfg(macos_limits)]
        if let Kind::Anonymous = self.kind {
            return self.regrow_anonymous(len, space);
        }
        // A named file mapping's file may already be longer than the mapping.
        let current = fstat(&self.fd)?.st_size.max(0) as u64;
        if current < len {
            let purpose = match self.kind {
                Kind::File { .. } | Kind::Named { file: Some(_), .. } => Purpose::File,
                Kind::Named { .. } => Purpose::NamedBlock,
                Kind::Anonymous => Purpose::UnnamedBlock,
            };
            make_room(self.fd.as_fd(), current, len, purpose, space)?;
            ftruncate(&self.fd, len)?;
        }
        if let Kind::Named {
            file: Some(file),
            held: Some(held),
            key,
            lockable,
            ..
        } = &mut self.kind
        {
            file.size = len;
            // As on Windows, where the only holder's resize makes the named
            // mapping anew at the new size: rewrite the record, which openers
            // read only while holding, so never while it is rewritten.
            if *lockable {
                let grown = FileRecord::new(&self.fd, &file.path, len)?;
                lifetime::rewrite_file_record(held, key, &grown)?;
            }
        }
        Ok(())
    }

    /// Maps `len` bytes at `offset` (a multiple of
    /// [`allocation_granularity`]).
    pub(crate) fn map(&self, offset: u64, len: usize, access: Access) -> Result<RawView> {
        // macOS maps a shared-memory object only shared.
        #[cfg(macos_limits)]
        if access == Access::Copy && !self.is_file() {
            return self.map_copy(offset, len);
        }
        let (prot, flags) = match access {
            Access::Write => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
            Access::Read => (libc::PROT_READ, libc::MAP_SHARED),
            Access::Copy => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE),
        };
        let start = offset;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| Error::io("mmap", io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        #[cfg(simulated)]
        simulated::check_mmap(&self.fd, flags)?;
        // SAFETY: a fresh mapping at an address the kernel chooses overlaps
        // nothing; `fd` is open; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                self.fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os("mmap"));
        }
        Ok(RawView::new(ptr.cast(), len, self.fd.as_raw_fd(), start))
    }

    /// A copy-on-write view of a shared-memory object where the OS maps one
    /// only shared (macOS): private memory holding a copy of its `len` bytes
    /// at `offset`, taken now (later writes by others are not seen, where
    /// Linux shows them in the pages not yet written to).
    #[cfg(macos_limits)]
    fn map_copy(&self, offset: u64, len: usize) -> Result<RawView> {
        let file_offset = libc::off_t::try_from(offset)
            .map_err(|_| Error::io("mmap", io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        let copy = Scratch::private(len)?;
        let source = Scratch::shared(&self.fd, len, libc::PROT_READ, file_offset)?;
        // SAFETY: both mappings are `len` bytes long and distinct; the source
        // lies within the object (the caller checked the window).
        unsafe {
            std::ptr::copy_nonoverlapping(source.ptr.cast::<u8>(), copy.ptr.cast::<u8>(), len)
        };
        Ok(RawView::new(copy.keep(), len, self.fd.as_raw_fd(), offset))
    }

    /// Makes data written through views durable on the storage device (files
    /// only: shared memory has no storage).
    pub(crate) fn sync(&self) -> Result<()> {
        if self.is_file() {
            // SAFETY: `fd` is an open descriptor.
            cvt("fsync", unsafe { libc::fsync(self.fd.as_raw_fd()) })?;
        }
        Ok(())
    }

    /// Grows an unnamed block where a shared-memory object is sized once
    /// (macOS): a new object of `len` bytes with the old bytes copied in.
    /// A forked child's views stay with the old object.
    #[cfg(macos_limits)]
    fn regrow_anonymous(&mut self, len: u64, space: Space) -> Result<()> {
        let old_len = self.len()?;
        let new = anonymous_fd()?;
        make_room(new.as_fd(), 0, len, Purpose::UnnamedBlock, space)?;
        ftruncate(&new, len)?;
        copy_object(&self.fd, &new, old_len.min(len))?;
        let old = std::mem::replace(&mut self.fd, new);
        self.move_lock(&old)?;
        self.exact_len = Some(len);
        Ok(())
    }

    /// Whether the mapped object is a file (named or not).
    fn is_file(&self) -> bool {
        matches!(
            self.kind,
            Kind::File { .. } | Kind::Named { file: Some(_), .. }
        )
    }

    /// Leaves a named block or file mapping as a holder (the last one
    /// removes its name; a file mapping's file stays as it is). Does nothing
    /// for other objects, twice, or in a forked child.
    fn release(&mut self) -> Result<()> {
        if let Kind::Named {
            key,
            held,
            lockable,
            pid,
            released,
            ..
        } = &mut self.kind
        {
            // SAFETY: getpid has no preconditions.
            if *released || *pid != unsafe { libc::getpid() } {
                return Ok(());
            }
            *released = true;
            return lifetime::release(held.as_ref().unwrap_or(&self.fd), key, *lockable);
        }
        Ok(())
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(mut self) -> Result<()> {
        self.forget_lock();
        let released = self.release();
        // What is left is the descriptor, closed by hand to see close's
        // error. Drop must not run (it would close it again), and after this
        // assignment nothing else in `self` owns memory.
        self.kind = Kind::Anonymous;
        let this = std::mem::ManuallyDrop::new(self);
        let fd = this.fd.as_raw_fd();
        // SAFETY: `this` is never dropped, so its OwnedFd will not close
        // `fd`; we close it exactly once here.
        let closed = cvt("close", unsafe { libc::close(fd) });
        released.and(closed.map(drop))
    }

    /// Closes the object after a failed open, removing what this open
    /// created. A named block is left like a holder leaves it: removed if
    /// nobody else joined in the meantime.
    pub(crate) fn abandon(mut self) {
        // Nothing useful can be done if these fail: the open's error is the
        // one the caller needs to see. The name goes first, so that no
        // opener by name finds a file that is about to be removed.
        let _ = self.release();
        let created = match &self.kind {
            Kind::File {
                path,
                created: true,
            } => Some(path),
            Kind::Named {
                file: Some(file), ..
            } if file.created => Some(&file.path),
            _ => None,
        };
        if let Some(path) = created {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        self.forget_lock();
        // An error cannot be reported from drop; the worst outcome is a dead
        // block left under its name, which the next open or `gc` removes.
        let _ = self.release();
    }
}

/// Copies the first `len` bytes of the object `from` into `to`, through
/// mappings (macOS cannot `read` or `write` shared-memory objects).
#[cfg(macos_limits)]
fn copy_object(from: &OwnedFd, to: &OwnedFd, len: u64) -> Result<()> {
    let Ok(len) = usize::try_from(len) else {
        return Err(Error::io(
            "mmap",
            io::Error::from_raw_os_error(libc::ENOMEM),
        ));
    };
    if len == 0 {
        return Ok(());
    }
    let source = Scratch::shared(from, len, libc::PROT_READ, 0)?;
    let target = Scratch::shared(to, len, libc::PROT_READ | libc::PROT_WRITE, 0)?;
    // SAFETY: both mappings are `len` bytes long and distinct; the source is
    // our own block's object, which no one else shrinks (a forked child
    // could, as with any shared mapping).
    unsafe { std::ptr::copy_nonoverlapping(source.ptr.cast::<u8>(), target.ptr.cast::<u8>(), len) };
    Ok(())
}

/// A mapping made to copy through, unmapped when dropped (so an error on
/// the way leaves none behind).
#[cfg(macos_limits)]
struct Scratch {
    ptr: *mut libc::c_void,
    len: usize,
}

#[cfg(macos_limits)]
impl Scratch {
    /// `mmap(NULL, len, prot, flags, fd, offset)`.
    fn map(
        fd: libc::c_int,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        offset: libc::off_t,
    ) -> Result<Scratch> {
        // SAFETY: a fresh mapping at an address the kernel chooses overlaps
        // nothing; `fd` is open (or -1 for anonymous memory); the result is
        // checked below.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os("mmap"));
        }
        Ok(Scratch { ptr, len })
    }

    /// A shared mapping of `len` bytes of `fd` at `offset`.
    fn shared(fd: &OwnedFd, len: usize, prot: libc::c_int, offset: libc::off_t) -> Result<Scratch> {
        Scratch::map(fd.as_raw_fd(), len, prot, libc::MAP_SHARED, offset)
    }

    /// Private, zero-filled memory of `len` bytes.
    fn private(len: usize) -> Result<Scratch> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
        Scratch::map(-1, len, libc::PROT_READ | libc::PROT_WRITE, flags, 0)
    }

    /// Keeps the mapping: the caller unmaps it.
    fn keep(self) -> *mut u8 {
        std::mem::ManuallyDrop::new(self).ptr.cast()
    }
}

#[cfg(macos_limits)]
impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` come from a successful mmap and are unmapped
        // once; a failure could only leak address space.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(macos_limits)
))]
fn anonymous_fd() -> Result<OwnedFd> {
    let name = c"mmapfile-unnamed";
    // SAFETY: `name` is a NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("memfd_create"));
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(any(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    macos_limits
))]
fn anonymous_fd() -> Result<OwnedFd> {
    // No memfd: create a uniquely named object and unlink it at once.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let name = cstring("shm_open", format!("/mmapfile-anon.{pid}.{n}").as_bytes())?;
        match shm_open(&name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600) {
            Ok(fd) => {
                let _ = shm_unlink(&name);
                return Ok(fd);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("shm_open", e)),
        }
    }
}
