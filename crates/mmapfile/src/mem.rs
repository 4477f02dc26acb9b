//! Every access to mapped memory goes through this module.
//!
//! Mapped memory may be changed at any moment by another process, so it is
//! never handed out as a Rust slice: bytes are copied in and out through raw
//! pointers. Keeping all such accesses in one place is also what lets the
//! crate guard them against pages that vanish when the backing file shrinks.

use crate::error::{Error, Result};
use crate::os::guarded::{self, Fault};
use crate::os::{self, Vanished};
use std::mem::MaybeUninit;

/// A byte range of mapped memory: `ptr..ptr + len`, valid for the duration of
/// the borrow that produced it.
///
/// Every access is made by the OS's guarded routines ([`os::guarded`]) and
/// checked afterwards against the view's fault record
/// ([`os::RawView::fault`]). On Unix, if the backing file or block shrank
/// and a touched page no longer exists, the access returns
/// [`Error::Truncated`] instead of the process dying of `SIGBUS`, and so
/// does every later access to the view (its pages were replaced, so it must
/// not be used again until it is mapped anew). On Windows the routine
/// itself stops at a page that cannot be brought in and the access returns
/// that fault's error; the view stays usable.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<'a> {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) view: &'a os::RawView,
}

impl Region<'_> {
    /// Runs `access`, which touches the region through [`os::guarded`].
    #[inline(always)]
    fn guard<R>(self, access: impl FnOnce() -> Result<R, Fault>) -> Result<R> {
        let result = access();
        match self.view.fault() {
            None => result.map_err(Fault::error),
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
            unsafe { guarded::copy(dst.as_mut_ptr(), self.ptr.add(offset), len) }
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
            unsafe { guarded::copy(dst.as_mut_ptr().cast(), self.ptr.add(offset), len) }
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
            unsafe { guarded::copy(self.ptr.add(offset), src.as_ptr(), src.len()) }
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
        len: usize,
        f: impl FnOnce(*const u8) -> R,
    ) -> Result<R> {
        debug_assert!(offset + len <= self.len);
        // SAFETY: the caller guarantees `offset` is inside the region.
        let ptr = unsafe { self.ptr.add(offset) };
        if !guarded::DIRECT_READS {
            // SAFETY: forwarded from the caller.
            return unsafe { self.read_with_copy(offset, len, f) };
        }
        self.guard(|| Ok(f(ptr)))
    }

    /// [`Region::read_with`] where only the guarded routines may read the
    /// view: `f` gets a copy of the bytes.
    ///
    /// # Safety
    /// As for [`Region::read_with`].
    #[inline(always)]
    unsafe fn read_with_copy<R>(
        self,
        offset: usize,
        len: usize,
        f: impl FnOnce(*const u8) -> R,
    ) -> Result<R> {
        with_buffer(len, |buf| {
            // SAFETY: forwarded from the caller; `buf` holds `len` bytes.
            unsafe { self.copy_out_uninit(offset, buf)? };
            Ok(f(buf.as_ptr().cast()))
        })
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
            unsafe { guarded::copy(dst, self.ptr.add(offset), len) }
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
            // guarantee), and every `start + k * step` is inside the region;
            // for an empty `dst` nothing is read. `dst` is a unique borrow
            // outside the region.
            unsafe {
                let first = self.ptr.add(start);
                guarded::gather(dst.as_mut_ptr().cast(), first, step, dst.len())
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
            // SAFETY: as in `gather`, with every index inside the writable
            // region and `src` outside it.
            unsafe {
                let first = self.ptr.add(start);
                guarded::scatter(first, src.as_ptr(), step, src.len())
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
            unsafe { guarded::copy(self.ptr.add(dest), self.ptr.add(src), count) }
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
            Ok(f(bytes))
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
        if !guarded::DIRECT_READS {
            // SAFETY: forwarded from the caller.
            return unsafe { self.read_line_copy(start, take) };
        }
        let rest = self.len - start;
        self.guard(|| {
            // SAFETY: the caller guarantees `start..len` is mapped and in
            // bounds.
            let line = unsafe { self.ptr.add(start) };
            // SAFETY: as above. As in `with_slice`, only memchr reads the
            // slice, and it does not outlive this closure.
            let hay = unsafe { std::slice::from_raw_parts(line, rest) };
            let n = os::find_byte(b'\n', hay).map_or(rest, |i| i + 1);
            Ok(take(line, n).map(|owner| (owner, n)))
        })
    }

    /// The absolute index of the first `byte` in `from..to`, found by the
    /// guarded byte search, which reads the view itself.
    ///
    /// # Safety
    /// `from <= to <= self.len`, and the region must be mapped for the
    /// duration of the call.
    pub(crate) unsafe fn find_byte(
        self,
        from: usize,
        to: usize,
        byte: u8,
    ) -> Result<Option<usize>> {
        debug_assert!(from <= to && to <= self.len);
        // SAFETY: the caller guarantees `from..to` is mapped and in bounds.
        let at =
            self.guard(|| unsafe { guarded::find_byte(self.ptr.add(from), to - from, byte) })?;
        Ok((at < to - from).then_some(from + at))
    }

    /// [`Region::read_line`] where only the guarded routines may read the
    /// view: the newline is found by the guarded byte search, and the line
    /// handed over from a copy (on the stack when short).
    ///
    /// # Safety
    /// As for [`Region::read_line`].
    #[inline(always)]
    unsafe fn read_line_copy<B, E>(
        self,
        start: usize,
        take: impl FnOnce(*const u8, usize) -> Result<B, E>,
    ) -> Result<Result<(B, usize), E>> {
        let rest = self.len - start;
        // SAFETY: the caller guarantees `start..len` is mapped and in bounds.
        let newline =
            self.guard(|| unsafe { guarded::find_byte(self.ptr.add(start), rest, b'\n') })?;
        let n = if newline < rest { newline + 1 } else { rest };
        with_buffer(n, |buf| {
            // SAFETY: `start..start + n` lies inside the region; `buf`
            // holds `n` bytes.
            unsafe { self.copy_out_uninit(start, buf)? };
            Ok(take(buf.as_ptr().cast(), n).map(|owner| (owner, n)))
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
            // `load` reads it once, as a volatile read (another process may
            // change the byte).
            unsafe { guarded::load(self.ptr.add(offset)) }
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
            unsafe { guarded::store(self.ptr.add(offset), value) }
        })
    }
}

/// Copies `dst.len()` bytes of mapped memory at `src` into `dst`.
///
/// # Safety
/// `src` must be valid for reads of `dst.len()` bytes (a range of a view
/// inside a guarded access; where only the guarded routines may read a
/// view, [`Region::read_line`] hands over a copy, so `src` is that copy).
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

/// How many bytes a short copy holds, on the stack of the function that
/// makes it, where only the guarded routines may read a view
/// ([`guarded::DIRECT_READS`] false): the first window of a search, the
/// first part of a line, a short slice.
pub(crate) const SMALL_COPY: usize = 256;

/// How many bytes a longer copy holds on the stack (in a function of its
/// own, so that short ones do not pay for probing its pages): the largest
/// window of a search, and the largest object made from a copy on the
/// stack. Longer ones go to the heap.
pub(crate) const COPY_BUFFER: usize = 16 * 1024;

/// Runs `f` on `len` bytes of uninitialised memory: on the stack unless
/// `len` is large.
#[inline(always)]
fn with_buffer<R>(len: usize, f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R) -> R {
    if len <= SMALL_COPY {
        let mut small = [MaybeUninit::<u8>::uninit(); SMALL_COPY];
        f(&mut small[..len])
    } else {
        with_large_buffer(len, f)
    }
}

/// [`with_buffer`] for more than [`SMALL_COPY`] bytes.
#[inline(never)]
pub(crate) fn with_large_buffer<R>(len: usize, f: impl FnOnce(&mut [MaybeUninit<u8>]) -> R) -> R {
    if len <= COPY_BUFFER {
        let mut stack = [MaybeUninit::<u8>::uninit(); COPY_BUFFER];
        f(&mut stack[..len])
    } else {
        let mut heap = Vec::<u8>::with_capacity(len);
        f(&mut heap.spare_capacity_mut()[..len])
    }
}

/// The bytes of `buf`, all of which a copy initialised.
///
/// # Safety
/// Every byte of `buf` must be initialised.
pub(crate) unsafe fn assume_init(buf: &[MaybeUninit<u8>]) -> &[u8] {
    // SAFETY: the caller guarantees every byte is initialised, and
    // `MaybeUninit<u8>` has the layout of `u8`.
    unsafe { &*(std::ptr::from_ref::<[MaybeUninit<u8>]>(buf) as *const [u8]) }
}

#[cfg(test)]
mod copy_tests {
    use crate::MapOptions;

    #[test]
    fn lines_read_through_copies_agree_with_the_bytes() {
        // A line longer than the first copy, and one that ends in it.
        let mut m = MapOptions::new().maximum_size(1000).open().unwrap();
        m.write(&[b"short\n".as_slice(), &[b'y'; 600], b"\nend"].concat())
            .unwrap();
        let region = m.region().unwrap();
        for (start, want) in [(0, 6), (6, 601), (607, 393)] {
            let take = |ptr: *const u8, n: usize| {
                // SAFETY: `read_line_copy` hands over `n` readable bytes.
                Ok::<_, ()>(unsafe { std::slice::from_raw_parts(ptr, n) }.to_vec())
            };
            // SAFETY: `start` lies inside the live view.
            let (line, n) = unsafe { region.read_line_copy(start, take) }
                .unwrap()
                .unwrap();
            assert_eq!(n, want);
            let expected: Vec<u8> = {
                let all = [b"short\n".as_slice(), &[b'y'; 600], b"\nend"].concat();
                let mut v = all;
                v.resize(1000, 0);
                v[start..start + want].to_vec()
            };
            assert_eq!(line, expected, "line at {start}");
        }
    }
}
