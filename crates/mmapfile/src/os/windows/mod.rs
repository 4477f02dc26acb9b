//! Windows backend, now a folder so that it can mirror `unix/` file for file
//! (the next commit splits `backing.rs` by concern).

mod backing;

pub(crate) use backing::*;
