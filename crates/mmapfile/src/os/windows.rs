//! Windows backend: `CreateFileW`, `CreateFileMappingW`/`OpenFileMappingW`,
//! `MapViewOfFile`, `FlushViewOfFile`, `UnmapViewOfFile`, `VirtualQuery`.
//!
//! Named blocks are pagefile-backed sections whose name goes to Windows
//! unchanged, so `Local\` and `Global\` keep their Windows meaning and a
//! pywin32 program can share a block with this crate by name. Their lifetime
//! is the kernel's: a section lives while any handle or view holds it.

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ALREADY_EXISTS, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, DeleteFileW, FlushFileBuffers, GetFileSizeEx, CREATE_NEW, FILE_ATTRIBUTE_NORMAL,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FlushViewOfFile, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile,
    VirtualQuery, FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use crate::access::{Access, CreateMode};
use crate::error::{Error, Result};
use crate::name::BlockName;

/// Longest name in bytes after a `Local\` or `Global\` prefix (kernel object
/// names are limited to MAX_PATH characters).
pub(crate) const NAME_MAX: usize = 240;

/// (page size, allocation granularity), read once.
fn system_info() -> (usize, usize) {
    static INFO: OnceLock<(usize, usize)> = OnceLock::new();
    *INFO.get_or_init(|| {
        // SAFETY: SYSTEM_INFO is plain data for which all-zero is valid, and
        // GetSystemInfo fills it and cannot fail.
        let info = unsafe {
            let mut info: SYSTEM_INFO = std::mem::zeroed();
            GetSystemInfo(&mut info);
            info
        };
        (
            info.dwPageSize as usize,
            info.dwAllocationGranularity as usize,
        )
    })
}

/// The memory page size.
pub(crate) fn page_size() -> usize {
    system_info().0
}

/// The alignment a view's offset must have (64 KiB on current Windows).
pub(crate) fn allocation_granularity() -> usize {
    system_info().1
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}

fn check(op: &'static str, ok: i32) -> Result<()> {
    if ok == 0 {
        Err(Error::last_os(op))
    } else {
        Ok(())
    }
}

/// An owned kernel handle, closed on drop.
#[derive(Debug)]
struct Handle(HANDLE);

// SAFETY: a kernel handle may be used and closed from any thread.
unsafe impl Send for Handle {}
// SAFETY: the functions called with `&Handle` are thread-safe kernel calls.
unsafe impl Sync for Handle {}

impl Handle {
    /// Wraps the result of a handle-returning call; `invalid` is that call's
    /// failure value (NULL or INVALID_HANDLE_VALUE).
    fn new(op: &'static str, raw: HANDLE, invalid: HANDLE) -> Result<Handle> {
        if raw == invalid || raw.is_null() {
            Err(Error::last_os(op))
        } else {
            Ok(Handle(raw))
        }
    }

