//! The cross-process lock of a mapping: a named kernel mutex, taken by one
//! owner thread per acquisition.

use std::ffi::OsStr;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use windows_sys::Win32::Foundation::{WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, ReleaseMutex, WaitForSingleObject, INFINITE,
};

use super::backing::{Backing, Source};
use super::sys::{check, wide, Handle};
use crate::error::{Error, Result};

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

/// The `MapLock` here: one owner thread (and mutex wait) per acquisition.
pub(crate) type Lock = crate::lock::desc::DescLock<LockTarget>;

/// One contender for a [`LockTarget`], with its owner thread, which takes
/// the mutex for it: dropping it releases the lock (if held) and ends the
/// thread.
#[derive(Debug)]
pub(crate) struct LockDesc {
    /// `None` only while dropping (closing it tells the thread to stop).
    commands: Option<mpsc::Sender<LockCommand>>,
    replies: mpsc::Receiver<Result<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set by the owner thread when its wait returned `WAIT_ABANDONED`.
    abandoned: Arc<AtomicBool>,
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
            Source::File {
                named: Some(named), ..
            } => block_lock_name(&named.name),
            Source::File { file, .. } => file_lock_name(file)?,
            Source::Section {
                name: Some(name), ..
            } => block_lock_name(name),
            Source::Section {
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
/// the thread now owns it, and records in `abandoned` whether its holder
/// died holding it.
fn wait_mutex(mutex: &Handle, millis: u32, abandoned: &AtomicBool) -> Result<bool> {
    // SAFETY: `mutex` is an open mutex handle.
    match unsafe { WaitForSingleObject(mutex.0, millis) } {
        WAIT_OBJECT_0 => {
            abandoned.store(false, Ordering::Relaxed);
            Ok(true)
        }
        // The holder exited without releasing; this thread owns the mutex
        // now. The bytes it guards may be half-updated: the caller is told.
        WAIT_ABANDONED => {
            abandoned.store(true, Ordering::Relaxed);
            Ok(true)
        }
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
    abandoned: &AtomicBool,
) {
    let mut held = false;
    for command in commands {
        let reply = match command {
            LockCommand::Try | LockCommand::Wait if held => Ok(true),
            LockCommand::Try => wait_mutex(mutex, 0, abandoned),
            LockCommand::Wait => wait_mutex(mutex, INFINITE, abandoned),
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
        let abandoned = Arc::new(AtomicBool::new(false));
        let told = Arc::clone(&abandoned);
        let thread = std::thread::Builder::new()
            .name("mmapfile-lock".into())
            .stack_size(64 * 1024)
            .spawn(move || own_mutex(&mutex, thread_commands, thread_replies, &told))
            .map_err(|e| Error::io("CreateThread", e))?;
        Ok(LockDesc {
            commands: Some(commands),
            replies,
            thread: Some(thread),
            abandoned,
        })
    }

    /// Whether any thread, in any process, holds the lock. Windows cannot
    /// ask a mutex for its state, so this takes it for an instant if it is
    /// free (a `try_lock` elsewhere at that instant fails as if it were
    /// held). The calling thread never owns the mutex otherwise (owner
    /// threads do), so taking it here cannot be a recursive acquisition.
    pub(crate) fn is_locked(&self) -> Result<bool> {
        // Windows tells WAIT_ABANDONED to one waiter only: if that is this
        // probe, the next acquirer is not told (documented).
        if wait_mutex(&self.mutex, 0, &AtomicBool::new(false))? {
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

impl crate::lock::desc::DescTarget for LockTarget {
    type Desc = LockDesc;
    fn description(&self) -> Result<LockDesc> {
        LockTarget::description(self)
    }
    fn is_locked(&self) -> Result<bool> {
        LockTarget::is_locked(self)
    }
}

impl crate::lock::desc::Desc for LockDesc {
    fn try_lock(&self) -> Result<bool> {
        LockDesc::try_lock(self)
    }
    fn lock(&self) -> Result<()> {
        LockDesc::lock(self)
    }
    fn unlock(self) -> Result<()> {
        LockDesc::unlock(self)
    }
    fn belongs_to_this_process(&self) -> bool {
        LockDesc::belongs_to_this_process(self)
    }
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}
