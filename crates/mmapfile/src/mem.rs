//! Every access to mapped memory goes through this module.
//!
//! Mapped memory may be changed at any moment by another process, so it is
//! never handed out as a Rust slice: bytes are copied in and out through raw
//! pointers. Keeping all such accesses in one place is also what lets the
//! crate guard them against pages that vanish when the backing file shrinks.

use crate::error::{Error, Result};
use crate::os::{self, Vanished};
use std::mem::MaybeUninit;

/// A byte range of mapped memory: `ptr..ptr + len`, valid for the duration of
/// the borrow that produced it.
///
/// Every access is checked afterwards against the view's fault record
/// ([`os::RawView::fault`]): if the backing file or block shrank and a
/// touched page no longer exists, the access returns [`Error::Truncated`]
/// instead of the process dying of `SIGBUS`, and so does every later access
/// to the view (its pages were replaced, so it must not be used again until
/// it is mapped anew).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<'a> {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) view: &'a os::RawView,
}

impl Region<'_> {
    /// Runs `access`, which touches `offset..offset + len` of the region.
    #[inline(always)]
    fn guard<R>(self, access: impl FnOnce() -> R) -> Result<R> {
        let result = access();
        match self.view.fault() {
            None => Ok(result),
            Some(addr) => Err(vanished(self.view, self.ptr, addr)),
        }
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call. `dst` may point into the
    /// region (a caller may pass a view of the mapping itself), so the copy
    /// is a `memmove`.
    pub(crate) unsafe fn copy_out(self, offset: usize, dst: &mut [u8]) -> Result<()> {
        debug_assert!(offset + dst.len() <= self.len);
        let len = dst.len();
        self.guard(|| {
            // SAFETY: the caller guarantees the source range is mapped and
            // in bounds; `copy` allows the ranges to overlap.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr(), len) }
        })
    }

    /// Like [`Region::copy_out`], into memory that may be uninitialised
    /// (such as a new Python bytes object): after the call all of `dst` is
    /// initialised.
    ///
    /// # Safety
    /// `offset + dst.len() <= self.len`, and the region must be mapped and
    /// readable for the duration of the call.
    pub(crate) unsafe fn copy_out_uninit(
        self,
        offset: usize,
        dst: &mut [MaybeUninit<u8>],
    ) -> Result<()> {
        debug_assert!(offset + dst.len() <= self.len);
        let len = dst.len();
        self.guard(|| {
            // SAFETY: the caller guarantees the source range is mapped and in
            // bounds; `dst` is a unique borrow of `len` bytes, and writing
            // bytes into `MaybeUninit<u8>` needs no prior initialisation. A
            // plain `&mut` cannot point into the mapping, but `copy` costs no
            // more than `copy_nonoverlapping` and needs no such argument.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst.as_mut_ptr().cast(), len) }
        })
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Safety
    /// `offset + src.len() <= self.len`, and the region must be mapped and
    /// writable for the duration of the call. `src` may point into the
    /// region, so the copy is a `memmove`.
    pub(crate) unsafe fn copy_in(self, offset: usize, src: &[u8]) -> Result<()> {
        debug_assert!(offset + src.len() <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees the destination range is mapped,
            // writable and in bounds; `copy` allows the ranges to overlap.
            unsafe { std::ptr::copy(src.as_ptr(), self.ptr.add(offset), src.len()) }
        })
    }

    /// Runs `f` with a pointer to the `len` bytes at `offset`, for `f` to
    /// copy them out (e.g. into a new object of a foreign runtime).
    ///
    /// # Safety
    /// `offset + len <= self.len`, the region must be mapped and readable,
    /// and `f` may only read (not keep) the `len` bytes at the pointer.
    pub(crate) unsafe fn read_with<R>(
        self,
        offset: usize,
        f: impl FnOnce(*const u8) -> R,
    ) -> Result<R> {
        // SAFETY: the caller guarantees `offset` is inside the region.
        let ptr = unsafe { self.ptr.add(offset) };
        self.guard(|| f(ptr))
    }

    /// Copies `len` bytes starting at `offset` to the raw pointer `dst`.
    ///
    /// # Safety
    /// `offset + len <= self.len`, the region must be mapped and readable,
    /// and `dst` must be valid for writes of `len` bytes for the duration of
    /// the call. `dst` may point into the region (it may be a view of this
    /// very mapping), so the copy is a `memmove`.
    pub(crate) unsafe fn copy_out_raw(self, offset: usize, dst: *mut u8, len: usize) -> Result<()> {
        debug_assert!(offset + len <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees both ranges are valid; `copy`
            // allows them to overlap.
            unsafe { std::ptr::copy(self.ptr.add(offset), dst, len) }
        })
    }

    /// Copies the bytes at `start`, `start + step`, … (`dst.len()` of them)
    /// into `dst`; `step` may be negative.
    ///
    /// # Safety
    /// Every index `start + k * step` for `k < dst.len()` lies in
    /// `0..self.len`, and the region must be mapped and readable. `dst` must
    /// not point into the region.
    pub(crate) unsafe fn gather(
        self,
        start: usize,
        step: isize,
        dst: &mut [MaybeUninit<u8>],
    ) -> Result<()> {
        // The indices may be spread over the whole region: guard all of it.
        self.guard(|| {
            // SAFETY: `start < len` when `dst` is not empty (caller's
            // guarantee); for an empty `dst` the pointer is never dereferenced.
            let first = unsafe { self.ptr.add(start) };
            for (k, out) in dst.iter_mut().enumerate() {
                // SAFETY: the caller guarantees `start + k * step` is inside
                // the region, so the offset stays inside the mapping; a
                // volatile read because another process may change the byte.
                out.write(unsafe { first.offset(k as isize * step).read_volatile() });
            }
        })
    }

    /// Copies `src` to the bytes at `start`, `start + step`, … ; `step` may be
    /// negative.
    ///
    /// # Safety
    /// Every index `start + k * step` for `k < src.len()` lies in
    /// `0..self.len`, and the region must be mapped and writable. `src` must
    /// not point into the region.
    pub(crate) unsafe fn scatter(self, start: usize, step: isize, src: &[u8]) -> Result<()> {
        self.guard(|| {
            // SAFETY: as in `gather`.
            let first = unsafe { self.ptr.add(start) };
            for (k, &b) in src.iter().enumerate() {
                // SAFETY: the caller guarantees `start + k * step` is inside
                // the writable region.
                unsafe { first.offset(k as isize * step).write_volatile(b) };
            }
        })
    }

    /// Moves `count` bytes from `src` to `dest` inside the region (the ranges
    /// may overlap).
    ///
    /// # Safety
    /// Both ranges lie inside the region, which must be mapped and writable.
    pub(crate) unsafe fn copy_within(self, dest: usize, src: usize, count: usize) -> Result<()> {
        debug_assert!(dest + count <= self.len && src + count <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees both ranges are mapped and in
            // bounds; `copy` allows overlap.
            unsafe { std::ptr::copy(self.ptr.add(src), self.ptr.add(dest), count) }
        })
    }

    /// Runs `f` on the bytes `start..end` seen as a slice.
    ///
    /// The slice never leaves this module's callers' search functions: it is
    /// only read by `memchr`'s searches, which tolerate contents changing
    /// under them (a concurrent writer can only make the answer stale, as
    /// with any read of shared memory).
    ///
    /// # Safety
    /// `start <= end <= self.len`, and the region must be mapped and readable
    /// for the duration of the call.
    pub(crate) unsafe fn with_slice<R>(
        self,
        start: usize,
        end: usize,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        debug_assert!(start <= end && end <= self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees the range is mapped and in
            // bounds; the slice does not outlive this call.
            let bytes = unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) };
            f(bytes)
        })
    }

    /// Finds the line at `start` (up to and including the next `\n`, or to
    /// the end of the region) and hands it to `take` as a pointer and a
    /// length, in one guarded access: a short line costs one check, not one
    /// for the search and one for the copy. An error from `take` is
    /// returned as is.
    ///
    /// # Safety
    /// `start <= self.len`, and the region must be mapped and readable for
    /// the duration of the call; `take` may only read (not keep) the `n`
    /// bytes at the pointer.
    pub(crate) unsafe fn read_line<B, E>(
        self,
        start: usize,
        take: impl FnOnce(*const u8, usize) -> Result<B, E>,
    ) -> Result<Result<(B, usize), E>> {
        debug_assert!(start <= self.len);
        let rest = self.len - start;
        self.guard(|| {
            // SAFETY: the caller guarantees `start..len` is mapped and in
            // bounds.
            let line = unsafe { self.ptr.add(start) };
            // SAFETY: as above. As in `with_slice`, only memchr reads the
            // slice, and it does not outlive this closure.
            let hay = unsafe { std::slice::from_raw_parts(line, rest) };
            let n = os::find_byte(b'\n', hay).map_or(rest, |i| i + 1);
            Ok((take(line, n)?, n))
        })
    }

    /// Reads one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and readable.
    pub(crate) unsafe fn byte(self, offset: usize) -> Result<u8> {
        debug_assert!(offset < self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees `offset` is in bounds and mapped;
            // a volatile read keeps the compiler from assuming the byte is
            // stable.
            unsafe { self.ptr.add(offset).read_volatile() }
        })
    }

    /// Writes one byte.
    ///
    /// # Safety
    /// `offset < self.len`, and the region must be mapped and writable.
    pub(crate) unsafe fn set_byte(self, offset: usize, value: u8) -> Result<()> {
        debug_assert!(offset < self.len);
        self.guard(|| {
            // SAFETY: the caller guarantees `offset` is in bounds, mapped and
            // writable.
            unsafe { self.ptr.add(offset).write_volatile(value) }
        })
    }
}

