//! Where a shared-memory object is sized once and mapped only shared
//! (macOS): an unnamed block grows by copying into a new object, and a
//! copy-on-write view of a block is private memory holding a copy. The
//! copies go through mappings: macOS cannot `read` or `write` such objects.
//!
//! [`grow_by_copy`] and [`private_copy`] are all the rest of the backend
//! calls; elsewhere they answer `None` (nothing to do this way).

#[cfg(not(macos_limits))]
use super::{backing::Backing, view::RawView};
#[cfg(not(macos_limits))]
use crate::{
    access::{Access, Space},
    error::Result,
};

#[cfg(macos_limits)]
pub(super) use by_copy::{grow_by_copy, private_copy};

/// `None`: objects grow in place here.
#[cfg(not(macos_limits))]
#[inline(always)]
pub(super) fn grow_by_copy(_: &mut Backing, _: u64, _: Space) -> Option<Result<()>> {
    None
}

/// `None`: any object maps copy-on-write here.
#[cfg(not(macos_limits))]
#[inline(always)]
pub(super) fn private_copy(_: &Backing, _: u64, _: usize, _: Access) -> Option<Result<RawView>> {
    None
}

#[cfg(macos_limits)]
mod by_copy {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};

    use super::super::backing::{Backing, Source};
    use super::super::space::{make_room, Purpose};
    use super::super::sys::{anonymous_fd, errno, ftruncate};
    use super::super::view::RawView;
    use crate::access::{Access, Space};
    use crate::error::{Error, Result};

    /// Grows `backing` to `len` bytes by copying, if it is an unnamed block on
    /// an OS that sizes its objects once: a new object of `len` bytes with the
    /// old bytes copied in. A forked child's views stay with the old object.
    pub(in crate::os::unix) fn grow_by_copy(
        backing: &mut Backing,
        len: u64,
        space: Space,
    ) -> Option<Result<()>> {
        matches!(backing.kind, Source::Anonymous).then(|| regrow_anonymous(backing, len, space))
    }

    /// A copy-on-write view of `len` bytes at `offset` of `backing`, if the OS
    /// maps its object only shared: private memory holding a copy taken now
    /// (later writes by others are not seen, where Linux shows them in the
    /// pages not yet written to).
    pub(in crate::os::unix) fn private_copy(
        backing: &Backing,
        offset: u64,
        len: usize,
        access: Access,
    ) -> Option<Result<RawView>> {
        (access == Access::Copy && !backing.is_file()).then(|| map_copy(&backing.fd, offset, len))
    }

    fn map_copy(fd: &OwnedFd, offset: u64, len: usize) -> Result<RawView> {
        let file_offset =
            libc::off_t::try_from(offset).map_err(|_| errno("mmap", libc::EOVERFLOW))?;
        let copy = Scratch::private(len)?;
        let source = Scratch::shared(fd, len, libc::PROT_READ, file_offset)?;
        // SAFETY: both mappings are `len` bytes long and distinct; the source
        // lies within the object (the caller checked the window).
        unsafe {
            std::ptr::copy_nonoverlapping(source.ptr.cast::<u8>(), copy.ptr.cast::<u8>(), len)
        };
        Ok(RawView::new(copy.keep(), len, fd.as_raw_fd(), offset))
    }

    fn regrow_anonymous(backing: &mut Backing, len: u64, space: Space) -> Result<()> {
        let old_len = backing.len()?;
        let new = anonymous_fd()?;
        make_room(new.as_fd(), 0, len, Purpose::UnnamedBlock, space)?;
        ftruncate(&new, len)?;
        copy_object(&backing.fd, &new, old_len.min(len))?;
        let old = std::mem::replace(&mut backing.fd, new);
        backing.move_lock(&old)?;
        backing.exact_len = Some(len);
        Ok(())
    }

    /// Copies the first `len` bytes of the object `from` into `to`, through
    /// mappings (macOS cannot `read` or `write` shared-memory objects).
    fn copy_object(from: &OwnedFd, to: &OwnedFd, len: u64) -> Result<()> {
        let Ok(len) = usize::try_from(len) else {
            return Err(errno("mmap", libc::ENOMEM));
        };
        if len == 0 {
            return Ok(());
        }
        let source = Scratch::shared(from, len, libc::PROT_READ, 0)?;
        let target = Scratch::shared(to, len, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        // SAFETY: both mappings are `len` bytes long and distinct; the source is
        // our own block's object, which no one else shrinks (a forked child
        // could, as with any shared mapping).
        unsafe {
            std::ptr::copy_nonoverlapping(source.ptr.cast::<u8>(), target.ptr.cast::<u8>(), len)
        };
        Ok(())
    }

    /// A mapping made to copy through, unmapped when dropped (so an error on
    /// the way leaves none behind).
    struct Scratch {
        ptr: *mut libc::c_void,
        len: usize,
    }

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
        fn shared(
            fd: &OwnedFd,
            len: usize,
            prot: libc::c_int,
            offset: libc::off_t,
        ) -> Result<Scratch> {
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

    impl Drop for Scratch {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` come from a successful mmap and are unmapped
            // once; a failure could only leak address space.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}
