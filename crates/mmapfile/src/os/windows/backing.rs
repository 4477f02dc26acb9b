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
use std::sync::{mpsc, Arc, OnceLock};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ALREADY_EXISTS, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, DeleteFileW, FlushFileBuffers, GetFileInformationByHandle, GetFileSizeEx,
    BY_HANDLE_FILE_INFORMATION, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FlushViewOfFile, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile,
    VirtualQuery, FILE_MAP_COPY, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, ReleaseMutex, WaitForSingleObject, INFINITE,
};

use crate::access::{Access, CreateMode, Space};
use crate::error::{Error, Result};
use crate::mem::Vanished;
use crate::name::BlockName;

/// How named blocks live here (see [`crate::blocks::BACKEND`]).
pub(crate) const NAMED_BACKEND: &str = "windows";

/// The error for a name that is taken (`create=True` on an existing name).
pub(crate) fn name_taken() -> Error {
    Error::io(
        "CreateFileMapping",
        io::Error::from_raw_os_error(ERROR_ALREADY_EXISTS as i32),
    )
}

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
/// The index of the first `byte` in `hay`.
#[inline]
pub(crate) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(byte, hay)
}

pub(crate) fn page_size() -> usize {
    system_info().0
}

/// The alignment a view's offset must have (64 KiB on current Windows).
pub(crate) fn allocation_granularity() -> usize {
    system_info().1
}

/// None: Windows has no advice that brings large pages to memory already
/// allocated. Large pages come only from `VirtualAlloc(MEM_LARGE_PAGES)`,
/// which needs the `SeLockMemoryPrivilege` that ordinary accounts lack, and
/// the buffers this is for are allocated by the caller (Python's allocator).
pub(crate) fn advisable_huge_page_size() -> Option<usize> {
    None
}

/// Never called (see `advisable_huge_page_size`); does nothing.
///
/// # Safety
/// As on Linux: the range must lie inside memory the caller owns.
pub(crate) unsafe fn advise_huge_pages(_ptr: *mut u8, _len: usize) -> bool {
    false
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
    /// covers the whole file), unless the mapping has a name: then `named`
    /// holds the named section. `created` holds the path if this call made it.
    File {
        file: Handle,
        created: Option<PathBuf>,
        named: Option<Box<NamedSection>>,
    },
    /// A named or unnamed pagefile-backed section and its size. `name` is
    /// the block's name as given (prefix included), for its lock; an
    /// unnamed block keeps its unnamed lock mutex in `mutex` instead, made
    /// on first use, since nothing else could find it again.
    Section {
        section: Handle,
        size: u64,
        name: Option<String>,
        mutex: OnceLock<Arc<Handle>>,
    },
}

/// The section of a named file mapping, which any process can open by its
/// name while a handle or view of it is open anywhere.
#[derive(Debug)]
///
/// This object's own views come from sections of the whole file, as for an
/// unnamed file mapping (they see the same pages), so that the named section
/// is held by its handle alone: a `resize` by its only holder can then
/// replace it with a larger one under the same name, as pywin32's does.
struct NamedSection {
    section: Handle,
    /// The name as given (prefix included), for the mapping's lock and for
    /// the section that replaces this one.
    name: String,
    /// This object's mapping size: the named section's size, or what a
    /// `resize` grew the file to.
    size: u64,
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
                            kind: Kind::File {
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
                    let kind = Kind::File {
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
                kind: Kind::Section {
                    section,
                    size,
                    name: Some(name.as_str().to_owned()),
                    mutex: OnceLock::new(),
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
            kind: Kind::Section {
                section,
                size,
                name: None,
                mutex: OnceLock::new(),
            },
            writable: true,
        })
    }

