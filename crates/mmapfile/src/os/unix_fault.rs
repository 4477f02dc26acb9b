//! Surviving `SIGBUS` when a mapped page no longer exists.
//!
//! On POSIX systems, touching a page of a file mapping that lies past the end
//! of the file (because the file, or a shared-memory block, was truncated
//! after it was mapped) raises `SIGBUS`, whose default action kills the
//! process. Every access this crate makes to mapped memory runs inside
//! [`guarded`], which lets it turn that fault into an error instead:
//!
//! 1. A process-wide `SIGBUS` handler is installed once, the first time
//!    `guarded` runs, and the action it replaced is saved.
//! 2. Before the access, the thread records the (page-rounded) address range
//!    it is about to touch in a thread-local; after the access it clears it.
//! 3. When a `SIGBUS` arrives for an address inside the faulting thread's
//!    recorded range, the handler maps fresh zero-filled anonymous pages over
//!    the rest of that range (`mmap` with `MAP_FIXED`), notes the address in
//!    a second thread-local and returns. The kernel then re-runs the faulting
//!    instruction, which now succeeds, so the copy finishes normally: no
//!    Rust frame is skipped and nothing unwinds through the handler.
//! 4. `guarded` sees the noted address and reports it; the caller turns it
//!    into [`crate::Error::Truncated`] and poisons the view (its pages were
//!    replaced, so its contents no longer mean anything).
//!
//! Every other `SIGBUS` (another thread's access, an address outside the
//! range, or a signal sent with `kill`) is passed on to the action that was
//! installed before ours: its function is called, or, for the default
//! action, the default is restored so that the fault kills the process just
//! as it would have without this crate.
//!
//! Why pages are replaced rather than jumped over: leaving the faulting
//! instruction with `siglongjmp` would skip the Rust frames of the copy
//! (undefined behaviour for frames that own anything) and needs C. Replacing
//! the pages makes the instruction succeed, at the price of the view's
//! contents, which were gone anyway.
//!
//! Memory handed out raw (e.g. through Python's buffer protocol) is not
//! covered: its accesses are not made inside `guarded`.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use super::unix::page_size;

/// What the `SIGBUS` handler needs to know about this thread's access.
///
/// One thread-local holds all of it, so that a guarded access looks up
/// thread-local storage once (in a shared library each lookup is a call to
/// `__tls_get_addr`, a noticeable part of a one-byte read). The fields are
/// atomics used with relaxed ordering: the handler runs on this same thread,
/// so no ordering between threads is needed, but the compiler must not keep
/// them in registers across the access, and relaxed atomics are plain loads
/// and stores on every target.
struct GuardState {
    /// The page-rounded address range `low..high` that this thread is
    /// touching inside [`guarded`]; empty when it is touching none.
    low: AtomicUsize,
    high: AtomicUsize,
    /// The lowest faulting address the handler recovered from during the
    /// current guarded access; 0 if none.
    fault: AtomicUsize,
}

thread_local! {
    /// Const-initialised atomics have no destructor and no lazy
    /// initialisation, so reading them from a signal handler is a plain load
    /// from thread-local storage. (In a shared library the thread's block of
    /// thread-local storage may be allocated on first use; the thread has
    /// always written here before the access that can fault, so the handler
    /// never triggers that allocation.)
    static STATE: GuardState = const {
        GuardState { low: AtomicUsize::new(0), high: AtomicUsize::new(0), fault: AtomicUsize::new(0) }
    };
}

/// The `SIGBUS` action that was installed before ours.
struct Previous(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: `PREVIOUS` is written once, inside `INSTALL.call_once`, before our
// handler is installed (and `READY` is set with release ordering after the
// write); afterwards it is only read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new(MaybeUninit::uninit()));
static READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler once per process. If the OS refuses, faults stay as
/// fatal as they were; nothing else changes.
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed `sigaction` is a valid "no handler, no flags"
        // value; every pointer passed to sigaction/sigemptyset is valid.
        unsafe {
            // Read the current action first and save it, so that it is in
            // place before any fault can reach our handler.
            let previous = (*PREVIOUS.0.get()).as_mut_ptr();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), previous) != 0 {
                return;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            // SA_ONSTACK: run on the thread's alternate stack when it has one
            // (e.g. after a stack overflow, the previous handler may need it).
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            READY.store(true, Ordering::Release);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                READY.store(false, Ordering::Release);
            }
        }
    });
}

