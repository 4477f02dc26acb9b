//! POSIX backend: `open`/`ftruncate`/`mmap` for files, `shm_open` for named
//! blocks, `memfd_create` (or an unlinked `shm_open` object) for unnamed ones.
//!
//! The lifetime of named blocks (a block lives while some process holds it)
//! is in `lifetime_linux.rs`; other POSIX systems get `lifetime_other.rs`.
//! `blocks.rs` lists, inspects and removes blocks from outside;
//! `huge_pages.rs` asks for huge pages for fresh buffers.

mod blocks;
mod fault;
mod huge_pages;
#[cfg_attr(target_os = "linux", path = "lifetime_linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "lifetime_other.rs")]
mod lifetime;
mod record;
mod space;

pub(crate) use blocks::{block_info, collect_block, list_blocks, read_block, remove_block};
pub(crate) use huge_pages::{advisable_huge_page_size, advise_huge_pages};

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::mem::Vanished;
use crate::name::BlockName;
use fault::Watch;
use record::FileRecord;
use space::{make_room, Purpose};

/// Fills a new shared-memory object before it gets its name: a block's
/// size, or a file mapping's record.
pub(crate) type Init<'a> = &'a dyn Fn(&OwnedFd) -> Result<()>;

/// Prefix of every POSIX shared-memory name this crate creates, so that its
/// blocks can be told apart from other programs' in `/dev/shm`.
pub(crate) const SHM_PREFIX: &str = "/mmapfile.";

/// Where Linux C libraries keep POSIX shared-memory objects.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Longest name (bytes, after a `Local\` or `Global\` prefix is removed).
#[cfg(target_os = "macos")]
pub(crate) const NAME_MAX: usize = 31 - SHM_PREFIX.len();
#[cfg(not(target_os = "macos"))]
pub(crate) const NAME_MAX: usize = 255 - SHM_PREFIX.len() + 1;

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

/// The POSIX shared-memory object name for a validated block name.
pub(crate) fn shm_name(name: &str) -> String {
    format!("{SHM_PREFIX}{name}")
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
    Ok(unsafe { st.assume_init() })
}

fn ftruncate(fd: &OwnedFd, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| Error::io("ftruncate", io::Error::from_raw_os_error(libc::EFBIG)))?;
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

