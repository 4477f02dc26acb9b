//! Room for new storage: what creating a block or growing a file checks or
//! allocates before the object is sized (see [`Space`] for the policies).
//!
//! `ftruncate` allocates nothing on POSIX systems. Without a check, a block
//! larger than `/dev/shm` (64 MiB in a Docker container unless started with
//! `--shm-size`), or a file grown past its file system's free space, opens
//! fine, and the first write to a page that cannot be allocated raises
//! `SIGBUS`. Windows fails at creation instead; these functions make POSIX
//! do the same, as far as the chosen policy goes.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::names::SHM_DIR;
use super::sys::fstatvfs;
use crate::access::Space;
use crate::error::{Error, Result};

/// Whether a shared-memory object lives in no file system (macOS), so that
/// its space cannot be asked (memory and swap are still checked).
const OBJECTS_OUTSIDE_FILE_SYSTEMS: bool = cfg!(macos_limits);

/// What the new storage is for, to word the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    NamedBlock,
    UnnamedBlock,
    File,
}

impl Purpose {
    fn is_block(self) -> bool {
        self != Purpose::File
    }
}

/// Makes room, as `space` says, for the bytes `from..to` of the object
/// behind `fd`, which is `from` bytes long and is about to be sized to `to`.
/// On success with [`Space::Reserve`] the object may already be `to` bytes
/// long; on failure it is `from` bytes long again.
pub(crate) fn make_room(
    fd: BorrowedFd<'_>,
    from: u64,
    to: u64,
    purpose: Purpose,
    space: Space,
) -> Result<()> {
    let Some(need) = to.checked_sub(from).filter(|&n| n > 0) else {
        return Ok(());
    };
    match space {
        Space::Sparse => Ok(()),
        Space::Check => check(fd, need, to, purpose),
        Space::Reserve => {
            // A block larger than memory and swap together must not even be
            // tried: allocating it would push the machine into the OOM killer.
            check_memory(need, purpose)?;
            reserve(fd, from, to, purpose)
        }
    }
}

/// Makes room, as `space` says, for a block of `size` bytes whose memory is
/// not in any file system (a System V segment, see `segment.rs`): only the
/// machine's memory and swap bound it, so `/dev/shm`'s free space is not
/// asked (nor is it the limit: a container's `--shm-size` does not apply).
#[cfg(not(portable_lifetime))]
pub(crate) fn room_in_memory(size: u64, space: Space) -> Result<()> {
    match space {
        Space::Sparse => Ok(()),
        Space::Check | Space::Reserve => check_memory(size, Purpose::NamedBlock),
    }
}

/// With [`Space::Reserve`], allocates the first `size` bytes of the new
/// segment now (`MADV_POPULATE_WRITE`, Linux 5.14 and later; older kernels
/// leave it to the first writes).
#[cfg(not(portable_lifetime))]
pub(crate) fn populate(segment: &super::segment::Segment, size: u64, space: Space) -> Result<()> {
    if space != Space::Reserve || size == 0 {
        return Ok(());
    }
    let Ok(len) = usize::try_from(size) else {
        return Err(Error::io(
            "madvise",
            std::io::Error::from_raw_os_error(libc::EFBIG),
        ));
    };
    let len = len.next_multiple_of(super::page_size());
    // SAFETY: the first `len` bytes (the user's, rounded up to pages) lie
    // inside the segment's attachment; populating does not change contents.
    let ret = unsafe { libc::madvise(segment.base().cast(), len, libc::MADV_POPULATE_WRITE) };
    if ret == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) => Ok(()),
        Some(code @ (libc::ENOMEM | libc::EFAULT)) => Err(Error::storage(
            Some("madvise"),
            if code == libc::EFAULT {
                libc::ENOMEM
            } else {
                code
            },
            format!(
                "no memory for a named block of {}: the machine's memory could not back it",
                amount(size)
            ),
        )),
        _ => Err(Error::io("madvise", err)),
    }
}

