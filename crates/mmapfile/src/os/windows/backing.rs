//! `Backing` on Windows: a file (its sections made per view), a named or
//! unnamed pagefile-backed section, or a file mapping with a name.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, DeleteFileW, FlushFileBuffers, GetFileSizeEx, CREATE_NEW, FILE_ATTRIBUTE_NORMAL,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION, PAGE_READONLY,
    PAGE_READWRITE, PAGE_WRITECOPY,
};

use super::lock::LockTarget;
use super::sys::{check, split, wide, Handle};
use super::view::{map_raw, RawView};
use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::name::BlockName;

#[derive(Debug)]
pub(super) enum Source {
    /// A file; the section is made per view (`CreateFileMappingW` with size 0
    /// covers the whole file), unless the mapping has a name: then `named`
    /// holds the named section. `created` holds the path if this call made it.
    File {
        file: Handle,
        created: Option<PathBuf>,
        named: Option<Box<NamedSection>>,
    },
    /// A named or unnamed pagefile-backed section and its size. `name` is
    /// the block's name as given (prefix included), for its lock; an
    /// unnamed block keeps its lock (a word in this process) in `lock`
    /// instead, made on first use, since nothing else could find it again.
    Section {
        section: Handle,
        size: u64,
        name: Option<String>,
        lock: OnceLock<LockTarget>,
    },
}

/// The section of a named file mapping, which any process can open by its
/// name while a handle or view of it is open anywhere.
///
/// This object's own views come from sections of the whole file, as for an
/// unnamed file mapping (they see the same pages), so that the named section
/// is held by its handle alone: a `resize` by its only holder can then
/// replace it with a larger one under the same name, as pywin32's does.
#[derive(Debug)]
pub(super) struct NamedSection {
    section: Handle,
    /// The name as given (prefix included), for the mapping's lock and for
    /// the section that replaces this one.
    pub(super) name: String,
    /// This object's mapping size: the named section's size, or what a
    /// `resize` grew the file to.
    size: u64,
}

/// An open object that views can be mapped from.
#[derive(Debug)]
pub(crate) struct Backing {
    pub(super) kind: Source,
    writable: bool,
}

/// Creates (or opens, for an existing name) a pagefile-backed section with
/// the default security; also makes the companion of a named block's lock
/// (`lock_home.rs`), which so gets the block's security. Returns whether the
/// name existed.
pub(super) fn create_section(name: Option<&[u16]>, size: u64) -> Result<(Handle, bool)> {
    let (hi, lo) = split(size);
    let name_ptr = name.map_or(ptr::null(), |n| n.as_ptr());
    // SAFETY: INVALID_HANDLE_VALUE asks for a pagefile-backed section; the
    // name, if any, is a NUL-terminated UTF-16 string that outlives the call.
    let raw = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            ptr::null(),
            PAGE_READWRITE,
            hi,
            lo,
            name_ptr,
        )
    };
    // SAFETY: GetLastError has no preconditions; it must be read right after
    // the call to tell a new section from an existing one.
    let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    Ok((
        Handle::new("CreateFileMapping", raw, ptr::null_mut())?,
        existed,
    ))
}

/// The size of a section, as Windows reports it: the region size of a view
/// of the whole section (rounded up to whole pages).
fn section_size(section: &Handle, access: u32) -> Result<u64> {
    // SAFETY: mapping the whole section (length 0) at an address of the
    // system's choosing; the view is unmapped below.
    let view = unsafe { MapViewOfFile(section.0, access, 0, 0, 0) };
    if view.Value.is_null() {
        return Err(Error::last_os("MapViewOfFile"));
    }
    // SAFETY: MEMORY_BASIC_INFORMATION is plain data; VirtualQuery fills it
    // for an address inside the view we just mapped.
    let (got, info) = unsafe {
        let mut info: MEMORY_BASIC_INFORMATION = std::mem::zeroed();
        let got = VirtualQuery(view.Value, &mut info, std::mem::size_of_val(&info));
        (got, info)
    };
    let err = (got == 0).then(|| Error::last_os("VirtualQuery"));
    // SAFETY: `view` was mapped above and is unmapped exactly once.
    unsafe { UnmapViewOfFile(view) };
    match err {
        Some(e) => Err(e),
        None => Ok(info.RegionSize as u64),
    }
}