    /// Gives this file's mapping of `size` bytes the name `name`:
    /// `CreateFileMappingW` with the file and the name, as pywin32 does.
    /// `Ok(false)`: the name is taken (by a block or another mapping), and
    /// nothing was changed.
    pub(crate) fn publish_name(&mut self, name: &BlockName, size: u64, _mode: u32) -> Result<bool> {
        let Kind::File { file, named, .. } = &mut self.kind else {
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
            Kind::File {
                named: Some(named), ..
            } => Ok(named.size),
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
    /// NTFS allocates the grown part when the section is created, whatever
    /// `_space` says (a file marked sparse is the exception, as on Windows).
    pub(crate) fn grow(&mut self, len: u64, _space: Space) -> Result<()> {
        if self.len()? >= len {
            return Ok(());
        }
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        match &mut self.kind {
            Kind::File { file, named, .. } => {
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
            Kind::Section {
                name: Some(_),
                size,
                ..
            } => Err(Error::InvalidArgument(format!(
                "a named block cannot grow on Windows (it is {size} bytes)"
            ))),
            Kind::Section {
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
            Kind::File { file, .. } => {
                // SAFETY: `file` is open; size 0 makes a section of the whole
                // file. The view keeps the section alive after we close it.
                let raw =
                    unsafe { CreateFileMappingW(file.0, ptr::null(), protect, 0, 0, ptr::null()) };
                let section = Handle::new("CreateFileMapping", raw, ptr::null_mut())?;
                let view = map_raw(&section, offset, len, map_access);
                drop(section);
                view
            }
            Kind::Section { section, size, .. } => {
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
        if let Kind::File { file, .. } = &self.kind {
            // SAFETY: `file` is an open handle.
            check("FlushFileBuffers", unsafe { FlushFileBuffers(file.0) })?;
        }
        Ok(())
    }

    /// Closes the object and reports errors.
    pub(crate) fn close(self) -> Result<()> {
        match self.kind {
            Kind::File { file, named, .. } => {
                let named = named.map_or(Ok(()), |n| n.section.close());
                named.and(file.close())
            }
            Kind::Section { section, .. } => section.close(),
        }
    }

    /// Closes the object after a failed open, removing what this open created.
    pub(crate) fn abandon(self) {
        if let Kind::File {
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
    Err(Error::Unsupported(
        "looking at named blocks from outside is not supported on Windows \
         (the kernel frees a block with its last handle, so none can be left behind)",
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

pub(crate) fn remove_block(_base: &str) -> Result<Option<bool>> {
    blocks_unsupported()
}

pub(crate) fn collect_block(_base: &str) -> Result<bool> {
    blocks_unsupported()
}

pub(crate) fn collect_leftovers() -> Result<()> {
    blocks_unsupported()
}

/// Windows has no `madvise`: no advice values are offered, so
/// `MapFile::madvise` reports [`Error::Unsupported`] before reaching
/// [`RawView::advise`]. (`PrefetchVirtualMemory` and `DiscardVirtualMemory`
/// cover parts of it, with different semantics; they are not offered under
/// `madvise`'s name.)
pub(crate) const ADVICE: &[(&str, i32)] = &[];

impl RawView {
    /// Always None: Windows needs no guard for the case the POSIX one exists
    /// for. A file cannot be truncated below a mapped view there
    /// (`SetEndOfFile` fails with `ERROR_USER_MAPPED_FILE`), and a
    /// pagefile-backed section never shrinks, so no page of a view can vanish
    /// under an access.
    ///
    /// What remains is storage failing under a file view (a network share or
    /// removable media going away, a full disk under a sparse file), which
    /// Windows raises as `EXCEPTION_IN_PAGE_ERROR`; like CPython's `mmap`,
    /// this crate does not catch that. A vectored exception handler would
    /// see it, with the cause (`ExceptionInformation[2]`, e.g.
    /// `STATUS_DISK_FULL`), but cannot recover the way the POSIX guard does:
    /// part of a view cannot be unmapped, so replacing its missing pages
    /// means unmapping the whole view and putting fresh memory at the same
    /// addresses. Between the two, another thread may be given that address
    /// range (and the re-run instruction would write into its memory), or,
    /// with placeholders (`UnmapViewOfFile2` + `VirtualAlloc2`, Windows 10
    /// 1803 and later) keeping the range, a thread touching the still-valid
    /// part of the view faults on the placeholder and needs handling too.
    /// Not attempted without a real Windows machine to test it on.
    #[inline(always)]
    pub(crate) fn fault(&self) -> Option<usize> {
        None
    }

    /// Never called: [`RawView::fault`] never reports a page.
    #[cold]
    pub(crate) fn vanished(&self, _addr: usize) -> Vanished {
        Vanished::Shrank
    }

    /// Never reached with a valid advice value (there are none on Windows).
    pub(crate) fn advise(&self, _offset: usize, _len: usize, _advice: i32) -> Result<()> {
        Err(Error::Unsupported("madvise is not available on Windows"))
    }
}

/// Where a mapping's lock lives: a kernel mutex derived from the mapping,
/// so that every process mapping the same file or named block finds it.
///
/// - named block `N`: the mutex `N.mmapfile-lock` (same namespace prefix as
///   the block, so `Local\` and `Global\` mean the same for both);
/// - file: `Global\mmapfile-lock.<volume serial>.<file index>`, the file's
///   identity as `GetFileInformationByHandle` reports it, so that every
///   path to the file (and every session of the machine) finds the same
///   mutex;
/// - unnamed block: an unnamed mutex (Windows has no `fork` to share the
///   block through, so only this process can take it).
///
/// A Windows mutex belongs to a thread and is recursive for it, while a
/// [`LockDesc`] must contend with every other one, even in the same thread,
/// and may be released from any thread. So each acquisition gets its own
/// owner thread that waits for the mutex, holds it and releases it on
/// request: the mutex is never taken twice by one thread, and the calling
/// thread does not matter. When the process dies, its owner threads die with
/// it and the kernel marks the mutex abandoned; the next waiter gets
/// `WAIT_ABANDONED`, which is treated as acquiring it (the holder died).
#[derive(Debug)]
pub(crate) struct LockTarget {
    mutex: Arc<Handle>,
}

/// One acquisition of a [`LockTarget`], with its owner thread: dropping it
/// releases the lock (if held) and ends the thread.
#[derive(Debug)]
pub(crate) struct LockDesc {
    /// `None` only while dropping (closing it tells the thread to stop).
    commands: Option<mpsc::Sender<LockCommand>>,
    replies: mpsc::Receiver<Result<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
enum LockCommand {
    /// Take the mutex if it is free; reply whether it was taken.
    Try,
    /// Wait for the mutex; reply `true` once held.
    Wait,
    /// Release the mutex; reply `true`.
    Release,
}

/// The mutex name for a named block (`name` as given, prefix included).
fn block_lock_name(name: &str) -> String {
    format!("{name}.mmapfile-lock")
}

/// The mutex name for the open file `file`, from its identity.
fn file_lock_name(file: &Handle) -> Result<String> {
    // SAFETY: BY_HANDLE_FILE_INFORMATION is plain data for which all-zero is
    // valid; `file` is an open handle and the struct is writable.
    let info = unsafe {
        let mut info: BY_HANDLE_FILE_INFORMATION = std::mem::zeroed();
        check(
            "GetFileInformationByHandle",
            GetFileInformationByHandle(file.0, &mut info),
        )?;
        info
    };
    let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
    Ok(format!(
        "Global\\mmapfile-lock.{:08x}.{index:016x}",
        info.dwVolumeSerialNumber
    ))
}

impl Backing {
    /// The lock of this mapping (see [`LockTarget`]).
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let name = match &self.kind {
            // Openers by name cannot tell the file, so a named file
            // mapping locks by its name, as a named block does.
            Kind::File {
                named: Some(named), ..
            } => block_lock_name(&named.name),
            Kind::File { file, .. } => file_lock_name(file)?,
            Kind::Section {
                name: Some(name), ..
            } => block_lock_name(name),
            Kind::Section {
                name: None, mutex, ..
            } => {
                if let Some(mutex) = mutex.get() {
                    return Ok(LockTarget {
                        mutex: Arc::clone(mutex),
                    });
                }
                // Two threads racing here both create a mutex; the loser's
                // is dropped and both use the winner's.
                let fresh = Arc::new(create_mutex(None)?);
                return Ok(LockTarget {
                    mutex: Arc::clone(mutex.get_or_init(|| fresh)),
                });
            }
        };
        let wname = wide(OsStr::new(&name));
        Ok(LockTarget {
            mutex: Arc::new(create_mutex(Some(&wname))?),
        })
    }
}

/// Creates (or opens, for an existing name) a mutex, initially unowned:
/// owner threads take it.
fn create_mutex(name: Option<&[u16]>) -> Result<Handle> {
    let name_ptr = name.map_or(ptr::null(), |n| n.as_ptr());
    // SAFETY: the name, if any, is NUL-terminated and outlives the call.
    let raw = unsafe { CreateMutexW(ptr::null(), 0, name_ptr) };
    Handle::new("CreateMutex", raw, ptr::null_mut())
}

/// Waits up to `millis` for `mutex` in the calling thread; returns whether
/// the thread now owns it.
fn wait_mutex(mutex: &Handle, millis: u32) -> Result<bool> {
    // SAFETY: `mutex` is an open mutex handle.
    match unsafe { WaitForSingleObject(mutex.0, millis) } {
        // WAIT_ABANDONED: the holder exited without releasing; this thread
        // owns the mutex now. The bytes it guards may be half-updated, which
        // is the caller's to judge, as with a POSIX lock of a dead holder.
        WAIT_OBJECT_0 | WAIT_ABANDONED => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(Error::last_os("WaitForSingleObject")),
    }
}

fn release_mutex(mutex: &Handle) -> Result<()> {
    // SAFETY: `mutex` is an open mutex handle owned by the calling thread.
    check("ReleaseMutex", unsafe { ReleaseMutex(mutex.0) })
}

/// The body of an owner thread: runs commands until the channel closes,
/// then releases the mutex if it still holds it.
fn own_mutex(
    mutex: &Handle,
    commands: mpsc::Receiver<LockCommand>,
    replies: mpsc::Sender<Result<bool>>,
) {
    let mut held = false;
    for command in commands {
        let reply = match command {
            LockCommand::Try | LockCommand::Wait if held => Ok(true),
            LockCommand::Try => wait_mutex(mutex, 0),
            LockCommand::Wait => wait_mutex(mutex, INFINITE),
            LockCommand::Release if held => release_mutex(mutex).map(|()| false),
            LockCommand::Release => Ok(false),
        };
        if let Ok(now_held) = reply {
            held = now_held;
        }
        if replies.send(reply).is_err() {
            break;
        }
    }
    if held {
        // Nobody is left to hear about a failure; the thread's exit then
        // abandons the mutex, which frees it for the next waiter anyway.
        let _ = release_mutex(mutex);
    }
}

impl LockTarget {
    /// A new acquisition with its own owner thread.
    pub(crate) fn description(&self) -> Result<LockDesc> {
        let (commands, thread_commands) = mpsc::channel();
        let (thread_replies, replies) = mpsc::channel();
        let mutex = Arc::clone(&self.mutex);
        let thread = std::thread::Builder::new()
            .name("mmapfile-lock".into())
            .stack_size(64 * 1024)
            .spawn(move || own_mutex(&mutex, thread_commands, thread_replies))
            .map_err(|e| Error::io("CreateThread", e))?;
        Ok(LockDesc {
            commands: Some(commands),
            replies,
            thread: Some(thread),
        })
    }

    /// Whether any thread, in any process, holds the lock. Windows cannot
    /// ask a mutex for its state, so this takes it for an instant if it is
    /// free (a `try_lock` elsewhere at that instant fails as if it were
    /// held). The calling thread never owns the mutex otherwise (owner
    /// threads do), so taking it here cannot be a recursive acquisition.
    pub(crate) fn is_locked(&self) -> Result<bool> {
        if wait_mutex(&self.mutex, 0)? {
            release_mutex(&self.mutex)?;
            Ok(false)
        } else {
            Ok(true)
        }
    }
}

impl LockDesc {
    fn ask(&self, command: LockCommand) -> Result<bool> {
        let gone = || {
            Error::io(
                "mmapfile-lock thread",
                io::Error::other("the lock's owner thread ended unexpectedly"),
            )
        };
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send(command)
            .map_err(|_| gone())?;
        self.replies.recv().map_err(|_| gone())?
    }

    /// Takes the lock if it is free; returns whether it did.
    pub(crate) fn try_lock(&self) -> Result<bool> {
        self.ask(LockCommand::Try)
    }

    /// Waits for the lock (not interruptible: Windows has no signals to
    /// interrupt it with).
    pub(crate) fn lock(&self) -> Result<()> {
        self.ask(LockCommand::Wait).map(drop)
    }

    /// Releases the lock, reporting errors (dropping also releases it).
    pub(crate) fn unlock(self) -> Result<()> {
        self.ask(LockCommand::Release).map(drop)
    }

    /// Always true: Windows has no `fork`, so a description never reaches
    /// another process.
    pub(crate) fn belongs_to_this_process(&self) -> bool {
        true
    }
}

impl Drop for LockDesc {
    fn drop(&mut self) {
        // Closing the channel makes the owner thread release the mutex and
        // end; waiting for it means the lock is free when drop returns.
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            // The thread does not panic; if it did, the mutex is abandoned,
            // which frees it all the same.
            let _ = thread.join();
        }
    }
}