/// Runs `access`, which touches mapped memory in `start..start + len` and
/// nowhere else, surviving a `SIGBUS` for a page of that range that no
/// longer exists.
///
/// Returns `Err(address)` of the first missing byte found if a fault
/// happened. In that case the pages from the faulting one to the end of the
/// range have been replaced by private zero pages, so `access` still ran to
/// completion, but what it read from or wrote to them is meaningless.
pub(crate) fn guarded<R>(
    start: *const u8,
    len: usize,
    access: impl FnOnce() -> R,
) -> Result<R, usize> {
    if len == 0 {
        return Ok(access());
    }
    install();
    // The page size is a power of two: round with a mask, not a division.
    let mask = page_size() - 1;
    let first = start as usize;
    let low = first & !mask;
    // `first + len` does not overflow (the range lies inside a mapping), nor
    // does rounding it up: no mapping reaches the last page of the address
    // space.
    let high = (first + len + mask) & !mask;

    /// Clears the guard even if `access` panics.
    struct Clear<'a>(&'a GuardState);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            compiler_fence(Ordering::SeqCst);
            self.0.low.store(0, Ordering::Relaxed);
            self.0.high.store(0, Ordering::Relaxed);
        }
    }

    STATE.with(|state| {
        state.fault.store(0, Ordering::Relaxed);
        state.low.store(low, Ordering::Relaxed);
        state.high.store(high, Ordering::Relaxed);
        let clear = Clear(state);
        // Keeps the compiler from moving the guard's stores after the
        // access, or the read of `fault` before it: the handler runs
        // "between" them.
        compiler_fence(Ordering::SeqCst);
        let result = access();
        drop(clear);
        match state.fault.load(Ordering::Relaxed) {
            0 => Ok(result),
            addr => Err(addr.max(first)),
        }
    })
}

/// The `SIGBUS` handler. Only async-signal-safe work happens here: loads and
/// stores to thread-locals, `mmap`, `sigaction` and `raise`, and calling the
/// previous handler.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let saved_errno = errno::get();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    if unsafe { recover(&*info) } {
        errno::set(saved_errno);
        return;
    }
    // SAFETY: as above; `info`/`context` are passed on unchanged.
    unsafe { chain(signal, info, context) };
    errno::set(saved_errno);
}

/// If the fault is one of ours, replaces the missing pages and returns true.
///
/// # Safety
/// Must only be called from the `SIGBUS` handler with the kernel's siginfo.
unsafe fn recover(info: &libc::siginfo_t) -> bool {
    // A positive si_code means the kernel raised the signal for a fault;
    // kill(), raise() and sigqueue() use codes <= 0 and carry no address.
    if info.si_code <= 0 {
        return false;
    }
    // SAFETY: for a kernel-generated SIGBUS, si_addr is the faulting address.
    let addr = unsafe { info.si_addr() } as usize;
    let (low, high) = STATE.with(|s| {
        (
            s.low.load(Ordering::Relaxed),
            s.high.load(Ordering::Relaxed),
        )
    });
    if !(low..high).contains(&addr) {
        return false;
    }
    let from = addr & !(page_size() - 1);
    // SAFETY: `from..high` lies inside a view that this thread is accessing
    // through `guarded`, which this crate mapped and will unmap; replacing
    // its pages changes only that view's contents. MAP_FIXED replaces them
    // atomically. The result is checked.
    let replaced = unsafe {
        libc::mmap(
            from as *mut libc::c_void,
            high - from,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if replaced == libc::MAP_FAILED {
        return false;
    }
    // A backward copy can fault on a high page, then on a lower one: report
    // the lowest missing address.
    STATE.with(|s| {
        let seen = s.fault.load(Ordering::Relaxed);
        if seen == 0 || addr < seen {
            s.fault.store(addr, Ordering::Relaxed);
        }
    });
    true
}

/// Passes a `SIGBUS` that is not ours to the action installed before ours.
///
/// # Safety
/// Must only be called from the `SIGBUS` handler with the kernel's arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: READY is set only after PREVIOUS was written (see `install`).
    let previous = unsafe { (*PREVIOUS.0.get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Put the default back and let the signal take its course: a fault
        // re-runs the instruction on return and faults again, now fatally,
        // with the real address in the core dump; a sent signal is raised
        // again and delivered once this handler returns.
        //
        // SAFETY: a zeroed sigaction with SIG_DFL (= 0) is the default
        // action; sigaction and raise are async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
            if (*info).si_code <= 0 && handler == libc::SIG_DFL {
                libc::raise(signal);
            }
        }
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, the saved value is a three-argument
        // handler installed by someone else for exactly this signal.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO, the saved value is a one-argument
        // handler installed by someone else for exactly this signal.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

/// `errno` must survive a signal handler unchanged.
mod errno {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn location() -> *mut libc::c_int {
        // SAFETY: no preconditions; returns this thread's errno.
        unsafe { libc::__errno_location() }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn location() -> *mut libc::c_int {
        // SAFETY: no preconditions; returns this thread's errno.
        unsafe { libc::__error() }
    }

    pub(super) fn get() -> libc::c_int {
        // SAFETY: the location of this thread's errno is always valid.
        unsafe { *location() }
    }

    pub(super) fn set(value: libc::c_int) {
        // SAFETY: the location of this thread's errno is always valid.
        unsafe { *location() = value }
    }
}