impl Backing {
    /// Opens the file at `path`, creating it when `access` is
    /// [`Access::Write`] and it does not exist. Returns whether it was created.
    pub(crate) fn file(path: &Path, access: Access) -> Result<(Backing, bool)> {
        let wpath = wide(path.as_os_str());
        // The string ends at the first NUL for Windows: refuse rather than
        // open a different, shorter path.
        if wpath[..wpath.len() - 1].contains(&0) {
            return Err(Error::InvalidArgument(
                "CreateFileW: embedded null character in path".into(),
            ));
        }
        let writable = access.writes_backing();
        let rights = if writable {
            GENERIC_READ | GENERIC_WRITE
        } else {
            GENERIC_READ
        };
        let share = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
        let open = |disposition| {
            // SAFETY: `wpath` is NUL-terminated and outlives the call.
            let raw = unsafe {
                CreateFileW(
                    wpath.as_ptr(),
                    rights,
                    share,
                    ptr::null(),
                    disposition,
                    FILE_ATTRIBUTE_NORMAL,
                    ptr::null_mut(),
                )
            };
            Handle::new("CreateFile", raw, INVALID_HANDLE_VALUE)
        };
        loop {
            match open(OPEN_EXISTING) {
                Ok(file) => {
                    return Ok((
                        Backing {
                            kind: Source::File {
                                file,
                                created: None,
                                named: None,
                            },
                            writable,
                        },
                        false,
                    ))
                }
                Err(e) if !writable || e.raw_os_error() != Some(2) => return Err(e),
                Err(_) => {}
            }
            match open(CREATE_NEW) {
                Ok(file) => {
                    let kind = Source::File {
                        file,
                        created: Some(path.to_path_buf()),
                        named: None,
                    };
                    return Ok((Backing { kind, writable }, true));
                }
                // Someone else created it between our two calls: open theirs.
                Err(e) if e.raw_os_error() == Some(80) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates or opens the named block `name`; the name goes to Windows as
    /// given, prefix included. `mode` and `allow_other_owner` do not apply:
    /// Windows' default security (creator and administrators) governs access.
    pub(crate) fn named(
        name: &BlockName,
        size: u64,
        create: CreateMode,
        access: Access,
        _mode: u32,
        _allow_other_owner: bool,
        // Windows commits a pagefile-backed section when it creates it, so
        // every policy behaves as `Space::Reserve` already.
        _space: Space,
    ) -> Result<(Backing, bool)> {
        let wname = wide(OsStr::new(name.as_str()));
        let writable = access.writes_backing();
        let map_access = if writable {
            FILE_MAP_READ | FILE_MAP_WRITE
        } else {
            FILE_MAP_READ
        };
        if create == CreateMode::CreateOnly && size == 0 {
            return Err(Error::InvalidArgument(
                "creating a named block needs a MaximumSize greater than 0".into(),
            ));
        }
        let (section, created) = if size == 0 || create == CreateMode::OpenOnly {
            // SAFETY: `wname` is NUL-terminated and outlives the call.
            let raw = unsafe { OpenFileMappingW(map_access, 0, wname.as_ptr()) };
            (Handle::new("OpenFileMapping", raw, ptr::null_mut())?, false)
        } else {
            let (section, existed) = create_section(Some(&wname), size)?;
            if existed && create == CreateMode::CreateOnly {
                drop(section);
                return Err(Error::io(
                    "CreateFileMapping",
                    io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32),
                ));
            }
            (section, !existed)
        };
        let size = if created {
            size
        } else {
            section_size(&section, map_access)?
        };
        Ok((
            Backing {
                kind: Source::Section {
                    section,
                    size,
                    name: Some(name.as_str().to_owned()),
                    lock: OnceLock::new(),
                },
                writable,
            },
            created,
        ))
    }

    /// Creates an unnamed block of `size` bytes.
    pub(crate) fn anonymous(size: u64, _space: Space) -> Result<Backing> {
        let (section, _) = create_section(None, size)?;
        Ok(Backing {
            kind: Source::Section {
                section,
                size,
                name: None,
                lock: OnceLock::new(),
            },
            writable: true,
        })
    }

    /// Gives this file's mapping of `size` bytes the name `name`:
    /// `CreateFileMappingW` with the file and the name, as pywin32 does.
    /// `Ok(false)`: the name is taken (by a block or another mapping), and
    /// nothing was changed.
    pub(crate) fn publish_name(&mut self, name: &BlockName, size: u64, _mode: u32) -> Result<bool> {
        let Source::File { file, named, .. } = &mut self.kind else {
            return Err(Error::InvalidArgument(
                "only a file mapping can be given a name".into(),
            ));
        };
        // A section of a read-only file handle can still give read-only and
        // copy-on-write views.
        let protect = if self.writable {
            PAGE_READWRITE
        } else {
            PAGE_WRITECOPY
        };
        let wname = wide(OsStr::new(name.as_str()));
        let (hi, lo) = split(size);
        // SAFETY: `file` is open; `wname` is NUL-terminated and outlives the call.
        let raw =
            unsafe { CreateFileMappingW(file.0, ptr::null(), protect, hi, lo, wname.as_ptr()) };
        // SAFETY: GetLastError has no preconditions; read right after the call.
        let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
        let section = Handle::new("CreateFileMapping", raw, ptr::null_mut())?;
        if existed {
            // The name's mapping is someone else's; ours was not made.
            drop(section);
            return Ok(false);
        }
        *named = Some(Box::new(NamedSection {
            section,
            name: name.as_str().to_owned(),
            size,
        }));
        Ok(true)
    }

    /// The mapped file's path, for a mapping opened by name: Windows does
    /// not tell which file a section maps.
    pub(crate) fn file_path(&self) -> Option<PathBuf> {
        None
    }

    /// The current size of the backing object in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        match &self.kind {
            Source::File {
                named: Some(named), ..
            } => Ok(named.size),
            Source::File { file, .. } => {
                let mut size = 0i64;
                // SAFETY: `file` is an open handle and `size` is writable.
                check("GetFileSizeEx", unsafe { GetFileSizeEx(file.0, &mut size) })?;
                Ok(size.max(0) as u64)
            }
            Source::Section { size, .. } => Ok(*size),
        }
    }

