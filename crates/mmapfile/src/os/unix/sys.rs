//! The system calls of the POSIX backend, and the hooks through which the
//! `simulate-macos` build imposes macOS's limits on them (`simulated.rs`).
//!
//! Where the systems differ, a `cfg`'d constant or a small `cfg`'d helper
//! at the top of this file says how (memmap2's shape), so that function
//! bodies here and in the rest of `os/unix/` test no `cfg`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Once;

use crate::error::{Error, Result};

/// Flags every `shm_open` gets. macOS 26.4 refuses `O_CLOEXEC` there
/// (POSIX lists only `O_RDONLY`, `O_RDWR`, `O_CREAT`, `O_EXCL` and
/// `O_TRUNC`), so it is set afterwards with `fcntl` instead.
#[cfg(not(macos_limits))]
const SHM_OPEN_CLOEXEC: libc::c_int = libc::O_CLOEXEC;
#[cfg(macos_limits)]
const SHM_OPEN_CLOEXEC: libc::c_int = 0;

/// Where objects are files in a directory every user can write (Linux's
/// `/dev/shm`), another user can put a FIFO at a name, and opening it to
/// read would wait for a writer for ever: `O_NONBLOCK`, which changes
/// nothing for the regular files that objects are. FreeBSD's and macOS's
/// `shm_open` refuse flags beyond POSIX's, and their objects are no files.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(macos_limits)))]
const SHM_OPEN_NONBLOCK: libc::c_int = libc::O_NONBLOCK;
#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(macos_limits))))]
const SHM_OPEN_NONBLOCK: libc::c_int = 0;

/// The type of `shm_open`'s mode argument: Apple declares the function
/// variadic, so the mode goes as the promoted `c_uint`; Linux and FreeBSD
/// take a `mode_t`.
#[cfg(target_vendor = "apple")]
type ShmMode = libc::c_uint;
#[cfg(not(target_vendor = "apple"))]
type ShmMode = libc::mode_t;

/// Whether a shared-memory object can be `fchmod`ed. macOS has no such
/// operation for them, and needs none: `shm_open` gives a new one its mode
/// exactly (it applies no umask).
#[cfg(portable_lifetime)]
const OBJECTS_TAKE_FCHMOD: bool = !cfg!(macos_limits);

/// The `mmap` system call's number on Linux, for calls that must not go
/// through the C library (see [`map_zero_pages`]): 32-bit systems have
/// `mmap2`, which takes the offset in pages (the same for offset 0).
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "64"
))]
const SYS_MMAP: libc::c_long = libc::SYS_mmap;
#[cfg(all(
    any(target_os = "linux", target_os = "android"),
    target_pointer_width = "32"
))]
const SYS_MMAP: libc::c_long = libc::SYS_mmap2;

#[cfg(simulated)]
use super::simulated as hook;

/// The hooks of `simulated.rs`: nothing to check outside the simulation.
#[cfg(not(simulated))]
mod hook {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{BorrowedFd, OwnedFd};

    use crate::error::Result;

    #[inline(always)]
    pub(super) fn check_shm_open(_name: &CString, _flags: libc::c_int) -> io::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn created_with(_fd: &OwnedFd, _mode: libc::mode_t) -> io::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn check_mmap(_fd: &OwnedFd, _flags: libc::c_int) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn check_fchmod(_fd: &OwnedFd) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn check_statvfs(_fd: BorrowedFd<'_>) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn check_truncate(_fd: &OwnedFd) -> Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn round_size(st: libc::stat) -> libc::stat {
        st
    }

    #[cfg(portable_lifetime)]
    #[inline(always)]
    pub(super) fn check_flock(_fd: &OwnedFd) -> Result<()> {
        Ok(())
    }
}

/// The error `op` failing with the OS code `code` would give.
pub(crate) fn errno(op: &'static str, code: libc::c_int) -> Error {
    Error::io(op, io::Error::from_raw_os_error(code))
}

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