fn shm_open(name: &CString, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd =
        unsafe { libc::shm_open(name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        Err(io::Error::last_os_error())
    }
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
        shm: CString,
        /// For a named file mapping: the name's object (holding its record),
        /// which is what this object holds; `fd` is then the file. For a
        /// block, `fd` is the name's object itself.
        file: Option<NamedFile>,
        /// Opened read-write, so able to take the exclusive lock that ends
        /// the block's life (see `lifetime_linux.rs`).
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
    /// The name's object, whose holder lock this object keeps.
    record_fd: OwnedFd,
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
                    return Ok((Backing { fd, kind, writable }, true));
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
        let shm = cstring("shm_open", shm_name(name.base()).as_bytes())?;
        if create == CreateMode::CreateOnly && size == 0 {
            return Err(Error::InvalidArgument(
                "creating a named block needs a MaximumSize greater than 0".into(),
            ));
        }
        let writable = access.writes_backing();
        // A block that `space` finds no room for is refused before it has a
        // name, so a refusal leaves nothing behind.
        let init = |fd: &OwnedFd| {
            make_room(fd.as_fd(), 0, size, Purpose::NamedBlock, space)?;
            ftruncate(fd, size)
        };
        let new = (size > 0).then_some(&init as Init<'_>);
        let (fd, lockable, created) =
            lifetime::open(&shm, new, create, writable, mode, allow_other_owner)?;
        // An object with the mark is the record of a file mapping with this
        // name: map the file it names instead (a new object is a block).
        let marked = !created && fstat(&fd)?.st_mode as u32 & record::MARK != 0;
        let mut backing = Backing {
            fd,
            kind: Kind::Named {
                shm,
                file: None,
                lockable,
                // SAFETY: getpid has no preconditions.
                pid: unsafe { libc::getpid() },
                released: false,
            },
            writable,
        };
        if marked {
            // On failure `backing` drops, which leaves the name as a holder.
            let record = FileRecord::read(&backing.fd)?;
            let file = record.open_file(writable, name.as_str())?;
            let record_fd = std::mem::replace(&mut backing.fd, file);
            if let Kind::Named { file, .. } = &mut backing.kind {
                *file = Some(NamedFile {
                    record_fd,
                    path: record.path,
                    created: false,
                    size: record.size,
                });
            }
        }
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
        let shm = cstring("shm_open", shm_name(name.base()).as_bytes())?;
        let init = |fd: &OwnedFd| record.write(fd).map(drop);
        let opened = lifetime::open(
            &shm,
            Some(&init),
            CreateMode::CreateOnly,
            true,
            mode | record::MARK,
            false,
        );
        let (record_fd, lockable) = match opened {
            Ok((fd, lockable, _)) => (fd, lockable),
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => return Ok(false),
            Err(err) => return Err(err),
        };
        let Kind::File { path, created } = std::mem::replace(&mut self.kind, Kind::Anonymous)
        else {
            unreachable!("checked above")
        };
        self.kind = Kind::Named {
            shm,
            file: Some(NamedFile {
                record_fd,
                path,
                created,
                size,
            }),
            lockable,
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
            lockable,
            ..
        } = &mut self.kind
        {
            file.size = len;
            // As on Windows, where the only holder's resize makes the named
            // mapping anew at the new size: rewrite the record, which openers
            // read only while holding, so never while it is rewritten.
            if *lockable {
                let record = FileRecord::read(&file.record_fd)?;
                let grown = FileRecord {
                    size: len,
                    ..record
                };
                lifetime::change_if_sole_holder(&file.record_fd, &|fd| grown.rewrite(fd))?;
            }
        }
        Ok(())
    }

    /// Maps `len` bytes at `offset` (a multiple of
    /// [`allocation_granularity`]).
    pub(crate) fn map(&self, offset: u64, len: usize, access: Access) -> Result<RawView> {
        let (prot, flags) = match access {
            Access::Write => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
            Access::Read => (libc::PROT_READ, libc::MAP_SHARED),
            Access::Copy => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE),
        };
        let start = offset;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| Error::io("mmap", io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
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
        Ok(RawView {
            ptr: ptr.cast(),
            len,
            watch: Watch::new(ptr.cast(), len),
            fd: self.fd.as_raw_fd(),
            offset: start,
            vanished: OnceLock::new(),
        })
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
            shm,
            file,
            lockable,
            pid,
            released,
        } = &mut self.kind
        {
            // SAFETY: getpid has no preconditions.
            if *released || *pid != unsafe { libc::getpid() } {
                return Ok(());
            }
            *released = true;
            let held = file.as_ref().map_or(&self.fd, |f| &f.record_fd);
            return lifetime::release(held, shm, *lockable);
        }
        Ok(())
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(mut self) -> Result<()> {
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
        if !lifetime::TRACKS_HOLDERS {
            if let Kind::Named { shm, .. } = &self.kind {
                let _ = shm_unlink(shm);
            }
        }
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
                file:
                    Some(NamedFile {
                        path,
                        created: true,
                        ..
                    }),
                ..
            } => Some(path),
            _ => None,
        };
        if let Some(path) = created {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // An error cannot be reported from drop; the worst outcome is a dead
        // block left under its name, which the next open or `gc` removes.
        let _ = self.release();
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
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

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
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

/// A file system with less than this free is taken to be the reason a page
/// could not be allocated: the kernel raises `SIGBUS` only once it has
/// failed to find space, and a few blocks may stay reserved or be freed by
/// others in the meantime.
const NEARLY_FULL: u64 = 1 << 20;

/// One mapped view. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct RawView {
    ptr: *mut u8,
    len: usize,
    /// The view's registration with the `SIGBUS` guard.
    watch: Watch,
    /// The descriptor of the [`Backing`] this view was mapped from, only
    /// to ask, after a fault, why the page vanished ([`RawView::vanished`]).
    /// Borrowed: a view lives next to its backing object (`mapping::Live`),
    /// which is closed only after the view is unmapped.
    fd: RawFd,
    /// Where the view starts in the backing object (a multiple of the page size).
    offset: u64,
    /// Why pages vanished, found out once: every access to the poisoned
    /// view reports the same.
    vanished: OnceLock<Vanished>,
}

// SAFETY: a RawView is an address range owned by this value; nothing in it is
// tied to the thread that created it.
unsafe impl Send for RawView {}
// SAFETY: RawView's methods take `&self` only to read its fields or to call
// msync, which is thread-safe; memory access goes through raw pointers whose
// users synchronise.
unsafe impl Sync for RawView {}

impl RawView {
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The lowest address at which a page of the view vanished under an
    /// access (see `fault.rs`); checked after every access.
    #[inline(always)]
    pub(crate) fn fault(&self) -> Option<usize> {
        self.watch.fault()
    }

    /// Why the page at `addr` (a [`RawView::fault`] address) vanished: the
    /// object behind the view is now too short for it (it shrank), or it is
    /// still long enough, so the page could not be allocated or read: no
    /// space if its file system is (nearly) full, else an I/O error. Both
    /// raise the same `SIGBUS`; only the object's size and its file
    /// system's free space, asked here, after the access, tell them apart.
    #[cold]
    pub(crate) fn vanished(&self, addr: usize) -> Vanished {
        *self.vanished.get_or_init(|| {
            // The view's own pages are contiguous from `ptr`, at `offset`.
            let at = (addr.saturating_sub(self.ptr as usize)) as u64;
            let Some(byte) = self.offset.checked_add(at) else {
                return Vanished::Shrank;
            };
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: `st` is writable memory for one stat; `fd` is open (see
            // the field).
            if unsafe { libc::fstat(self.fd, st.as_mut_ptr()) } != 0 {
                return Vanished::Shrank;
            }
            // SAFETY: fstat returned 0, so it filled `st`.
            let size = unsafe { st.assume_init() }.st_size.max(0) as u64;
            if size <= byte {
                return Vanished::Shrank;
            }
            // SAFETY: the backing object's descriptor stays open while the
            // view is mapped (see the field).
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            match space::free_space(fd) {
                Ok(Some(free)) if free.avail >= NEARLY_FULL => Vanished::Failed { code: libc::EIO },
                _ => Vanished::NoSpace { code: libc::ENOSPC },
            }
        })
    }

    /// Writes the pages covering `offset..offset + len` back to the backing
    /// object and waits for it (`msync(MS_SYNC)`). The range must lie inside
    /// the view.
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        if len == 0 {
            return Ok(());
        }
        let page = page_size();
        let start = offset - offset % page;
        // SAFETY: `start..offset + len` lies inside the mapping (page
        // alignment only moves `start` down to the mapping's aligned base or
        // above), and msync does not touch the memory's contents.
        cvt("msync", unsafe {
            libc::msync(
                self.ptr.add(start).cast(),
                offset + len - start,
                libc::MS_SYNC,
            )
        })?;
        Ok(())
    }

    /// Unmaps the view and reports errors.
    pub(crate) fn unmap(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        this.watch.release();
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // exactly once (Drop will not run).
        cvt("munmap", unsafe { libc::munmap(this.ptr.cast(), this.len) })?;
        Ok(())
    }
}

impl Drop for RawView {
    fn drop(&mut self) {
        self.watch.release();
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped
        // exactly once. An error cannot be reported from drop, and munmap of
        // a range we mapped only fails on invalid arguments, which would be a
        // bug caught by `unmap` in tests.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The `madvise` advice values offered to users, by their C names.
///
/// Left out on purpose: `MADV_DONTFORK` (a forked child that touches the
/// view would crash), `MADV_HWPOISON` and `MADV_SOFT_OFFLINE` (they inject
/// memory errors, and the next access kills the process).
pub(crate) const ADVICE: &[(&str, i32)] = &[
    ("MADV_NORMAL", libc::MADV_NORMAL),
    ("MADV_RANDOM", libc::MADV_RANDOM),
    ("MADV_SEQUENTIAL", libc::MADV_SEQUENTIAL),
    ("MADV_WILLNEED", libc::MADV_WILLNEED),
    ("MADV_DONTNEED", libc::MADV_DONTNEED),
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    ("MADV_FREE", libc::MADV_FREE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_REMOVE", libc::MADV_REMOVE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DOFORK", libc::MADV_DOFORK),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_MERGEABLE", libc::MADV_MERGEABLE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_UNMERGEABLE", libc::MADV_UNMERGEABLE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_HUGEPAGE", libc::MADV_HUGEPAGE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_NOHUGEPAGE", libc::MADV_NOHUGEPAGE),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DONTDUMP", libc::MADV_DONTDUMP),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("MADV_DODUMP", libc::MADV_DODUMP),
];

impl RawView {
    /// Gives the kernel `advice` (one of [`ADVICE`]) about the pages covering
    /// `offset..offset + len` of the view. The range must lie inside the view.
    pub(crate) fn advise(&self, offset: usize, len: usize, advice: i32) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        debug_assert!(ADVICE.iter().any(|&(_, a)| a == advice));
        if len == 0 {
            return Ok(());
        }
        // madvise wants a page-aligned start; the view itself starts on a
        // page boundary, so aligning down stays inside it.
        let page = page_size();
        let start = offset - offset % page;
        // SAFETY: `start..offset + len` lies inside this mapping. None of the
        // advice values in ADVICE unmaps memory: at worst (DONTNEED, REMOVE,
        // FREE) the pages' contents are dropped and read back as the file's
        // data or zeros, which no Rust reference can observe because mapped
        // memory is only reached through raw pointers.
        cvt("madvise", unsafe {
            libc::madvise(self.ptr.add(start).cast(), offset + len - start, advice)
        })?;
        Ok(())
    }
}

/// Where a mapping's lock lives: the backing object, reached through a
/// descriptor of our own so that the lock outlives `close()` of the view.
///
/// On Linux the lock is an open-file-description (OFD) write lock on one
/// byte of the backing object. Such locks belong to an open file
/// description, so every acquisition opens a fresh one: two threads, or a
/// forked child, then contend like two processes do, and the kernel drops the
/// lock when its holder dies.
#[derive(Debug)]
// Only Linux has the open-file-description locks this uses; elsewhere the
// lock reports Unsupported and the fields go unread.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct LockTarget {
    /// Never locked itself: it is reopened for each acquisition and used to
    /// ask whether anyone holds the lock.
    fd: OwnedFd,
    /// The locked byte. Files use an offset far past any real data, so the
    /// lock does not clash with byte-range locks a program takes on its own
    /// file; blocks use byte 1 (byte 0 is kept for the liveness protocol of
    /// named blocks).
    start: libc::off_t,
}