    /// Whether the object can be made longer: not a named block (other
    /// processes hold its section as it is).
    pub(crate) fn can_grow(&self) -> bool {
        !matches!(self.kind, Source::Section { name: Some(_), .. })
    }

    /// Makes the backing object `len` bytes long (zero-filled). A file
    /// grows through a section of the new size, which Windows fills with
    /// zeros; an unnamed block is replaced by a larger copy. The caller
    /// (`mapping_size`) has checked the rules every OS shares: `len` is more
    /// than [`Backing::len`], the object was opened for writing, and
    /// [`Backing::can_grow`].
    /// NTFS allocates the grown part when the section is created, whatever
    /// `_space` says (a file marked sparse is the exception, as on Windows).
    pub(crate) fn grow(&mut self, len: u64, _space: Space) -> Result<()> {
        match &mut self.kind {
            Source::File { file, named, .. } => {
                let (hi, lo) = split(len);
                // SAFETY: `file` is an open handle; the section is closed at
                // once. A section of a larger size grows the file, unless the
                // file is already that long.
                let raw = unsafe {
                    CreateFileMappingW(file.0, ptr::null(), PAGE_READWRITE, hi, lo, ptr::null())
                };
                Handle::new("CreateFileMapping", raw, ptr::null_mut())?.close()?;
                if let Some(old) = named.take() {
                    // As pywin32's resize: close the named section and make
                    // it anew at the new size. If this was its only holder
                    // the name now has the larger mapping; if others hold it,
                    // Windows hands back the existing one as it is. Should
                    // that fail, this object no longer holds the name.
                    let NamedSection { section, name, .. } = *old;
                    drop(section);
                    let wname = wide(OsStr::new(&name));
                    // SAFETY: `file` is open; `wname` is NUL-terminated and
                    // outlives the call.
                    let raw = unsafe {
                        CreateFileMappingW(
                            file.0,
                            ptr::null(),
                            PAGE_READWRITE,
                            hi,
                            lo,
                            wname.as_ptr(),
                        )
                    };
                    let section = Handle::new("CreateFileMapping", raw, ptr::null_mut())?;
                    *named = Some(Box::new(NamedSection {
                        section,
                        name,
                        size: len,
                    }));
                }
                Ok(())
            }
            Source::Section { name: Some(_), .. } => {
                unreachable!("mapping_size grows only what can_grow allows")
            }
            Source::Section {
                section,
                size,
                name: None,
                ..
            } => {
                let (bigger, _) = create_section(None, len)?;
                let old_len = usize::try_from(*size).map_err(|_| {
                    Error::InvalidArgument("block too large for this address space".into())
                })?;
                let access = FILE_MAP_READ | FILE_MAP_WRITE;
                let from = map_raw(section, 0, old_len, access)?;
                let to = map_raw(&bigger, 0, old_len, access)?;
                // SAFETY: both views are `old_len` bytes long, freshly mapped,
                // distinct, and unmapped when `from`/`to` drop.
                unsafe { ptr::copy_nonoverlapping(from.ptr, to.ptr, old_len) };
                *section = bigger;
                *size = len;
                Ok(())
            }
        }
    }