/// This process's id, without a system call on every use (glibc no longer
/// caches it; a named create + close asked twice): kept here, and renewed
/// in a forked child by a fork handler.
pub(crate) fn getpid() -> libc::pid_t {
    static PID: AtomicI32 = AtomicI32::new(0);
    /// Runs in a forked child; getpid is async-signal-safe.
    extern "C" fn in_child() {
        // SAFETY: getpid has no preconditions.
        PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    }
    let pid = PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // SAFETY: `in_child` is a valid handler for the life of the process
        // (a static function); the others are none.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    // Stored after the handler exists, so a child never keeps a stale one.
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    PID.store(pid, Ordering::Relaxed);
    pid
}

pub(crate) fn cstring(op: &'static str, bytes: &[u8]) -> Result<CString> {
    // A bad argument, not an OS failure (Python's open() says the same).
    CString::new(bytes).map_err(|_| Error::InvalidArgument(format!("{op}: embedded null byte")))
}

pub(crate) fn cvt(op: &'static str, ret: libc::c_int) -> Result<libc::c_int> {
    if ret == -1 {
        Err(Error::last_os(op))
    } else {
        Ok(ret)
    }
}

pub(crate) fn fstat(fd: &OwnedFd) -> Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is an open descriptor and `st` points to writable memory
    // large enough for a `stat`; fstat initialises it on success.
    cvt("fstat", unsafe {
        libc::fstat(fd.as_raw_fd(), st.as_mut_ptr())
    })?;
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(hook::round_size(st))
}

/// `fstatvfs(fd)`: the file system that holds `fd`.
pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> Result<libc::statvfs> {
    hook::check_statvfs(fd)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `fd` is open and `st` is writable memory for one statvfs,
    // which fstatvfs fills on success.
    cvt("fstatvfs", unsafe {
        libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr())
    })?;
    // SAFETY: fstatvfs returned 0, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

pub(crate) fn ftruncate(fd: &OwnedFd, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| errno("ftruncate", libc::EFBIG))?;
    hook::check_truncate(fd)?;
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

/// `lstat(path)`: the file at `path` itself, not what a link there leads to.
#[cfg(portable_lifetime)]
pub(crate) fn lstat(path: &CString) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` writable memory for a stat.
    if unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: lstat returned 0, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

#[cfg(portable_lifetime)]
pub(crate) fn unlink(path: &CString) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::unlink(path.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `flock(fd, op)`; `Ok(false)` if a non-blocking request was refused.
/// A signal's `EINTR` is returned (an error of kind `Interrupted`) only when
/// `interruptible`; otherwise the call is made again. (The portable
/// lifetime and the mapping lock of `lock_portable.rs` use it.)
#[cfg(portable_lifetime)]
pub(crate) fn flock(fd: &OwnedFd, op: libc::c_int, interruptible: bool) -> Result<bool> {
    hook::check_flock(fd)?;
    loop {
        // SAFETY: `fd` is an open descriptor.
        if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) if !interruptible => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(Error::io("flock", err)),
        }
    }
}

pub(crate) fn fchmod(fd: &OwnedFd, mode: u32) -> Result<()> {
    hook::check_fchmod(fd)?;
    // SAFETY: `fd` is an open descriptor.
    cvt("fchmod", unsafe {
        libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t)
    })?;
    Ok(())
}

/// Gives a new shared-memory object the mode `mode` exactly (see
/// [`OBJECTS_TAKE_FCHMOD`]).
#[cfg(portable_lifetime)]
pub(crate) fn fchmod_object(fd: &OwnedFd, mode: u32) -> Result<()> {
    if !OBJECTS_TAKE_FCHMOD {
        return Ok(());
    }
    fchmod(fd, mode)
}

pub(crate) fn open_path(
    path: &CString,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> io::Result<OwnedFd> {
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
pub(crate) fn shm_open(
    name: &CString,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let flags = flags | SHM_OPEN_CLOEXEC | SHM_OPEN_NONBLOCK;
    hook::check_shm_open(name, flags)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(name.as_ptr(), flags, mode as ShmMode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
        hook::created_with(&fd, mode)?;
    }
    if SHM_OPEN_CLOEXEC == 0 {
        // SAFETY: `fd` is open; FD_CLOEXEC is the only descriptor flag.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

pub(crate) fn shm_unlink(name: &CString) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(name.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mmap(NULL, len, prot, flags, fd, offset)`: a fresh mapping at an
/// address the kernel chooses.
pub(crate) fn mmap(
    fd: &OwnedFd,
    len: usize,
    prot: libc::c_int,
    flags: libc::c_int,
    offset: u64,
) -> Result<*mut libc::c_void> {
    let offset = libc::off_t::try_from(offset).map_err(|_| errno("mmap", libc::EOVERFLOW))?;
    hook::check_mmap(fd, flags)?;
    // SAFETY: a fresh mapping at an address the kernel chooses overlaps
    // nothing; `fd` is open; the result is checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags,
            fd.as_raw_fd(),
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::last_os("mmap"));
    }
    Ok(ptr)
}