    fn close(self) -> Result<()> {
        let raw = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: we own the handle and close it exactly once (Drop will not run).
        check("CloseHandle", unsafe { CloseHandle(raw) })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it exactly once. A failure to
        // close cannot be reported from drop; `close` reports it.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

fn split(size: u64) -> (u32, u32) {
    ((size >> 32) as u32, size as u32)
}

#[derive(Debug)]
enum Kind {
    /// A file; the section is made per view (`CreateFileMappingW` with size 0
    /// covers the whole file). `created` holds the path if this call made it.
    File {
        file: Handle,
        created: Option<PathBuf>,
    },
    /// A named or unnamed pagefile-backed section and its size.
    Section {
        section: Handle,
        size: u64,
        named: bool,
    },
}

/// An open object that views can be mapped from.
#[derive(Debug)]
pub(crate) struct Backing {
    kind: Kind,
    writable: bool,
}

fn create_section(name: Option<&[u16]>, size: u64) -> Result<(Handle, bool)> {
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
        Handle::new("CreateFileMappingW", raw, ptr::null_mut())?,
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
            Handle::new("CreateFileW", raw, INVALID_HANDLE_VALUE)
        };
        loop {
            match open(OPEN_EXISTING) {
                Ok(file) => {
                    return Ok((
                        Backing {
                            kind: Kind::File {
                                file,
                                created: None,
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
                    let kind = Kind::File {
                        file,
                        created: Some(path.to_path_buf()),
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
            (
                Handle::new("OpenFileMappingW", raw, ptr::null_mut())?,
                false,
            )
        } else {
            let (section, existed) = create_section(Some(&wname), size)?;
            if existed && create == CreateMode::CreateOnly {
                drop(section);
                return Err(Error::io(
                    "CreateFileMappingW",
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
                kind: Kind::Section {
                    section,
                    size,
                    named: true,
                },
                writable,
            },
            created,
        ))
    }

    /// Creates an unnamed block of `size` bytes.
    pub(crate) fn anonymous(size: u64) -> Result<Backing> {
        let (section, _) = create_section(None, size)?;
        Ok(Backing {
            kind: Kind::Section {
                section,
                size,
                named: false,
            },
            writable: true,
        })
    }

    /// The current size of the backing object in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        match &self.kind {
            Kind::File { file, .. } => {
                let mut size = 0i64;
                // SAFETY: `file` is an open handle and `size` is writable.
                check("GetFileSizeEx", unsafe { GetFileSizeEx(file.0, &mut size) })?;
                Ok(size.max(0) as u64)
            }
            Kind::Section { size, .. } => Ok(*size),
        }
    }

    /// Makes the backing object at least `len` bytes long (zero-filled). A
    /// file grows through a section of the new size, which Windows fills
    /// with zeros; an unnamed block is replaced by a larger copy; a named
    /// block cannot grow (other processes hold the section as it is).
    pub(crate) fn grow(&mut self, len: u64) -> Result<()> {
        if self.len()? >= len {
            return Ok(());
        }
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        match &mut self.kind {
            Kind::File { file, .. } => {
                let (hi, lo) = split(len);
                // SAFETY: `file` is an open handle; the section is closed at once.
                let raw = unsafe {
                    CreateFileMappingW(file.0, ptr::null(), PAGE_READWRITE, hi, lo, ptr::null())
                };
                Handle::new("CreateFileMappingW", raw, ptr::null_mut())?.close()
            }
            Kind::Section {
                named: true, size, ..
            } => Err(Error::InvalidArgument(format!(
                "a named block cannot grow on Windows (it is {size} bytes)"
            ))),
            Kind::Section {
                section,
                size,
                named: false,
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
            Kind::File { file, .. } => {
                // SAFETY: `file` is open; size 0 makes a section of the whole
                // file. The view keeps the section alive after we close it.
                let raw =
                    unsafe { CreateFileMappingW(file.0, ptr::null(), protect, 0, 0, ptr::null()) };
                let section = Handle::new("CreateFileMappingW", raw, ptr::null_mut())?;
                let view = map_raw(&section, offset, len, map_access);
                drop(section);
                view
            }
            Kind::Section { section, .. } => map_raw(section, offset, len, map_access),
        }
    }

    /// Makes data written through views durable on the storage device
    /// (files only).
    pub(crate) fn sync(&self) -> Result<()> {
        if let Kind::File { file, .. } = &self.kind {
            // SAFETY: `file` is an open handle.
            check("FlushFileBuffers", unsafe { FlushFileBuffers(file.0) })?;
        }
        Ok(())
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(self) -> Result<()> {
        match self.kind {
            Kind::File { file, .. } => file.close(),
            Kind::Section { section, .. } => section.close(),
        }
    }

    /// Closes the object after a failed open, removing what this open created.
    pub(crate) fn abandon(self) {
        if let Kind::File {
            file,
            created: Some(path),
        } = self.kind
        {
            drop(file);
            let wpath = wide(path.as_os_str());
            // SAFETY: `wpath` is NUL-terminated. A failure leaves the file;
            // the open's own error is what the caller needs to see.
            unsafe { DeleteFileW(wpath.as_ptr()) };
        }
        // A section this call created vanishes with its last handle.
    }
}

fn map_raw(section: &Handle, offset: u64, len: usize, access: u32) -> Result<RawView> {
    let (hi, lo) = split(offset);
    // SAFETY: `section` is an open section handle; the system chooses the
    // address; the result is checked.
    let view = unsafe { MapViewOfFile(section.0, access, hi, lo, len) };
    if view.Value.is_null() {
        return Err(Error::last_os("MapViewOfFile"));
    }
    Ok(RawView {
        ptr: view.Value.cast(),
        len,
    })
}

/// One mapped view. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct RawView {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a RawView is an address range owned by this value; nothing in it is
// tied to the thread that created it.
unsafe impl Send for RawView {}
// SAFETY: `&self` methods only read the fields or call FlushViewOfFile, which
// is thread-safe; memory access goes through raw pointers whose users
// synchronise.
unsafe impl Sync for RawView {}

impl RawView {
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Writes `offset..offset + len` of the view back to the file
    /// (`FlushViewOfFile`; `Backing::sync` then flushes the file's buffers).
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<()> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside the view, which is mapped.
        check("FlushViewOfFile", unsafe {
            FlushViewOfFile(self.ptr.add(offset).cast(), len)
        })
    }

    /// Unmaps the view and reports errors.
    pub(crate) fn unmap(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `ptr` came from MapViewOfFile and is unmapped exactly once
        // (Drop will not run).
        check("UnmapViewOfFile", unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: this.ptr.cast(),
            })
        })
    }
}

impl Drop for RawView {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from MapViewOfFile and is unmapped exactly once;
        // an error cannot be reported from drop (`unmap` reports it).
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.cast(),
            });
        }
    }
}

/// Listing and inspecting named blocks from outside needs the object
/// manager's directory API, which this backend does not use: the kernel
/// already frees a section with its last handle, so there is nothing to
/// collect. These report that plainly.
fn blocks_unsupported<T>() -> Result<T> {
    Err(Error::io(
        "blocks",
        io::Error::new(
            io::ErrorKind::Unsupported,
            "listing named blocks is not supported on Windows (the kernel frees them)",
        ),
    ))
}

pub(crate) fn list_blocks() -> Result<Vec<crate::blocks::BlockInfo>> {
    blocks_unsupported()
}

pub(crate) fn block_info(_base: &str) -> Result<crate::blocks::BlockInfo> {
    blocks_unsupported()
}

pub(crate) fn read_block(_base: &str, _offset: u64, _len: Option<u64>) -> Result<Vec<u8>> {
    blocks_unsupported()
}

pub(crate) fn remove_block(_base: &str) -> Result<()> {
    blocks_unsupported()
}

pub(crate) fn collect_block(_base: &str) -> Result<bool> {
    blocks_unsupported()
}