    /// Maps `len` bytes at `offset` (a multiple of [`allocation_granularity`]).
    pub(crate) fn map(&self, offset: u64, len: usize, access: Access) -> Result<RawView> {
        let (protect, map_access) = match access {
            Access::Write => (PAGE_READWRITE, FILE_MAP_READ | FILE_MAP_WRITE),
            Access::Read => (PAGE_READONLY, FILE_MAP_READ),
            Access::Copy => (PAGE_WRITECOPY, FILE_MAP_COPY),
        };
        match &self.kind {
            Source::File { file, .. } => {
                // SAFETY: `file` is open; size 0 makes a section of the whole
                // file. The view keeps the section alive after we close it.
                let raw =
                    unsafe { CreateFileMappingW(file.0, ptr::null(), protect, 0, 0, ptr::null()) };
                let section = Handle::new("CreateFileMapping", raw, ptr::null_mut())?;
                let view = map_raw(&section, offset, len, map_access);
                drop(section);
                view
            }
            Source::Section { section, size, .. } => {
                // A window to the section's end asks for "the rest" (length
                // 0), as pywin32 does: a file's section opened by name is
                // only as long as the file part of its last page, while
                // Windows reports (and we map) whole pages.
                if offset.checked_add(len as u64) == Some(*size) {
                    let mut view = map_raw(section, offset, 0, map_access)?;
                    view.len = len;
                    Ok(view)
                } else {
                    map_raw(section, offset, len, map_access)
                }
            }
        }
    }

    /// Makes data written through views durable on the storage device
    /// (files only).
    pub(crate) fn sync(&self) -> Result<()> {
        if let Source::File { file, .. } = &self.kind {
            // SAFETY: `file` is an open handle.
            check("FlushFileBuffers", unsafe { FlushFileBuffers(file.0) })?;
        }
        Ok(())
    }

    /// Unmaps `view`, this object's view, then closes the object; reports
    /// the errors of both.
    pub(crate) fn close_with_view(self, view: RawView) -> Result<()> {
        let unmapped = view.unmap();
        let closed = self.close();
        unmapped.and(closed)
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(self) -> Result<()> {
        match self.kind {
            Source::File { file, named, .. } => {
                let named = named.map_or(Ok(()), |n| n.section.close());
                named.and(file.close())
            }
            Source::Section { section, .. } => section.close(),
        }
    }

    /// Closes the object after a failed open, removing what this open created.
    pub(crate) fn abandon(self) {
        if let Source::File {
            file,
            created: Some(path),
            named,
        } = self.kind
        {
            drop(named);
            drop(file);
            let wpath = wide(path.as_os_str());
            // SAFETY: `wpath` is NUL-terminated. A failure leaves the file;
            // the open's own error is what the caller needs to see.
            unsafe { DeleteFileW(wpath.as_ptr()) };
        }
        // A section this call created vanishes with its last handle.
    }
}