/// What [`map_zero_pages`] maps: private zero-filled memory at a fixed
/// address, replacing what was there.
const ZERO_PAGES_PROT: libc::c_int = libc::PROT_READ | libc::PROT_WRITE;
const ZERO_PAGES_FLAGS: libc::c_int = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

/// Maps private zero-filled pages over `addr..addr + len`, replacing what
/// was there, from the `SIGBUS` handler (`fault.rs`); returns whether it
/// worked.
///
/// The C library's `mmap` is not on POSIX's list of async-signal-safe
/// functions, so on Linux the system call is made directly (`syscall` only
/// loads registers, traps, and sets `errno` on failure, which the handler
/// restores).
///
/// # Safety
/// `addr..addr + len` must be page-aligned memory that nothing else needs:
/// its contents are lost.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) unsafe fn map_zero_pages(addr: usize, len: usize) -> bool {
    // `syscall` is variadic: every argument goes as a full `long`, so that
    // no register holds stray upper bits.
    let args = [
        addr as libc::c_long,
        len as libc::c_long,
        libc::c_long::from(ZERO_PAGES_PROT),
        libc::c_long::from(ZERO_PAGES_FLAGS),
        -1 as libc::c_long,
        0 as libc::c_long,
    ];
    // SAFETY: the arguments are those of mmap(2); the caller vouches for
    // the range.
    let ret = unsafe {
        libc::syscall(
            SYS_MMAP, args[0], args[1], args[2], args[3], args[4], args[5],
        )
    };
    ret == addr as libc::c_long
}

/// Maps private zero-filled pages over `addr..addr + len` from the `SIGBUS`
/// handler; returns whether it worked. Other systems than Linux have no
/// stable system-call interface: there the library's `mmap`, a thin
/// wrapper around the call on every such system, is the only way.
///
/// # Safety
/// As for the Linux version.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) unsafe fn map_zero_pages(addr: usize, len: usize) -> bool {
    let (prot, flags) = (ZERO_PAGES_PROT, ZERO_PAGES_FLAGS);
    // SAFETY: the caller vouches for the range.
    let ret = unsafe { libc::mmap(addr as *mut libc::c_void, len, prot, flags, -1, 0) };
    ret != libc::MAP_FAILED
}

/// A new unnamed shared-memory object, close-on-exec.
#[cfg(all(
    any(target_os = "linux", target_os = "android", target_os = "freebsd"),
    not(macos_limits)
))]
pub(crate) fn anonymous_fd() -> Result<OwnedFd> {
    let name = c"mmapfile-unnamed";
    // SAFETY: `name` is a NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("memfd_create"));
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new unnamed shared-memory object, close-on-exec.
#[cfg(any(
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd")),
    macos_limits
))]
pub(crate) fn anonymous_fd() -> Result<OwnedFd> {
    // No memfd: create a uniquely named object and unlink it at once.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = cstring(
            "shm_open",
            format!("/mmapfile-anon.{}.{n}", getpid()).as_bytes(),
        )?;
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