/// One held acquisition of a [`LockTarget`]: closing it releases the lock.
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct LockDesc {
    fd: OwnedFd,
    start: libc::off_t,
    /// The process that opened it: a forked child inherits the descriptor
    /// but not the ownership.
    pid: u32,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod ofd {
    use super::*;

    /// The path that reopens `fd` as a new open file description.
    fn proc_path(fd: &OwnedFd) -> Result<CString> {
        cstring(
            "open",
            format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes(),
        )
    }

    fn flock(start: libc::off_t, kind: libc::c_int) -> libc::flock {
        // SAFETY: `flock` is a plain C struct for which all-zero bytes is a
        // valid value (it also zeroes l_pid, which OFD locks require).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as _;
        fl.l_whence = libc::SEEK_SET as _;
        fl.l_start = start;
        fl.l_len = 1;
        fl
    }

    /// `fcntl(fd, cmd, &fl)`; returns the filled-in `fl`.
    fn fcntl_lock(fd: &OwnedFd, cmd: libc::c_int, mut fl: libc::flock) -> io::Result<libc::flock> {
        // SAFETY: `fd` is open and `fl` is a valid, writable flock for the
        // duration of the call.
        if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl) } == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(fl)
        }
    }

    impl Backing {
        /// The lock of this backing object. Needs permission to open it for
        /// writing: a write lock can only be taken through a writable
        /// descriptor.
        pub(crate) fn lock_target(&self) -> Result<LockTarget> {
            let start = match self.kind {
                // A named file mapping locks its file, as every other
                // mapping of the same file does.
                _ if self.is_file() => libc::off_t::MAX - 1,
                Kind::File { .. } | Kind::Named { .. } | Kind::Anonymous => 1,
            };
            let fd = open_path(&proc_path(&self.fd)?, libc::O_RDWR, 0)
                .map_err(|e| Error::io("open", e))?;
            Ok(LockTarget { fd, start })
        }
    }

    impl LockTarget {
        /// A fresh open file description to acquire the lock through.
        pub(crate) fn description(&self) -> Result<LockDesc> {
            let fd = open_path(&proc_path(&self.fd)?, libc::O_RDWR, 0)
                .map_err(|e| Error::io("open", e))?;
            Ok(LockDesc {
                fd,
                start: self.start,
                pid: std::process::id(),
            })
        }

        /// Whether any open file description (in any process) holds the lock.
        pub(crate) fn is_locked(&self) -> Result<bool> {
            let fl = fcntl_lock(
                &self.fd,
                libc::F_OFD_GETLK,
                flock(self.start, libc::F_WRLCK),
            )
            .map_err(|e| Error::io("fcntl", e))?;
            Ok(i32::from(fl.l_type) != libc::F_UNLCK)
        }
    }

    impl LockDesc {
        /// Takes the lock if it is free; returns whether it did.
        pub(crate) fn try_lock(&self) -> Result<bool> {
            match fcntl_lock(
                &self.fd,
                libc::F_OFD_SETLK,
                flock(self.start, libc::F_WRLCK),
            ) {
                Ok(_) => Ok(true),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                    Ok(false)
                }
                Err(e) => Err(Error::io("fcntl", e)),
            }
        }

        /// Waits for the lock. A signal interrupts the wait with an error of
        /// kind [`io::ErrorKind::Interrupted`], so that the caller can run
        /// its signal handlers and call again.
        pub(crate) fn lock(&self) -> Result<()> {
            fcntl_lock(
                &self.fd,
                libc::F_OFD_SETLKW,
                flock(self.start, libc::F_WRLCK),
            )
            .map(drop)
            .map_err(|e| Error::io("fcntl", e))
        }

        /// Releases the lock, reporting errors (dropping also releases it).
        pub(crate) fn unlock(self) -> Result<()> {
            fcntl_lock(
                &self.fd,
                libc::F_OFD_SETLK,
                flock(self.start, libc::F_UNLCK),
            )
            .map(drop)
            .map_err(|e| Error::io("fcntl", e))
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod ofd {
    use super::*;

    const UNSUPPORTED: &str = "mapping locks need open-file-description locks, which this OS lacks";

    impl Backing {
        pub(crate) fn lock_target(&self) -> Result<LockTarget> {
            Err(Error::Unsupported(UNSUPPORTED))
        }
    }

    impl LockTarget {
        pub(crate) fn description(&self) -> Result<LockDesc> {
            Err(Error::Unsupported(UNSUPPORTED))
        }

        pub(crate) fn is_locked(&self) -> Result<bool> {
            Err(Error::Unsupported(UNSUPPORTED))
        }
    }

    impl LockDesc {
        pub(crate) fn try_lock(&self) -> Result<bool> {
            Err(Error::Unsupported(UNSUPPORTED))
        }

        pub(crate) fn lock(&self) -> Result<()> {
            Err(Error::Unsupported(UNSUPPORTED))
        }

        pub(crate) fn unlock(self) -> Result<()> {
            Err(Error::Unsupported(UNSUPPORTED))
        }
    }
}

impl LockDesc {
    /// Whether this process opened it (false in a forked child, which only
    /// inherited a copy of the descriptor).
    pub(crate) fn belongs_to_this_process(&self) -> bool {
        self.pid == std::process::id()
    }
}
