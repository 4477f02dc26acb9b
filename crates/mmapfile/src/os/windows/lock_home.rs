//! Where a mapping's lock word lives, and the event its waiters sleep on
//! (the Windows counterpart of `unix/lock_home.rs`).
//!
//! - named block (or named file mapping) `N`: a one-page pagefile section
//!   `N.mmapfile-lock-word` and an auto-reset event `N.mmapfile-lock-wake`,
//!   in the block's namespace (the name's `Local\` or `Global\` prefix, or
//!   none, as the block); made with the same (default) security as the
//!   block's own section (`backing.rs`);
//! - file: `Global\mmapfile-lock-word.<volume serial>.<file index>` and
//!   `Global\mmapfile-lock-wake.<...>`, named by the file's identity as
//!   `GetFileInformationByHandle` reports it, so that every path to the file
//!   finds them. Creating a section in `Global\` needs
//!   `SeCreateGlobalPrivilege` (services and elevated administrators have
//!   it): an existing one is opened first, then an existing one in the
//!   session's `Local\`, then one is created in `Global\`, and if Windows
//!   refuses that (`ERROR_ACCESS_DENIED`), in `Local\`. So processes of one
//!   session always share a file's lock, and processes of different
//!   sessions share it only if the first user could create it in
//!   `Global\` (or it exists there already);
//! - unnamed block: a word in this process's memory and an unnamed event
//!   (Windows has no `fork` to share the block through).
//!
//! The section and event live as long as any process holds a lock object of
//! the mapping (the kernel frees them with their last handle), so they never
//! outlive their users and leave nothing next to a file. None of these
//! names is the mutex name of the lock before it was a word
//! (`N.mmapfile-lock`, `Global\mmapfile-lock.<...>`): Windows keeps
//! sections, events and mutexes in one namespace, so an older build's mutex
//! would make creating a section of its name fail. The two builds do not
//! share a lock.

use std::ffi::OsStr;
use std::ptr;
use std::sync::atomic::AtomicU64;

use windows_sys::Win32::Foundation::{ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
};
use windows_sys::Win32::System::Memory::{OpenFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE};
use windows_sys::Win32::System::Threading::CreateEventW;

use super::super::backing::{create_section, Backing, Source};
use super::super::sys::{check, page_size, wide, Handle};
use super::super::view::{map_raw, RawView};
use super::{LockTarget, Shared};
use crate::error::Result;

/// Where the word is.
#[derive(Debug)]
pub(super) enum Home {
    /// The first bytes of a view of a companion section (kept open by it).
    Section { view: RawView, _section: Handle },
    /// This process's memory (an unnamed block).
    Local(Box<AtomicU64>),
}

impl Home {
    pub(super) fn word(&self) -> &AtomicU64 {
        match self {
            // SAFETY: the view is mapped for as long as `self` lives, page
            // aligned (so aligned for a u64), at least a page long, and its
            // first 8 bytes are only accessed atomically, by every process.
            Home::Section { view, .. } => unsafe { &*view.as_ptr().cast::<AtomicU64>() },
            Home::Local(word) => word,
        }
    }
}

/// An auto-reset event, created or opened by `name` (`None`: unnamed).
fn create_event(name: Option<&str>) -> Result<Handle> {
    let wname = name.map(|n| wide(OsStr::new(n)));
    let name_ptr = wname.as_ref().map_or(ptr::null(), |n| n.as_ptr());
    // SAFETY: default security, auto-reset, not signalled; the name, if
    // any, is NUL-terminated and outlives the call.
    let raw = unsafe { CreateEventW(ptr::null(), 0, 0, name_ptr) };
    Handle::new("CreateEvent", raw, ptr::null_mut())
}