/// Refuses `need` more bytes (growing to `to`) if they cannot fit now:
/// one `fstatvfs`.
fn check(fd: BorrowedFd<'_>, need: u64, to: u64, purpose: Purpose) -> Result<()> {
    check_memory(need, purpose)?;
    let free = free_space(fd)?;
    match free {
        Some(free) if need > free.avail => Err(no_room(
            "fstatvfs",
            libc::ENOSPC,
            need,
            to,
            Some(free),
            purpose,
        )),
        _ => Ok(()),
    }
}

/// The space of a file system: bytes available to unprivileged users, and
/// its whole size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Free {
    pub(crate) avail: u64,
    pub(crate) total: u64,
}

/// The free space of the file system holding `fd`, or None if it reports
/// no limit (the kernel's own tmpfs behind `memfd_create` reports 0 blocks).
// The fields' types vary by platform (narrower on 32-bit systems and on
// macOS), so the conversions that are no-ops here are kept.
#[allow(clippy::useless_conversion)]
pub(crate) fn free_space(fd: BorrowedFd<'_>) -> Result<Option<Free>> {
    let st = match fstatvfs(fd) {
        Ok(st) => st,
        Err(_) if OBJECTS_OUTSIDE_FILE_SYSTEMS => return Ok(None),
        Err(e) => return Err(e),
    };
    if st.f_blocks == 0 {
        return Ok(None);
    }
    let unit = u64::from(st.f_frsize);
    // Saturating: a file system can report more than u64 bytes in theory,
    // and "a lot" is all the comparison needs.
    Ok(Some(Free {
        avail: u64::from(st.f_bavail).saturating_mul(unit),
        total: u64::from(st.f_blocks).saturating_mul(unit),
    }))
}

/// Refuses a block larger than the machine's memory and swap together:
/// Linux's own heuristic refuses private memory of that size (overcommit
/// mode 0), and Windows' commit limit is the same sum, so such a block
/// could never be backed in full.
fn check_memory(need: u64, purpose: Purpose) -> Result<()> {
    if !purpose.is_block() {
        return Ok(());
    }
    let Some(memory) = memory_and_swap_cached() else {
        return Ok(());
    };
    if need <= memory {
        return Ok(());
    }
    Err(Error::storage(
        Some("sysinfo"),
        libc::ENOMEM,
        format!(
            "a block of {} cannot be backed: it is larger than this machine's memory and \
             swap together ({}); ask for a smaller block, or map a file instead",
            amount(need),
            amount(memory)
        ),
    ))
}

