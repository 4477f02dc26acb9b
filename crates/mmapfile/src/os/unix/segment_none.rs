//! No System V segments where the portable backend keeps named blocks:
//! their memory is a shared-memory object (see `lifetime_portable.rs`).

use crate::error::Result;

/// Never made here.
#[derive(Debug)]
pub(crate) enum Segment {}

impl Segment {
    pub(crate) fn map(&self, _offset: u64, _len: usize, _writable: bool) -> Result<*mut u8> {
        match *self {}
    }

    pub(crate) fn is_taken_by(&self, _ptr: *mut u8, _len: usize) -> bool {
        match *self {}
    }

    pub(crate) fn take_back(&self, _ptr: *mut u8, _len: usize) {
        match *self {}
    }

    pub(crate) fn copy_to(&self, _offset: u64, _dst: *mut u8, _len: usize) -> Result<()> {
        match *self {}
    }
}
