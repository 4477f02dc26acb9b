//! Opening a mapping and working with its view: the whole pywin32 `mmapfile`
//! contract, independent of the OS. Options and opening are in `options.rs`,
//! searches in `search.rs`; the view's I/O is here.

// `Error` has a non-trivial drop (some variants own an `io::Error` or a
// `String`), so an error built eagerly by `ok_or` and then not used costs a
// call to its drop glue on the success path: 6 % of a one-byte read in a
// profile. The lazy forms keep the success path free of it.
#![allow(clippy::unnecessary_lazy_evaluations)]

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use crate::access::{Access, Space};
use crate::error::{Error, Result};
use crate::lock::MapLock;
use crate::mem::{self, Region};
use crate::name::BlockName;
use crate::os;

mod bounds;
mod options;
mod search;

pub use bounds::clamp_index;
use bounds::{check_slice, check_window, clamp_bound};
use options::mapping_size;
pub use options::MapOptions;
pub use search::Partial;

/// What a mapping is backed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// A named block of shared memory.
    Named(BlockName),
    /// A file mapping with a name: opened with both a file and a name, or
    /// by the name of one where the OS tells which file it maps (POSIX; on
    /// Windows an opener by name sees [`Source::Named`]).
    NamedFile {
        /// The mapping's name.
        name: BlockName,
        /// The mapped file.
        path: PathBuf,
    },
    /// An unnamed block of shared memory (shared with forked children only).
    Anonymous,
}

/// An open backing object with its mapped view.
#[derive(Debug)]
struct Live {
    // The view comes first so that it is unmapped before the backing object
    // is closed (fields drop in order): the view asks the backing object's
    // descriptor why a page vanished, as long as it is mapped.
    view: os::RawView,
    backing: os::Backing,
    /// Bytes between the aligned start of `view` and the requested offset.
    delta: usize,
    /// Length of the part of the view the user asked for.
    len: usize,
    /// The requested offset of the view in the backing object.
    offset: u64,
}

impl Live {
    /// Maps the window `offset..offset + len` (len 0: to the end) of a
    /// mapping object of `size` bytes.
    fn map(
        backing: os::Backing,
        size: u64,
        offset: u64,
        len: u64,
        access: Access,
    ) -> std::result::Result<Live, Box<(os::Backing, Error)>> {
        match Self::window(&backing, size, offset, len, access) {
            Ok((view, delta, len)) => Ok(Live {
                backing,
                view,
                delta,
                len,
                offset,
            }),
            // Boxed: a failed map is rare, and a `Backing` is large.
            Err(e) => Err(Box::new((backing, e))),
        }
    }

    fn window(
        backing: &os::Backing,
        size: u64,
        offset: u64,
        len: u64,
        access: Access,
    ) -> Result<(os::RawView, usize, usize)> {
        let len = check_window(size, offset, len)?;
        let too_large = || {
            Error::InvalidArgument(format!(
                "a view of {len} bytes does not fit this address space"
            ))
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or_else(too_large)?;
        let granularity = os::allocation_granularity() as u64;
        let aligned = offset - offset % granularity;
        let delta = (offset - aligned) as usize;
        let map_len = delta.checked_add(len).ok_or_else(too_large)?;
        let view = backing.map(aligned, map_len, access)?;
        Ok((view, delta, len))
    }

    fn region(&self) -> Result<Region<'_>> {
        let region = self.read_region();
        // A page of the view vanished under an earlier access (the backing
        // object shrank) and was replaced: every access fails until
        // `resize` maps a new view.
        if let Some(addr) = self.view.fault() {
            return Err(mem::vanished(&self.view, region.ptr, addr));
        }
        Ok(region)
    }

