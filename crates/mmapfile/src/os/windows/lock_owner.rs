//! Who holds the lock: a process, named in the word by its id and its
//! creation time, and whether it is still alive (the Windows counterpart of
//! `unix/lock_slots.rs`).
//!
//! A process id alone is not enough, as Windows gives a dead process's id
//! to the next process it starts; the id together with the low bits of the
//! process's creation time tells a reused id apart (it would have to be
//! created at the same instant, to 100 ns, modulo about 107 s).

use std::sync::{Arc, OnceLock};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentProcessId, GetProcessTimes, OpenProcess, WaitForSingleObject,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::super::sys::Handle;
use crate::error::{Error, Result};

/// In the word: someone may sleep on the lock's event, so the release must
/// set it.
pub(super) const WAITERS: u64 = 1;
/// In the word: the holder's identity (0 when the lock is free).
pub(super) const OWNER: u64 = !3;

/// How many bits of the creation time the word keeps.
const TIME_BITS: u32 = 30;

/// The identity of the process `pid` created at `created` (100 ns units):
/// bits 2..34 the id, bits 34..64 the low bits of the creation time, and
/// bits 0 and 1 free for flags. Never 0, as no process of ours has id 0.
fn identity(pid: u32, created: u64) -> u64 {
    ((created & ((1 << TIME_BITS) - 1)) << 34) | (u64::from(pid) << 2)
}

/// The process id in an identity.
fn pid_of(owner: u64) -> u32 {
    // The mask keeps 32 bits, so the cast cannot lose any.
    ((owner >> 2) & u64::from(u32::MAX)) as u32
}

/// The creation time of the process behind `process` (100 ns units).
fn creation_time(process: HANDLE) -> Option<u64> {
    let mut times = [FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    }; 4];
    let [created, exited, kernel, user] = &mut times;
    // SAFETY: `process` is a handle with PROCESS_QUERY_LIMITED_INFORMATION
    // (or the current process's pseudo handle); the four FILETIMEs are
    // writable.
    let ok = unsafe { GetProcessTimes(process, created, exited, kernel, user) };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// This process's identity, read once.
pub(super) fn me() -> Result<u64> {
    static ME: OnceLock<u64> = OnceLock::new();
    if let Some(me) = ME.get() {
        return Ok(*me);
    }
    // SAFETY: the pseudo handle of the current process needs no closing.
    let created = creation_time(unsafe { GetCurrentProcess() })
        .ok_or_else(|| Error::last_os("GetProcessTimes"))?;
    // SAFETY: no preconditions.
    let pid = unsafe { GetCurrentProcessId() };
    Ok(*ME.get_or_init(|| identity(pid, created)))
}

/// What became of the holder named in the word.
#[derive(Debug)]
pub(super) enum Holder {
    /// This process: alive as long as we are asking.
    Me,
    /// Another live process, with a handle that is signalled when it ends;
    /// `None` if Windows refuses one (another user's process), which is
    /// then taken to be alive.
    Alive(Option<Arc<Handle>>),
    /// It ended, or its id now belongs to another process.
    Dead,
}

/// Asks Windows about the holder `owner` (an identity from the word; `me`
/// is this process's).
pub(super) fn holder(owner: u64, me: u64) -> Result<Holder> {
    if owner == me {
        return Ok(Holder::Me);
    }
    // SAFETY: plain call; the result is checked.
    let raw = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid_of(owner),
        )
    };
    if raw.is_null() {
        // SAFETY: no preconditions; read right after the failed call.
        return match unsafe { GetLastError() } {
            // No process has this id (any more).
            ERROR_INVALID_PARAMETER => Ok(Holder::Dead),
            // It exists, but is not ours to watch: taken to be alive.
            ERROR_ACCESS_DENIED => Ok(Holder::Alive(None)),
            _ => Err(Error::last_os("OpenProcess")),
        };
    }
    let process = Handle(raw);
    if creation_time(process.0).is_some_and(|created| identity(pid_of(owner), created) != owner) {
        // The id was given to another process: the holder is gone.
        return Ok(Holder::Dead);
    }
    // SAFETY: `process` is an open handle with SYNCHRONIZE; a zero timeout
    // only asks whether it is signalled, which a process is once it ended
    // (its object outlives it while handles to it are open).
    if unsafe { WaitForSingleObject(process.0, 0) } == WAIT_OBJECT_0 {
        return Ok(Holder::Dead);
    }
    Ok(Holder::Alive(Some(Arc::new(process))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_keeps_the_pid_and_leaves_the_flag_bits_free() {
        let id = identity(u32::MAX, u64::MAX);
        assert_eq!(pid_of(id), u32::MAX);
        assert_eq!(id & !OWNER, 0);
        assert_ne!(identity(4, 0), 0);
        assert_ne!(identity(4, 1), identity(4, 2), "a reused pid is told apart");
    }

    #[test]
    fn this_process_is_alive_and_an_unused_pid_is_dead() {
        let me = me().unwrap();
        assert!(matches!(holder(me, me).unwrap(), Holder::Me));
        // Process ids are multiples of 4: an odd one is never given out.
        let nobody = identity(0xffff_fff3, 0);
        assert!(matches!(holder(nobody, me).unwrap(), Holder::Dead));
        // This process seen as another would be: same id, other time.
        let twin = identity(std::process::id(), (me >> 34) + 1);
        assert!(matches!(holder(twin, me).unwrap(), Holder::Dead));
    }
}