/// [`memory_and_swap`], asked once per process: a system call costs as much
/// as a tenth of creating a named block, and memory rarely changes (swap
/// added later is not seen).
fn memory_and_swap_cached() -> Option<u64> {
    static MEMORY: AtomicU64 = AtomicU64::new(0);
    match MEMORY.load(Ordering::Relaxed) {
        0 => {
            let memory = memory_and_swap()?;
            MEMORY.store(memory, Ordering::Relaxed);
            Some(memory)
        }
        memory => Some(memory),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
// Narrower fields on 32-bit systems: see `free_space`.
#[allow(clippy::useless_conversion)]
fn memory_and_swap() -> Option<u64> {
    let mut info = std::mem::MaybeUninit::<libc::sysinfo>::uninit();
    // SAFETY: `info` is writable memory for one sysinfo, filled on success.
    if unsafe { libc::sysinfo(info.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: sysinfo returned 0, so it filled `info`.
    let info = unsafe { info.assume_init() };
    let unit = u64::from(info.mem_unit.max(1));
    let units = u64::from(info.totalram).checked_add(u64::from(info.totalswap))?;
    units.checked_mul(unit)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn memory_and_swap() -> Option<u64> {
    // Swap is not reported here; physical memory alone is the bound.
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let pages = u64::try_from(pages).ok().filter(|&p| p > 0)?;
    pages.checked_mul(super::page_size() as u64)
}

/// Allocates `from..to` now; the object is `to` bytes long afterwards.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(macos_limits)))]
fn reserve(fd: BorrowedFd<'_>, from: u64, to: u64, purpose: Purpose) -> Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(from),
        libc::off_t::try_from(to - from),
    ) else {
        return Err(Error::io(
            "fallocate",
            std::io::Error::from_raw_os_error(libc::EFBIG),
        ));
    };
    loop {
        // SAFETY: `fd` is open; mode 0 allocates the range and extends the
        // file to its end.
        if unsafe { libc::fallocate(fd.as_raw_fd(), 0, offset, len) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // This file system cannot allocate ahead: check instead.
            Some(libc::EOPNOTSUPP | libc::ENOSYS) => return check(fd, to - from, to, purpose),
            Some(code @ (libc::ENOSPC | libc::ENOMEM | libc::EDQUOT)) => {
                // A failed fallocate may have allocated, and extended the
                // file by, part of the range (ext4 does; tmpfs undoes its
                // own): give it back.
                let _ = truncate_to(fd, offset);
                let free = free_space(fd).ok().flatten();
                return Err(no_room("fallocate", code, to - from, to, free, purpose));
            }
            _ => {
                let _ = truncate_to(fd, offset);
                return Err(Error::io("fallocate", err));
            }
        }
    }
}

/// Gives a failed reservation back: the object is `len` bytes long again.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(macos_limits)))]
fn truncate_to(fd: BorrowedFd<'_>, len: libc::off_t) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is open.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// No way to allocate ahead here (macOS has no `fallocate`): check instead.
#[cfg(any(not(any(target_os = "linux", target_os = "android")), macos_limits))]
fn reserve(fd: BorrowedFd<'_>, from: u64, to: u64, purpose: Purpose) -> Result<()> {
    check(fd, to - from, to, purpose)
}

/// The error for `need` bytes (growing to `to`) that the file system,
/// with `free` space as far as it says, cannot hold.
fn no_room(
    op: &'static str,
    code: i32,
    need: u64,
    to: u64,
    free: Option<Free>,
    purpose: Purpose,
) -> Error {
    let has = match free {
        Some(free) => format!("{} free of {}", amount(free.avail), amount(free.total)),
        None => "not enough free".to_owned(),
    };
    let message = match purpose {
        Purpose::NamedBlock => format!(
            "no space for a named block of {}: shared memory ({SHM_DIR}) has {has}. Close or \
             remove blocks that are no longer needed (python -m mmapfile ls / gc), ask for a \
             smaller block, or give {SHM_DIR} more room: a Docker container gets 64 MiB unless \
             it is started with --shm-size (e.g. docker run --shm-size=1g); elsewhere remount \
             it with a larger size=",
            amount(need)
        ),
        Purpose::UnnamedBlock => format!(
            "no space for an unnamed block of {}: its shared-memory file system has {has}; \
             ask for a smaller block",
            amount(need)
        ),
        Purpose::File => format!(
            "no space to grow the file to {to} bytes: that needs {} more and its file system \
             has {has}. Free some space or map a smaller size (a sparse file larger than the \
             free space can still be mapped with the sparse space policy, at the risk of an \
             error when a write finds the disk full)",
            amount(need)
        ),
    };
    Error::storage(Some(op), code, message)
}

/// `bytes` for a person: "64.0 MiB (67108864 bytes)".
pub(crate) fn amount(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::amount;

    #[test]
    fn amounts_read_as_binary_units_with_the_exact_count() {
        assert_eq!(amount(0), "0 bytes");
        assert_eq!(amount(1023), "1023 bytes");
        assert_eq!(amount(64 << 20), "64.0 MiB (67108864 bytes)");
        assert_eq!(amount(3 << 29), "1.5 GiB (1610612736 bytes)");
        assert_eq!(amount(u64::MAX), "16.0 EiB (18446744073709551615 bytes)");
    }
}