/// Opens the existing section `name`, if there is one.
fn open_section(name: &str) -> Result<Option<Handle>> {
    let wname = wide(OsStr::new(name));
    // SAFETY: `wname` is NUL-terminated and outlives the call.
    let raw = unsafe { OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, 0, wname.as_ptr()) };
    match Handle::new("OpenFileMapping", raw, ptr::null_mut()) {
        Ok(section) => Ok(Some(section)),
        Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A target whose word is in `section`, and whose event is `event`.
fn in_section(section: Handle, event: &str) -> Result<LockTarget> {
    let view = map_raw(&section, 0, page_size(), FILE_MAP_READ | FILE_MAP_WRITE)?;
    let home = Home::Section {
        view,
        _section: section,
    };
    Ok(LockTarget::new(Shared::new(
        home,
        create_event(Some(event))?,
    )))
}

/// The companion section `word` (created if missing) and event `event`.
fn companion(word: &str, event: &str) -> Result<LockTarget> {
    let (section, _) = create_section(Some(&wide(OsStr::new(word))), page_size() as u64)?;
    in_section(section, event)
}

/// The names of the word and the event of the lock of the open file
/// `file` in `namespace` (`Global` or `Local`), from the file's identity.
fn file_lock_names(file: &Handle, namespace: &str) -> Result<(String, String)> {
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
    let id = format!("{:08x}.{index:016x}", info.dwVolumeSerialNumber);
    Ok((
        format!("{namespace}\\mmapfile-lock-word.{id}"),
        format!("{namespace}\\mmapfile-lock-wake.{id}"),
    ))
}

/// The target of the lock of the open file `file` (see the module's
/// documentation for the namespaces).
fn file_target(file: &Handle) -> Result<LockTarget> {
    let (global_word, global_wake) = file_lock_names(file, "Global")?;
    let (local_word, local_wake) = file_lock_names(file, "Local")?;
    if let Some(section) = open_section(&global_word)? {
        return in_section(section, &global_wake);
    }
    if let Some(section) = open_section(&local_word)? {
        return in_section(section, &local_wake);
    }
    match companion(&global_word, &global_wake) {
        // No SeCreateGlobalPrivilege: this session's namespace.
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            companion(&local_word, &local_wake)
        }
        other => other,
    }
}

impl Backing {
    /// The lock of this mapping (see the module's documentation).
    pub(crate) fn lock_target(&self) -> Result<LockTarget> {
        let name = match &self.kind {
            // Openers by name cannot tell the file, so a named file
            // mapping locks by its name, as a named block does.
            Source::File {
                named: Some(named), ..
            } => &named.name,
            Source::File { file, .. } => return file_target(file),
            Source::Section {
                name: Some(name), ..
            } => name,
            Source::Section {
                name: None, lock, ..
            } => {
                if let Some(target) = lock.get() {
                    return Ok(target.clone());
                }
                // Two threads racing here both make a target; the loser's
                // is dropped and both use the winner's.
                let home = Home::Local(Box::new(AtomicU64::new(0)));
                let fresh = LockTarget::new(Shared::new(home, create_event(None)?));
                return Ok(lock.get_or_init(|| fresh).clone());
            }
        };
        companion(
            &format!("{name}.mmapfile-lock-word"),
            &format!("{name}.mmapfile-lock-wake"),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::access::Access;
    use crate::lock::word::LockWord;

    /// A fresh file, opened as a mapping would open it.
    fn file(tag: &str) -> (Backing, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "mmapfile-lock-home-{tag}-{}.bin",
            std::process::id()
        ));
        let (backing, _) = Backing::file(&path, Access::Write).unwrap();
        (backing, path)
    }

    fn handle(backing: &Backing) -> &Handle {
        match &backing.kind {
            Source::File { file, .. } => file,
            Source::Section { .. } => unreachable!("a file was opened"),
        }
    }

    fn same_word(a: &LockTarget, b: &LockTarget) -> bool {
        a.shared.word().store(0x1230, Ordering::Relaxed);
        let seen = b.shared.word().load(Ordering::Relaxed) == 0x1230;
        a.shared.word().store(0, Ordering::Relaxed);
        seen
    }

    #[test]
    fn a_files_lock_is_made_in_global_where_that_is_allowed() {
        let (backing, path) = file("global");
        let first = backing.lock_target().unwrap();
        let (global_word, _) = file_lock_names(handle(&backing), "Global").unwrap();
        let (local_word, _) = file_lock_names(handle(&backing), "Local").unwrap();
        // Wine lets every process create sections in Global\.
        assert!(open_section(&global_word).unwrap().is_some());
        assert!(open_section(&local_word).unwrap().is_none());
        // Another opening of the file finds the same word.
        let (again, _) = Backing::file(&path, Access::Write).unwrap();
        assert!(same_word(&first, &again.lock_target().unwrap()));
        drop((first, backing, again));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_files_lock_found_in_local_is_joined_rather_than_made_in_global() {
        let (backing, path) = file("local");
        let (local_word, local_wake) = file_lock_names(handle(&backing), "Local").unwrap();
        let (global_word, _) = file_lock_names(handle(&backing), "Global").unwrap();
        // As a process without SeCreateGlobalPrivilege would have made it.
        let fallen_back = companion(&local_word, &local_wake).unwrap();
        let target = backing.lock_target().unwrap();
        assert!(same_word(&fallen_back, &target));
        assert!(open_section(&global_word).unwrap().is_none());
        drop((fallen_back, target, backing));
        std::fs::remove_file(&path).unwrap();
    }
}
