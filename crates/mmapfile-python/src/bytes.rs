//! Moving bytes between the map and Python: which copies release the GIL,
//! and bytes objects filled without being zeroed first (the zeroing costs
//! as much as the copy).

use std::mem::MaybeUninit;

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, Bound};

/// Copies of at least this many bytes run with the GIL released.
pub(crate) const DETACH_THRESHOLD: usize = 64 * 1024;

/// A new bytes object of `len` bytes whose contents `fill` writes.
///
/// The object is allocated uninitialised (CPython's
/// `PyBytes_FromStringAndSize(NULL, n)`) and `fill` must initialise all of
/// it when it returns `Ok`, which `MapFile::read_into_uninit` does. This
/// saves the zeroing `PyBytes::new_with` does, which costs as much as the
/// copy itself. On error the object is freed unseen.
///
/// A large object (`DETACH_THRESHOLD` bytes or more) is filled with the GIL
/// released, after asking the OS to back it with huge pages
/// (`mmapfile::advise_copy_destination`, which leaves buffers below its own,
/// higher threshold alone): the page faults of fresh memory, not the copy,
/// are most of a large read's time. Small objects pay nothing for either,
/// beyond the one comparison that chooses.
///
/// Generic over the error type so that the trampoline-free entry points
/// (`fastcall`) can carry core errors out unconverted.
pub(crate) fn new_bytes_uninit<'py, E: From<PyErr> + Send>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), E> + Send,
) -> Result<Bound<'py, PyBytes>, E> {
    let mut bytes = UninitBytes::new(py, len)?;
    if len >= DETACH_THRESHOLD {
        return fill_large(py, bytes, fill);
    }
    fill(bytes.storage())?;
    Ok(bytes.0)
}

/// [`new_bytes_uninit`] for a large object: advised and filled with the GIL
/// released. Out of line, so that the small path keeps its shape (and its
/// instruction count: `make bench-calls`).
#[cold]
#[inline(never)]
fn fill_large<'py, E: From<PyErr> + Send>(
    py: Python<'py>,
    mut bytes: UninitBytes<'py>,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), E> + Send,
) -> Result<Bound<'py, PyBytes>, E> {
    let buf = bytes.storage();
    py.detach(move || {
        mmapfile::advise_copy_destination(buf);
        fill(buf)
    })?;
    Ok(bytes.0)
}

/// A new bytes object whose contents are not initialised yet, and its
/// length. Only [`new_bytes_uninit`] holds it, and hands it out once it is
/// filled, so nothing else can see the uninitialised bytes.
struct UninitBytes<'py>(Bound<'py, PyBytes>, usize);

impl<'py> UninitBytes<'py> {
    fn new(py: Python<'py>, len: usize) -> PyResult<Self> {
        let size = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| PyOverflowError::new_err("read length does not fit a bytes object"))?;
        // SAFETY: with a NULL source CPython allocates `size` bytes (plus
        // the trailing NUL it sets itself) and leaves them uninitialised; it
        // returns a new reference or NULL with an exception set.
        let bytes = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
            )?
            .cast_into_unchecked::<PyBytes>()
        };
        Ok(UninitBytes(bytes, len))
    }

    /// The object's bytes, to be initialised.
    fn storage(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: `PyBytes_AS_STRING` of a bytes object points at its
        // storage, which holds the `len` bytes it was created with. The
        // object is ours alone (no other reference exists while it is an
        // `UninitBytes`; the empty bytes object that CPython shares has no
        // storage to write), and the slice borrows `self`.
        unsafe {
            std::slice::from_raw_parts_mut(
                ffi::PyBytes_AS_STRING(self.0.as_ptr())
                    .cast_mut()
                    .cast::<MaybeUninit<u8>>(),
                self.1,
            )
        }
    }
}
