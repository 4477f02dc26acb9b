//! `Backing` on POSIX: a file, a named block of shared memory or a named
//! file mapping joined as a holder (`lifetime`), or an unnamed block.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::copy;
use super::file_record::FileRecord;
use super::join::{Held, New};
use super::lifetime;
use super::segment::Segment;
use super::space::{make_room, Purpose};
use super::sys::{anonymous_fd, cstring, cvt, fstat, ftruncate, getpid, mmap, open_path};
use super::view::RawView;
use super::{control, lock};
use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::name::BlockName;

/// Whether `fstat` reports a shared-memory object's size rounded up to whole
/// pages (macOS), so that an unnamed block keeps its exact size itself.
const SIZE_ROUNDED_UP: bool = cfg!(macos_limits);

#[derive(Debug)]
pub(super) enum Source {
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
pub(super) struct NamedFile {
    /// The file's path; `created` too if this call created the file, so
    /// that a failed open can remove it again.
    pub(super) path: PathBuf,
    pub(super) created: bool,
    /// The mapping's size: what openers by name map.
    pub(super) size: u64,
}

/// An open object that views can be mapped from.
#[derive(Debug)]
pub(crate) struct Backing {
    pub(super) fd: OwnedFd,
    pub(super) kind: Source,
    /// The object's size where `fd`'s is not exact: macOS reports a
    /// shared-memory object's size rounded up to whole pages.
    pub(super) exact_len: Option<u64>,
    /// The mapping lock, where it is made once per object (`lock_linux.rs`).
    #[cfg_attr(portable_lifetime, allow(dead_code))]
    pub(super) lock: lock::LockCache,
    /// A named block's memory where it is a System V segment (Linux):
    /// `fd` is then the block's record, which is empty. Last, so that it is
    /// detached after the record is closed. Boxed, so that a `Backing`
    /// stays small enough to travel in errors. The mapping lock keeps its
    /// word in the segment's trailer page (`lock_home.rs`).
    pub(super) segment: Option<Box<Segment>>,
}

impl Backing {
    /// Opens the file at `path`, creating it when `access` is
    /// [`Access::Write`] and it does not exist. Returns whether it was created.
    pub(crate) fn file(path: &Path, access: Access) -> Result<(Backing, bool)> {
        let cpath = cstring("open", path.as_os_str().as_bytes())?;
        let opened = |fd, created| {
            let kind = Source::File {
                path: path.to_path_buf(),
                created,
            };
            let backing = Backing {
                fd,
                kind,
                exact_len: None,
                lock: Default::default(),
                segment: None,
            };
            Ok((backing, created))
        };
        if !access.writes_backing() {
            let fd = open_path(&cpath, libc::O_RDONLY, 0).map_err(|e| Error::io("open", e))?;
            return opened(fd, false);
        }
        loop {
            match open_path(&cpath, libc::O_RDWR, 0) {
                Ok(fd) => return opened(fd, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("open", e)),
            }
            match open_path(&cpath, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o666) {
                Ok(fd) => return opened(fd, true),
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
        // A block that `space` finds no room for is refused before anyone
        // can use it, and leaves nothing behind: the backend removes its
        // unfinished record, or never named it.
        let init = |fd: &OwnedFd| {
            make_room(fd.as_fd(), 0, size, Purpose::NamedBlock, space)?;
            ftruncate(fd, size)
        };
        let new = (size > 0).then_some(New::Block {
            size,
            init: &init,
            space,
        });
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
        let segment = joined.segment.map(Box::new);
        let (fd, held, block_size, file) = match joined.what {
            Held::Block { size } => match joined.memory {
                Some(memory) => (memory, Some(joined.held), size, None),
                None => (joined.held, None, size, None),
            },
            Held::File(record) => {
                let opened = fstat(&joined.held)
                    .and_then(|held| record.open_file(writable, name.as_str(), held.st_uid));
                let file = match opened {
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
            kind: Source::Named {
                key,
                held,
                file,
                lockable: joined.lockable,
                pid: getpid(),
                released: false,
            },
            exact_len: block_size,
            lock: Default::default(),
            segment,
        };
        Ok((backing, created))
    }

    /// Gives this file's mapping of `size` bytes the name `name`, so that
    /// any process can open it by the name: the file side of Windows'
    /// `CreateFileMapping` with a name. `Ok(false)`: the name is taken (by a
    /// block or another mapping), and nothing was changed.
    pub(crate) fn publish_name(&mut self, name: &BlockName, size: u64, mode: u32) -> Result<bool> {
        let Source::File { path, .. } = &self.kind else {
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
        let Source::File { path, created } = std::mem::replace(&mut self.kind, Source::Anonymous)
        else {
            unreachable!("checked above")
        };
        self.kind = Source::Named {
            key,
            held: Some(joined.held),
            file: Some(Box::new(NamedFile {
                path,
                created,
                size,
            })),
            lockable: joined.lockable,
            pid: getpid(),
            released: false,
        };
        Ok(true)
    }

    /// The mapped file's path, for a named file mapping.
    pub(crate) fn file_path(&self) -> Option<PathBuf> {
        match &self.kind {
            Source::Named {
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
            kind: Source::Anonymous,
            exact_len: SIZE_ROUNDED_UP.then_some(size),
            lock: Default::default(),
            segment: None,
        };
        let len = control::object_len(size)?;
        make_room(backing.fd.as_fd(), 0, len, Purpose::UnnamedBlock, space)?;
        ftruncate(&backing.fd, len)?;
        Ok(backing)
    }

    /// The current size of the mapping object in bytes: the file's or
    /// block's size, or for a named file mapping the mapping's size.
    pub(crate) fn len(&self) -> Result<u64> {
        if let Source::Named {
            file: Some(file), ..
        } = &self.kind
        {
            return Ok(file.size);
        }
        if let Some(len) = self.exact_len {
            return Ok(len);
        }
        let st = fstat(&self.fd)?;
        Ok(self.user_len(st.st_size.max(0) as u64))
    }

    /// Where the user's bytes start in the object: after an unnamed
    /// block's control page (`control.rs`); the rest is all the user's.
    fn base(&self) -> u64 {
        match self.kind {
            Source::Anonymous => control::user_offset(),
            _ => 0,
        }
    }

    /// The user's size of this object when it is `object_len` bytes long.
    fn user_len(&self, object_len: u64) -> u64 {
        match self.kind {
            Source::Anonymous => control::user_len(object_len),
            _ => object_len,
        }
    }

    /// Whether the object can be made longer: not a named block whose memory
    /// is sized once (a System V segment on Linux; on macOS a shared-memory
    /// object, whose `fstat` does not tell a block's exact size either).
    pub(crate) fn can_grow(&self) -> bool {
        let sized_once = self.exact_len.is_some() || self.segment.is_some();
        !(matches!(self.kind, Source::Named { file: None, .. }) && sized_once)
    }

    /// Makes the mapping object `len` bytes long (zero-filled), with room
    /// for the new bytes as `space` says. The caller (`mapping_size`) has
    /// checked the rules every OS shares: `len` is more than [`Backing::len`],
    /// the object was opened for writing, and [`Backing::can_grow`].
    pub(crate) fn grow(&mut self, len: u64, space: Space) -> Result<()> {
        if let Some(grown) = copy::grow_by_copy(self, len, space) {
            return grown;
        }
        // A named file mapping's file may already be longer than the mapping.
        let current = fstat(&self.fd)?.st_size.max(0) as u64;
        let object_len = self
            .base()
            .checked_add(len)
            .ok_or_else(|| Error::io("ftruncate", io::Error::from_raw_os_error(libc::EFBIG)))?;
        if current < object_len {
            let len = object_len;
            let purpose = match self.kind {
                Source::File { .. } | Source::Named { file: Some(_), .. } => Purpose::File,
                Source::Named { .. } => Purpose::NamedBlock,
                Source::Anonymous => Purpose::UnnamedBlock,
            };
            make_room(self.fd.as_fd(), current, len, purpose, space)?;
            ftruncate(&self.fd, len)?;
        }
        if let Source::Named {
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
        if let Some(segment) = &self.segment {
            return self.map_segment(segment, offset, len, access);
        }
        // macOS maps a shared-memory object only shared.
        if let Some(view) = copy::private_copy(self, offset, len, access) {
            return view;
        }
        let (prot, flags) = match access {
            Access::Write => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED),
            Access::Read => (libc::PROT_READ, libc::MAP_SHARED),
            Access::Copy => (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE),
        };
        let offset = self
            .base()
            .checked_add(offset)
            .ok_or_else(|| Error::io("mmap", io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        let ptr = mmap(&self.fd, len, prot, flags, offset)?;
        Ok(RawView::new(ptr.cast(), len, self.fd.as_raw_fd(), offset))
    }

    /// A view of a named block whose memory is a System V segment: a
    /// duplicate of this holder's attachment, or for a copy-on-write view
    /// private memory holding a copy of the bytes, taken now (a segment
    /// cannot be mapped privately; later writes by others are not seen).
    fn map_segment(
        &self,
        segment: &Segment,
        offset: u64,
        len: usize,
        access: Access,
    ) -> Result<RawView> {
        let ptr = match access {
            Access::Write | Access::Read => segment.map(offset, len, access == Access::Write)?,
            Access::Copy => {
                // SAFETY: fresh private memory at an address the kernel
                // chooses overlaps nothing; the result is checked below.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if ptr == libc::MAP_FAILED {
                    return Err(Error::last_os("mmap"));
                }
                if let Err(e) = segment.copy_to(offset, ptr.cast(), len) {
                    // SAFETY: the private memory just mapped, unused.
                    unsafe { libc::munmap(ptr, len) };
                    return Err(e);
                }
                ptr.cast()
            }
        };
        Ok(RawView::new(ptr, len, self.fd.as_raw_fd(), offset))
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
    pub(super) fn is_file(&self) -> bool {
        matches!(
            self.kind,
            Source::File { .. } | Source::Named { file: Some(_), .. }
        )
    }

    /// Leaves a named block or file mapping as a holder (the last one
    /// removes its name; a file mapping's file stays as it is). Does nothing
    /// for other objects, twice, or in a forked child.
    fn release(&mut self) -> Result<()> {
        if let Source::Named {
            key,
            held,
            lockable,
            pid,
            released,
            ..
        } = &mut self.kind
        {
            if *released || *pid != getpid() {
                return Ok(());
            }
            *released = true;
            return lifetime::release(held.as_ref().unwrap_or(&self.fd), key, *lockable);
        }
        Ok(())
    }

    /// Unmaps `view`, this object's view, then closes the object; reports
    /// the errors of both. A view that took over a segment's attachment
    /// (see `Segment::map`) is handed back to it instead, so that closing
    /// detaches the segment once, in one `munmap`, rather than twice.
    pub(crate) fn close_with_view(self, view: RawView) -> Result<()> {
        let unmapped = match &self.segment {
            Some(segment) if segment.is_taken_by(view.as_ptr(), view.len()) => {
                let (ptr, len) = view.forget();
                segment.take_back(ptr, len);
                Ok(())
            }
            _ => view.unmap(),
        };
        let closed = self.close();
        unmapped.and(closed)
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(mut self) -> Result<()> {
        self.forget_lock();
        let released = self.release();
        // What is left is the descriptor, closed by hand to see close's
        // error. Drop must not run (it would close it again), and after these
        // assignments nothing else in `self` owns memory. The segment is
        // detached after the record is closed (see `Backing::segment`).
        self.kind = Source::Anonymous;
        let segment = self.segment.take();
        let this = std::mem::ManuallyDrop::new(self);
        let fd = this.fd.as_raw_fd();
        // SAFETY: `this` is never dropped, so its OwnedFd will not close
        // `fd`; we close it exactly once here.
        let closed = cvt("close", unsafe { libc::close(fd) });
        drop(segment);
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
            Source::File {
                path,
                created: true,
            } => Some(path),
            Source::Named {
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