    /// The view without the check for an earlier fault, for an access that
    /// only reads: the guard's check after the access reports a poisoned
    /// view just the same (a fault record never clears), and reading the
    /// replaced pages first does no harm. Saves a check on one-byte reads.
    fn read_region(&self) -> Region<'_> {
        // SAFETY: `delta` is less than the view's length (the view spans
        // `delta + len` bytes with `len > 0`), so the pointer stays inside it.
        let ptr = unsafe { self.view.as_ptr().add(self.delta) };
        Region {
            ptr,
            len: self.len,
            view: &self.view,
        }
    }
}

/// An open mapping with a current position, as pywin32's `mmapfile` object.
///
/// All methods check bounds with overflow-checked arithmetic; none of them
/// can read or write outside the view. After [`MapFile::close`], every
/// method except `close` returns [`Error::Closed`].
#[derive(Debug)]
pub struct MapFile {
    live: Option<Live>,
    pos: usize,
    access: Access,
    source: Source,
    name: Option<String>,
    created: bool,
    exports: usize,
    /// The storage policy of the open, for `resize`.
    space: Space,
}

impl MapFile {
    fn live(&self) -> Result<&Live> {
        self.live.as_ref().ok_or_else(|| Error::Closed)
    }

    pub(crate) fn region(&self) -> Result<Region<'_>> {
        self.live()?.region()
    }

    /// See `Live::read_region`. A caller that fails before its access must
    /// report through [`MapFile::refuse`], so that a poisoned view still
    /// answers every call with its fault.
    fn read_region(&self) -> Result<Region<'_>> {
        Ok(self.live()?.read_region())
    }

    /// `err`, unless the view is poisoned: then the fault, as every access
    /// to a poisoned view reports.
    #[cold]
    fn refuse(&self, err: Error) -> Error {
        self.region().err().unwrap_or(err)
    }

    fn writable_region(&self) -> Result<Region<'_>> {
        let region = self.region()?;
        if !self.access.is_writable() {
            return Err(Error::ReadOnly);
        }
        Ok(region)
    }

    /// Whether [`MapFile::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.live.is_none()
    }

    /// The access mode.
    pub fn access(&self) -> Access {
        self.access
    }

    /// What the mapping is backed by.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The path of a file-backed mapping.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) | Source::NamedFile { path: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The name given when opening, if any (prefix included).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether opening created the file or block (always true for an
    /// unnamed block).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The offset of the view in the file or block, as requested.
    pub fn offset(&self) -> Result<u64> {
        Ok(self.live()?.offset)
    }

    /// The size of the view in bytes (pywin32's `size()`).
    pub fn len(&self) -> Result<usize> {
        Ok(self.live()?.len)
    }

    /// Whether the view is empty (never, for an open mapping).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The current position.
    pub fn tell(&self) -> Result<usize> {
        self.live()?;
        Ok(self.pos)
    }

    /// Moves the position: `how` 0 is from the start, 1 from the current
    /// position, 2 from the end (`size - dist` for `dist >= 0`, as pywin32;
    /// `size + dist` for a negative `dist`). The end itself is a valid
    /// position. Returns the new position.
    pub fn seek(&mut self, dist: i64, how: i32) -> Result<usize> {
        let len = self.len()?;
        let size = len as i128;
        let dist = i128::from(dist);
        let target = match how {
            0 => dist,
            1 => self.pos as i128 + dist,
            2 if dist < 0 => size + dist,
            2 => size - dist,
            _ => return Err(Error::InvalidArgument("unknown seek type".into())),
        };
        if !(0..=size).contains(&target) {
            return Err(Error::OutOfRange("seek out of range"));
        }
        self.pos = target as usize;
        Ok(self.pos)
    }

    /// How many bytes `read(n)` returns: `n` clipped to what is left after
    /// the position; a negative `n` means all of it.
    pub fn read_len(&self, n: i64) -> Result<usize> {
        let left = self.len()? - self.pos;
        Ok(match usize::try_from(n) {
            Ok(n) => n.min(left),
            Err(_) => left,
        })
    }

    /// Copies `dst.len()` bytes from the position into `dst` and advances
    /// the position; fails without copying if fewer bytes are left.
    pub fn read_into(&mut self, dst: &mut [u8]) -> Result<()> {
        let region = self.region()?;
        let end = self
            .pos
            .checked_add(dst.len())
            .filter(|&e| e <= region.len)
            .ok_or_else(|| Error::OutOfRange("read out of range"))?;
        // SAFETY: `pos..end` lies inside the live view, which stays mapped
        // while `self` is borrowed.
        unsafe { region.copy_out(self.pos, dst) }?;
        self.pos = end;
        Ok(())
    }

    /// Like [`MapFile::read_into`], into memory that may be uninitialised;
    /// on success all of `dst` is initialised. Lets a caller fill a new
    /// buffer without zeroing it first.
    pub fn read_into_uninit(&mut self, dst: &mut [MaybeUninit<u8>]) -> Result<()> {
        let region = self.region()?;
        let end = self
            .pos
            .checked_add(dst.len())
            .filter(|&e| e <= region.len)
            .ok_or_else(|| Error::OutOfRange("read out of range"))?;
        // SAFETY: `pos..end` lies inside the live view, which stays mapped
        // while `self` is borrowed.
        unsafe { region.copy_out_uninit(self.pos, dst)? };
        self.pos = end;
        Ok(())
    }

    /// pywin32's `read(n)`: up to `n` bytes from the position (all that is
    /// left for a negative `n`), advancing the position.
    pub fn read(&mut self, n: i64) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.read_len(n)?];
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// pywin32's `read_byte()`.
    pub fn read_byte(&mut self) -> Result<u8> {
        let region = self.read_region()?;
        if self.pos >= region.len {
            return Err(self.refuse(Error::OutOfRange("read byte out of range")));
        }
        // SAFETY: `pos < len`, inside the live view.
        let b = unsafe { region.byte(self.pos) }?;
        self.pos += 1;
        Ok(b)
    }

    /// The length of the line at the position: up to and including the next
    /// `\n`, or the rest of the view if there is none (0 at the end).
    pub fn readline_len(&self) -> Result<usize> {
        let region = self.region()?;
        // SAFETY: `pos..len` lies inside the live view.
        let newline = unsafe { region.find(b"\n", self.pos, region.len) }?;
        Ok(newline.map_or(region.len, |i| i + 1) - self.pos)
    }

    /// pywin32's `readline()` into storage the caller allocates once the
    /// line's length is known: `alloc(n)` returns an owner of at least `n`
    /// bytes that `storage` borrows (e.g. a new, uninitialised Python bytes
    /// object). The search and the copy are one guarded access. Advances the
    /// position past the line and returns the owner; an error from `alloc`
    /// leaves the position alone. At the end `alloc(0)` is called.
    ///
    /// The safe form of [`MapFile::readline_raw`], for storage that need
    /// not be zeroed first:
    ///
    /// ```
    /// let mut m = mmapfile::MapOptions::new().maximum_size(4096).open()?;
    /// m.write(b"first\nsecond\n")?;
    /// m.seek(0, 0)?;
    /// let line = m.readline_with(
    ///     |n| Ok::<_, mmapfile::Error>(Box::<[u8]>::new_uninit_slice(n)),
    ///     |storage| &mut storage[..],
    /// )?;
    /// // SAFETY: readline_with initialised all the bytes it asked for.
    /// let line = unsafe { line.assume_init() };
    /// assert_eq!(&*line, b"first\n");
    /// assert_eq!(m.tell()?, 6);
    /// # Ok::<(), mmapfile::Error>(())
    /// ```
    pub fn readline_with<B, E: From<Error>>(
        &mut self,
        alloc: impl FnOnce(usize) -> std::result::Result<B, E>,
        storage: impl FnOnce(&mut B) -> &mut [MaybeUninit<u8>],
    ) -> std::result::Result<B, E> {
        let take = |src: *const u8, n: usize| {
            let mut owner = alloc(n)?;
            let dst = storage(&mut owner);
            assert!(
                dst.len() >= n,
                "readline_with: storage shorter than asked for"
            );
            // SAFETY: `read_line` hands over `n` readable bytes at `src`.
            unsafe { mem::copy_from_view(src, &mut dst[..n]) };
            Ok(owner)
        };
        // SAFETY: `take` only copies the line out.
        unsafe { self.readline_raw(take) }
    }

    /// pywin32's `readline()`, handing the line to `take` as a pointer and
    /// a length for it to copy out in one go (the Python binding makes a
    /// `bytes` from it directly). Advances the position past the line and
    /// returns what `take` returns; an error from `take` leaves the
    /// position alone. At the end `take` gets a length of 0. If a page of
    /// the line vanished under `take` (see [`Error::Truncated`]), its result
    /// is dropped.
    ///
    /// # Safety
    /// `take` may read at most the given number of bytes at the pointer,
    /// must not keep the pointer, and must not assume the bytes stay the
    /// same while it reads them (another process may be writing them).
    pub unsafe fn readline_raw<B, E: From<Error>>(
        &mut self,
        take: impl FnOnce(*const u8, usize) -> std::result::Result<B, E>,
    ) -> std::result::Result<B, E> {
        // A line access always runs (0 bytes at the end), so the guard's
        // check after it reports a poisoned view.
        let region = self.read_region()?;
        // SAFETY: `pos <= len`: every move of the position is checked
        // against the view's length; the caller's contract for `take` is
        // the one `read_line` needs.
        let (owner, n) = unsafe { region.read_line(self.pos, take) }??;
        self.pos += n;
        Ok(owner)
    }

    /// pywin32's `readline()`; at the end it returns an empty vector.
    pub fn readline(&mut self) -> Result<Vec<u8>> {
        let mut buf = vec![0; self.readline_len()?];
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// pywin32's `write(data)`: all of `data` at the position, or nothing if
    /// it does not fit. Advances the position.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let region = self.writable_region()?;
        let end = self
            .pos
            .checked_add(data.len())
            .filter(|&e| e <= region.len)
            .ok_or_else(|| Error::OutOfRange("data out of range"))?;
        // SAFETY: `pos..end` lies inside the live, writable view.
        unsafe { region.copy_in(self.pos, data) }?;
        self.pos = end;
        Ok(())
    }

    /// pywin32's `write_byte(b)`.
    pub fn write_byte(&mut self, value: u8) -> Result<()> {
        let region = self.writable_region()?;
        if self.pos >= region.len {
            return Err(Error::OutOfRange("write_byte past end of buffer"));
        }
        // SAFETY: `pos < len`, inside the live, writable view.
        unsafe { region.set_byte(self.pos, value) }?;
        self.pos += 1;
        Ok(())
    }

    /// pywin32's `move(dest, src, count)`: copies `count` bytes inside the
    /// view (the ranges may overlap).
    pub fn move_within(&mut self, dest: i64, src: i64, count: i64) -> Result<()> {
        let region = self.writable_region()?;
        let out_of_range = Error::OutOfRange("source or destination out of range");
        let in_view = |start: i64| -> Option<usize> {
            let start = usize::try_from(start).ok()?;
            let count = usize::try_from(count).ok()?;
            start
                .checked_add(count)
                .filter(|&e| e <= region.len)
                .map(|_| start)
        };
        let (Some(dest), Some(src)) = (in_view(dest), in_view(src)) else {
            return Err(out_of_range);
        };
        // SAFETY: both ranges were checked to lie inside the live, writable
        // view; `count` is non-negative (checked by `in_view`).
        unsafe { region.copy_within(dest, src, count as usize) }
    }

    /// pywin32's `flush(offset, size)`: writes `offset..offset + size` of the
    /// view (size 0: to the end) back to the file and waits until the file
    /// is durable on its device (`msync` then `fsync`; `FlushViewOfFile` then
    /// `FlushFileBuffers`).
    pub fn flush(&self, offset: i64, size: i64) -> Result<()> {
        let live = self.live()?;
        // Data written to vanished pages is lost: say so rather than report
        // a successful flush.
        live.region()?;
        let out_of_range = || Error::OutOfRange("flush values out of range");
        let offset = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= live.len)
            .ok_or_else(out_of_range)?;
        let size = match usize::try_from(size).map_err(|_| out_of_range())? {
            0 => live.len - offset,
            n => n,
        };
        if offset.checked_add(size).is_none_or(|e| e > live.len) {
            return Err(out_of_range());
        }
        if self.access == Access::Copy {
            // Private pages never reach the file: nothing to write back.
            return Ok(());
        }
        live.view.flush(live.delta + offset, size)?;
        live.backing.sync()
    }

    /// pywin32's `resize(MaximumSize, FileOffset, NumberOfBytesToMap)`: maps
    /// a new view of a mapping object of `maximum_size` bytes (0: the file's
    /// or block's current size), growing the file or block when it is
    /// smaller. Data is kept; the file or block never shrinks. The position
    /// is clamped to the new view. On error the old view stays as it was.
    ///
    /// Only [`Access::Write`] mappings can be resized, as with CPython's
    /// `mmap`: others fail with [`Error::NotResizable`] (a copy-on-write
    /// view's private changes would not carry over to a new view).
    pub fn resize(&mut self, maximum_size: u64, offset: u64, len: u64) -> Result<()> {
        if self.exports > 0 {
            return Err(Error::Exported("resize"));
        }
        let live = self.live.as_mut().ok_or_else(|| Error::Closed)?;
        if !self.access.writes_backing() {
            return Err(Error::NotResizable);
        }
        let size = mapping_size(
            &mut live.backing,
            maximum_size,
            offset,
            len,
            self.access,
            self.space,
        )?;
        let (view, delta, len) = Live::window(&live.backing, size, offset, len, self.access)?;
        let old = std::mem::replace(&mut live.view, view);
        live.delta = delta;
        live.len = len;
        live.offset = offset;
        self.pos = self.pos.min(len);
        // The new view is already in place; an error unmapping the old one
        // could only leave address space in use, which the caller cannot fix.
        drop(old);
        Ok(())
    }

    /// Unmaps the view and closes the backing object. Closing twice is fine.
    /// Refused while the memory is exported.
    pub fn close(&mut self) -> Result<()> {
        if self.exports > 0 {
            return Err(Error::Exported("close"));
        }
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        live.backing.close_with_view(live.view)
    }

    /// Copies `dst.len()` bytes at `offset` (not the position) into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let region = self.region()?;
        if offset.checked_add(dst.len()).is_none_or(|e| e > region.len) {
            return Err(Error::OutOfRange("read out of range"));
        }
        // SAFETY: the range was checked to lie inside the live view.
        unsafe { region.copy_out(offset, dst) }
    }

    /// Runs `f` with a pointer to the `len` bytes at `offset` (not the
    /// position), for `f` to copy them out in one go: this lets a caller
    /// build an object of its own from mapped bytes without an intermediate
    /// buffer (the Python binding makes a `bytes` this way). If a page of
    /// the range vanished under `f` (see [`Error::Truncated`]), `f` read
    /// zeros there and its result is dropped.
    ///
    /// # Safety
    /// `f` may read at most `len` bytes at the pointer, must not keep the
    /// pointer, and must not assume the bytes stay the same while it reads
    /// them (another process may be writing them).
    pub unsafe fn read_at_with<R>(
        &self,
        offset: usize,
        len: usize,
        f: impl FnOnce(*const u8) -> R,
    ) -> Result<R> {
        let region = self.read_region()?;
        if offset.checked_add(len).is_none_or(|e| e > region.len) {
            return Err(self.refuse(Error::OutOfRange("read out of range")));
        }
        // SAFETY: the range was checked to lie inside the live view; the
        // caller's contract for `f` is the one `read_with` needs.
        unsafe { region.read_with(offset, len, f) }
    }

    /// Copies `src` to `offset` (not the position).
    pub fn write_at(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        let region = self.writable_region()?;
        if offset.checked_add(src.len()).is_none_or(|e| e > region.len) {
            return Err(Error::OutOfRange("data out of range"));
        }
        // SAFETY: the range was checked to lie inside the live, writable view.
        unsafe { region.copy_in(offset, src) }
    }

    /// Copies up to `len` bytes from the position to `dst` (fewer if the
    /// view ends first), advances the position, and returns the count.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes for the duration of the
    /// call. It may point into this or another mapping.
    pub unsafe fn read_into_raw(&mut self, dst: *mut u8, len: usize) -> Result<usize> {
        let region = self.region()?;
        let count = len.min(region.len - self.pos);
        // SAFETY: `pos + count <= len`, inside the live view; the caller
        // guarantees `dst` is valid for `count <= len` bytes.
        unsafe { region.copy_out_raw(self.pos, dst, count)? };
        self.pos += count;
        Ok(count)
    }

    /// The offset in the view of item `index` (negative counts from the end,
    /// as Python's sequences do).
    fn item_offset(&self, index: i64) -> Result<usize> {
        let len = self.len()?;
        let resolved = if index < 0 {
            len.checked_sub(usize::try_from(index.unsigned_abs()).unwrap_or(usize::MAX))
        } else {
            usize::try_from(index).ok().filter(|&i| i < len)
        };
        resolved.ok_or_else(|| Error::Index("mmap index out of range"))
    }

    /// The byte at `index` (negative counts from the end), as CPython's
    /// `mmap[index]`; the position does not move.
    pub fn byte_at(&self, index: i64) -> Result<u8> {
        let offset = self.item_offset(index)?;
        // SAFETY: `item_offset` checked `offset < len` of the live view.
        unsafe { self.region()?.byte(offset) }
    }

    /// Sets the byte at `index` (negative counts from the end).
    pub fn set_byte_at(&mut self, index: i64, value: u8) -> Result<()> {
        self.set_byte_at_checked(index, Ok::<u8, Error>(value))
    }

    /// [`MapFile::set_byte_at`] with a value that may have failed to
    /// convert: its error is returned only once the view (closed, read-only)
    /// and the index have passed their checks, the order in which CPython's
    /// `mmap` reports them (`m[len(m)] = "x"` is an index error).
    pub fn set_byte_at_checked<E: From<Error>>(
        &mut self,
        index: i64,
        value: Result<u8, E>,
    ) -> Result<(), E> {
        let region = self.writable_region()?;
        let offset = self.item_offset(index)?;
        let value = value?;
        // SAFETY: `offset < len` of the live, writable view.
        unsafe { region.set_byte(offset, value)? };
        Ok(())
    }

    /// Copies the bytes at `start`, `start + step`, … into `dst` (as many as
    /// `dst` holds), as CPython's `mmap[start:stop:step]` does once the
    /// slice is resolved. `step` may be negative but not 0.
    pub fn read_slice(&self, start: usize, step: isize, dst: &mut [u8]) -> Result<()> {
        // SAFETY: `read_slice_uninit` only ever writes initialised bytes, so
        // `dst` stays initialised when seen as `[MaybeUninit<u8>]`.
        let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<u8>]) };
        self.read_slice_uninit(start, step, dst)
    }

    /// Like [`MapFile::read_slice`], into memory that may be uninitialised;
    /// on success all of `dst` is initialised. Lets a caller fill a new
    /// buffer without zeroing it first.
    pub fn read_slice_uninit(
        &self,
        start: usize,
        step: isize,
        dst: &mut [MaybeUninit<u8>],
    ) -> Result<()> {
        let region = self.region()?;
        if step == 0 {
            return Err(Error::InvalidArgument("slice step cannot be zero".into()));
        }
        check_slice(region.len, start, step, dst.len())?;
        if step == 1 {
            // SAFETY: checked above that `start..start + dst.len()` is inside
            // the live view.
            unsafe { region.copy_out_uninit(start, dst)? };
        } else {
            // SAFETY: every index was checked to be inside the live view;
            // `dst` is a Rust slice, so not mapped memory of this view.
            unsafe { region.gather(start, step, dst)? };
        }
        Ok(())
    }

    /// Writes `src` to the `count` bytes at `start`, `start + step`, … as
    /// CPython's `mmap[start:stop:step] = src` once the slice is resolved.
    /// `step` may be negative but not 0. As in CPython, a read-only map is
    /// refused before a source of the wrong size is.
    pub fn write_slice(
        &mut self,
        start: usize,
        step: isize,
        count: usize,
        src: &[u8],
    ) -> Result<()> {
        let region = self.writable_region()?;
        if step == 0 {
            return Err(Error::InvalidArgument("slice step cannot be zero".into()));
        }
        if src.len() != count {
            return Err(Error::Index("mmap slice assignment is wrong size"));
        }
        check_slice(region.len, start, step, src.len())?;
        if step == 1 {
            // SAFETY: checked above that the range is inside the live,
            // writable view; `copy_in` allows `src` to overlap it.
            unsafe { region.copy_in(start, src)? };
        } else {
            // SAFETY: every index was checked to be inside the live, writable
            // view; `src` is a Rust slice that the view does not alias.
            unsafe { region.scatter(start, step, src)? };
        }
        Ok(())
    }

    /// CPython's `mmap.madvise(option, start, length)`: tells the OS how the
    /// bytes `start..start + length` of the view will be used. `length` 0
    /// means to the end, and a range past the end is cut at the end.
    /// `advice` must be one of [`advice_values`](crate::advice_values); the
    /// advice covers the whole pages that hold the range. Where the OS has
    /// no `madvise` (Windows) this is [`Error::Unsupported`].
    pub fn madvise(&self, advice: i32, start: i64, length: i64) -> Result<()> {
        let live = self.live()?;
        if os::ADVICE.is_empty() {
            return Err(Error::Unsupported(
                "madvise is not available on this OS (it offers no MADV_* values)",
            ));
        }
        if !os::ADVICE.iter().any(|&(_, value)| value == advice) {
            return Err(Error::InvalidArgument(format!(
                "unknown or unsupported madvise option {advice}"
            )));
        }
        let start = usize::try_from(start)
            .ok()
            .filter(|&s| s < live.len)
            .ok_or_else(|| Error::OutOfRange("madvise start out of bounds"))?;
        let length =
            usize::try_from(length).map_err(|_| Error::OutOfRange("madvise length invalid"))?;
        let left = live.len - start;
        let length = if length == 0 { left } else { length.min(left) };
        live.view.advise(live.delta + start, length, advice)
    }

    /// The cross-process lock of this mapping: the same for every process
    /// that maps the same file or named block. See [`MapLock`].
    pub fn lock(&self) -> Result<MapLock> {
        Ok(MapLock::new(self.live()?.backing.lock_target()?))
    }

    /// Hands out the view's address and length for an export (such as
    /// Python's buffer protocol) and counts it: `close` and `resize` are
    /// refused until every export is released with
    /// [`MapFile::release_export`].
    ///
    /// The memory may be changed by other processes at any time; whoever
    /// uses the pointer must treat it as shared memory, not as a Rust slice.
    pub fn export(&mut self) -> Result<(*mut u8, usize)> {
        let (ptr, len) = self.region().map(|r| (r.ptr, r.len))?;
        self.exports += 1;
        Ok((ptr, len))
    }

    /// Releases one export taken with [`MapFile::export`].
    pub fn release_export(&mut self) {
        self.exports = self.exports.saturating_sub(1);
    }

    /// The number of live exports.
    pub fn exports(&self) -> usize {
        self.exports
    }
}