/// Copies `dst.len()` bytes of mapped memory at `src` into `dst`.
///
/// # Safety
/// `src` must be valid for reads of `dst.len()` bytes (a range of a view
/// inside a guarded access).
pub(crate) unsafe fn copy_from_view(src: *const u8, dst: &mut [MaybeUninit<u8>]) {
    // SAFETY: forwarded from the caller; `dst` is a unique borrow, and
    // `copy` allows the ranges to overlap.
    unsafe { std::ptr::copy(src, dst.as_mut_ptr().cast(), dst.len()) }
}

/// The error for a view whose pages vanished: `addr` is the lowest missing
/// address, `start` where the user's part of the view begins.
#[cold]
#[inline(never)]
pub(crate) fn vanished(view: &os::RawView, start: *const u8, addr: usize) -> Error {
    let at = addr.saturating_sub(start as usize);
    const AFTER: &str = "(every access fails until resize() or close())";
    let (code, what) = match view.vanished(addr) {
        Vanished::Shrank => {
            return Error::Truncated(format!(
                "the file or block behind the mapping shrank: the bytes at offset {at} of the \
                 view no longer exist {AFTER}"
            ))
        }
        Vanished::NoSpace { code } => (
            code,
            format!(
                "no space left on the file system behind the mapping: the page holding offset \
                 {at} of the view could not be allocated"
            ),
        ),
        Vanished::Failed { code } => (
            code,
            format!(
                "the storage behind the mapping failed (an I/O error) to provide the page \
                 holding offset {at} of the view"
            ),
        ),
    };
    Error::storage(
        None,
        code,
        format!("{what} {AFTER}; once the cause is gone, resize() maps the view anew"),
    )
}
